"""Embedded datasets, and the real-file loaders on small files written in the real format."""

import pickle

import numpy as np
import pytest
import torch

from bench.data.cifar import CIFARDataModule
from bench.data.digits import DigitsDataModule
from bench.data.mnist1d import MNIST1DDataModule
from bench.harness.errors import BenchError


def write_fake_cifar10(root, n_per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            b"data": rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, size=n_per_batch)),
            b"batch_label": name.encode(),
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
    return base


def test_cifar10_reads_the_python_release_format(tmp_path):
    base = write_fake_cifar10(tmp_path)
    dm = CIFARDataModule(root=str(tmp_path), name="cifar10")
    dm.setup()
    x, y = dm.split("train")["x"], dm.split("train")["y"]
    assert x.shape == (30, 3, 32, 32) and y.shape == (30,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    with open(base / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    # channel-major rows: the first 1024 bytes are the red plane
    assert torch.allclose(x[0, 0].flatten(), torch.tensor(first[b"data"][0][:1024], dtype=torch.float32) / 255)
    assert y[0].item() == first[b"labels"][0]
    assert dm.split("test")["x"].shape[0] == 6


def test_cifar_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(BenchError, match="cifar-100-python") as e:  # refused when built, before setup
        CIFARDataModule(root=str(tmp_path / "none"), name="cifar100")
    assert "data.download=true" in str(e.value)


def test_digits_split_is_stratified_in_unit_range_and_seeded():
    a = DigitsDataModule(seed=0, val_fraction=0.1)
    a.setup()
    tr, te = a.split("train"), a.split("test")
    assert 0.0 <= tr["x"].min() and tr["x"].max() <= 1.0
    assert len(tr["y"]) + len(te["y"]) + len(a.split("val")["y"]) == 1797
    counts = torch.bincount(te["y"], minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38
    b = DigitsDataModule(seed=0, val_fraction=0.1)
    b.setup()
    assert torch.equal(tr["x"], b.split("train")["x"])


def test_digits_class_subset_is_relabelled():
    dm = DigitsDataModule(classes=[7, 2])
    dm.setup()
    assert dm.num_classes == 2 and set(dm.split("train")["y"].tolist()) == {0, 1}


def test_mnist1d_is_generated_locally():
    dm = MNIST1DDataModule(num_samples=400)
    dm.setup()
    x = dm.split("train")["x"]
    assert x.shape[1] == 40 and x.min() >= 0 and x.max() <= 1
    assert len(dm.split("test")["y"]) == 80
