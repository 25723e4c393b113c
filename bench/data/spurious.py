"""Generated spurious-correlation data with group labels (no download).

Label y and attribute a take values in {-1, +1}. An input is ``[core, spurious, noise_1 .. noise_d]``:
``core = core_mean * y + core_noise * N(0, 1)`` (predictive of y, noisy), ``spurious = spurious_mean * a +
spurious_noise * N(0, 1)`` (a clean copy of a), then ``d`` pure-noise dimensions (room to memorise). In training
P(a = y) = ``spurious_prob``, so the spurious feature is the easier way to fit the majority groups; the test split
is group-balanced (a independent of y), so a model that leans on a fails the minority groups.

Classes are 0 (y = -1) and 1 (y = +1); the group of an example is ``2 * class + (a == +1)``:
0 = (y=-1, a=-1) and 3 = (y=+1, a=+1) are the majority groups, 1 and 2 the minority groups.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.data.base import TensorDataModule
from bench.harness.seeding import generator as seeded_generator


def group_counts(n: int, num_classes: int, num_attributes: int, majority_prob: float) -> list[list[int]]:
    """Exact example counts per (class, attribute): classes balanced; within a class, ``majority_prob`` of the
    examples carry the class's own attribute value and the rest is spread evenly over the other values."""
    counts = []
    per_class = [n // num_classes + (1 if c < n % num_classes else 0) for c in range(num_classes)]
    for c, m in enumerate(per_class):
        major = int(round(majority_prob * m)) if num_attributes > 1 else m
        rest = m - major
        row = []
        others = [a for a in range(num_attributes) if a != c % num_attributes]
        for a in range(num_attributes):
            if a == c % num_attributes:
                row.append(major)
            else:
                k = others.index(a)
                row.append(rest // len(others) + (1 if k < rest % len(others) else 0))
        counts.append(row)
    return counts


class SpuriousFeaturesDataModule(TensorDataModule):
    """Args:
    n_train, n_val, n_test: split sizes (the test split is group-balanced, the others class-balanced).
    spurious_prob: P(a = y) in training.
    val_spurious_prob: P(a = y) in the group-annotated validation split. Default 0.5: groups balanced within
        each class, as in Waterbirds' validation split, so that the minority groups have tens of examples;
        ``None`` draws validation like training (as CelebA's).
    core_mean, core_noise: the core feature's signal and noise (noise > 0: no clean core direction).
    spurious_mean, spurious_noise: the same for the spurious feature (small noise: easy to learn).
    noise_dims: pure-noise dimensions appended to the input.
    """

    num_classes = 2
    num_groups = 4
    group_names = ("y=-1,a=-1", "y=-1,a=+1", "y=+1,a=-1", "y=+1,a=+1")

    def __init__(
        self,
        n_train: int = 3000,
        n_val: int = 400,
        n_test: int = 2000,
        spurious_prob: float = 0.95,
        val_spurious_prob: float | None = 0.5,
        core_mean: float = 1.0,
        core_noise: float = 0.6,
        spurious_mean: float = 1.0,
        spurious_noise: float = 0.1,
        noise_dims: int = 20,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from bench.harness.errors import BenchError

        val_spurious_prob = spurious_prob if val_spurious_prob is None else val_spurious_prob
        for name, p in (("spurious_prob", spurious_prob), ("val_spurious_prob", val_spurious_prob)):
            if not 0.0 <= p <= 1.0:
                raise BenchError(f"data.{name} must be a probability in [0, 1], got {p}")
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        self.spurious_prob, self.val_spurious_prob = spurious_prob, val_spurious_prob
        self.core_mean, self.core_noise = core_mean, core_noise
        self.spurious_mean, self.spurious_noise = spurious_mean, spurious_noise
        self.noise_dims = noise_dims

    def _draw(self, n: int, majority_prob: float, g: torch.Generator) -> dict[str, Tensor]:
        counts = group_counts(n, 2, 2, majority_prob)
        cls = torch.cat([torch.full((k,), c, dtype=torch.long) for c in range(2) for a, k in enumerate(counts[c])])
        att = torch.cat([torch.full((k,), a, dtype=torch.long) for c in range(2) for a, k in enumerate(counts[c])])
        y, a = 2.0 * cls - 1.0, 2.0 * att - 1.0
        core = self.core_mean * y + self.core_noise * torch.randn(n, generator=g)
        spurious = self.spurious_mean * a + self.spurious_noise * torch.randn(n, generator=g)
        noise = torch.randn(n, self.noise_dims, generator=g)
        x = torch.cat([core[:, None], spurious[:, None], noise], dim=1)
        perm = torch.randperm(n, generator=g)
        return {"x": x[perm], "y": cls[perm], "group": (2 * cls + att)[perm]}

    def build(self):
        g = seeded_generator(self.seed, "spurious")
        return {
            "train": self._draw(self.n_train, self.spurious_prob, g),
            "val": self._draw(self.n_val, self.val_spurious_prob, g),
            "test": self._draw(self.n_test, 0.5, g),
        }
