"""Multi-layer perceptrons with an explicit feature / classifier split (for feature-space metrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """(x - mean) / std inside the model, so attacks work in [0, 1] input space."""

    def __init__(self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """``prod(input_shape) -> hidden[0] -> ... -> hidden[-1] -> num_classes`` with ReLU.

    ``features`` is the stack of hidden layers (its output is the penultimate feature h), ``classifier`` the
    last linear layer W, so that ``forward(x) = classifier(features(x))``. ``hidden_layers()`` lists the modules
    whose outputs are the per-layer features (after each activation).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        bias: bool = True,
        activation: str = "relu",
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[activation]
        layers: list[nn.Module] = [Normalize(mean, std), nn.Flatten()]
        prev = int(math.prod(input_shape))
        for h in hidden:
            layers += [nn.Linear(prev, h, bias=bias), act()]
            prev = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, num_classes, bias=bias)

    def hidden_layers(self) -> list[nn.Module]:
        return [m for m in self.features if isinstance(m, (nn.ReLU, nn.GELU, nn.Tanh))]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
