"""Protocol of ``collapse_tails``: the memorising model in closed form (no optimizer: its numbers go through
``ctx.log_metrics``), then the GCD generations as ordinary Lightning stages."""

from __future__ import annotations

import json

import torch

from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator
from bench.tasks.collapse_tails import gcd as gcd_lib
from bench.tasks.collapse_tails import plots, sweeps

PARTS = ("all", "hutter", "gcd")


def check_config(cfg) -> None:
    """Bad settings, reported before anything runs."""
    if cfg.part not in PARTS:
        raise BenchError(f"unknown part {cfg.part!r}; known parts: {', '.join(PARTS)}")
    h = cfg.hutter
    if any(float(b) <= 1 for b in h.betas):
        raise BenchError(f"hutter.betas must all be > 1 (normalisable Zipf laws), got {list(h.betas)}")
    if any(int(k) > int(h.head) for k in [*h.top_k, h.mixing.k, h.monte_carlo.k]):
        raise BenchError(f"hutter top-k cuts must not exceed hutter.head={h.head}; raise hutter.head or lower k")
    if float(h.grid.t_min) < 1 or float(h.grid.t_max) <= float(h.grid.t_min):
        raise BenchError(f"hutter.grid needs 1 <= t_min < t_max, got {h.grid.t_min}, {h.grid.t_max}")
    if int(h.monte_carlo.reps) < 2 or int(h.chain.chains) < 2:
        raise BenchError(
            "hutter.monte_carlo.reps and hutter.chain.chains must be >= 2 (standard errors need repetitions)"
        )
    if len(h.top_k) < 2 or len(h.mixing.pis) < 2:
        raise BenchError(
            "hutter.top_k and hutter.mixing.pis need at least two values each (slopes are fitted over them)"
        )
    if not all(0 < float(pi) < 1 for pi in h.mixing.pis):
        raise BenchError(f"hutter.mixing.pis must lie in (0, 1), got {list(h.mixing.pis)}")
    g = cfg.gcd
    if g.cut not in gcd_lib.CUTS:
        raise BenchError(f"unknown gcd.cut {g.cut!r}; known cuts: {', '.join(gcd_lib.CUTS)}")
    if int(g.generations) < 1:
        raise BenchError(f"gcd.generations must be >= 1 (generation 0 is the clean model), got {g.generations}")
    if not 0 <= float(g.clean_fraction) < 1:
        raise BenchError(f"gcd.clean_fraction must lie in [0, 1), got {g.clean_fraction}")


def collapse_tails(ctx: RunContext) -> None:
    check_config(ctx.cfg)
    if ctx.cfg.part in ("all", "hutter"):
        run_hutter(ctx)
    if ctx.cfg.part in ("all", "gcd"):
        run_gcd(ctx)


def run_hutter(ctx: RunContext) -> None:
    metrics, curves = sweeps.run_all(ctx.cfg.hutter, ctx.seed)
    ctx.log_metrics(metrics, stage="hutter")
    for name, make in (
        ("clean_scaling", plots.clean_scaling),
        ("tail_cut", plots.tail_cut),
        ("mixing", plots.mixing),
        ("generations", plots.generations),
    ):
        fig = make(curves)
        ctx.save_figure(fig, name)
        plots.plt.close(fig)
    path = ctx.artifact_path("hutter_curves.json")
    path.write_text(json.dumps([_curves_json(c) for c in curves]))
    ctx.add_artifact("hutter_curves", path)


