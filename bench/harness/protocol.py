"""Protocols shared by tasks. A protocol is any callable ``protocol(ctx: RunContext) -> None``; a task names
its protocol in ``task.protocol`` (a Hydra ``_target_``; extra keys become keyword arguments)."""

from __future__ import annotations

from bench.harness.context import RunContext


def fit_and_test(ctx: RunContext) -> None:
    """One stage: build ``data``, ``model``, ``optimizer`` and ``module`` from config; fit; test."""
    dm = ctx.build_datamodule()
    module = ctx.build_module(dm)
    ctx.fit(module, dm)
