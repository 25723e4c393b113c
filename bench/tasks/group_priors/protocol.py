"""The two-stage protocol: ERM on the training split (cached, shared by every method and seed of the second stage)
-> the method's second stage -> test on the group-balanced test split.

Model selection (``selection`` config), per method:
  erm             ``erm.selection_metric``: ``none`` (default) = the last epoch, the base model that DFR and GAP
                  retrain (as DFR's paper reports ERM); ``acc`` / ``worst_group_acc`` = the epoch with the best
                  validation score (ERM then uses no group labels / uses them to select)
  group_dro, jtt  the epoch with the best validation metric (they train on train only)
  dfr             the regularisation C with the best metric on the held-out part of validation
                  (``selection.select_fraction``), the head fitted on the other part
  gap_*           the epoch with the best metric on the held-out part of validation, trained on the other part
The selected values are recorded as ``select/val_<metric>`` and ``select/epoch`` or ``select/C``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf

from bench.callbacks.snapshots import EpochSnapshots
from bench.data.base import TensorDataModule
from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.metrics.classification import PerGroupAccuracy
from bench.tasks.group_priors.data import (
    has_groups,
    require_groups,
    split_for_selection,
    upsample,
    warn_empty_groups,
)
from bench.tasks.group_priors.dfr import AveragedLogisticHead, extract_features
from bench.tasks.group_priors.module import ERMModule, GAPModule, GroupDROModule, require_feature_split
from bench.tasks.group_priors.selection import SELECTION_METRICS, ValidationSelection, selection_score

METHODS = ("erm", "dfr", "group_dro", "jtt", "gap_last_layer", "gap_all_layers")


@dataclass
class ERMResult:
    final: dict  # net weights after the last ERM epoch: theta_0 of GAP, the features of DFR
    selected: dict  # net weights of the epoch selected on validation: the ERM baseline
    snapshots: dict = field(default_factory=dict)  # epoch -> net weights (JTT's identification model)
    metrics: dict = field(default_factory=dict)  # the ERM stage's metrics, without the "erm/" prefix


def _net_state(module_state: dict) -> dict:
    return {k[len("net.") :]: v for k, v in module_state.items() if k.startswith("net.")}


def erm_key(cfg) -> dict:
    """The config parts that define the ERM stage (the harness adds trainer, threads and the task version)."""
    return {
        "data": cfg.data,
        "model": cfg.model,
        "optimizer": cfg.optimizer,
        "erm": cfg.erm,
        "every_n_epochs": int(cfg.selection.every_n_epochs) if str(cfg.erm.selection_metric) != "none" else None,
    }


def _selection(dm, grouped: bool, metric: str, restore_best: bool) -> ValidationSelection:
    return ValidationSelection(dm.num_groups if grouped else 0, metric, restore_best=restore_best)


def erm_stage(ctx: RunContext, dm, grouped: bool) -> ERMResult:
    """ERM, a cached stage: trained once per ``erm_key`` and ``erm_seed``, reused by every method and second-stage
    seed."""
    cfg = ctx.cfg

    def train() -> dict:
        metric = str(cfg.erm.selection_metric)
        select = metric != "none" and "val" in dm.splits
        module = ERMModule(ctx.build_net(dm), ctx.optimizer_factory())
        selection = _selection(dm, grouped, metric, restore_best=False) if select else None
        snapshots = EpochSnapshots(list(cfg.erm.snapshot_epochs or []))
        overrides = {"max_epochs": int(cfg.erm.max_epochs)}
        if select:
            overrides["check_val_every_n_epoch"] = int(cfg.selection.every_n_epochs)
        else:
            overrides["limit_val_batches"] = 0
        out = ctx.fit(
            module,
            dm,
            stage="erm",
            test=False,
            extra_callbacks=[snapshots] + ([selection] if select else []),
            **overrides,
        )
        final = _net_state(module.state_dict())
        selected = (
            _net_state(selection.best_state) if selection is not None and selection.best_state is not None else final
        )
        metrics = {k[len("erm/") :]: v for k, v in out.items() if k.startswith("erm/")}
        if selection is None:  # the last epoch is the selected one
            metrics["select/epoch"] = float(cfg.erm.max_epochs)
            ctx.log_metrics({"select/epoch": metrics["select/epoch"]}, stage="erm")
        snaps = {int(e): _net_state(s) for e, s in snapshots.states.items()}
        return {"final": final, "selected": selected, "snapshots": snaps, "metrics": metrics}

    out = ctx.cached_stage("erm", erm_key(cfg), train, seed=int(cfg.erm_seed))
    return ERMResult(out["final"], out["selected"], {int(e): s for e, s in out["snapshots"].items()}, out["metrics"])


def _net_from(ctx: RunContext, dm, state: dict) -> torch.nn.Module:
    net = ctx.build_net(dm)
    net.load_state_dict(state)
    return net


def _fit_selected(ctx: RunContext, module, datamodule, max_epochs: int, stage: str = "main", test: bool = True) -> dict:
    """Fit with validation every ``selection.every_n_epochs`` epochs; the module ends with the selected weights."""
    cfg = ctx.cfg
    selection = _selection(datamodule, True, str(cfg.selection.metric), restore_best=True)
    return ctx.fit(
        module,
        datamodule,
        stage=stage,
        test=test,
        extra_callbacks=[selection],
        max_epochs=int(max_epochs),
        check_val_every_n_epoch=int(cfg.selection.every_n_epochs),
    )


def _retraining_view(ctx: RunContext, dm, **kwargs) -> tuple[TensorDataModule, dict]:
    """Train on part of validation, select on the rest (stratified by group), test on test."""
    fit, select = split_for_selection(dm.splits["val"], float(ctx.cfg.selection.select_fraction), dm.seed)
    return dm.with_splits(train=fit, val=select, **kwargs), fit


# -- the methods ---------------------------------------------------------------------------------------------------
def run_erm(ctx: RunContext, dm, erm: ERMResult) -> None:
    ctx.test(ERMModule(_net_from(ctx, dm, erm.selected)), dm)
    ctx.log_metrics({k: v for k, v in erm.metrics.items() if k.startswith("select/")})


def run_dfr(ctx: RunContext, dm, erm: ERMResult) -> None:
    cfg = ctx.cfg.dfr
    net = _net_from(ctx, dm, erm.final)
    require_feature_split(net)
    view, fit = _retraining_view(ctx, dm)
    select = view.splits["val"]
    f_fit, f_select = extract_features(net, fit["x"]), extract_features(net, select["x"])
    metric = str(ctx.cfg.selection.metric)
    best = None
    for C in list(cfg.C):
        head = AveragedLogisticHead(float(C), int(cfg.num_subsets), float(cfg.l1_ratio), int(cfg.max_iter))
        head.fit(f_fit, fit["y"].numpy(), fit["group"].numpy(), dm.num_classes, seed=ctx.seed)
        acc = PerGroupAccuracy(dm.num_groups)
        acc.update(torch.as_tensor(head.logits(f_select)), select["y"], select["group"])
        score = selection_score(acc.compute(), metric)
        if best is None or score > best[0]:
            best = (score, float(C), head)
    if best is None:
        raise BenchError("dfr.C is empty; give at least one regularisation strength, e.g. dfr.C=[1.0]")
    net.classifier = best[2].as_linear()
    ctx.test(ERMModule(net), dm)
    ctx.log_metrics({f"select/val_{metric}": best[0], "select/C": best[1]})


def run_group_dro(ctx: RunContext, dm, erm: ERMResult) -> None:
    cfg = ctx.cfg.group_dro
    ctx.seed_stage("main")
    module = GroupDROModule(ctx.build_net(dm), ctx.optimizer_factory(), dm.num_groups, float(cfg.eta))
    _fit_selected(ctx, module, dm, cfg.max_epochs)
    ctx.log_metrics({f"group_dro/weight/{g}": w for g, w in enumerate(module.group_weights.tolist())})


def run_jtt(ctx: RunContext, dm, erm: ERMResult) -> None:
    cfg = ctx.cfg.jtt
    epoch = int(cfg.identification_epochs)
    train = dm.splits["train"]
    identifier = _net_from(ctx, dm, erm.snapshots[epoch]).eval()
    with torch.no_grad():
        pred = torch.cat([identifier(train["x"][i : i + 4096]).argmax(1) for i in range(0, len(train["y"]), 4096)])
    errors = pred != train["y"]
    view = dm.with_splits(train=upsample(train, errors, int(cfg.upweight)))
    ctx.seed_stage("main")
    module = ERMModule(ctx.build_net(dm), ctx.optimizer_factory())
    _fit_selected(ctx, module, view, cfg.max_epochs)
    ctx.log_metrics({"jtt/error_set_size": int(errors.sum()), "jtt/error_set_fraction": errors.float().mean().item()})


def run_gap(ctx: RunContext, dm, erm: ERMResult, last_layer_only: bool) -> None:
    """GAP from the ERM weights; ``gap.prior_precision`` may be a list: each value is trained and the one with
    the best held-out validation metric is tested (ties: the first in the list)."""
    cfg = ctx.cfg.gap
    view, fit = _retraining_view(ctx, dm, batch_size=int(cfg.batch_size))
    grid = list(cfg.prior_precision) if OmegaConf.is_list(cfg.prior_precision) else [cfg.prior_precision]
    if not grid:
        raise BenchError("gap.prior_precision is an empty list; give a value or a list of values, e.g. [5.0, 50.0]")

    def build(prior_precision: float) -> GAPModule:
        return GAPModule(
            _net_from(ctx, dm, erm.final),
            ctx.optimizer_factory(cfg.optimizer),
            context=fit,
            num_groups=dm.num_groups,
            num_train=len(fit["y"]),
            tau=float(cfg.tau),
            rho=float(cfg.rho),
            s=float(cfg.s),
            prior_precision=float(prior_precision),
            context_size=int(cfg.context_size),
            last_layer_only=last_layer_only,
        )

    if len(grid) == 1:
        _fit_selected(ctx, build(grid[0]), view, cfg.max_epochs)
        ctx.log_metrics({"select/prior_precision": float(grid[0])})
        return
    metric = f"select/val_{ctx.cfg.selection.metric}"
    best = None
    for i, prior_precision in enumerate(grid):
        module = build(prior_precision)
        out = _fit_selected(ctx, module, view, cfg.max_epochs, stage=f"gap_grid{i}", test=False)
        score = out[f"gap_grid{i}/{metric}"]
        if best is None or score > best[0]:
            best = (score, float(prior_precision), out[f"gap_grid{i}/select/epoch"], module)
    ctx.test(best[3], view)
    ctx.log_metrics({metric: best[0], "select/prior_precision": best[1], "select/epoch": best[2]})


RUNNERS = {
    "erm": run_erm,
    "dfr": run_dfr,
    "group_dro": run_group_dro,
    "jtt": run_jtt,
    "gap_last_layer": lambda ctx, dm, erm: run_gap(ctx, dm, erm, last_layer_only=True),
    "gap_all_layers": lambda ctx, dm, erm: run_gap(ctx, dm, erm, last_layer_only=False),
}


def exclude_unseen_groups(ctx: RunContext, num_groups: int, unseen: list[int]) -> None:
    """Worst-group accuracy over the groups that had training examples (the per-group numbers stay recorded;
    the minimum over all measured groups is kept as ``test/worst_group_acc_all``)."""
    accs = {
        g: ctx.metrics.get(f"test/group_acc/{g}")
        for g in range(num_groups)
        if (ctx.metrics.get(f"test/group_count/{g}") or 0) > 0
    }
    seen = [a for g, a in accs.items() if g not in unseen and a is not None]
    if "test/worst_group_acc" in ctx.metrics and seen:
        ctx.log_metrics(
            {"test/worst_group_acc_all": ctx.metrics["test/worst_group_acc"], "test/worst_group_acc": min(seen)}
        )


def check_method_config(ctx: RunContext, dm, method: str) -> None:
    """Config errors a method would hit only after the ERM stage, raised before it."""
    cfg = ctx.cfg
    if method == "jtt":
        epoch = int(cfg.jtt.identification_epochs)
        if epoch not in [int(e) for e in cfg.erm.snapshot_epochs or []] or not 1 <= epoch <= int(cfg.erm.max_epochs):
            raise BenchError(
                f"jtt.identification_epochs={epoch} must lie in 1..erm.max_epochs={cfg.erm.max_epochs} "
                f"and be one of erm.snapshot_epochs={list(cfg.erm.snapshot_epochs or [])}"
            )
    metric = str(cfg.erm.selection_metric)
    if metric != "none" and metric not in SELECTION_METRICS:
        raise BenchError(f"unknown erm.selection_metric {metric!r}; known: none, {', '.join(SELECTION_METRICS)}")
    if method in ("dfr", "gap_last_layer"):
        require_feature_split(ctx.build_net(dm))


def group_priors(ctx: RunContext) -> None:
    cfg = ctx.cfg
    method = str(cfg.method)
    if method not in METHODS:
        raise BenchError(f"unknown group_priors method {method!r}; known methods: {', '.join(METHODS)}")
    dm = ctx.build_datamodule()
    data_name = str(cfg.data.get("_target_", "?")).rsplit(".", 1)[-1]
    if method != "erm":
        require_groups(dm, method, data_name)
    check_method_config(ctx, dm, method)
    grouped = has_groups(dm)
    unseen = warn_empty_groups(dm) if grouped else []
    erm = erm_stage(ctx, dm, grouped)
    RUNNERS[method](ctx, dm, erm)
    if unseen:
        exclude_unseen_groups(ctx, dm.num_groups, unseen)
