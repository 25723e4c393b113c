"""Figures: per run, histograms of predictive entropy and mutual information; across runs, robust accuracy vs eps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

ROWS = (
    ("label model: test inputs", (("clean", "clean"), ("pgd", "PGD (EOT)"), ("adaptive", "adaptive attack"))),
    (
        "shift model: in-distribution vs OOD",
        (("in", "in-distribution"), ("ood", "OOD"), ("ood_attacked", "OOD, entropy attack")),
    ),
)


def uncertainty_histograms(hists: Mapping[str, torch.Tensor], posterior: str, eps: float):
    """Two rows (label model; shift model) x two columns (H, MI); one histogram per input kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in ROWS if any(f"{k}/H" in hists for k, _ in r[1])]
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.4 * len(rows)), squeeze=False)
    for i, (title, kinds) in enumerate(rows):
        for j, (score, label) in enumerate((("H", "predictive entropy H (nats)"), ("MI", "mutual information MI"))):
            ax = axes[i][j]
            vals = [hists[f"{k}/{score}"].numpy() for k, _ in kinds if f"{k}/{score}" in hists]
            hi = max(float(np.max(v)) for v in vals) if vals else 1.0
            bins = np.linspace(0.0, max(hi, 1e-6) * 1.02, 31)
            for k, name in kinds:
                if f"{k}/{score}" in hists:
                    ax.hist(hists[f"{k}/{score}"].numpy(), bins=bins, alpha=0.5, label=name, density=False)
            ax.set_xlabel(label)
            ax.set_yscale("log")  # most clean / attacked inputs sit in the first bin: show the tails too
            ax.set_ylabel("inputs (log scale)")
            ax.set_title(f"{title}")
            ax.legend(fontsize=8)
    fig.suptitle(f"{posterior}: uncertainty of the posterior predictive (attacks at eps = {eps:g})")
    fig.tight_layout()
    return fig


def robust_accuracy_vs_eps(curves: Mapping[str, Sequence[tuple[float, float, float, int]]], title: str):
    """``curves[posterior] = [(eps, mean, std, n_seeds), ...]`` -> one line with a std band per posterior."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, pts in curves.items():
        pts = sorted(pts)
        e = np.array([p[0] for p in pts])
        m = np.array([p[1] for p in pts])
        sd = np.nan_to_num(np.array([p[2] for p in pts]))
        n = max(p[3] for p in pts)
        ax.plot(e, m, marker="o", label=f"{name} (n={n})")
        ax.fill_between(e, np.clip(m - sd, 0, 1), np.clip(m + sd, 0, 1), alpha=0.15)
    ax.set_xlabel("l_inf radius eps (inputs in [0, 1])")
    ax.set_ylabel("robust accuracy of the predictive mean")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
