"""A progress bar that counts what a bench run is made of: epochs, optimizer steps per second and the epoch's loss.

Lightning's own bars count Lightning steps, and a bench Lightning step is a whole chunk of optimizer steps (often one
per epoch), so they read ``1/1 0.00it/s``. This bar advances once per epoch and shows::

    main  ━━━━━━━━━━━━━━━━━━━━━━━━━━  epoch 12/200  1,530 steps/s  loss 0.4173  0:00:03 < 0:00:47

Rank 0 only; nothing during test (evaluations are a few batches).
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar


def format_loss(value: Any) -> str:
    """Four significant digits (a loss of 3e-5 must not read 0.000)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{v:.4g}"


def rate_text(steps: int, seconds: float) -> str:
    if seconds <= 0 or steps <= 0:
        return "- steps/s"
    return f"{steps / seconds:,.0f} steps/s" if steps / seconds >= 10 else f"{steps / seconds:.2g} steps/s"


class EpochProgressBar(ProgressBar):
    """One bar per fit: epochs done / max_epochs, optimizer steps per second, the last epoch's ``train/loss``."""

    def __init__(self, loss_key: str = "train/loss") -> None:
        super().__init__()
        self.loss_key = loss_key
        self._enabled = True
        self._progress: Any = None
        self._task: Any = None
        self._t0 = 0.0
        self._step0 = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def status(self, trainer: Any, epochs_done: int) -> dict[str, str]:
        """The fields the bar shows (also what tests read)."""
        total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        return {
            "epoch": f"epoch {epochs_done}/{total if total is not None else '?'}",
            "rate": rate_text(trainer.global_step - self._step0, time.monotonic() - self._t0),
            "loss": f"loss {format_loss(trainer.callback_metrics.get(self.loss_key))}",
        }

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not self._enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._t0, self._step0 = time.monotonic(), trainer.global_step
        total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[epoch]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._progress.start()
        stage = trainer.default_root_dir.rstrip("/").rsplit("/", 1)[-1] if trainer.default_root_dir else "train"
        self._task = self._progress.add_task(
            stage, total=total, completed=trainer.current_epoch, **self.status(trainer, trainer.current_epoch)
        )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._progress is None:
            return
        # current_epoch is incremented after this hook: the epoch that just ended is number current_epoch + 1
        done = trainer.current_epoch + 1
        self._progress.update(self._task, completed=done, **self.status(trainer, done))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)
