"""Figures: test error against T on log-log axes, simulation with the predicted slopes and plateaus overlaid;
GCD accuracy per gcd-frequency bucket and generation."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.tasks.collapse_tails.sweeps import Curves  # noqa: E402


def _axes(n_rows: int, n_cols: int):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 4.2 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training samples T")
        ax.set_ylabel("test error")
        ax.grid(True, which="major", alpha=0.3)
    return fig, axes


def _monte_carlo(ax, curves: Curves, name: str, color) -> None:
    if name in curves.monte_carlo:
        T, mean, se = curves.monte_carlo[name]
        ax.errorbar(T, mean, yerr=2 * se, fmt="o", ms=3.5, color=color, capsize=2, label=f"Monte Carlo ({name}), ±2 SE")


def _limits(ax, curves: Curves) -> None:
    ax.set_ylim(max(float(curves.clean.min()) * 0.5, 1e-7), 1.5)


def clean_scaling(all_curves: Sequence[Curves]):
    fig, axes = _axes(1, len(all_curves))
    for ax, c in zip(axes[0], all_curves):
        slope = -(1 - 1 / c.beta)
        ax.plot(c.T, c.clean, color="k", label="exact  sum p_i (1 - p_i)^T")
        ax.plot(c.T, c.clean_theory, "--", color="tab:red", label=f"theory ∝ T^{slope:.3g}")
        _monte_carlo(ax, c, "clean", "tab:blue")
        ax.set_title(f"clean Zipf data, beta = {c.beta:g}")
        _limits(ax, c)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def tail_cut(all_curves: Sequence[Curves]):
    fig, axes = _axes(2, len(all_curves))
    for j, c in enumerate(all_curves):
        top, bottom = axes[0, j], axes[1, j]
        colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(c.topk), len(c.topp))))
        for ax in (top, bottom):
            ax.plot(c.T, c.clean, color="k", lw=1, label="clean")
        for color, (k, curve) in zip(colors, sorted(c.topk.items())):
            top.plot(c.T, curve, color=color, label=f"top-{k}")
            top.axhline(c.topk_theory[k], ls="--", color=color, lw=0.8)
            _monte_carlo(top, c, f"top-{k}", color)
        top.plot([], [], "--", color="gray", lw=0.8, label="plateau theory c k^-(b-1)/(b-1)")
        for color, (p, (k, curve)) in zip(colors, sorted(c.topp.items())):
            bottom.plot(c.T, curve, color=color, label=f"top-p = {p:g} (k = {k})")
            bottom.axhline(1 - p, ls=":", color=color, lw=0.8)
        bottom.plot([], [], ":", color="gray", lw=0.8, label="1 - p (bound on the plateau)")
        top.set_title(f"top-k cut, beta = {c.beta:g}: loss of scaling")
        bottom.set_title(f"top-p cut, beta = {c.beta:g}")
        for ax in (top, bottom):
            _limits(ax, c)
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def mixing(all_curves: Sequence[Curves]):
    fig, axes = _axes(1, len(all_curves))
    for ax, c in zip(axes[0], all_curves):
        colors = plt.cm.plasma(np.linspace(0, 0.8, len(c.mix)))
        ax.plot(c.T, c.clean, color="k", lw=1, label="clean")
        ax.plot(
            c.T, c.topk.get(c.mix_k, np.full_like(c.T, np.nan, dtype=float)), color="gray", label=f"top-{c.mix_k} only"
        )
        for color, (pi, curve) in zip(colors, sorted(c.mix.items())):
            ax.plot(c.T, curve, color=color, label=f"pi = {pi:g} clean")
            ax.axvline(c.mix_scale[pi], ls=":", color=color, lw=0.8)
            _monte_carlo(ax, c, f"top-{c.mix_k} + pi={pi:g}", color)
        ax.plot([], [], ":", color="gray", lw=0.8, label="predicted exit k^b / (c pi)")
        ax.set_title(f"top-{c.mix_k} data mixed with clean, beta = {c.beta:g}")
        _limits(ax, c)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def generations(all_curves: Sequence[Curves]):
    fig, axes = _axes(1, len(all_curves))
    for ax, c in zip(axes[0], all_curves):
        colors = plt.cm.inferno(np.linspace(0.1, 0.8, len(c.chain)))
        ax.plot(c.T, c.clean, color="k", lw=1, label="generation 0 (clean)")
        for color, (n, (mean, se)) in zip(colors, sorted(c.chain.items())):
            ax.plot(c.T, mean, color=color, label=f"generation {n}")
            ax.fill_between(c.T, np.maximum(mean - 2 * se, 1e-12), mean + 2 * se, color=color, alpha=0.2)
            _monte_carlo(ax, c, f"generation {n}", color)
        ax.axhline(
            c.chain_floor_theory,
            ls="--",
            color="tab:red",
            lw=0.8,
            label=f"predicted generation-1 floor (clean law at T0 = {c.chain_T0})",
        )
        ax.set_title(f"chains from T0 = {c.chain_T0} samples, beta = {c.beta:g}")
        _limits(ax, c)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def gcd_buckets(bucket_names: Sequence[str], accuracy: dict[str, Sequence[float]], cut_label: str):
    """Grouped bars: test accuracy per gcd bucket for each generation."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    width = 0.8 / max(len(accuracy), 1)
    x = np.arange(len(bucket_names))
    for i, (name, acc) in enumerate(accuracy.items()):
        ax.bar(x + (i - (len(accuracy) - 1) / 2) * width, acc, width, label=name)
    ax.set_xticks(x, bucket_names)
    ax.set_xlabel("gcd (bucket; frequency ∝ gcd^-2)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"GCD: clean vs generated labels ({cut_label})")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig
