"""The pipeline: expert trajectories (a cached stage) -> the method's synthetic set -> evaluation.

1. Experts (``experts`` stage, cached per data + model + experts config + seed, so every method and k of a seed
   reuses them): ``experts.num`` networks trained on the real training split with plain SGD (no momentum, no
   weight decay, MTT's ``buffer.py``), a Lightning fit each, with their parameters kept at every epoch (and at
   epoch 0) by :class:`bench.callbacks.snapshots.EpochSnapshots`.
2. The method's set of k = ``images_per_class`` images per class:
     random_real  k random real training images per class
     class_mean   the class's mean image (k = 1; k > 1: means of k disjoint random parts)
     mtt          MTT initialised from random real images, start epochs t < T+ = ``distill.max_start_epoch``
     adaptive     the same with self-adaptive T+ (from 1, capped at ``adaptive.cap``, default the trajectories'
                  length minus M plus 1: every start epoch whose target epoch t + M exists)
     full         the whole training split (the upper bound)
3. Evaluation: ``eval.num_nets`` fresh networks trained on that set only (MTT's evaluate_synset recipe: SGD with
   momentum 0.9 and weight decay 5e-4, the learned step size for distilled sets and ``eval.lr`` for real images,
   decayed 10x at half of the epochs), tested on the test split: ``test/acc`` is their mean, ``test/acc_std``
   their std (ddof=1), ``net=<i>/test/acc`` each one's (net i starts from the same initialisation in every run of
   a seed, so methods compare paired by net).

Distillation and evaluation are plain torch loops (not Lightning fits): they take hundreds of full-batch steps on
at most a few hundred images, where Lightning's per-step machinery would cost more than the step. Both are seeded
per stage (``ctx.seed_stage``) and are deterministic; an interrupted run redoes them (the experts are cached).
"""

from __future__ import annotations

import time

import torch
from omegaconf import OmegaConf

from bench.callbacks.snapshots import EpochSnapshots
from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.harness.module import BenchModule
from bench.harness.naming import point_name
from bench.harness.stats import summarize
from bench.tasks.galaxy_distillation import distill as D
from bench.tasks.galaxy_distillation.convnet import MIN_FINAL_SIDE, max_depth
from bench.tasks.galaxy_distillation.plots import image_grid, t_plus_curve

METHODS = ("random_real", "class_mean", "mtt", "adaptive", "full")


def _plain(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _generator(ctx: RunContext, stage: str) -> torch.Generator:
    """A generator seeded from (run seed, stage), after seeding torch's global state the same way."""
    ctx.seed_stage(stage)
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))


GALAXIES = "bench.data.galaxies.GalaxiesDataModule"
GALAXIES_STATS = ([0.0536, 0.0550, 0.0526], [0.0908, 0.0924, 0.0890])  # conf/task/galaxy_distillation.yaml's


def check_standardisation(cfg) -> None:
    """The task config's ``model.mean`` / ``model.std`` are the generated galaxies' per-band statistics: other data
    (galaxy10) must give theirs."""
    target = str(cfg.data.get("_target_", "?"))
    stats = (_plain(cfg.model.get("mean")), _plain(cfg.model.get("std")))
    if target != GALAXIES and stats == GALAXIES_STATS:
        raise BenchError(
            f"model.mean / model.std are the generated galaxies' per-band statistics but data is "
            f"{target.rsplit('.', 1)[-1]}; set model.mean=[...] model.std=[...] to this data's per-channel "
            "training-split statistics (bench.data.statistics.input_statistics)"
        )


CONVNET = "bench.tasks.galaxy_distillation.convnet.ConvNet"


