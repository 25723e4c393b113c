"""One run = one posterior (``model=bnn_<kind>``) and seed, in two parts.

1. Label prediction and detection: train the posterior on every class of ``data``; predictive-mean accuracy and
   uncertainty on clean test inputs; for each radius of the ``attack`` config (l_inf PGD on the predictive mean,
   EOT with ``S_attack`` samples per step) robust accuracy (evaluated with ``S_eval`` samples, and with
   ``S_eval_few`` for claim (e)), the same attack without EOT (``S_attack_no_eot`` = 1 sample per step), the
   attack on one fixed posterior draw (evaluated, like all, on fresh samples), random noise of the radius, and
   detection AUROC of the attacked inputs (positive) against clean ones with H and MI; for each radius of
   ``bnn_attacks.adaptive_attack`` the adaptive detection attack and its detection AUROC.
2. Semantic shift (``bnn_attacks.shift.enabled``): train the same posterior on ``in_classes`` only (relabelled
   0..k-1); OOD = test inputs of ``ood_classes``; OOD AUROC (OOD positive) with H and MI, clean and with the OOD
   inputs attacked by ``bnn_attacks.shift_attack`` (minimise H) at each of its radii.

HMC (``model=bnn_hmc``): the stage trains the chain's start point to the MAP estimate (same loss + prior), then
:func:`bench.tasks.bnn_attacks.hmc.sample_posterior` draws the samples; ``hmc/accept_rate``, ``hmc/step_size``.
Every evaluation runs under a fixed seed of torch's generator (:func:`bench.models.stochastic.seeded`), so the
numbers are reproducible and the training stream is untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from bench.attacks.factory import build_attack, check_attack
from bench.callbacks.robust import validity_tolerances
from bench.data.statistics import input_statistics
from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.harness.seeding import bounded_seed
from bench.metrics.uncertainty import auroc, uncertainty
from bench.models.posteriors import POSTERIORS, Posterior
from bench.models.stochastic import check_num_samples, is_stochastic, seeded
from bench.tasks.bnn_attacks.module import PosteriorModule

LABEL = "test"  # metric prefix of the label-prediction part
DETECT = "detect"  # adversarial-example detection
OOD = "ood"  # semantic-shift detection


def eps_name(metric: str, eps: float) -> str:
    return f"{metric}@eps={eps:g}"


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _eps_list(attack_cfg: Any, key: str) -> list[float]:
    eps = _plain(attack_cfg.get("eps")) if attack_cfg is not None else None
    if eps is None or (isinstance(eps, list) and not eps):
        raise BenchError(f"{key}.eps is empty: give the attack radii as a list, e.g. {key}.eps=[0.1,0.2,0.3]")
    eps = eps if isinstance(eps, list) else [eps]
    bad = [e for e in eps if not isinstance(e, (int, float)) or e < 0]
    if bad:
        raise BenchError(f"{key}.eps={eps}: radii must be non-negative numbers")
    return [float(e) for e in eps]


class Settings:
    """The task's knobs (``bnn_attacks:``), checked before any training starts."""

    def __init__(self, cfg: Any) -> None:
        b = cfg.bnn_attacks
        self.S_eval = check_num_samples(b.S_eval, "bnn_attacks.S_eval")
        self.S_eval_few = check_num_samples(b.S_eval_few, "bnn_attacks.S_eval_few")
        self.S_attack = check_num_samples(b.S_attack, "bnn_attacks.S_attack")
        self.S_no_eot = check_num_samples(b.S_attack_no_eot, "bnn_attacks.S_attack_no_eot")
        kind = cfg.model.get("posterior") if cfg.get("model") is not None else None
        if kind not in POSTERIORS:
            raise BenchError(
                f"unknown posterior {kind!r} (model.posterior); known posteriors: "
                f"{', '.join(POSTERIORS)} (choose one with model=bnn_<name>)"
            )
        self.kind = str(kind)
        if cfg.get("attack") is None or "_target_" not in cfg.attack:
            raise BenchError("bnn_attacks needs an attack config with a _target_ (attack=bnn_pgd)")
        check_attack(cfg.attack, "attack")
        check_attack(b.adaptive_attack, "bnn_attacks.adaptive_attack")
        check_attack(b.shift_attack, "bnn_attacks.shift_attack")
        self.label_attack = cfg.attack
        self.eps = _eps_list(cfg.attack, "attack")
        if b.get("headline_eps") is None:  # defaults to data.eps_scale (conf/task/bnn_attacks.yaml)
            data = str(cfg.data.get("_target_", "?")).rsplit(".", 1)[-1]
            raise BenchError(
                f"data {data} declares no eps_scale (the l_inf radius of its scale) and bnn_attacks.headline_eps is "
                "not set; set bnn_attacks.headline_eps=<radius in input units> with attack.eps, "
                "bnn_attacks.adaptive_attack.eps and bnn_attacks.shift_attack.eps around it (digits: 0.2 in "
                "[0.1,0.2,0.3])"
            )
        self.headline_eps = float(b.headline_eps)
        if self.headline_eps not in self.eps:
            raise BenchError(
                f"bnn_attacks.headline_eps={self.headline_eps:g} (default: data.eps_scale) is not one of "
                f"attack.eps={self.eps}; give radii of this data's scale in attack.eps"
            )
        self.adaptive_attack = b.adaptive_attack
        self.adaptive_eps = _eps_list(b.adaptive_attack, "bnn_attacks.adaptive_attack")
        self.shift = bool(b.shift.enabled)
        self.shift_attack = b.shift_attack
        self.shift_eps = _eps_list(b.shift_attack, "bnn_attacks.shift_attack") if self.shift else []
        self.in_classes = [int(c) for c in b.shift.in_classes]
        self.ood_classes = [int(c) for c in b.shift.ood_classes]
        if self.shift and (not self.in_classes or not self.ood_classes or set(self.in_classes) & set(self.ood_classes)):
            raise BenchError("bnn_attacks.shift.in_classes and ood_classes must be non-empty and disjoint")
        self.validity_examples = int(b.validity_examples)
        self.hmc = b.hmc
        self.plots = bool(b.plots)


