"""Copies of a module's weights at chosen epochs (JTT's identification model, expert trajectories, EL2N scores)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning as L
import torch


class EpochSnapshots(L.Callback):
    """Keeps ``state_dict`` copies (on the CPU) at the end of the given 1-based epochs, or every ``every_n_epochs``,
    in ``self.states: {epoch: state_dict}``; ``include_start`` adds epoch 0, the weights before training. The
    snapshots travel with the stage's checkpoints, so a resumed fit ends with the same set.

    Args:
        epochs: the epochs to keep (1-based: epoch 1 is the end of the first epoch).
        every_n_epochs: keep every n-th epoch as well.
        include_start: keep the weights at the start of training as epoch 0.
    """

    def __init__(
        self, epochs: Iterable[int] | None = None, every_n_epochs: int | None = None, include_start: bool = False
    ) -> None:
        self.epochs = sorted({int(e) for e in (epochs or [])})
        self.every_n_epochs = int(every_n_epochs or 0)
        self.include_start = include_start
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    @staticmethod
    def _copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def wants(self, epoch: int) -> bool:
        return epoch in self.epochs or (self.every_n_epochs > 0 and epoch % self.every_n_epochs == 0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.include_start and 0 not in self.states:
            self.states[0] = self._copy(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.wants(epoch):
            self.states[epoch] = self._copy(pl_module)

    @property
    def state_key(self) -> str:
        # two snapshot callbacks in one trainer keep their own entries in the checkpoint
        return self._generate_state_key(epochs=self.epochs, every_n_epochs=self.every_n_epochs)

    def state_dict(self) -> dict[str, Any]:
        return {"states": self.states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.states = dict(state_dict["states"])
