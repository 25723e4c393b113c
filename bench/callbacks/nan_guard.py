"""Stop a run at the first non-finite training loss."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from bench.harness.errors import NonFiniteLossError


class NaNGuard(L.Callback):
    """Raises :class:`NonFiniteLossError` (the run ends, no record is written) when the loss returned by
    ``training_step`` is NaN or infinite."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at epoch {trainer.current_epoch}, "
                f"step {trainer.global_step}; "
                "lower the learning rate (optimizer.lr=...) or check the data. No result record was written."
            )
        if isinstance(loss, float) and not math.isfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss ({loss}); no result record was written.")
