"""Model selection on validation groups."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from bench.metrics.classification import PerGroupAccuracy

SELECTION_METRICS = ("worst_group_acc", "adjusted_group_acc", "acc")


def selection_score(result: dict, metric: str) -> float:
    """The selection metric from a :class:`PerGroupAccuracy` result over groups."""
    return {"worst_group_acc": result["worst"], "adjusted_group_acc": result["adjusted"], "acc": result["acc"]}[metric]


class ValidationSelection(L.Callback):
    """After every validation epoch, scores the model on the validation groups and keeps a copy of the best
    weights (the first best on ties: the earliest epoch). Logs the running best as ``select/val_<metric>`` and its
    epoch as ``select/epoch`` (1-based), so the stage's metrics end with the selected values.

    Args:
        num_groups: groups of the validation split (``0``: no groups, score on plain accuracy).
        metric: ``worst_group_acc`` | ``adjusted_group_acc`` | ``acc``.
        restore_best: load the best weights into the module when fitting ends.
    """

    def __init__(self, num_groups: int, metric: str = "worst_group_acc", restore_best: bool = True) -> None:
        if metric not in SELECTION_METRICS:
            from bench.harness.errors import BenchError

            raise BenchError(f"unknown selection.metric {metric!r}; known: {', '.join(SELECTION_METRICS)}")
        self.num_groups = num_groups
        self.metric = metric if num_groups else "acc"
        self.restore_best = restore_best
        self.best_score = -float("inf")
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[tuple[int, float]] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.acc = PerGroupAccuracy(max(self.num_groups, 1)).to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        groups = batch["group"] if self.num_groups else torch.zeros_like(batch["y"])
        self.acc.update(outputs["logits"].detach(), batch["y"], groups)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = selection_score(self.acc.compute(), self.metric)
        epoch = trainer.current_epoch + 1
        self.history.append((epoch, score))
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        pl_module.log_dict({f"select/val_{self.metric}": self.best_score, "select/epoch": float(self.best_epoch)})

    def state_dict(self) -> dict[str, Any]:
        """Saved with each checkpoint: a resumed stage still knows its best epoch and weights."""
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "history": [list(h) for h in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = float(state_dict["best_score"]), int(state_dict["best_epoch"])
        self.best_state = state_dict["best_state"]
        self.history = [(int(e), float(v)) for e, v in state_dict["history"]]

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.restore_best and self.best_state is not None:
            pl_module.load_state_dict(self.best_state)
