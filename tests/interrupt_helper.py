"""A callback that simulates Ctrl+C during training (for the interruption test)."""

import lightning as L


class InterruptAtEpoch(L.Callback):
    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt
