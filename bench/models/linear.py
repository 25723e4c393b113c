"""Linear predictors f(x) = <w, x> (no bias) for binary labels, optionally a batch of independent problems.

Both models expose ``weight()``: the effective weight vectors, one row per problem, shape (problems, d), and
``forward(x)``: the scores <w_b, x_i>, shape (n, problems). Training a batch of problems at once (different train
sizes or radii, same data pool) turns many tiny full-batch problems into one set of batched tensor ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bench.harness.errors import BenchError


class _LinearScores(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int | None, problems: int) -> None:
        super().__init__()
        if num_classes not in (None, 2):
            raise BenchError(
                f"linear predictors score binary labels; the data have {num_classes} classes. "
                "Use a binary dataset (e.g. data.classes=[a,b])"
            )
        if problems < 1:
            raise BenchError(f"problems must be >= 1, got {problems}")
        self.dim = int(math.prod(input_shape))
        self.problems = int(problems)

    def weight(self) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight().T


class LinearPredictor(_LinearScores):
    """w itself is the parameter, initialised to ``init_scale`` times a standard normal (0: w0 = 0)."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int | None = 2, problems: int = 1, init_scale: float = 0.0
    ) -> None:
        super().__init__(input_shape, num_classes, problems)
        self.w = nn.Parameter(init_scale * torch.randn(self.problems, self.dim))

    def weight(self) -> Tensor:
        return self.w


class DiagonalNet(_LinearScores):
    """The depth-2 diagonal linear network w = u*u - v*v (Woodworth et al. 2020), u = v = ``init_scale`` at
    initialisation (so w0 = 0). Gradient descent on (u, v) from a small scale has an l1-like implicit bias."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int | None = 2, problems: int = 1, init_scale: float = 1e-3
    ) -> None:
        super().__init__(input_shape, num_classes, problems)
        if not init_scale > 0:
            raise BenchError(
                f"diagonal_net init_scale must be > 0 (u = v = 0 is a saddle GD cannot leave), got {init_scale}"
            )
        self.u = nn.Parameter(torch.full((self.problems, self.dim), float(init_scale)))
        self.v = nn.Parameter(torch.full((self.problems, self.dim), float(init_scale)))

    def weight(self) -> Tensor:
        return self.u * self.u - self.v * self.v