def check_depth(cfg, dm) -> None:
    """The ConvNet's depth must fit the data's image size: every block halves the map, and a final map under
    ``MIN_FINAL_SIDE`` pixels leaves the last instance norm over <= 4 values (8 px at depth 3: 2x2, then 1x1), where
    nothing learns and no error says why. MTT likewise raises the depth with the resolution (ConvNetD4 at 64 px)."""
    if str(cfg.model.get("_target_", "")) != CONVNET or len(dm.input_shape) != 3:
        return
    side, depth = min(int(s) for s in dm.input_shape[1:]), int(cfg.model.depth)
    allowed = max_depth(side)
    if depth > allowed:
        raise BenchError(
            f"model.depth={depth} on {side}x{side} images leaves a {side // 2**depth}x{side // 2**depth} final map "
            f"(each block halves it); the largest depth this image size allows is {allowed} (final map >= "
            f"{MIN_FINAL_SIDE}x{MIN_FINAL_SIDE}): set model.depth={allowed} or use larger images"
        )


def check_config(cfg, dm) -> None:
    """Everything that can be checked before the experts train: one clear line each."""
    check_depth(cfg, dm)
    gd = cfg.galaxy_distillation
    method = str(cfg.method)
    if method not in METHODS:
        raise BenchError(f"method={method!r}: choose one of {', '.join(METHODS)}")
    if method != "full":
        D.check_images_per_class(dm.split("train")["y"], dm.num_classes, int(gd.images_per_class))
    if method in ("mtt", "adaptive"):
        epochs = int(gd.experts.epochs)
        cap = _adaptive_cap(gd) if method == "adaptive" else int(gd.distill.max_start_epoch)
        D.check_segment(epochs, cap, int(gd.distill.expert_epochs), int(gd.distill.syn_steps))


def _adaptive_cap(gd) -> int:
    cap = gd.adaptive.get("cap")
    return int(gd.experts.epochs) - int(gd.distill.expert_epochs) + 1 if cap is None else int(cap)


# -- 1. experts ------------------------------------------------------------------------------------------------------
def expert_trajectories(ctx: RunContext, dm) -> list[dict[int, dict[str, torch.Tensor]]]:
    cfg = ctx.cfg
    ex = cfg.galaxy_distillation.experts

    def train() -> list[dict[int, dict[str, torch.Tensor]]]:
        out = []
        for i in range(int(ex.num)):
            module = BenchModule(ctx.build_net(dm), ctx.optimizer_factory(ex.optimizer))
            snapshots = EpochSnapshots(every_n_epochs=1, include_start=True)
            ctx.fit(
                module,
                dm,
                stage=f"expert{i}",
                test=True,
                extra_callbacks=[snapshots],
                max_epochs=int(ex.epochs),
                limit_val_batches=0,
            )
            out.append({int(e): {k: v.clone() for k, v in s.items()} for e, s in snapshots.states.items()})
        return out

    key = {"data": _plain(cfg.data), "model": _plain(cfg.model), "experts": _plain(ex)}
    return ctx.cached_stage("experts", key, train)


