"""Figures from the task's rows (bench.tasks.robust_erm.results): robust test accuracy vs train size per method
and radius, ||w||_1/||w||_2 per method (linear part); robust test accuracy vs training radius (network part)."""

from __future__ import annotations

import math

import numpy as np

from bench.tasks.robust_erm.results import mean_std, robust_at_train_eps


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
            stats = [mean_std(by_m[m]) for m in ms]
            mean = np.array([s[0] for s in stats])
            std = np.nan_to_num(np.array([s[1] for s in stats]))
            n = max(s[2] for s in stats)
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
        stats = [mean_std(by_eps[e]) for e in es]
        ax.errorbar(es, [s[0] for s in stats], yerr=np.nan_to_num([s[1] for s in stats]), marker="o", capsize=3,
                    label=f"{method} (n={max([s[2] for s in stats], default=0)})")
    ax.set_xlabel("training radius eps (l_inf, PGD-10)")
    ax.set_ylabel(f"{split} accuracy under PGD at eps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.tasks.robust_erm.plots [--results results] [--out figures]``: the comparison figures
    from every robust_erm record of the newest task version under ``--results``."""
    import argparse
    from pathlib import Path

    from bench.harness.record import load_records
    from bench.tasks.robust_erm.results import rows

    ap = argparse.ArgumentParser(prog="python -m bench.tasks.robust_erm.plots")
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default="figures")
    a = ap.parse_args(argv)
    records = load_records(a.results, "robust_erm")
    if not records:
        print(f"no robust_erm records under {a.results}")
        return 1
    newest = max(r["task_version"] for r in records)
    records = [r for r in records if r["task_version"] == newest]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    linear, network = rows(records, "linear"), rows(records, "network")
    figures = {}
    if linear:
        figures["robust_acc_vs_m"] = plot_linear_curves(linear, "test/robust_acc", "robust test accuracy (exact)")
        figures["l1_over_l2_vs_m"] = plot_linear_curves(linear, "w/l1_over_l2", "||w||_1 / ||w||_2")
    if network:
        figures["robust_acc_vs_train_eps"] = plot_network(network)
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
        print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
