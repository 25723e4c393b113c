"""Galaxy10 DECaLS (Leung & Bovy; 17,736 DECaLS cut-outs of 256x256x3, 10 Galaxy Zoo classes) from the HDF5 file
the dataset ships as (``images`` uint8 [N, H, W, 3], ``ans`` int [N]), or any galaxy images in an image-folder
layout (``<root>/<class name>/*.png|jpg``), resized to ``image_size`` and scaled to [0, 1]. For users who have the
files; the embedded default of ``galaxy_distillation`` is ``bench.data.galaxies`` (generated, no download).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from bench.data.base import TensorDataModule, stratified_split
from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator

GALAXY10_CLASSES = (
    "disturbed",
    "merging",
    "round_smooth",
    "in_between_round_smooth",
    "cigar_shaped_smooth",
    "barred_spiral",
    "unbarred_tight_spiral",
    "unbarred_loose_spiral",
    "edge_on_without_bulge",
    "edge_on_with_bulge",
)
HOW_TO_GET = (
    "download Galaxy10_DECals.h5 (2.7 GB) from https://zenodo.org/records/10845026 (or with astroNN: "
    "`from astroNN.datasets import load_galaxy10`) and set data.path to it, or point data.path at a folder "
    "with one sub-folder of images per class (data.layout=folder)"
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _resize(images_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """[n, H, W, 3] uint8 -> [n, 3, size, size] float in [0, 1] (area averaging when shrinking)."""
    x = images_uint8.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        mode = "area" if x.shape[-1] > size else "bilinear"
        x = F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return x.clamp(0, 1)


def read_galaxy10_h5(
    path: Path, image_size: int, max_per_class: int | None, seed: int, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a Galaxy10-style HDF5 file, read in chunks (the full file is ~3.5 GB of pixels);
    ``max_per_class`` keeps that many random images of each class (class-balanced, as the paper's curated set)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        missing = [k for k in ("images", "ans") if k not in f]
        if missing:
            raise BenchError(
                f"{path}: no dataset(s) {missing} in this HDF5 file (found {sorted(f.keys())}); "
                f"Galaxy10 DECaLS files hold 'images' and 'ans'"
            )
        labels = torch.as_tensor(np.asarray(f["ans"]), dtype=torch.long)
        keep = torch.arange(len(labels))
        if max_per_class is not None:
            g = seeded_generator(seed, "galaxy10")
            keep = torch.cat(
                [
                    idx[torch.randperm(len(idx), generator=g)[:max_per_class]]
                    for c in torch.unique(labels)
                    if len(idx := torch.nonzero(labels == c).flatten())
                ]
            )
            keep = torch.sort(keep).values
        images = f["images"]
        parts = []
        for start in range(0, len(keep), chunk):
            idx = keep[start : start + chunk].numpy()
            parts.append(_resize(torch.as_tensor(images[idx]), image_size))  # h5py wants increasing indices
    return torch.cat(parts), labels[keep]


def read_image_folder(
    root: Path, image_size: int, max_per_class: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images under ``root/<class>/`` (classes in sorted order), resized to ``image_size``."""
    import numpy as np
    from PIL import Image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise BenchError(f"{root}: no class sub-folders; the image-folder layout is {root}/<class name>/*.png|jpg")
    g = seeded_generator(seed, "galaxy10")
    xs, ys = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if max_per_class is not None:
            files = [files[i] for i in torch.randperm(len(files), generator=g)[:max_per_class].tolist()]
        for p in files:
            with Image.open(p) as im:
                xs.append(_resize(torch.as_tensor(np.asarray(im.convert("RGB"))).unsqueeze(0), image_size))
            ys.append(c)
    if not xs:
        raise BenchError(f"{root}: the class folders {classes} hold no {'/'.join(IMAGE_SUFFIXES)} images")
    return torch.cat(xs), torch.tensor(ys, dtype=torch.long), classes


class Galaxy10DataModule(TensorDataModule):
    """Galaxy10 DECaLS (``layout=h5``) or an image folder (``layout=folder``), stratified train/val/test split.

    Args:
        path: the HDF5 file (``layout=h5``) or the root folder (``layout=folder``).
        layout: ``h5`` | ``folder``.
        image_size: side the images are resized to (the paper's networks take 64 px; 32 for CPU).
        max_per_class: keep at most this many images per class (class-balanced subset), ``None`` = all.
        test_fraction, val_fraction: fractions of each class held out.
    """

    def __init__(
        self,
        path: str = "data/Galaxy10_DECals.h5",
        layout: str = "h5",
        image_size: int = 64,
        max_per_class: int | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if layout not in ("h5", "folder"):
            raise BenchError(f"data.layout={layout!r}: use 'h5' (Galaxy10 DECaLS HDF5) or 'folder' (image folders)")
        self.path, self.layout, self.image_size = Path(path), layout, int(image_size)
        self.max_per_class = None if max_per_class is None else int(max_per_class)
        self.test_fraction, self.val_fraction = float(test_fraction), float(val_fraction)
        self.class_names = list(GALAXY10_CLASSES)
        self.num_classes = len(GALAXY10_CLASSES)
        self._check_exists()

    def _check_exists(self) -> None:
        ok = self.path.is_file() if self.layout == "h5" else self.path.is_dir()
        if not ok:
            what = "HDF5 file" if self.layout == "h5" else "image folder"
            raise BenchError(f"Galaxy10: no {what} at {self.path.resolve()}; {HOW_TO_GET}")

    def build(self):
        if self.layout == "h5":
            x, y = read_galaxy10_h5(self.path, self.image_size, self.max_per_class, self.seed)
            if int(y.max()) >= len(GALAXY10_CLASSES) or int(y.min()) < 0:
                raise BenchError(f"{self.path}: labels 'ans' span {int(y.min())}..{int(y.max())}; Galaxy10 has 0..9")
        else:
            x, y, self.class_names = read_image_folder(self.path, self.image_size, self.max_per_class, self.seed)
            self.num_classes = len(self.class_names)
        train_f = 1.0 - self.test_fraction - self.val_fraction
        tr, va, te = stratified_split(y, [train_f, self.val_fraction, self.test_fraction], self.seed)
        splits = {"train": {"x": x[tr], "y": y[tr]}, "test": {"x": x[te], "y": y[te]}}
        if len(va):
            splits["val"] = {"x": x[va], "y": y[va]}
        return splits
