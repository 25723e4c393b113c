"""The protocol, as stages: query models -> per-example scores -> class quotas -> kept subset -> fresh final model
-> per-class test accuracy.

One run = one method and one density (``method=el2n+drop robust_pruning.density=0.3``). The expensive stages are
cached stages (``ctx.cached_stage``) shared by every run that needs them:
  query    ``robust_pruning.query.num_models`` models trained on the full training split; per model the weights
           at ~10% of training (EL2N, GraNd), the final weights (CoreSet embeddings), the true-class probability
           and correctness on the training split after every epoch (Forgetting, Dynamic Uncertainty) and the
           per-class recall on the validation split (DRoP). Key: data, model, optimizer, query settings, split, seed.
  scores   one per score and query stage (Random needs no query stage: its key is the data and seed alone).
  final    the final model, keyed by the kept indices (with data, model, optimizer, epochs and seed): runs that keep
           the same subset, e.g. every method at d = 1, train it once.
So a run at another density or with another quota rule retrains only its final model.

The validation split is the datamodule's ``val`` split, or, when it has none (the default), the stratified
``robust_pruning.val_fraction`` share of its test split; the rest of the test split is the only data any reported
``test/...`` number is computed on. Validation data only set DRoP's quotas.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.callbacks.snapshots import EpochSnapshots
from bench.data.base import stratified_split
from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.metrics.classification import PerGroupAccuracy
from bench.tasks.robust_pruning import quotas as Q
from bench.tasks.robust_pruning import scores as S
from bench.tasks.robust_pruning.theory import theory_metrics


def parse_method(method: str) -> tuple[str, str]:
    """``<score>`` (score-implied quotas) or ``<score>+drop`` (DRoP quotas, picked by the score within classes)."""
    score, plus, quota = str(method).partition("+")
    quota = quota if plus else "score"
    if score not in S.SCORES or quota not in Q.QUOTAS or quota == "score" and plus:
        known = ", ".join([*S.SCORES, *(f"{s}+drop" for s in S.SCORES)])
        raise BenchError(
            f"unknown robust_pruning method {method!r}: a score ({', '.join(S.SCORES)}) optionally "
            f"followed by +drop for DRoP quotas; known methods: {known}"
        )
    return score, quota


def _plain(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def validation_view(dm, fraction: float):
    """(view with train / val / test, whether val was carved from test)."""
    if "val" in dm.splits:
        view = dm.with_splits()
        view.setup()
        return view, False
    if not 0.0 < float(fraction) < 1.0:
        raise BenchError(f"robust_pruning.val_fraction must lie in (0, 1), got {fraction}")
    test = dm.splits["test"]
    val_idx, test_idx = stratified_split(test["y"], [float(fraction), 1.0 - float(fraction)], dm.seed)
    pick = lambda idx: {k: v[idx] for k, v in test.items()}
    view = dm.with_splits(val=pick(val_idx), test=pick(test_idx))
    view.setup()
    return view, True


def build_data(ctx: RunContext):
    """The ``data`` datamodule with its splits from a cached stage: generating mnist1d costs seconds of CPU per run,
    which every method and density of one seed would otherwise repeat."""
    dm = instantiate(ctx.cfg.data)
    splits = ctx.cached_stage("data", {"data": _plain(ctx.cfg.data)}, dm.build)
    for name, split in splits.items():
        if "x" not in split or "y" not in split:
            raise BenchError(f"split {name!r} of the data must hold tensors 'x' and 'y', got {sorted(split)}")
    dm.splits = {k: dict(v) for k, v in splits.items()}
    if not dm.input_shape:
        dm.input_shape = tuple(dm.splits["train"]["x"].shape[1:])
    return dm


def _net_state(module_state: dict) -> dict:
    return {k[len("net.") :]: v for k, v in module_state.items() if k.startswith("net.")}


def _net(ctx: RunContext, dm, state: dict) -> torch.nn.Module:
    net = ctx.build_net(dm)
    net.load_state_dict(state)
    return net.eval()


def recall(net: torch.nn.Module, split: dict, num_classes: int) -> torch.Tensor:
    acc = PerGroupAccuracy(num_classes)
    with torch.no_grad():
        acc.update(torch.cat([net(split["x"][i : i + 4096]) for i in range(0, len(split["y"]), 4096)]), split["y"])
    return acc.compute()["per_group"].float()


def early_epoch(epochs: int, fraction: float) -> int:
    """The epoch EL2N and GraNd are read at: ``fraction`` of training, at least epoch 1."""
    if not 0.0 < float(fraction) <= 1.0:
        raise BenchError(f"robust_pruning.query.early_fraction must lie in (0, 1], got {fraction}")
    return max(1, min(int(epochs), round(float(fraction) * int(epochs))))


# -- stage 1: query models -------------------------------------------------------------------------------------
def query_key(cfg) -> dict:
    return {
        "data": _plain(cfg.data),
        "model": _plain(cfg.model),
        "optimizer": _plain(cfg.optimizer),
        "module": _plain(cfg.module),
        "query": _plain(cfg.robust_pruning.query),
        "val_fraction": float(cfg.robust_pruning.val_fraction),
    }


def query_stage(ctx: RunContext, view) -> dict:
    cfg = ctx.cfg.robust_pruning.query
    num_models, epochs = int(cfg.num_models), int(cfg.epochs)
    if num_models < 1 or epochs < 1:
        raise BenchError(f"robust_pruning.query needs num_models >= 1 and epochs >= 1, got {num_models}, {epochs}")
    early = early_epoch(epochs, cfg.early_fraction)
    train, val, k = view.splits["train"], view.splits["val"], view.num_classes

    def train_fn() -> dict:
        out: dict = {"early": [], "final": [], "true_prob": [], "correct": [], "val_recall": [], "early_epoch": early}
        for i in range(num_models):
            ctx.seed_stage(f"query{i}/init")
            module = ctx.build_module(view)
            snaps = EpochSnapshots(every_n_epochs=1)
            ctx.fit(
                module,
                view,
                stage=f"query{i}",
                test=False,
                extra_callbacks=[snaps],
                max_epochs=epochs,
                limit_val_batches=0,
            )
            probs, correct = [], []
            for e in range(1, epochs + 1):
                p = S.predict_proba(_net(ctx, view, _net_state(snaps.states[e])), train["x"])
                probs.append(p.gather(1, train["y"][:, None]).squeeze(1))
                correct.append(p.argmax(1) == train["y"])
            out["early"].append(_net_state(snaps.states[early]))
            out["final"].append(_net_state(module.state_dict()))
            out["true_prob"].append(torch.stack(probs))
            out["correct"].append(torch.stack(correct))
            out["val_recall"].append(recall(_net(ctx, view, out["final"][-1]), val, k))
        out["true_prob"], out["correct"] = torch.stack(out["true_prob"]), torch.stack(out["correct"])
        out["val_recall"] = torch.stack(out["val_recall"])
        r = out["val_recall"].mean(0)
        ctx.log_metrics(
            {
                "early_epoch": early,
                "train_acc": out["correct"][:, -1].float().mean().item(),
                **{f"val_recall/{c}": r[c].item() for c in range(k)},
            },
            stage="query",
        )
        return out

    return ctx.cached_stage("query", query_key(ctx.cfg), train_fn)


# -- stage 2: scores ---------------------------------------------------------------------------------------------
def score_stage(ctx: RunContext, view, query: dict | None, score: str) -> dict:
    """{"global": (N,) score, "class": (N,) score used within classes} (equal except for CoreSet)."""
    cfg = ctx.cfg.robust_pruning
    train = view.splits["train"]
    x, y = train["x"], train["y"]
    key = {"score": score, "data": _plain(ctx.cfg.data)}
    if score != "random":
        key.update(query=query_key(ctx.cfg), window=int(cfg.du_window))

    def train_fn() -> dict:
        if score == "random":
            s = torch.rand(len(y))
        elif score == "el2n":
            s = torch.stack([S.el2n(S.predict_proba(_net(ctx, view, st), x), y) for st in query["early"]]).mean(0)
        elif score == "grand":
            s = torch.stack([S.grand(_net(ctx, view, st), x, y, int(cfg.grand_chunk)) for st in query["early"]]).mean(0)
        elif score == "forgetting":
            s = torch.stack([S.forgetting(c) for c in query["correct"]]).mean(0)
        elif score == "dynamic_uncertainty":
            s = torch.stack([S.dynamic_uncertainty(p, int(cfg.du_window)) for p in query["true_prob"]]).mean(0)
        else:  # coreset: embeddings of the first query model's final weights
            emb = S.embeddings(_net(ctx, view, query["final"][0]), x)
            g, c = S.coreset_scores(emb, y, view.num_classes)
            return {"global": g, "class": c}
        return {"global": s.float(), "class": s.float()}

    return ctx.cached_stage(f"scores_{score}", key, train_fn)


# -- stage 3-4: quotas and the kept subset -----------------------------------------------------------------------
def kept_subset(
    score: str,
    quota: str,
    scores: dict,
    y: torch.Tensor,
    num_classes: int,
    density: float,
    min_per_class: int,
    recall_k: torch.Tensor | None,
    tie_seed: int,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(kept indices, quotas, classes raised by the floor rule)."""
    sizes = torch.bincount(y, minlength=num_classes)
    keep = Q.keep_count(density, len(y))
    Q.check_budget(keep, sizes, min_per_class, density)
    if quota == "drop":
        if torch.isnan(recall_k).any():
            raise BenchError("DRoP needs every class in the validation split; some class has no validation example")
        n = Q.drop_quotas(recall_k, sizes, keep)
        within = scores["class"]
    else:
        n = Q.implied_quotas(scores["global"], y, num_classes, keep, tie_seed)
        within = scores["global"]
    n, raised = Q.apply_floor(n, sizes, min_per_class)
    return Q.select(within, y, n, tie_seed), n, raised


