"""Colored digits: sklearn's 8x8 digits (bundled, no download) as RGB images in [0, 1] whose background tint is
spuriously correlated with the label.

Each class c has a preferred tint ``c % num_tints``; in training an image gets its class's tint with probability
``spurious_prob`` and one of the other tints otherwise. The test split is group-balanced (every tint equally often
within each class). The group of an example is ``class * num_tints + tint``: 2 x 2 = 4 groups for the binary
task (digits 0-4 vs 5-9), 10 x 2 = 20 for the ten-class task with two tints.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.data.base import TensorDataModule, stratified_split
from bench.data.digits import load_digits_tensors
from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator

# background colours (RGB); ink is white
PALETTE = (
    (0.85, 0.15, 0.15), (0.15, 0.75, 0.15), (0.15, 0.25, 0.85), (0.85, 0.75, 0.10), (0.75, 0.15, 0.75),
    (0.10, 0.70, 0.75), (0.95, 0.50, 0.10), (0.50, 0.30, 0.10), (0.50, 0.50, 0.50), (0.40, 0.80, 0.50),
)


def tint(gray: Tensor, tints: Tensor, strength: float = 1.0) -> Tensor:
    """(N, 64) ink intensities in [0, 1] and tint ids -> (N, 3, 8, 8) RGB: white ink on a coloured background."""
    colour = torch.tensor(PALETTE, dtype=torch.float32)[tints]  # (N, 3)
    background = 1.0 - strength * (1.0 - colour)
    ink = gray.view(-1, 1, 8, 8)
    return ink + (1.0 - ink) * background[:, :, None, None]


def assign_tints(y: Tensor, num_tints: int, preferred_prob: float | None, g: torch.Generator) -> Tensor:
    """Tint ids for labels ``y``. ``preferred_prob=None``: balanced, every tint equally often within each class
    (exact up to rounding); otherwise the class's tint with that probability, another tint uniformly else."""
    tints = torch.empty_like(y)
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        own = c % num_tints
        if preferred_prob is None:
            tints[idx] = (own + torch.arange(len(idx))) % num_tints
            continue
        keep = torch.rand(len(idx), generator=g) < preferred_prob
        other = (own + 1 + torch.randint(0, num_tints - 1, (len(idx),), generator=g)) % num_tints
        tints[idx] = torch.where(keep, torch.full_like(other, own), other)
    return tints


class ColoredDigitsDataModule(TensorDataModule):
    """Args:
    task: ``binary`` (digits 0-4 -> class 0, 5-9 -> class 1) or ``digits`` (ten classes).
    num_tints: number of background tints (2 <= num_tints <= 10).
    spurious_prob: P(tint = the class's tint) in training; ``val_spurious_prob`` the same in validation
        (``None``: as in training, like CelebA; 0.5 with two tints balances the groups within a class, like
        Waterbirds).
    tint_strength: 1 = full colour, 0 = white background (no spurious feature).
    val_fraction, test_fraction: fractions of each digit class held out.
    flatten: (N, 192) vectors instead of (N, 3, 8, 8) images.
    """

    def __init__(
        self,
        task: str = "binary",
        num_tints: int = 2,
        spurious_prob: float = 0.95,
        val_spurious_prob: float | None = 0.5,
        tint_strength: float = 1.0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.3,
        flatten: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if task not in ("binary", "digits"):
            raise BenchError(f"data.task must be 'binary' or 'digits', got {task!r}")
        if not 2 <= num_tints <= len(PALETTE):
            raise BenchError(f"data.num_tints must lie in [2, {len(PALETTE)}], got {num_tints}")
        val_spurious_prob = spurious_prob if val_spurious_prob is None else val_spurious_prob
        for name, p in (("spurious_prob", spurious_prob), ("val_spurious_prob", val_spurious_prob)):
            if not 0.0 <= p <= 1.0:
                raise BenchError(f"data.{name} must be a probability in [0, 1], got {p}")
        self.task, self.num_tints = task, num_tints
        self.spurious_prob, self.val_spurious_prob, self.tint_strength = spurious_prob, val_spurious_prob, tint_strength
        self.val_fraction, self.test_fraction, self.flatten = val_fraction, test_fraction, flatten
        self.num_classes = 2 if task == "binary" else 10
        self.num_groups = self.num_classes * num_tints
        self.group_names = tuple(f"class={c},tint={t}" for c in range(self.num_classes) for t in range(num_tints))

    def build(self):
        gray, digit = load_digits_tensors()
        y = (digit >= 5).long() if self.task == "binary" else digit
        g = seeded_generator(self.seed, "colored_digits")
        train_f = 1.0 - self.val_fraction - self.test_fraction
        parts = stratified_split(digit, [train_f, self.val_fraction, self.test_fraction], self.seed)
        splits = {}
        for name, idx, prob in zip(("train", "val", "test"), parts, (self.spurious_prob, self.val_spurious_prob, None)):
            if not len(idx):
                continue
            tints = assign_tints(y[idx], self.num_tints, prob, g)
            x = tint(gray[idx], tints, self.tint_strength)
            splits[name] = {"x": x.flatten(1) if self.flatten else x, "y": y[idx], "group": y[idx] * self.num_tints + tints}
        return splits
