"""Figures comparing the runs of the plan (drawn by the report hook) and the closed-form theory figure."""

from __future__ import annotations

import math

import numpy as np

from bench.harness.claims import RecordSet
from bench.harness.stats import summarize
from bench.tasks.robust_pruning.claims import at, densities
from bench.tasks.robust_pruning.theory import errors_at_ratio

ORDER = (
    "random",
    "random+drop",
    "el2n",
    "el2n+drop",
    "forgetting",
    "forgetting+drop",
    "grand",
    "grand+drop",
    "dynamic_uncertainty",
    "dynamic_uncertainty+drop",
    "coreset",
    "coreset+drop",
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def methods_of(records: RecordSet) -> list[str]:
    present = {r["config"].get("method") for r in records}
    return [m for m in ORDER if m in present] + sorted(m for m in present - set(ORDER) if m)


def _family(method: str) -> int:
    """One colour per score: a score and its +drop variant share it (solid: DRoP quotas, dashed: score-implied)."""
    scores = [m for m in ORDER if "+" not in m]
    score = method.split("+", 1)[0]
    return scores.index(score) if score in scores else len(scores)


def _style(method: str) -> dict:
    return {"linestyle": "-" if method.endswith("+drop") else "--", "marker": "o" if method.endswith("+drop") else "s"}


def accuracy_vs_density(records: RecordSet):
    """Two panels, worst-class and average test accuracy vs density, one line per method (mean +- 95% interval
    half-width over seeds)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")
    for method in methods_of(records):
        ds = densities(records, method)
        for ax, metric in zip(axes, ("test/worst_class_acc", "test/acc")):
            stats = [summarize(at(records, method, d).by_seed(metric).values()) for d in ds]
            mean = np.array([s.mean for s in stats])
            half = np.array([0.0 if not math.isfinite(s.upper95) else s.upper95 - s.mean for s in stats])
            n = max((s.n for s in stats), default=0)
            ax.errorbar(
                ds,
                mean,
                yerr=half,
                capsize=3,
                color=colors(_family(method)),
                label=f"{method} (n={n})",
                **_style(method),
            )
    for ax, title in zip(axes, ("worst-class test accuracy", "average test accuracy")):
        ax.set_xlabel("density d (fraction of training data kept)")
        ax.set_ylabel(title)
        ax.set_title(title + " vs density")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def class_densities(records: RecordSet, density: float = 0.3):
    """Per-class density after pruning (kept / class size, mean over seeds) per method at ``density``: grouped bars."""
    plt = _plt()
    methods = [m for m in methods_of(records) if len(at(records, m, density))]
    num_classes = max(
        (sum(1 for k in r["metrics"] if k.startswith("prune/class_density/")) for r in records), default=0
    )
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * num_classes + 2), 4.0))
    width = 0.8 / max(1, len(methods))
    colors = plt.get_cmap("tab20")
    for i, method in enumerate(methods):
        rs = at(records, method, density)
        vals = [summarize(rs.by_seed(f"prune/class_density/{k}").values()).mean for k in range(num_classes)]
        offset = (i - (len(methods) - 1) / 2) * width
        ax.bar(np.arange(num_classes) + offset, vals, width, label=method, color=colors(i))
    ax.axhline(density, color="k", linewidth=0.8, linestyle=":", label=f"d = {density:g}")
    ax.set_xticks(range(num_classes))
    ax.set_xlabel("class")
    ax.set_ylabel("kept / class size")
    ax.set_title(f"class densities after pruning at d = {density:g} (mean over seeds)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def theory_errors(mu, sigma, num: int = 201):
    """Class errors of the average-risk-optimal threshold vs the prior ratio phi_0 / phi_1 (log scale), with the
    ratio sigma_0 / sigma_1 marked."""
    plt = _plt()
    r0 = float(sigma[0]) / float(sigma[1])
    ratios = np.logspace(math.log10(r0) - 1, math.log10(r0) + 1.3, num)
    errs = np.array([errors_at_ratio(float(r), mu, sigma)[1:] for r in ratios])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ratios, errs[:, 0], label=f"class 0 error (sigma={sigma[0]:g})")
    ax.plot(ratios, errs[:, 1], label=f"class 1 error (sigma={sigma[1]:g})")
    ax.plot(ratios, errs.mean(1), color="grey", linestyle="--", label="unweighted mean of the two")
    ax.axvline(r0, color="k", linestyle=":", label=f"phi_0/phi_1 = sigma_0/sigma_1 = {r0:g}")
    ax.set_xscale("log")
    ax.set_xlabel("prior ratio phi_0 / phi_1")
    ax.set_ylabel("class error of the optimal threshold")
    ax.set_title(f"two Gaussians, mu = ({mu[0]:g}, {mu[1]:g})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
