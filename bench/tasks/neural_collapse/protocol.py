"""One stage (fit, then test with the neural-collapse callback), with the settings that belong to the data taken
from the data: the model's input standardisation from the datamodule (:func:`bench.data.statistics.input_statistics`,
unless ``model.mean`` / ``model.std`` are set) and the attack radius from ``data.eps_scale`` (unless ``attack.eps``
is set; data that declare none are refused before training)."""

from __future__ import annotations

from bench.data.statistics import input_statistics
from bench.harness.context import RunContext
from bench.harness.errors import BenchError


def check_radius(cfg) -> None:
    """``attack.eps`` defaults to ``data.eps_scale``: a dataset without one needs an explicit radius."""
    eps = list(cfg.attack.get("eps") or [])
    if not eps or any(e is None for e in eps):
        data = str(cfg.data.get("_target_", "?")).rsplit(".", 1)[-1]
        raise BenchError(
            f"data {data} declares no eps_scale (the l_inf radius of its scale) and attack.eps is not "
            "set; "
            "set attack.eps=[<radius in input units>] (digits uses 0.2) or data.eps_scale=<radius>"
        )


def run(ctx: RunContext) -> None:
    check_radius(ctx.cfg)
    dm = ctx.build_datamodule()
    stats = {}
    if ctx.cfg.model.get("mean") is None or ctx.cfg.model.get("std") is None:
        mean, std = input_statistics(dm)
        stats = {k: v for k, v in (("mean", mean), ("std", std)) if ctx.cfg.model.get(k) is None}
    module = ctx.build_module(dm, net=ctx.build_net(dm, **stats))
    ctx.fit(module, dm)
