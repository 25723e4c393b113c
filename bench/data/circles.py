"""The 2-D "circles" data of the Goldilocks-zone paper (Vysogorets, Dawid & Kempe, arXiv:2402.03579): three
radial classes, generated locally (no download)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.data.base import TensorDataModule
from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator


class CirclesDataModule(TensorDataModule):
    """Points uniform in the disk of radius ``outer``; the class is the ring a point falls in, with the ring
    boundaries drawn uniformly from ``[b - overlap, b]`` for each boundary b in ``boundaries``, so neighbouring
    classes overlap in thin bands (the paper's data: radii 0-0.5 / 0.45-0.7 / 0.65-0.9). The class counts are
    exact: ``train_counts`` (default 654 / 739 / 1007, the paper's imbalance) and ``test_counts``.

    Args:
        dtype: ``float64`` (the paper's curvature runs) or ``float32``.
    """

    num_classes = 3

    def __init__(
        self,
        train_counts: Sequence[int] = (654, 739, 1007),
        test_counts: Sequence[int] = (376, 403, 585),
        boundaries: Sequence[float] = (0.5, 0.7),
        overlap: float = 0.05,
        outer: float = 0.9,
        dtype: str = "float64",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(train_counts) != 3 or len(test_counts) != 3 or len(boundaries) != 2:
            raise BenchError("circles has 3 classes: give 3 train_counts, 3 test_counts and 2 boundaries")
        if not 0 < boundaries[0] - overlap and boundaries[0] < boundaries[1] - overlap and boundaries[1] < outer:
            raise BenchError(f"circles needs 0 < b1 - overlap, b1 < b2 - overlap and b2 < outer; got boundaries "
                             f"{list(boundaries)}, overlap {overlap}, outer {outer}")
        if dtype not in ("float32", "float64"):
            raise BenchError(f"data.dtype must be float32 or float64, got {dtype!r}")
        self.train_counts, self.test_counts = [int(c) for c in train_counts], [int(c) for c in test_counts]
        self.boundaries, self.overlap, self.outer = [float(b) for b in boundaries], float(overlap), float(outer)
        self.dtype = getattr(torch, dtype)

    def _draw(self, counts: list[int], g: torch.Generator) -> dict:
        xs, ys = [], []
        have = [0, 0, 0]
        while any(h < c for h, c in zip(have, counts)):
            n = 4 * sum(counts)
            r = self.outer * torch.rand(n, generator=g, dtype=torch.float64).sqrt()  # uniform in the disk
            phi = 2 * torch.pi * torch.rand(n, generator=g, dtype=torch.float64)
            label = torch.zeros(n, dtype=torch.long)
            for b in self.boundaries:
                cut = b - self.overlap * torch.rand(n, generator=g, dtype=torch.float64)
                label += (r > cut).long()
            x = torch.stack([r * torch.cos(phi), r * torch.sin(phi)], dim=1)
            for k in range(3):
                take = x[label == k][: counts[k] - have[k]]
                xs.append(take)
                ys.append(torch.full((len(take),), k, dtype=torch.long))
                have[k] += len(take)
        x, y = torch.cat(xs), torch.cat(ys)
        perm = torch.randperm(len(y), generator=g)
        return {"x": x[perm].to(self.dtype), "y": y[perm]}

    def build(self):
        g = seeded_generator(self.seed, "circles")
        return {"train": self._draw(self.train_counts, g), "test": self._draw(self.test_counts, g)}