class OneDraw(torch.nn.Module):
    """One fixed posterior draw as a deterministic net (``Posterior.one_draw``): what the attack of earlier work
    differentiated while the evaluation averages fresh samples."""

    def __init__(self, net: Posterior) -> None:
        super().__init__()
        self.logits = net.one_draw()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


def make_attack(cfg: Any, net: Posterior, eps: float, samples: int, steps: int | None = None):
    """The attack config at radius ``eps`` on the posterior's predictive mean over ``samples`` draws per step
    (the harness's ``build_attack``; a deterministic net is attacked as it is)."""
    return build_attack(cfg, net, eps, steps=steps, samples=samples)


def _batches(n: int, size: int | None):
    size = n if not size else int(size)
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def predict(net: Posterior, x: torch.Tensor, num_samples: int, batch: int | None) -> tuple[torch.Tensor, ...]:
    """(p, H, MI) of the predictive mean over ``num_samples`` posterior draws, in batches."""
    out = []
    with torch.no_grad():
        for sl in _batches(len(x), batch):
            out.append(uncertainty(net.sample_logits(x[sl], num_samples)))
    return tuple(torch.cat(parts) for parts in zip(*out))


def attack_all(attack, x: torch.Tensor, y: torch.Tensor, batch: int | None) -> torch.Tensor:
    return torch.cat([attack(x[sl], y[sl]) for sl in _batches(len(x), batch)])


def uniform_noise(x: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)


# -- training --------------------------------------------------------------------------------------------------
def train_posterior(ctx: RunContext, dm, s: Settings, stage: str) -> PosteriorModule:
    stats = {}
    if ctx.cfg.model.get("mean") is None or ctx.cfg.model.get("std") is None:
        mean, std = input_statistics(dm)  # the model standardises its [0, 1] inputs itself
        stats = {"mean": mean, "std": std}
    net = ctx.build_net(dm, **stats)
    if not isinstance(net, Posterior):
        raise BenchError(
            f"model {type(net).__name__} is not a posterior; choose one with model=bnn_<name> ({', '.join(POSTERIORS)})"
        )
    module = PosteriorModule(
        net,
        ctx.optimizer_factory(),
        num_train=len(dm.split("train")["y"]),
        eval_samples=s.S_eval,
        eval_seed=_eval_seed(ctx, stage),
    )
    ctx.fit(module, dm, stage=stage, test=False)
    if net.kind == "hmc":
        from bench.tasks.bnn_attacks.hmc import sample_posterior

        h = s.hmc
        train = dm.split("train")
        ctx.seed_stage(f"{stage}/hmc")
        stats = sample_posterior(
            net,
            train["x"],
            train["y"],
            num_samples=net.num_members,
            warmup=int(h.warmup),
            trajectory_length=float(h.trajectory_length),
            step_size=float(h.step_size),
            kernel=str(h.kernel),
            target_accept=float(h.target_accept),
            thin=int(h.thin),
            prior_std=net.prior_std,
            max_tree_depth=int(h.max_tree_depth),
        )
        ctx.log_metrics({f"hmc/{k}": v for k, v in stats.items()}, stage=stage)
    ctx.test(module, dm, stage=stage)
    return module


def _eval_seed(ctx: RunContext, stage: str) -> int:
    return bounded_seed(7919 * (ctx.seed + 1) + (0 if stage == "main" else 1), "bnn_attacks/eval", stage)