# -- stage 5-6: the final model ----------------------------------------------------------------------------------
def final_stage(ctx: RunContext, view, kept: torch.Tensor) -> None:
    cfg = ctx.cfg
    train = view.splits["train"]
    subset = {k: v[kept] for k, v in train.items()}
    digest = hashlib.sha256(kept.numpy().astype(np.int64).tobytes()).hexdigest()
    key = {
        "data": _plain(cfg.data),
        "model": _plain(cfg.model),
        "optimizer": _plain(cfg.optimizer),
        "module": _plain(cfg.module),
        "epochs": int(cfg.robust_pruning.final_epochs),
        "val_fraction": float(cfg.robust_pruning.val_fraction),
        "kept": digest,
    }
    final_view = view.with_splits(train=subset, val=None)
    final_view.setup()

    def train_fn() -> dict:
        module = ctx.build_module(final_view)
        ctx.fit(module, final_view, stage="main", max_epochs=int(cfg.robust_pruning.final_epochs))
        return {"kept": len(kept)}

    ctx.cached_stage("final", key, train_fn)


def class_spread(metrics: dict, num_classes: int) -> dict[str, float]:
    accs = [metrics.get(f"test/class_acc/{k}") for k in range(num_classes)]
    accs = np.array([a for a in accs if a is not None and np.isfinite(a)], dtype=float)
    if not len(accs):
        return {}
    return {"test/class_acc_gap": float(accs.max() - accs.min()), "test/class_acc_std": float(accs.std())}


