"""The protocol of ``robust_erm``: ``part=linear`` (a batch of linear problems, exact robust loss, one stage) or
``part=network`` (PGD adversarial training of a network at each training radius, one stage per radius).

A run's figures show that run alone; the figures comparing methods and seeds are drawn by the task's report hook
(:mod:`bench.tasks.robust_erm.report`) from the verify plan's records, so no run depends on what else sits in
``results_dir``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.callbacks.classification import ClassificationEvalCallback
from bench.callbacks.robust import RobustAccuracyCallback
from bench.data.linear_teacher import as_list
from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.harness.naming import point_prefix
from bench.tasks.robust_erm import plots, results
from bench.tasks.robust_erm.linear_module import RobustLinearModule
from bench.tasks.robust_erm.margins import max_margin
from bench.tasks.robust_erm.network_module import RobustNetModule
from bench.tasks.robust_erm.threat import dual_exponent, parse_p

PARTS = ("linear", "network")
SEPARABLE_TOL = 1e-9


def run(ctx: RunContext) -> None:
    part = str(ctx.cfg.get("part"))
    if part not in PARTS:
        raise BenchError(f"unknown robust_erm part {part!r}; known: {', '.join(PARTS)}")
    with torch_threads(ctx.cfg.get("num_threads")):
        (linear_part if part == "linear" else network_part)(ctx)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: leave torch's setting). This task's tensors are
    tiny: intra-op threads do not pay, and on a shared machine two spinning threads made a step 10-30x slower."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _nonnegative(values: list, key: str) -> list[float]:
    out = [float(v) for v in values]
    if not out or min(out) < 0:
        raise BenchError(f"{key} must be >= 0 (a radius), got {values}")
    return out


def _steps(cfg, key: str) -> tuple[int, int]:
    """(steps per Lightning step, Lightning steps) from ``<key>.steps`` and ``<key>.steps_per_call``."""
    total, per_call = int(cfg.steps), int(cfg.steps_per_call)
    if total < 1 or per_call < 1:
        raise BenchError(f"{key}.steps and {key}.steps_per_call must be >= 1, got {total} and {per_call}")
    per_call = min(per_call, total)
    return per_call, math.ceil(total / per_call)


# -- linear part ---------------------------------------------------------------------------------------------
def threat_radii(threat) -> tuple[float, list[float], bool]:
    """(p, radii, absolute): the threat exponent and the radii, absolute (``threat.eps``) or relative (``threat.c``)."""
    absolute = threat.get("eps") is not None
    radii = _nonnegative(as_list(threat.eps if absolute else threat.c), "threat.eps" if absolute else "threat.c")
    return parse_p(threat.p), radii, absolute


def linear_problems(ctx: RunContext, dm) -> tuple[list[dict], float]:
    """One dict per problem (m, c or None, eps, gamma, name). eps = c * gamma_p(first m training points) unless
    ``threat.eps`` gives absolute radii."""
    threat = ctx.cfg.threat
    p, radii, absolute = threat_radii(threat)
    train = dm.split("train")
    sizes = list(getattr(dm, "train_sizes", None) or [len(train["y"])])
    sign = (2 * train["y"].double() - 1).numpy()
    x = train["x"].flatten(1).double().numpy()
    gammas = {m: max_margin(x[:m], sign[:m], dual_exponent(p))[0] for m in sizes}
    problems = []
    for m in sizes:
        for r in radii:
            if not absolute and r > 0 and gammas[m] <= SEPARABLE_TOL:
                raise BenchError(
                    f"the training set (m={m}) is not linearly separable: gamma_{threat.p} = {gammas[m]:.3g} <= 0, so "
                    "eps = c * gamma is undefined. Use threat.c=0, an absolute radius threat.eps=<value>, "
                    "or separable "
                    f"data (data.label_noise=0)"
                )
            single = len(sizes) == 1 and len(radii) == 1
            axes = {"m": m, "eps": float(r)} if absolute else {"m": m, "c": float(r)}
            name = "" if single else point_prefix(**axes)
            problems.append(
                {
                    "m": m,
                    "c": None if absolute else r,
                    "eps": r if absolute else r * gammas[m],
                    "gamma": gammas[m],
                    "name": name,
                }
            )
    return problems, p


def linear_part(ctx: RunContext) -> None:
    cfg = ctx.cfg
    per_call, calls = _steps(cfg.linear, "linear")
    threat_radii(cfg.threat)  # bad threat settings fail before any data are drawn
    dm = ctx.build_datamodule()
    problems, p = linear_problems(ctx, dm)
    ctx.seed_stage("init")
    net = ctx.build_net(dm, problems=len(problems))
    # steepest-descent optimizers take the batch of problems row by row; elementwise ones (SGD, Adam) need nothing
    opt_kwargs = {"batched": True} if "batched" in cfg.optimizer else {}
    module = RobustLinearModule(
        net,
        instantiate(cfg.optimizer, _partial_=True, **opt_kwargs),
        p=p,
        eps=[q["eps"] for q in problems],
        train_sizes=[q["m"] for q in problems],
        names=[q["name"] for q in problems],
        loss=str(cfg.linear.loss),
        steps_per_call=per_call,
    )
    # evaluation is exact and inside the module: attack / logit callbacks do not apply to a batch of linear problems
    callbacks = [
        cb for cb in ctx.config_callbacks() if not isinstance(cb, (ClassificationEvalCallback, RobustAccuracyCallback))
    ]
    ctx.fit(module, dm, callbacks=callbacks, max_epochs=calls)
    constants = {"train/steps": per_call * calls}
    for q in problems:
        constants.update(
            {
                f"{q['name']}problem/m": q["m"],
                f"{q['name']}problem/d": net.dim,
                f"{q['name']}problem/eps": q["eps"],
                f"{q['name']}threat/gamma": q["gamma"],
            }
        )
        if q["c"] is not None:
            constants[f"{q['name']}problem/c"] = q["c"]
    ctx.log_metrics(constants)
    rows = results.rows([_this_run(ctx)], "linear")
    ctx.save_figure(
        plots.plot_linear_curves(rows, "test/robust_acc", "robust test accuracy (exact)"), "robust_acc_vs_m"
    )
    ctx.save_figure(plots.plot_linear_curves(rows, "w/l1_over_l2", "||w||_1 / ||w||_2"), "l1_over_l2_vs_m")


# -- network part ------------------------------------------------------------------------------------------------
def network_part(ctx: RunContext) -> None:
    cfg, ncfg = ctx.cfg, ctx.cfg.network
    per_call, calls = _steps(ncfg, "network")
    radii = _nonnegative(as_list(ncfg.train_eps), "network.train_eps")
    attack = OmegaConf.to_container(cfg.attack, resolve=True)
    train_attack = OmegaConf.to_container(ncfg.train_attack, resolve=True)
    dm = ctx.build_datamodule(cfg=ncfg.data)
    for e in radii:
        stage = "main" if len(radii) == 1 else point_prefix(train_eps=e).rstrip("/")
        prefix = "" if stage == "main" else f"{stage}/"
        ctx.seed_stage(f"{stage}/init")
        module = RobustNetModule(
            ctx.build_net(dm, cfg=ncfg.model),
            ctx.optimizer_factory(),
            train_eps=e,
            train_attack=train_attack,
            steps_per_call=per_call,
        )
        test = ctx.fit(module, dm, stage=stage, max_epochs=calls)
        on_train = [
            ClassificationEvalCallback(prefix="train"),
            RobustAccuracyCallback(copy.deepcopy(attack), prefix="train"),
        ]
        train = ctx.test(module, dm.with_splits(test="train"), stage=stage, callbacks=on_train)
        gaps = {"robust_gap@eps=0": train[f"{prefix}train/acc"] - test[f"{prefix}test/acc"]}
        for r in attack.get("eps") or []:
            key = f"robust_acc@eps={r:g}"
            if f"{prefix}train/{key}" in train:
                gaps[f"robust_gap@eps={r:g}"] = train[f"{prefix}train/{key}"] - test[f"{prefix}test/{key}"]
        ctx.log_metrics({**gaps, "problem/train_eps": e, "train/steps": per_call * calls}, stage=stage)
    rows = results.rows([_this_run(ctx)], "network")
    ctx.save_figure(plots.plot_network(rows), "robust_acc_vs_train_eps")


def _this_run(ctx: RunContext) -> dict:
    """This run as a record-like dict (config, metrics, seed), for its own figures."""
    return {"config": OmegaConf.to_container(ctx.cfg, resolve=True), "metrics": dict(ctx.metrics), "seed": ctx.seed}