# -- part 1: label prediction and detection ---------------------------------------------------------------------
def evaluate_label(ctx: RunContext, module: PosteriorModule, dm, s: Settings) -> dict[str, torch.Tensor]:
    net = module.net.eval()
    test = dm.split("test")
    x, y = test["x"], test["y"]
    bs = dm.eval_batch_size
    metrics: dict[str, float] = {}
    hists: dict[str, torch.Tensor] = {}
    # the harness's slack (attack.validity), so a bnn_attacks number and a harness number are judged alike
    tol, stronger_tol = validity_tolerances(s.label_attack.get("validity"), is_stochastic(net))
    with seeded(_eval_seed(ctx, "label")):
        p, h, mi = predict(net, x, s.S_eval, bs)
        clean_acc = float((p.argmax(1) == y).float().mean())
        metrics.update({f"{LABEL}/entropy": float(h.mean()), f"{LABEL}/mi": float(mi.mean())})
        hists.update({"clean/H": h, "clean/MI": mi})
        for e in s.eps:
            adv = attack_all(make_attack(s.label_attack, net, e, s.S_attack), x, y, bs)
            pa, ha, mia = predict(net, adv, s.S_eval, bs)
            few = predict(net, adv, s.S_eval_few, bs)[0]
            adv1 = attack_all(make_attack(s.label_attack, net, e, s.S_no_eot), x, y, bs)
            p1 = predict(net, adv1, s.S_eval, bs)[0]
            adv_draw = attack_all(make_attack(s.label_attack, OneDraw(net), e, 1), x, y, bs)
            p_draw = predict(net, adv_draw, s.S_eval, bs)[0]
            pn = predict(net, uniform_noise(x, e), s.S_eval, bs)[0]
            robust = float((pa.argmax(1) == y).float().mean())
            noise = float((pn.argmax(1) == y).float().mean())
            no_eot_acc = float((p1.argmax(1) == y).float().mean())
            metrics.update(
                {
                    eps_name(f"{LABEL}/robust_acc", e): robust,
                    eps_name(f"{LABEL}/robust_acc_few_samples", e): float((few.argmax(1) == y).float().mean()),
                    eps_name(f"{LABEL}/robust_acc_no_eot", e): no_eot_acc,
                    eps_name(f"{LABEL}/robust_acc_one_draw", e): float((p_draw.argmax(1) == y).float().mean()),
                    eps_name(f"{LABEL}/noise_acc", e): noise,
                    eps_name(f"{LABEL}/adv_entropy", e): float(ha.mean()),
                    eps_name(f"{LABEL}/adv_mi", e): float(mia.mean()),
                    eps_name(f"{DETECT}/auroc_entropy", e): auroc(ha, h),
                    eps_name(f"{DETECT}/auroc_mi", e): auroc(mia, mi),
                }
            )
            flags: dict[str, Any] = {
                "eps": e,
                "attack": str(s.label_attack._target_),
                "n": len(y),
                "S_attack": s.S_attack,
                "S_eval": s.S_eval,
                "tolerance": tol,
                "robust_le_clean": robust <= clean_acc + tol,
                "beats_noise": robust <= noise + tol,
                "eot_not_weaker_than_one_sample": robust <= no_eot_acc + stronger_tol,
            }
            if e == s.headline_eps:
                hists.update({"pgd/H": ha, "pgd/MI": mia})
                metrics[f"{LABEL}/robust_acc"] = robust
                # more steps must not be weaker (an attack that has not converged under-reports vulnerability);
                # on the first validity_examples test inputs, against the same inputs' robust accuracy
                strong = dict(_plain(s.label_attack))
                strong["steps"] = 2 * int(strong.get("steps", 40))
                strong["step_size"] = float(strong.get("step_size", 0.0625)) / 2
                sub = slice(0, s.validity_examples)
                adv2 = attack_all(make_attack(strong, net, e, s.S_attack), x[sub], y[sub], bs)
                p2 = predict(net, adv2, s.S_eval, bs)[0]
                more = float((p2.argmax(1) == y[sub]).float().mean())
                same = float((pa[sub].argmax(1) == y[sub]).float().mean())
                metrics[eps_name(f"{LABEL}/robust_acc_2x_steps", e)] = more
                flags["more_steps_acc"] = more
                flags["more_steps_not_weaker"] = more <= same + stronger_tol
            flags["reliable"] = all(v is not False for k, v in flags.items() if isinstance(v, bool))
            ctx.validity[eps_name(f"{LABEL}/robust_acc", e)] = flags
            if e == s.headline_eps:
                ctx.validity[f"{LABEL}/robust_acc"] = flags
        for e in s.adaptive_eps:
            adv = attack_all(make_attack(s.adaptive_attack, net, e, s.S_attack), x, y, bs)
            pa, ha, mia = predict(net, adv, s.S_eval, bs)
            metrics.update(
                {
                    eps_name(f"{DETECT}/adaptive_auroc_entropy", e): auroc(ha, h),
                    eps_name(f"{DETECT}/adaptive_auroc_mi", e): auroc(mia, mi),
                    eps_name(f"{DETECT}/adaptive_robust_acc", e): float((pa.argmax(1) == y).float().mean()),
                    eps_name(f"{DETECT}/adaptive_entropy", e): float(ha.mean()),
                    eps_name(f"{DETECT}/adaptive_mi", e): float(mia.mean()),
                }
            )
            if e == s.headline_eps:
                hists.update({"adaptive/H": ha, "adaptive/MI": mia})
    ctx.log_metrics(metrics)
    return hists


