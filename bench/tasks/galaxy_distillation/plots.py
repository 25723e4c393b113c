"""Figures of ``galaxy_distillation``: image grids (one row per class) and T+ over distillation iterations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _display(img: Tensor, scale_each: bool) -> Tensor:
    """[3, H, W] image (bands g, r, z) -> [H, W, 3] RGB in [0, 1] (z as red, g as blue, as survey colour
    composites); ``scale_each`` min-max scales the image (distilled images leave [0, 1])."""
    rgb = img.flip(0) if img.shape[0] == 3 else img.expand(3, *img.shape[1:])
    if not scale_each:
        return rgb.permute(1, 2, 0).clamp(0, 1)
    lo, hi = rgb.min(), rgb.max()
    return ((rgb - lo) / (hi - lo).clamp_min(1e-8)).permute(1, 2, 0).clamp(0, 1)


def image_grid(
    images: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    per_class: int | None = None,
    title: str = "",
    scale_each: bool = False,
):
    """A figure with one row per class and up to ``per_class`` images in it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, labels = images.detach().cpu().float(), labels.detach().cpu()
    rows = [torch.nonzero(labels == c).flatten() for c in range(len(class_names))]
    cols = max(1, min(per_class or 10**9, max(len(r) for r in rows)))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1.6, 1.1 * len(rows)), squeeze=False)
    for c, idx in enumerate(rows):
        for j in range(cols):
            ax = axes[c][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(idx):
                ax.imshow(_display(images[idx[j]], scale_each).numpy(), interpolation="nearest")
        axes[c][0].set_ylabel(class_names[c], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def t_plus_curve(iterations: Sequence[int], t_plus: Sequence[int], title: str = ""):
    """T+ (the largest start epoch) over distillation iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.step(list(iterations), list(t_plus), where="post")
    ax.set_xlabel("distillation iteration")
    ax.set_ylabel("T+ (max start epoch)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
