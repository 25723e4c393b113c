"""Figures from the task's rows (bench.tasks.robust_erm.results): robust test accuracy vs train size per method
and radius, ||w||_1/||w||_2 per method (linear part); robust test accuracy vs training radius (network part)."""

from __future__ import annotations

import math

import numpy as np

from bench.harness.stats import summarize
from bench.tasks.robust_erm.results import robust_at_train_eps


def _figure(ncols: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.4), squeeze=False)
    return fig, axes[0]


def _radius(row: dict) -> tuple[str, float]:
    c = row.get("problem/c")
    return ("c", c) if c is not None else ("eps", row.get("problem/eps"))


def plot_linear_curves(rows: list[dict], metric: str, ylabel: str):
    """One panel per radius (eps = c * gamma), x = train size m, one line per method (mean +- std over seeds)."""
    radii = sorted({_radius(r) for r in rows})
    methods = sorted({r["method"] for r in rows})
    fig, axes = _figure(max(1, len(radii)))
    for ax, radius in zip(axes, radii):
        for method in methods:
            by_m: dict[float, dict[int, float]] = {}
            for r in rows:
                if r["method"] == method and _radius(r) == radius and r.get(metric) is not None:
                    by_m.setdefault(r["problem/m"], {})[r["seed"]] = r[metric]
            if not by_m:
                continue
            ms = sorted(by_m)
            stats = [summarize(by_m[m].values()) for m in ms]
            mean = np.array([s.mean for s in stats])
            std = np.nan_to_num(np.array([s.std for s in stats]))
            n = max(s.n for s in stats)
            ax.errorbar(ms, mean, yerr=std, marker="o", capsize=3, label=f"{method} (n={n})")
        kind, value = radius
        ax.set_title(f"eps = {value:g} * gamma" if kind == "c" else f"eps = {value:g}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("train size m")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_network(rows: list[dict], split: str = "test"):
    """Accuracy under PGD at the training radius (clean at 0) vs that radius, one line per optimizer."""
    methods = sorted({r["method"] for r in rows})
    fig, axes = _figure(1)
    ax = axes[0]
    for method in methods:
        by_eps: dict[float, dict[int, float]] = {}
        for r in rows:
            v = robust_at_train_eps(r, split)
            if r["method"] == method and v is not None and math.isfinite(v):
                by_eps.setdefault(r["problem/train_eps"], {})[r["seed"]] = v
        es = sorted(by_eps)
        stats = [summarize(by_eps[e].values()) for e in es]
        ax.errorbar(
            es,
            [s.mean for s in stats],
            yerr=np.nan_to_num([s.std for s in stats]),
            marker="o",
            capsize=3,
            label=f"{method} (n={max([s.n for s in stats], default=0)})",
        )
    ax.set_xlabel("training radius eps (l_inf, PGD-10)")
    ax.set_ylabel(f"{split} accuracy under PGD at eps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