MNIST1D = "bench.data.mnist1d.MNIST1DDataModule"
MNIST1D_STATS = (0.4756, 0.1108)  # model.mean / model.std of conf/task/robust_pruning.yaml: mnist1d's


def check_standardisation(cfg) -> None:
    """The task config's ``model.mean`` / ``model.std`` are mnist1d's statistics: other data must give theirs."""
    target = str(cfg.data.get("_target_", "?"))
    stats = (cfg.model.get("mean"), cfg.model.get("std"))
    if target != MNIST1D and stats == MNIST1D_STATS:
        raise BenchError(
            f"model.mean={stats[0]} model.std={stats[1]} are mnist1d's input statistics but data is "
            f"{target.rsplit('.', 1)[-1]}; set model.mean / model.std to this data's training-split statistics "
            "(bench.data.statistics.input_statistics), or 0 / 1 for none"
        )


def robust_pruning(ctx: RunContext) -> None:
    cfg = ctx.cfg
    pcfg = cfg.robust_pruning
    check_standardisation(cfg)
    score, quota = parse_method(str(cfg.method))
    density = Q.check_density(pcfg.density)
    ctx.log_metrics(theory_metrics(list(pcfg.theory.mu), list(pcfg.theory.sigma)))
    dm = build_data(ctx)
    view, _ = validation_view(dm, pcfg.val_fraction)
    y = view.splits["train"]["y"]
    k = view.num_classes
    sizes = torch.bincount(y, minlength=k)
    Q.check_budget(Q.keep_count(density, len(y)), sizes, int(pcfg.min_per_class), density)  # before any training

    query = query_stage(ctx, view) if (score != "random" or quota == "drop") else None
    scores = score_stage(ctx, view, query, score)
    recall_k = query["val_recall"].mean(0) if query is not None else None
    kept, _n, raised = kept_subset(
        score, quota, scores, y, k, density, int(pcfg.min_per_class), recall_k, tie_seed=ctx.seed
    )
    kept_k = torch.bincount(y[kept], minlength=k)
    class_density = kept_k.double() / sizes.clamp(min=1).double()
    drop_notes = {}
    if quota == "drop":
        perfect = Q.perfect_recall_classes(recall_k)
        drop_notes["prune/drop_perfect_recall_classes"] = len(perfect)
        if perfect:
            val_counts = torch.bincount(view.splits["val"]["y"], minlength=k)
            warnings.warn(
                f"DRoP: classes {perfect} have validation recall 1.0 (on {[int(val_counts[c]) for c in perfect]} "
                f"validation examples), so weight 1 - r = 0 and quota 0 before the floor rule "
                f"(min_per_class={int(pcfg.min_per_class)}): the formula at face value, recorded as "
                "prune/drop_perfect_recall_classes",
                stacklevel=2,
            )
    ctx.log_metrics(
        {
            **drop_notes,
            "prune/density": density,
            "prune/kept": len(kept),
            "prune/kept_fraction": len(kept) / len(y),
            "prune/floored_classes": len(raised),
            "prune/min_class_density": class_density.min().item(),
            "prune/max_class_density": class_density.max().item(),
            **{f"prune/class_kept/{c}": int(kept_k[c]) for c in range(k)},
            **{f"prune/class_density/{c}": class_density[c].item() for c in range(k)},
        }
    )
    final_stage(ctx, view, kept)
    ctx.log_metrics(class_spread(ctx.metrics, k))