def _curves_json(c: sweeps.Curves) -> dict:
    as_list = lambda a: [float(v) for v in a]  # noqa: E731
    return {
        "beta": c.beta,
        "T": as_list(c.T),
        "clean": as_list(c.clean),
        "clean_theory": as_list(c.clean_theory),
        "topk": {str(k): as_list(v) for k, v in c.topk.items()},
        "topp": {f"{p:g}": {"k": k, "error": as_list(v)} for p, (k, v) in c.topp.items()},
        "mix_k": c.mix_k,
        "mix": {f"{pi:g}": as_list(v) for pi, v in c.mix.items()},
        "chain_T0": c.chain_T0,
        "chain": {str(n): {"mean": as_list(m), "se": as_list(s)} for n, (m, s) in c.chain.items()},
        "monte_carlo": {
            k: {"T": as_list(t), "mean": as_list(m), "se": as_list(s)} for k, (t, m, s) in c.monte_carlo.items()
        },
    }


def run_gcd(ctx: RunContext) -> None:
    """Generation 0 learns gcd from clean labels; generation n learns from generation n-1's labels on fresh
    inputs, cut (``gcd.cut``), with a fraction ``gcd.clean_fraction`` of them kept clean."""
    cfg = ctx.cfg.gcd
    dm = ctx.build_datamodule()
    if not isinstance(dm, gcd_lib.GcdDataModule):
        raise BenchError("the gcd part needs data: the task's GcdDataModule (do not override data=)")
    module = ctx.build_module(dm)
    ctx.fit(module, dm, stage=gcd_lib.generation_stage(0))
    generated = dm.split("generated")
    generator = seeded_generator(ctx.seed, "gcd/generations")
    for n in range(1, int(cfg.generations) + 1):
        logits = gcd_lib.predict_logits(module, generated["x"])
        labels = gcd_lib.generate_labels(logits, str(cfg.cut), int(cfg.keep_classes), float(cfg.top_p), generator)
        clean = torch.rand(len(labels), generator=generator) < float(cfg.clean_fraction)
        labels = torch.where(clean, generated["y"], labels)
        ctx.log_metrics(
            {
                "generated/label_acc": (labels == generated["y"]).double().mean(),
                "generated/distinct_labels": len(torch.unique(labels)),
            },
            stage=gcd_lib.generation_stage(n),
        )
        dm_n = dm.with_generated_labels(labels)
        module = ctx.build_module(dm_n)
        ctx.fit(module, dm_n, stage=gcd_lib.generation_stage(n))
    for n in range(int(cfg.generations) + 1):
        ctx.log_metrics(
            {
                "test/rare_acc": _bucket_range_acc(ctx.metrics, n, range(int(cfg.rare_from_bucket), dm.num_buckets)),
                "test/common_acc": _bucket_range_acc(ctx.metrics, n, range(int(cfg.rare_from_bucket))),
            },
            stage=gcd_lib.generation_stage(n),
        )
    names = gcd_lib.bucket_names(dm.num_buckets)
    accuracy = {
        ("clean (gen 0)" if n == 0 else f"gen {n}"): [
            ctx.metrics.get(gcd_lib.generation_metric(n, f"test/bucket_acc/{b}")) or 0.0 for b in range(dm.num_buckets)
        ]
        for n in range(int(cfg.generations) + 1)
    }
    cut = {"none": "argmax", "top_k": f"top-{cfg.keep_classes} classes", "top_p": f"top-p {cfg.top_p}"}[str(cfg.cut)]
    fig = plots.gcd_buckets(names, accuracy, cut + (f", {cfg.clean_fraction:g} clean" if cfg.clean_fraction else ""))
    ctx.save_figure(fig, "gcd_buckets")
    plots.plt.close(fig)


def _bucket_range_acc(metrics: dict, generation: int, buckets: range) -> float:
    """Count-weighted test accuracy of generation ``generation`` over ``buckets``."""
    pairs = [
        (
            metrics.get(gcd_lib.generation_metric(generation, f"test/bucket_acc/{b}")),
            metrics.get(gcd_lib.generation_metric(generation, f"test/bucket_count/{b}")),
        )
        for b in buckets
    ]
    pairs = [(a, c) for a, c in pairs if a is not None and c]
    total = sum(c for _, c in pairs)
    return sum(a * c for a, c in pairs) / total if total else float("nan")
