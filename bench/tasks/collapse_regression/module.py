"""Kernel ridge regression on real data with labels re-synthesised over generations, as a LightningModule that
fits in closed form (no optimizer: ``configure_optimizers`` returns None, one training step does every fit).

Generation 0 is the true target, the one-hot label e_y of each input of the training pool. Generation k draws T0
inputs from the pool (without replacement), labels them with generation k-1's predictor plus N(0, sigma0^2 I)
noise and fits kernel ridge. The downstream model of generation n fits T pool inputs labelled by generation n plus
N(0, sigma^2 I) noise; within a repetition its inputs and noise are shared by every n (paired comparisons).
Test metrics, per generation n and averaged over repetitions (with standard errors):
``n<k>/test_mse`` = mean over test inputs of ||f(x) - e_y||^2, ``n<k>/test_acc`` = argmax accuracy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.harness.errors import BenchError
from bench.harness.module import BenchModule
from bench.harness.naming import point_name
from bench.tasks.collapse_regression.kernels import KERNELS, kernel_matrix, kernel_ridge_fit, median_distance
from bench.tasks.collapse_regression.linear import in_chunks


class KernelRidgeChainModule(BenchModule):
    """Args:
    kernel: ``rbf`` or ``laplacian``; lengthscale: its length scale (``None`` = median pairwise distance).
    lam: ridge (K + lam T I); T, T0: downstream and generator sample sizes; generations: the largest n.
    sigma, sigma0: label noise of the downstream and the generator samples.
    repetitions: independent chains (each with its own downstream fits); chunk: repetitions per batched solve.
    num_classes: the dimension of the one-hot target.
    """

    def __init__(
        self,
        kernel: str = "rbf",
        lengthscale: float | None = None,
        lam: float = 1e-3,
        T: int = 400,
        T0: int = 400,
        generations: int = 5,
        sigma: float = 0.1,
        sigma0: float = 0.5,
        repetitions: int = 50,
        chunk: int = 10,
        num_classes: int = 10,
    ) -> None:
        super().__init__(net=None, optimizer=None)
        if kernel not in KERNELS:
            raise BenchError(f"unknown kernel {kernel!r}; use one of {', '.join(KERNELS)} (collapse.kernel.kernels)")
        if lam <= 0:
            raise BenchError(
                f"kernel ridge needs lam > 0 (the Gram matrix is near singular), got {lam}; set module.lam"
            )
        if min(T, T0, generations, repetitions, chunk, num_classes) < 1:
            raise BenchError("module.T, T0, generations, repetitions, chunk and num_classes must all be >= 1")
        if lengthscale is not None and lengthscale <= 0:
            raise BenchError(f"module.lengthscale must be > 0 or null (median heuristic), got {lengthscale}")
        self.kernel, self.lengthscale, self.lam = kernel, lengthscale, float(lam)
        self.T, self.T0, self.generations = int(T), int(T0), int(generations)
        self.sigma, self.sigma0 = float(sigma), float(sigma0)
        self.repetitions, self.chunk, self.num_classes = int(repetitions), int(chunk), int(num_classes)
        self.pool_x: Tensor | None = None
        self.down_idx: Tensor | None = None  # (R, T) pool indices of each downstream fit
        self.down_alpha: Tensor | None = None  # (R, n_max + 1, T, C) its dual coefficients, per generation n

    # -- closed-form fits --------------------------------------------------------------------------------
    def configure_optimizers(self):
        return None

    def _pool(self, batch) -> tuple[Tensor, Tensor]:
        """The whole training split in index order, whatever the loader's batching and shuffling."""
        batches = batch if isinstance(batch, list) else [batch]
        index = torch.cat([b["index"] for b in batches])
        order = torch.argsort(index)
        x = torch.cat([b["x"] for b in batches])[order].flatten(1).double()
        y = torch.cat([b["y"] for b in batches])[order]
        return x, y

    def _chain(self, gram: Tensor, targets: Tensor, reps: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        n_pool, C = targets.shape

        def subset(m: int) -> Tensor:
            return torch.rand(reps, n_pool, generator=g).argsort(dim=1)[:, :m]

        def block(i: Tensor, j: Tensor) -> Tensor:
            return gram[i.unsqueeze(-1), j.unsqueeze(-2)]

        def noise(m: int, scale: float) -> Tensor:
            return scale * torch.randn(reps, m, C, dtype=gram.dtype, generator=g)

        gens: list[tuple[Tensor, Tensor]] = []
        for k in range(self.generations):
            idx = subset(self.T0)
            clean = targets[idx] if k == 0 else block(idx, gens[-1][0]) @ gens[-1][1]
            gens.append((idx, kernel_ridge_fit(block(idx, idx), clean + noise(self.T0, self.sigma0), self.lam)))
        idx_d = subset(self.T)
        eps = noise(self.T, self.sigma)
        labels = [targets[idx_d]] + [block(idx_d, i) @ a for i, a in gens]
        labels = torch.stack(labels, dim=1) + eps.unsqueeze(1)  # (reps, G, T, C)
        G = labels.shape[1]
        k_dd = block(idx_d, idx_d)
        stacked = labels.permute(0, 2, 1, 3).reshape(reps, self.T, G * C)  # one factorisation for every n
        alpha = kernel_ridge_fit(k_dd, stacked, self.lam)
        residual = (k_dd @ alpha - stacked).square().sum(-1).mean()
        return idx_d, alpha.reshape(reps, self.T, G, C).permute(0, 2, 1, 3), residual

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y = self._pool(batch)
        if max(self.T, self.T0) > len(x):
            raise BenchError(
                f"T={self.T} and T0={self.T0} must not exceed the training pool ({len(x)} inputs); "
                "lower module.T / module.T0"
            )
        targets = F.one_hot(y, self.num_classes).double()
        self.pool_x = x
        self.lengthscale_ = float(self.lengthscale) if self.lengthscale is not None else median_distance(x)
        gram = kernel_matrix(self.kernel, x, x, self.lengthscale_)
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))  # the harness seeded the stage
        idx, alpha, residuals = [], [], []
        for reps in in_chunks(self.repetitions, self.chunk):
            i, a, r = self._chain(gram, targets, reps, g)
            idx.append(i), alpha.append(a), residuals.append(r * reps)
        self.down_idx, self.down_alpha = torch.cat(idx), torch.cat(alpha)
        loss = torch.stack(residuals).sum() / self.repetitions
        self.log("train/mse", loss, on_step=False, on_epoch=True)
        self.log("lengthscale", self.lengthscale_, on_step=False, on_epoch=True)
        return loss

    # -- prediction and test -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """(R, n_max + 1, B, C): every downstream model's prediction at inputs ``x``."""
        if self.down_alpha is None:
            raise BenchError("the kernel ridge chain is not fitted yet; run fit before test or predict")
        k_xp = kernel_matrix(self.kernel, x.flatten(1).double(), self.pool_x, self.lengthscale_)
        out = []
        for start in range(0, self.repetitions, self.chunk):
            idx = self.down_idx[start : start + self.chunk]
            k = k_xp[:, idx].permute(1, 0, 2)  # (r, B, T)
            out.append(torch.einsum("rbt,rgtc->rgbc", k, self.down_alpha[start : start + self.chunk]))
        return torch.cat(out)

    def on_test_epoch_start(self) -> None:
        shape = (self.repetitions, self.generations + 1)
        self._sq = torch.zeros(shape, dtype=torch.float64)
        self._correct = torch.zeros(shape, dtype=torch.float64)
        self._count = torch.zeros((), dtype=torch.float64)

    def test_step(self, batch, batch_idx: int) -> None:
        pred = self(batch["x"])
        target = F.one_hot(batch["y"], self.num_classes).double()
        self._sq += (pred - target).square().sum(dim=(-1, -2))
        self._correct += (pred.argmax(-1) == batch["y"]).sum(-1).double()
        self._count += len(batch["y"])

    def on_test_epoch_end(self) -> None:
        # test shards are disjoint under DDP: sum the per-repetition totals over ranks
        reduce = self.trainer.strategy.reduce
        sq, correct, count = (reduce(t, reduce_op="sum") for t in (self._sq, self._correct, self._count))
        mse, acc = (sq / count).numpy(), (correct / count).numpy()
        R = self.repetitions
        metrics: dict[str, float] = {}
        for n in range(self.generations + 1):
            metrics[point_name("test_mse", generation=n)] = mse[:, n].mean()
            metrics[point_name("test_acc", generation=n)] = acc[:, n].mean()
            if R > 1:
                metrics[point_name("test_mse_se", generation=n)] = mse[:, n].std(ddof=1) / np.sqrt(R)
                metrics[point_name("test_acc_se", generation=n)] = acc[:, n].std(ddof=1) / np.sqrt(R)
        # paired over repetitions (the downstream inputs and noise are shared across n)
        increase = mse[:, -1] - mse[:, 0]
        slope = np.polyfit(np.arange(self.generations + 1), mse.T, 1)[0]
        metrics["test_mse_increase"] = increase.mean()
        metrics["test_mse_slope"] = slope.mean()
        if R > 1:
            metrics["test_mse_increase_se"] = increase.std(ddof=1) / np.sqrt(R)
            metrics["test_mse_slope_se"] = slope.std(ddof=1) / np.sqrt(R)
        self.log_dict({k: float(v) for k, v in metrics.items()})
