"""One Lightning module that trains a copy of the net for every init scale alpha at once.

Why stacked: the sweep trains 25 tiny nets with full-batch GD; run one by one, Lightning's per-step machinery and
the per-op overhead of 2-32-32-3 matmuls dominate. Here every weight tensor carries a leading alpha axis and the
forward pass is ``vmap(functional_call)``, so one optimizer step advances all of them with batched matmuls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torchmetrics import Metric

from bench.harness.module import BenchModule
from bench.harness.naming import point_name


class SweepAccuracy(Metric):
    """Accuracy of each of ``num_points`` stacked models (logits of shape (points, batch, classes))."""

    def __init__(self, num_points: int) -> None:
        super().__init__()
        self.add_state("correct", default=torch.zeros(num_points, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, y: Tensor) -> None:
        self.correct += (logits.argmax(dim=-1) == y).sum(dim=1)
        self.total += len(y)

    def compute(self) -> Tensor:
        return self.correct.double() / self.total.clamp(min=1)


class AlphaSweepModule(BenchModule):
    """Full-batch GD from ``alpha * w0`` for every alpha, with learning rate ``lr / alpha^(L-2)`` (the paper's
    rule, which keeps the relative size of a step independent of alpha for an L-layer homogeneous net).

    The per-alpha rate is applied by weighting alpha's loss with ``alpha^-(L-2)`` in the summed loss: each copy's
    gradient is then its own gradient times that factor, so a GD/SGD optimizer with rate ``lr`` takes exactly the
    step ``lr / alpha^(L-2) * grad`` (this needs an optimizer linear in the gradient; the task checks it).

    Divergence at one alpha is a finding, not a failed run (the paper's point: outside the zone training fails):
    once alpha's loss is non-finite its copy leaves the summed loss (the others' steps are unchanged), it is
    logged as ``alpha=<a>/diverged`` = 1 and its accuracies are NaN (None in the record). Only when every alpha
    has diverged does the loss the NaN guard watches become non-finite.

    Args:
        net: the template network (its weights are the base init w0; its buffers are shared by every copy).
        alphas: the init scales.
        depth: L, the number of weight layers.
        dtype: training dtype.
        steps_per_epoch: GD steps per Lightning epoch (on the same full batch).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable | None = None,
        alphas: Sequence[float] = (1.0,),
        depth: int = 3,
        dtype: str = "float64",
        steps_per_epoch: int = 1,
    ) -> None:
        super().__init__(None, optimizer)
        self.dtype_ = getattr(torch, dtype)
        self.template = [net.to(self.dtype_)]  # a list: not a submodule, its own weights are not trained
        self.alphas = [float(a) for a in alphas]
        scales = torch.tensor(self.alphas, dtype=torch.float64)
        self.names = [n for n, _ in net.named_parameters()]
        self.weights = nn.ParameterList(
            nn.Parameter((scales.view(-1, *[1] * p.ndim) * p.detach().double()[None]).to(self.dtype_))
            for _, p in net.named_parameters()
        )
        self.register_buffer("lr_factor", (scales ** -(depth - 2)).to(self.dtype_))
        self.depth, self.steps_per_epoch = depth, steps_per_epoch
        # not persistent: a resumed run finds a diverged copy again from its non-finite weights at the first step
        self.register_buffer("diverged", torch.zeros(len(self.alphas), dtype=torch.bool), persistent=False)
        self.test_acc = SweepAccuracy(len(self.alphas))
        self.train_acc = SweepAccuracy(len(self.alphas))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of every copy: (alphas, batch, classes)."""
        net = self.template[0]
        buffers = {n: b.to(x.device) for n, b in net.named_buffers()}

        def one(*ws: Tensor) -> Tensor:
            return functional_call(net, {**dict(zip(self.names, ws)), **buffers}, (x.to(self.dtype_),))

        return vmap(one)(*self.weights)

    def per_alpha_loss(self, batch: dict[str, Tensor]) -> Tensor:
        z = self(batch["x"])
        y = batch["y"].expand(len(self.alphas), -1)
        return F.cross_entropy(z.flatten(0, 1), y.flatten(), reduction="none").view(len(self.alphas), -1).mean(1)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        losses = self.per_alpha_loss(batch)
        self._last_losses = losses.detach()
        self.diverged |= ~torch.isfinite(self._last_losses)
        weighted = self.lr_factor * losses
        if self.diverged.any():  # only then: the summed loss of a run without divergence stays bit-identical
            weighted = torch.where(self.diverged, torch.zeros_like(weighted), weighted)
        return weighted.sum()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        batches = batch if isinstance(batch, list) else [batch]
        for b in batches:
            for _ in range(self.steps_per_epoch):
                self.optimizer_step_on(b)
        # unweighted mean over the alphas still training, for the progress bar and the NaN guard
        loss = self._last_losses[~self.diverged].mean() if self.diverged.any() else self._last_losses.mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
        return loss

    # -- evaluation: accuracy of every copy on the test split and on the training split -------------------
    def on_test_epoch_start(self) -> None:
        self.test_acc.reset()
        self.train_acc.reset()

    @torch.no_grad()
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_acc.update(self(batch["x"]), batch["y"])

    @torch.no_grad()
    def on_test_epoch_end(self) -> None:
        for b in self.trainer.datamodule.train_eval_dataloader():
            self.train_acc.update(self(b["x"].to(self.device)), b["y"].to(self.device))
        # a copy whose loss or weights went non-finite (the last step can overflow after a finite loss)
        finite = torch.stack([torch.isfinite(w.flatten(1)).all(1) for w in self.weights]).all(0)
        diverged = (self.diverged | ~finite).tolist()
        out = {}
        for name, metric in (("test/acc", self.test_acc), ("train/acc", self.train_acc)):
            for a, v, gone in zip(self.alphas, metric.compute().tolist(), diverged):
                out[point_name(name, alpha=a)] = math.nan if gone else v
        out.update({point_name("diverged", alpha=a): 1.0 for a, gone in zip(self.alphas, diverged) if gone})
        self.log_dict(out, sync_dist=False)
