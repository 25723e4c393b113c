"""MNIST / Fashion-MNIST through torchvision, for users who have the files (``<root>/MNIST/raw/*-ubyte``, the
layout torchvision's ``download=True`` creates), held in memory in [0, 1]; optionally a subset of classes
(e.g. ``classes: [2, 7]``, relabelled 0..k-1 in the given order)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from bench.data.base import TensorDataModule
from bench.harness.errors import BenchError

DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


class MNISTDataModule(TensorDataModule):
    """Args:
    root: folder holding ``MNIST/raw`` (or ``FashionMNIST/raw``).
    name: ``mnist`` or ``fashion_mnist``.
    classes: keep only these classes (relabelled 0..k-1 in the given order); ``None`` = all ten.
    flatten: flat 784-d vectors (true) or 1x28x28 images.
    download: fetch the files with torchvision first (needs network).
    limit_train, limit_test: keep only the first N examples (after the class filter).
    """

    def __init__(
        self,
        root: str = "data",
        name: str = "mnist",
        classes: Sequence[int] | None = None,
        flatten: bool = True,
        download: bool = False,
        limit_train: int | None = None,
        limit_test: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if name not in DATASETS:
            raise BenchError(f"unknown MNIST variant {name!r}; known: {', '.join(DATASETS)}")
        self.root, self.name, self.download, self.flatten = root, name, download, flatten
        self.classes = list(classes) if classes is not None else list(range(10))
        if not set(self.classes) <= set(range(10)) or len(set(self.classes)) != len(self.classes):
            raise BenchError(f"data.classes must be distinct labels in 0..9, got {self.classes}")
        self.limit_train, self.limit_test = limit_train, limit_test
        self.num_classes = len(self.classes)
        self.input_shape = (784,) if flatten else (1, 28, 28)
        raw = Path(root).expanduser() / DATASETS[name] / "raw"
        if not download and not raw.is_dir():  # reported first, before anything asks about the data
            raise BenchError(f"{name}: no files under {raw}. Put the four *-ubyte files there, or run with "
                             "data.download=true")

    def _dataset(self, train: bool):
        import torchvision

        cls = getattr(torchvision.datasets, DATASETS[self.name])
        try:
            return cls(self.root, train=train, download=self.download)
        except RuntimeError as e:
            raise BenchError(f"{self.name}: no files under {self.root}/{DATASETS[self.name]}/raw ({e}). Put the four "
                             "*-ubyte files there, or run with data.download=true") from None

    def prepare_data(self) -> None:
        if self.download:
            self._dataset(True), self._dataset(False)

    def build(self):
        out = {}
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor(self.classes)] = torch.arange(len(self.classes))
        for split, limit in (("train", self.limit_train), ("test", self.limit_test)):
            ds = self._dataset(split == "train")
            x, y = ds.data.float() / 255.0, remap[ds.targets.long()]
            keep = y >= 0
            x, y = x[keep], y[keep]
            if limit:
                x, y = x[:limit], y[:limit]
            out[split] = {"x": x.flatten(1) if self.flatten else x.unsqueeze(1), "y": y}
        return out
