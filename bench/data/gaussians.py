"""Generated Gaussian-mixture classification data in [0, 1]^d."""

from __future__ import annotations

import torch

from bench.data.base import TensorDataModule
from bench.harness.seeding import generator as seeded_generator


class GaussianMixtureDataModule(TensorDataModule):
    """``num_classes`` isotropic Gaussian clusters with random means, squashed into [0, 1] by a sigmoid so
    that attack radii are comparable with image data."""

    def __init__(
        self,
        num_classes: int = 10,
        dim: int = 32,
        n_train: int = 2000,
        n_test: int = 1000,
        separation: float = 3.0,
        noise: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from bench.harness.errors import BenchError

        for key, value in (("num_classes", num_classes), ("dim", dim), ("n_train", n_train), ("n_test", n_test)):
            if not isinstance(value, int) or value < 1:
                raise BenchError(f"data.{key}={value!r} is not allowed: the Gaussian mixture needs a positive integer")
        self.num_classes, self.dim = num_classes, dim
        self.n_train, self.n_test, self.separation, self.noise = n_train, n_test, separation, noise

    def build(self):
        g = seeded_generator(self.seed, "gaussians")
        means = torch.randn(self.num_classes, self.dim, generator=g)
        means = self.separation * means / means.norm(dim=1, keepdim=True)

        def draw(n: int) -> dict:
            y = torch.arange(n) % self.num_classes
            z = means[y] + self.noise * torch.randn(n, self.dim, generator=g) / self.dim**0.5
            return {"x": torch.sigmoid(z), "y": y}

        return {"train": draw(self.n_train), "test": draw(self.n_test)}