# -- part 2: semantic shift --------------------------------------------------------------------------------------
def class_split(dm, in_classes: list[int], ood_classes: list[int]):
    """A view of ``dm`` with only ``in_classes`` (relabelled 0..k-1, in the given order) and the OOD test inputs."""
    present = set(torch.unique(dm.split("train")["y"]).tolist())
    missing = sorted((set(in_classes) | set(ood_classes)) - present)
    if missing:
        raise BenchError(
            f"bnn_attacks.shift: classes {missing} are not in the data (it has {sorted(present)}); "
            "train on all classes (data.classes=null) or change bnn_attacks.shift.in_classes/ood_classes"
        )
    remap = torch.full((max(present) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(in_classes)] = torch.arange(len(in_classes))

    def keep(split: dict) -> dict:
        m = torch.isin(split["y"], torch.tensor(in_classes))
        return {"x": split["x"][m], "y": remap[split["y"][m]]}

    splits = {name: keep(dm.split(name)) for name in dm.splits}
    view = dm.with_splits(**splits)
    view.num_classes = len(in_classes)
    test = dm.split("test")
    ood = test["x"][torch.isin(test["y"], torch.tensor(ood_classes))]
    return view, ood


def evaluate_shift(ctx: RunContext, module: PosteriorModule, dm_in, x_ood: torch.Tensor, s: Settings):
    net = module.net.eval()
    x_in = dm_in.split("test")["x"]
    bs = dm_in.eval_batch_size
    metrics: dict[str, float] = {}
    hists: dict[str, torch.Tensor] = {}
    with seeded(_eval_seed(ctx, "shift")):
        _, h_in, mi_in = predict(net, x_in, s.S_eval, bs)
        _, h_ood, mi_ood = predict(net, x_ood, s.S_eval, bs)
        clean_h, clean_mi = auroc(h_ood, h_in), auroc(mi_ood, mi_in)
        metrics.update(
            {
                f"{OOD}/auroc_entropy": clean_h,
                f"{OOD}/auroc_mi": clean_mi,
                f"{OOD}/entropy_in": float(h_in.mean()),
                f"{OOD}/entropy_ood": float(h_ood.mean()),
            }
        )
        hists.update({"in/H": h_in, "in/MI": mi_in, "ood/H": h_ood, "ood/MI": mi_ood})
        dummy = torch.zeros(len(x_ood), dtype=torch.long)
        for e in s.shift_eps:
            adv = attack_all(make_attack(s.shift_attack, net, e, s.S_attack), x_ood, dummy, bs)
            _, ha, mia = predict(net, adv, s.S_eval, bs)
            ah, ami = auroc(ha, h_in), auroc(mia, mi_in)
            metrics.update(
                {
                    eps_name(f"{OOD}/attacked_auroc_entropy", e): ah,
                    eps_name(f"{OOD}/attacked_auroc_mi", e): ami,
                    eps_name(f"{OOD}/auroc_drop_entropy", e): clean_h - ah,
                    eps_name(f"{OOD}/auroc_drop_mi", e): clean_mi - ami,
                    eps_name(f"{OOD}/attacked_entropy_ood", e): float(ha.mean()),
                }
            )
            if e == s.headline_eps:
                hists.update({"ood_attacked/H": ha, "ood_attacked/MI": mia})
    ctx.log_metrics(metrics)
    return hists


def bnn_attacks(ctx: RunContext) -> None:
    s = Settings(ctx.cfg)
    dm = ctx.build_datamodule()
    module = train_posterior(ctx, dm, s, stage="main")
    hists = evaluate_label(ctx, module, dm, s)
    if s.shift:
        dm_in, x_ood = class_split(dm, s.in_classes, s.ood_classes)
        shift_module = train_posterior(ctx, dm_in, s, stage="shift")
        hists.update(evaluate_shift(ctx, shift_module, dm_in, x_ood, s))
    if s.plots:
        from bench.tasks.bnn_attacks.plots import uncertainty_histograms

        ctx.save_figure(uncertainty_histograms(hists, s.kind, s.headline_eps), "uncertainty_histograms")
