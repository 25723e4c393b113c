"""The base LightningModule of the suite: several optimizer steps per Lightning step.

Why: Lightning's per-step machinery (hooks, logging, progress bar, closures) costs about as much as a
small MLP's step; tasks that run 10^4-10^5 steps would spend most of their time in it. The in-memory
training loader hands one Lightning step a chunk (list) of minibatches; ``training_step`` runs one manual
optimizer step per minibatch (``manual_backward`` keeps DDP gradient sync and precision plugins working).
A plain (non-list) batch is one optimizer step, so the module also works with any ordinary DataLoader.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BenchModule(L.LightningModule):
    """Subclass and implement :meth:`training_loss` (or override :meth:`training_step` entirely, e.g. for
    closed-form fits with no optimizer: then return ``None`` from :meth:`configure_optimizers`).

    Args:
        net: the network; ``forward(x)`` returns logits.
        optimizer: a factory ``params -> torch.optim.Optimizer`` (a Hydra ``_partial_``), or ``None``.
        scheduler: a factory ``optimizer -> LRScheduler`` stepped once per epoch, or ``None`` (the ``scheduler``
            config group: :func:`step_schedule`, :func:`cosine_schedule`). A factory with a ``max_epochs``
            parameter is given the trainer's ``max_epochs``, so schedules written as fractions of the run follow
            the epoch budget of the stage that uses them.
        compile: compile ``net`` with ``torch.compile`` (in place, ``nn.Module.compile``: parameter names and
            checkpoints are unchanged). Worth it on a GPU for larger nets; on small CPU models compiling costs more
            than it saves.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if compile and net is not None:
            net.compile()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.automatic_optimization = False

    # -- what a task implements ----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        assert self.net is not None, "BenchModule without a net must override forward"
        return self.net(x)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Loss of one minibatch; default: cross-entropy of the logits."""
        return F.cross_entropy(self(batch["x"]), batch["y"])

    # -- training ------------------------------------------------------------------------------------------
    def optimizer_step_on(self, batch: dict[str, Tensor]) -> Tensor:
        """One optimizer step on one minibatch; returns the detached loss."""
        opt = self.optimizers()
        loss = self.training_loss(batch)
        opt.zero_grad(set_to_none=True)
        if self._direct_steps:
            loss.backward()
            opt._on_before_step()  # keeps Lightning's step counter (global_step) exact
            opt.optimizer.step()
            opt._on_after_step()
        else:
            self.manual_backward(loss)
            opt.step()
        return loss.detach()

    def on_train_start(self) -> None:
        self._direct_steps = self._can_step_directly()

    _direct_steps = False

    def _can_step_directly(self) -> bool:
        """Whether backward and step may skip Lightning's strategy / precision / hook dispatch without any
        observable difference: one process, no gradient scaler, and no callback or module that listens to the
        per-step hooks. Otherwise (DDP, fp16 AMP, a gradient-logging callback) every step goes through
        ``manual_backward`` and ``LightningOptimizer.step``."""
        from lightning.pytorch.strategies import SingleDeviceStrategy
        from lightning.pytorch.utilities.model_helpers import is_overridden

        trainer = self.trainer
        if type(trainer.strategy) is not SingleDeviceStrategy:
            return False
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return False
        hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
        listeners = [self, *trainer.callbacks]
        for hook in hooks:
            for obj in listeners:
                parent = L.LightningModule if obj is self else L.Callback
                if is_overridden(hook, obj, parent):
                    return False
        return True

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        batches = batch if isinstance(batch, list) else [batch]
        total = torch.zeros((), device=self.device)
        for b in batches:
            total += self.optimizer_step_on(b)
        mean = total / len(batches)
        # under DDP each process steps on its own shard (the batch size is per process): the epoch's value is
        # averaged over every process (one all-reduce at the epoch's end; nothing to reduce on one process)
        self.log("train/loss", mean, on_step=False, on_epoch=True, prog_bar=True, batch_size=1, sync_dist=True)
        return mean

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # the in-memory loaders draw minibatches on the module's device (their data moved there once): walking a
        # chunk of minibatch dicts every step to move nothing costs about a millisecond
        if device.type == "cpu" or _on_device(batch, device):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_train_epoch_end(self) -> None:
        sch = self.lr_schedulers()
        if sch is not None:
            sch.step()

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            return None
        opt = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return opt
        kwargs = {"optimizer": opt}
        if "max_epochs" in inspect.signature(self.scheduler_factory).parameters:
            kwargs["max_epochs"] = int(self.trainer.max_epochs)
        return {"optimizer": opt, "lr_scheduler": self.scheduler_factory(**kwargs)}

    # -- evaluation: the harness's callbacks read ``outputs["logits"]`` ------------------------------------
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"logits": self(batch["x"])}

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self(batch["x"])


def _on_device(batch: Any, device: torch.device) -> bool:
    """Whether the first tensor of a (chunk of) minibatch dict(s) is on ``device`` (the loader puts all of them on
    one device)."""
    first = batch[0] if isinstance(batch, list) and batch else batch
    tensor = next(iter(first.values()), None) if isinstance(first, dict) else None
    if not isinstance(tensor, Tensor):
        return False
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


# -- learning-rate schedules (the ``scheduler`` config group, conf/scheduler/) ---------------------------------
def step_schedule(
    optimizer: torch.optim.Optimizer, max_epochs: int, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1
) -> torch.optim.lr_scheduler.MultiStepLR:
    """lr x gamma at each milestone, given as a fraction of ``max_epochs`` (0.25 = after a quarter of the
    epochs; rounded to the nearest epoch, at least 1)."""
    from bench.harness.errors import BenchError

    bad = [m for m in milestones if not 0.0 < float(m) < 1.0]
    if bad:
        raise BenchError(f"scheduler.milestones are fractions of trainer.max_epochs in (0, 1); got {list(milestones)}")
    epochs = sorted({max(1, round(float(m) * max_epochs)) for m in milestones})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=epochs, gamma=float(gamma))


def cosine_schedule(
    optimizer: torch.optim.Optimizer, max_epochs: int, eta_min: float = 0.0
) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine decay from the optimizer's lr to ``eta_min`` over ``max_epochs``."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(max_epochs)), eta_min=float(eta_min))
