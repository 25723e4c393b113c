"""Waterbirds and CelebA in the WILDS folder layout, for users who have the files (no download here).

Expected layout under ``root`` (as the ``wilds`` package lays them out):

  waterbirds_v1.0/metadata.csv              columns img_filename, y (1 = waterbird), place (1 = water), split
                                            (0 train, 1 val, 2 test); images at waterbirds_v1.0/<img_filename>
  celebA_v1.0/list_attr_celeba.csv          image_id and the 40 attributes in {-1, 1}; y = Blond_Hair, a = Male
  celebA_v1.0/list_eval_partition.csv       image_id, partition (0 train, 1 val, 2 test)
  celebA_v1.0/img_align_celeba/<image_id>

Images are centre-cropped to a square, resized to ``image_size`` and held in memory as float tensors in [0, 1]
(N, 3, S, S). The group of an example is ``2 * y + a`` (Waterbirds: 0 landbird/land, 1 landbird/water,
2 waterbird/land, 3 waterbird/water; CelebA: 0 dark-haired woman, 1 dark-haired man, 2 blond woman, 3 blond man).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from bench.data.base import TensorDataModule
from bench.harness.errors import BenchError

SPLITS = ("train", "val", "test")

LAYOUTS = {
    "waterbirds": "waterbirds_v1.0/metadata.csv (columns img_filename, y, place, split) and the images it names",
    "celeba": "celebA_v1.0/list_attr_celeba.csv, celebA_v1.0/list_eval_partition.csv and celebA_v1.0/img_align_celeba/",
}

GROUP_NAMES = {
    "waterbirds": ("landbird,land", "landbird,water", "waterbird,land", "waterbird,water"),
    "celeba": ("not_blond,female", "not_blond,male", "blond,female", "blond,male"),
}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# how to get the files: the WILDS package downloads both into <root>/waterbirds_v1.0 and <root>/celebA_v1.0
WILDS_NAMES = {"waterbirds": "waterbirds", "celeba": "celebA"}


def _layout_error(name: str, root: Path, problem: str) -> BenchError:
    get = (f"to get it: pip install wilds && python -c \"from wilds import get_dataset; "
           f"get_dataset('{WILDS_NAMES[name]}', download=True, root_dir='{root}')\"")
    return BenchError(f"{name}: {problem}. Expected the WILDS layout under data.root={root}: {LAYOUTS[name]} "
                      f"(set data.root to the folder that holds it; {get})")


def read_wilds_table(root: str | Path, name: str) -> list[tuple[Path, int, int, int]]:
    """(image path, y, attribute, split id) for every example of ``name`` in {waterbirds, celeba}."""
    root = Path(root).expanduser()
    if name == "waterbirds":
        base = root / "waterbirds_v1.0"
        meta = base / "metadata.csv"
        if not meta.is_file():
            raise _layout_error(name, root, f"no {meta}")
        rows = _read_csv(meta)
        need = {"img_filename", "y", "place", "split"}
        if rows and not need <= set(rows[0]):
            raise _layout_error(name, root, f"{meta} lacks columns {sorted(need - set(rows[0]))}")
        return [(base / r["img_filename"], int(r["y"]), int(r["place"]), int(r["split"])) for r in rows]
    if name == "celeba":
        base = root / "celebA_v1.0"
        attrs, parts = base / "list_attr_celeba.csv", base / "list_eval_partition.csv"
        for f in (attrs, parts):
            if not f.is_file():
                raise _layout_error(name, root, f"no {f}")
        rows = _read_csv(attrs)
        if rows and not {"image_id", "Blond_Hair", "Male"} <= set(rows[0]):
            raise _layout_error(name, root, f"{attrs} lacks image_id, Blond_Hair or Male")
        split_of = {r["image_id"]: int(r["partition"]) for r in _read_csv(parts)}
        missing = [r["image_id"] for r in rows if r["image_id"] not in split_of]
        if missing:
            raise _layout_error(name, root, f"{len(missing)} images have no partition in {parts} (e.g. {missing[0]})")
        return [(base / "img_align_celeba" / r["image_id"], int(int(r["Blond_Hair"]) == 1), int(int(r["Male"]) == 1),
                 split_of[r["image_id"]]) for r in rows]
    raise BenchError(f"unknown WILDS dataset {name!r}; known: {', '.join(LAYOUTS)}")


def load_image(path: Path, size: int) -> np.ndarray:
    """Centre-cropped square, resized to ``size`` x ``size``: uint8 (3, size, size)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


class WildsGroupDataModule(TensorDataModule):
    """Waterbirds or CelebA (official splits) with group labels.

    Args:
        root: folder that holds ``waterbirds_v1.0`` / ``celebA_v1.0``.
        name: ``waterbirds`` or ``celeba``.
        image_size: side of the square images held in memory.
        limit_per_split: keep at most this many examples of each split (the first ones, for quick runs).
    """

    num_classes = 2
    num_groups = 4

    def __init__(self, root: str = "data", name: str = "waterbirds", image_size: int = 64,
                 limit_per_split: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if name not in LAYOUTS:
            raise BenchError(f"unknown WILDS dataset {name!r}; known: {', '.join(LAYOUTS)}")
        self.root, self.name, self.image_size, self.limit_per_split = root, name, image_size, limit_per_split
        self.group_names = GROUP_NAMES[name]

    def build(self):
        table = read_wilds_table(self.root, self.name)
        splits = {}
        for sid, split in enumerate(SPLITS):
            rows = [r for r in table if r[3] == sid][: self.limit_per_split]
            if not rows:
                raise _layout_error(self.name, Path(self.root).expanduser(), f"no examples in the {split} split")
            absent = [str(p) for p, *_ in rows if not p.is_file()]
            if absent:
                raise _layout_error(self.name, Path(self.root).expanduser(),
                                    f"{len(absent)} {split} images are missing (e.g. {absent[0]})")
            x = torch.from_numpy(np.stack([load_image(p, self.image_size) for p, *_ in rows])).float() / 255.0
            y = torch.tensor([r[1] for r in rows], dtype=torch.long)
            a = torch.tensor([r[2] for r in rows], dtype=torch.long)
            splits[split] = {"x": x, "y": y, "group": 2 * y + a}
        return splits
