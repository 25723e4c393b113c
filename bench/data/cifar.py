"""CIFAR-10 / CIFAR-100 from the official python-pickle release, for users who have the files.

The files are read directly (torchvision's dataset class refuses files whose md5 differs from the release, which
rules out testing on small files); ``download=True`` fetches the release with torchvision first.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from bench.data.base import TensorDataModule
from bench.harness.errors import BenchError

_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


def check_cifar_files(root: str | Path, name: str, files: list[str] | None = None) -> None:
    """One line naming the missing files of ``name`` (default: both splits) and how to get them."""
    folder, train_files, test_files, _ = _LAYOUT[name]
    base = Path(root).expanduser() / folder
    missing = [f for f in (files if files is not None else [*train_files, *test_files]) if not (base / f).is_file()]
    if missing:
        raise BenchError(
            f"{name}: missing {', '.join(missing)} in {base}. Put the python release there "
            f"(the CIFAR python release from https://www.cs.toronto.edu/~kriz/cifar.html"
            ", extracted), or run with data.download=true."
        )


def read_cifar_split(root: str | Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the ``train`` or ``test`` split of ``name`` in {cifar10, cifar100}: uint8 images (N, 3, 32, 32)
    and int labels."""
    folder, train_files, test_files, label_key = _LAYOUT[name]
    base = Path(root).expanduser() / folder
    files = train_files if split == "train" else test_files
    check_cifar_files(root, name, files)
    xs, ys = [], []
    for f in files:
        with open(base / f, "rb") as fh:
            entry = pickle.load(fh, encoding="bytes")
        xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


class CIFARDataModule(TensorDataModule):
    """CIFAR-10/100 held in memory as float tensors in [0, 1] (normalisation lives in the model).

    Args:
        root: folder that holds ``cifar-10-batches-py`` / ``cifar-100-python``.
        name: ``cifar10`` or ``cifar100``.
        download: fetch the release with torchvision when the files are missing (needs network).
        limit_train, limit_test: keep only the first N examples (quick runs).
    """

    def __init__(
        self,
        root: str = "data",
        name: str = "cifar10",
        download: bool = False,
        limit_train: int | None = None,
        limit_test: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if name not in _LAYOUT:
            raise BenchError(f"unknown CIFAR variant {name!r}; known: {', '.join(_LAYOUT)}")
        self.root, self.name, self.download = root, name, download
        self.limit_train, self.limit_test = limit_train, limit_test
        self.num_classes = 10 if name == "cifar10" else 100
        self.input_shape = (3, 32, 32)
        if not download:  # missing files are the first thing to report (before anything asks about the data)
            check_cifar_files(root, name)

    def prepare_data(self) -> None:
        if self.download:
            import torchvision

            cls = torchvision.datasets.CIFAR10 if self.name == "cifar10" else torchvision.datasets.CIFAR100
            cls(self.root, train=True, download=True)

    def build(self):
        out = {}
        for split, limit in (("train", self.limit_train), ("test", self.limit_test)):
            x, y = read_cifar_split(self.root, self.name, split)
            if limit:
                x, y = x[:limit], y[:limit]
            out[split] = {"x": torch.from_numpy(x).float() / 255.0, "y": torch.from_numpy(y)}
        return out
