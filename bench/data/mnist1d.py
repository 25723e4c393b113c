"""MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package (no download)."""

from __future__ import annotations

import torch

from bench.data.base import TensorDataModule
from bench.harness.seeding import bounded_seed
from bench.harness.seeding import generator as seeded_generator


def make_mnist1d(num_samples: int = 5000, seed: int = 42) -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = bounded_seed(seed, "mnist1d")  # the package seeds numpy's legacy generator: [0, 2**32) only
    return make_dataset(args)


class MNIST1DDataModule(TensorDataModule):
    """40-d signals, 10 classes; the package's own train/test split (80/20), inputs min-max scaled to [0, 1]
    with the training split's range so that l_inf attack radii mean the same thing as on images.

    ``input_mean`` / ``input_std`` (``None``: computed on the training split) and ``eps_scale`` (the l_inf radius
    proposed to attacking tasks; ``None``: none measured, such tasks ask for ``attack.eps``) as in
    :mod:`bench.data.statistics`."""

    num_classes = 10

    def __init__(self, num_samples: int = 5000, val_fraction: float = 0.0, input_mean: float | None = None,
                 input_std: float | None = None, eps_scale: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.input_mean, self.input_std, self.eps_scale = input_mean, input_std, eps_scale
        self.num_samples, self.val_fraction = num_samples, val_fraction

    def build(self):
        d = make_mnist1d(self.num_samples, seed=self.seed)
        xtr = torch.tensor(d["x"], dtype=torch.float32)
        xte = torch.tensor(d["x_test"], dtype=torch.float32)
        lo, hi = xtr.min(), xtr.max()
        xtr, xte = (xtr - lo) / (hi - lo), ((xte - lo) / (hi - lo)).clamp(0, 1)
        ytr = torch.tensor(d["y"], dtype=torch.long)
        yte = torch.tensor(d["y_test"], dtype=torch.long)
        splits = {"train": {"x": xtr, "y": ytr}, "test": {"x": xte, "y": yte}}
        if self.val_fraction > 0:
            n_val = int(len(yte) * self.val_fraction)
            g = seeded_generator(self.seed, "mnist1d/val")
            perm = torch.randperm(len(yte), generator=g)
            va, te = perm[:n_val], perm[n_val:]
            splits["val"] = {"x": xte[va], "y": yte[va]}
            splits["test"] = {"x": xte[te], "y": yte[te]}
        return splits
