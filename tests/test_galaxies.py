"""The galaxy generator (deterministic, balanced, learnable classes) and the Galaxy10 DECaLS / image-folder loaders
on tiny files the tests write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data.galaxies import CLASS_NAMES, GalaxiesDataModule, render
from bench.data.galaxy10 import Galaxy10DataModule
from bench.harness.errors import BenchError


def test_generator_is_deterministic_by_seed_balanced_and_in_range():
    y = torch.arange(len(CLASS_NAMES)).repeat_interleave(4)
    a = render(y, 32, torch.Generator().manual_seed(5))
    b = render(y, 32, torch.Generator().manual_seed(5))
    c = render(y, 32, torch.Generator().manual_seed(6))
    assert a.shape == (len(y), 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    dm1, dm2 = (
        GalaxiesDataModule(n_train=5, n_test=3, image_size=48, seed=2),
        GalaxiesDataModule(n_train=5, n_test=3, image_size=48, seed=2),
    )
    dm1.setup(), dm2.setup()
    assert torch.equal(dm1.split("train")["x"], dm2.split("train")["x"])
    assert dm1.split("train")["x"].shape == (5 * 7, 3, 48, 48) and dm1.input_shape == (3, 48, 48)
    assert torch.bincount(dm1.split("test")["y"]).tolist() == [3] * 7
    assert not torch.equal(dm1.split("train")["x"][:21], dm1.split("test")["x"])  # splits have their own draws
    # galaxies are centred light on a dark sky: the centre is brighter than the border in every class
    centre, border = a[:, :, 12:20, 12:20].mean((1, 2, 3)), a[:, :, :3, :].mean((1, 2, 3))
    assert bool((centre > 2 * border).all())


def test_a_small_net_separates_the_classes_well_above_chance():
    dm = GalaxiesDataModule(n_train=60, n_test=30, seed=0)
    dm.setup()
    tr, te = dm.split("train"), dm.split("test")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(16, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 8 * 8, 7),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = (tr["x"] - 0.05) / 0.1
    for _ in range(60):
        loss = F.cross_entropy(net(x), tr["y"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((net((te["x"] - 0.05) / 0.1).argmax(1) == te["y"]).float().mean())
    assert acc > 0.5, f"test accuracy {acc:.3f} (chance 1/7 = 0.143)"


def test_generator_bad_input_is_one_clear_line():
    with pytest.raises(BenchError, match="unknown galaxy class"):
        GalaxiesDataModule(classes=["spiral", "quasar"])
    with pytest.raises(BenchError, match="32 to 64 pixels"):
        GalaxiesDataModule(image_size=16)


# -- Galaxy10 DECaLS ---------------------------------------------------------------------------------------------------
def _write_h5(path, n_per_class=3, side=40):
    import h5py

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), n_per_class).astype(np.uint8)
    images = rng.integers(0, 256, size=(len(labels), side, side, 3), dtype=np.uint8)
    images[labels == 4] = 255  # one recognisable class
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("ans", data=labels)
    return images, labels


def test_galaxy10_h5_loader_reads_the_tiny_file(tmp_path):
    path = tmp_path / "Galaxy10_DECals.h5"
    _write_h5(path, n_per_class=5)
    dm = Galaxy10DataModule(path=str(path), image_size=32, test_fraction=0.2, seed=0)
    dm.setup()
    tr, te = dm.split("train"), dm.split("test")
    assert tr["x"].shape == (40, 3, 32, 32) and te["x"].shape == (10, 3, 32, 32)
    assert torch.bincount(tr["y"], minlength=10).tolist() == [4] * 10
    assert float(tr["x"].min()) >= 0 and float(tr["x"].max()) <= 1
    assert torch.allclose(tr["x"][tr["y"] == 4], torch.ones(1))  # uint8 255 -> 1.0 after resizing
    sub = Galaxy10DataModule(path=str(path), image_size=32, max_per_class=2, test_fraction=0.5, seed=0)
    sub.setup()
    assert torch.bincount(sub.split("train")["y"], minlength=10).tolist() == [1] * 10


def test_galaxy10_missing_file_says_where_and_how_to_get_it(tmp_path):
    with pytest.raises(BenchError) as e:
        Galaxy10DataModule(path=str(tmp_path / "nope.h5"))
    msg = str(e.value)
    assert str(tmp_path / "nope.h5") in msg and "zenodo" in msg and "\n" not in msg


def test_galaxy10_h5_without_the_datasets_is_a_clear_error(tmp_path):
    import h5py

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", data=np.zeros((2, 8, 8, 3), dtype=np.uint8))
    dm = Galaxy10DataModule(path=str(path))
    with pytest.raises(BenchError, match="'images', 'ans'"):
        dm.setup()


def test_image_folder_layout(tmp_path):
    from PIL import Image

    for c, name in enumerate(["merger", "spiral"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 24, 3), 40 * c + i, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    dm = Galaxy10DataModule(path=str(tmp_path), layout="folder", image_size=32, test_fraction=0.4, seed=0)
    dm.setup()
    assert dm.class_names == ["merger", "spiral"] and dm.num_classes == 2
    assert dm.split("train")["x"].shape == (6, 3, 32, 32)
    assert torch.bincount(dm.split("test")["y"]).tolist() == [2, 2]
