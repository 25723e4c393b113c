"""Callbacks that interrupt a run at a given epoch, as Ctrl+C or SIGTERM would (for the interruption tests)."""

import os
import signal

import lightning as L


def _stage(trainer) -> str:
    return os.path.basename(os.path.normpath(str(trainer.default_root_dir)))


class InterruptAtEpoch(L.Callback):
    """Ctrl+C at the start of (0-based) ``epoch`` of every stage, or only of ``stage`` when given."""

    def __init__(self, epoch: int = 1, stage: str | None = None) -> None:
        self.epoch, self.stage = epoch, stage

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and self.stage in (None, _stage(trainer)):
            raise KeyboardInterrupt


class SigtermAtEpoch(L.Callback):
    """Sends this process SIGTERM (as ``timeout``, SLURM or ``docker stop`` would) at the start of ``epoch``."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)
