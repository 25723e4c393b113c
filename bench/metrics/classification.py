"""Accuracy per group (or per class): worst-group, worst-class, adjusted accuracy."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


class PerGroupAccuracy(Metric):
    """Correct and total counts per group; with ``groups = targets`` it is per-class recall.

    ``compute()`` returns a dict:
      ``acc`` (overall accuracy), ``worst`` (min accuracy over groups with at least one example, the WILDS
      convention), ``adjusted`` (mean accuracy over non-empty groups), ``per_group`` (tensor, NaN for empty
      groups) and ``count`` (examples per group).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_groups: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_groups < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups}")
        self.num_groups = num_groups
        self.add_state("correct", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, groups: Tensor | None = None) -> None:
        """``preds``: logits (N, C) or labels (N,); ``groups`` defaults to ``target``."""
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        groups = target if groups is None else groups
        groups = groups.long()
        if groups.numel() and (groups.min() < 0 or groups.max() >= self.num_groups):
            raise ValueError(f"group ids must lie in [0, {self.num_groups}), got {groups.min()}..{groups.max()}")
        self.correct.index_add_(0, groups, (preds == target).long())
        self.total.index_add_(0, groups, torch.ones_like(groups))

    def compute(self) -> dict[str, Tensor | float]:
        total = self.total.sum()
        acc = (self.correct.sum() / total).item() if total > 0 else math.nan
        nonempty = self.total > 0
        per = torch.where(
            nonempty, self.correct / self.total.clamp(min=1), torch.full_like(self.total, math.nan, dtype=torch.float)
        )
        worst = per[nonempty].min().item() if nonempty.any() else math.nan
        adjusted = per[nonempty].mean().item() if nonempty.any() else math.nan
        return {"acc": acc, "worst": worst, "adjusted": adjusted, "per_group": per, "count": self.total.clone()}