# -- 2. the synthetic sets ---------------------------------------------------------------------------------------------
def synthetic_set(ctx: RunContext, dm, trajectories) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
    """(images, labels, evaluation step size, extra metrics) of the run's method."""
    cfg, gd = ctx.cfg, ctx.cfg.galaxy_distillation
    method, k = str(cfg.method), int(gd.images_per_class)
    train = dm.split("train")
    real_lr = float(gd.eval.lr)
    g = _generator(ctx, "init")
    if method == "full":
        return train["x"], train["y"], real_lr, {}
    if method == "class_mean":
        x, y = D.class_means(train["x"], train["y"], dm.num_classes, k, g)
        return x, y, real_lr, {}
    x, y = D.random_real(train["x"], train["y"], dm.num_classes, k, g)
    if method == "random_real":
        return x, y, real_lr, {}

    net = ctx.build_net(dm)
    names = D.parameter_names(net)
    trajs = [D.trajectory_params(t, names, prefix="net.") for t in trajectories]
    ds = gd.distill
    adaptive = method == "adaptive"
    g = _generator(ctx, "distill")
    t0 = time.process_time()
    result = D.distill(
        net,
        trajs,
        x,
        y,
        iterations=int(ds.iterations),
        syn_steps=int(ds.syn_steps),
        expert_epochs=int(ds.expert_epochs),
        max_start_epoch=_adaptive_cap(gd) if adaptive else int(ds.max_start_epoch),
        lr_init=float(ds.lr_init),
        lr_img=float(ds.lr_img),
        lr_lr=float(ds.lr_lr),
        batch_syn=ds.get("batch_syn"),
        adaptive=adaptive,
        check_every=int(gd.adaptive.check_every),
        lower_sigmas=float(gd.adaptive.lower_sigmas),
        upper_sigmas=float(gd.adaptive.upper_sigmas),
        generator=g,
        log_every=int(ds.get("log_every") or 0),
    )
    extra = {
        "distill/lr": result.lr,
        "distill/loss_first": sum(result.losses[:10]) / max(1, len(result.losses[:10])),
        "distill/loss_last": sum(result.losses[-10:]) / max(1, len(result.losses[-10:])),
        "distill/t_plus_final": float(result.t_plus[-1]) if result.t_plus else None,
        "distill/t_plus_first": float(result.t_plus[0]) if result.t_plus else None,
    }
    fig = t_plus_curve(range(len(result.t_plus)), result.t_plus, f"{method}, {k} per class")
    ctx.save_figure(fig, "t_plus")
    torch.save(
        {
            "images": result.images,
            "labels": result.labels,
            "lr": result.lr,
            "losses": result.losses,
            "t_plus": result.t_plus,
            "probe_losses": result.probe_losses,
            "cpu_seconds": time.process_time() - t0,
        },
        ctx.artifact_path("distilled.pt"),
    )
    ctx.add_artifact("distilled", ctx.artifact_path("distilled.pt"))
    return result.images, result.labels, result.lr, extra


# -- 3. evaluation ----------------------------------------------------------------------------------------------------
def evaluate(ctx: RunContext, dm, images: torch.Tensor, labels: torch.Tensor, lr: float) -> dict[str, float]:
    ev = ctx.cfg.galaxy_distillation.eval
    method = str(ctx.cfg.method)
    epochs = int(ev.full_epochs if method == "full" else ev.epochs)
    test = dm.split("test")
    out, accs = {}, []
    for i in range(int(ev.num_nets)):
        ctx.seed_stage(f"eval_net{i}")  # net i's initialisation is the same in every run of this seed
        net = ctx.build_net(dm)
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        D.train_fresh(
            net,
            images,
            labels,
            lr=lr,
            epochs=epochs,
            batch_size=int(ev.batch_size),
            momentum=float(ev.momentum),
            weight_decay=float(ev.weight_decay),
            generator=g,
        )
        acc = D.accuracy(net, test["x"], test["y"])
        accs.append(acc)
        out[point_name("test/acc", net=i)] = acc
    s = summarize(accs)
    out.update({"test/acc": s.mean, "test/acc_std": s.std, "test/num_nets": float(s.n), "eval/lr": lr})
    return out


def galaxy_distillation(ctx: RunContext) -> None:
    cfg = ctx.cfg
    check_standardisation(cfg)
    dm = ctx.build_datamodule()
    check_config(cfg, dm)
    names = list(getattr(dm, "class_names", [str(c) for c in range(dm.num_classes)]))
    train = dm.split("train")
    show = torch.cat([torch.nonzero(train["y"] == c).flatten()[:10] for c in range(dm.num_classes)])
    ctx.save_figure(image_grid(train["x"][show], train["y"][show], names, 10, "training images"), "galaxy_samples")

    method = str(cfg.method)
    trajectories = expert_trajectories(ctx, dm) if method in ("mtt", "adaptive") else None
    images, labels, lr, extra = synthetic_set(ctx, dm, trajectories)
    if method != "full":
        k = int(cfg.galaxy_distillation.images_per_class)
        title = f"{method}: {k} image(s) per class"
        ctx.save_figure(
            image_grid(images, labels, names, 10, title, scale_each=method in ("mtt", "adaptive")), "synthetic_images"
        )
    metrics = evaluate(ctx, dm, images, labels, lr)
    metrics.update(extra)
    ctx.log_metrics(metrics)
