"""The data views of the second stage: retraining splits carved out of the datamodule's splits, group checks."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from bench.data.base import stratified_split
from bench.harness.errors import BenchError


def group_names(dm) -> tuple[str, ...]:
    names = getattr(dm, "group_names", None)
    return tuple(names) if names else tuple(str(g) for g in range(dm.num_groups))


def describe(dm, g: int) -> str:
    return f"group {g} ({group_names(dm)[g]})"


def has_groups(dm) -> bool:
    return getattr(dm, "num_groups", 0) > 0 and all("group" in s for s in dm.splits.values())


def require_groups(dm, method: str, data_name: str) -> None:
    """Every method but ERM uses group labels (to balance, reweight, sample a context or select a model)."""
    if not has_groups(dm):
        raise BenchError(
            f"method={method} needs group labels ('group' in every split and num_groups > 0), but data {data_name} "
            "has none. Use data with groups (data=spurious, data=colored_digits, data=waterbirds, data=celeba) "
            "or method=erm."
        )
    if "val" not in dm.splits:
        raise BenchError(
            f"method={method} needs a group-annotated validation split, but data {data_name} has none; "
            "give the datamodule one (e.g. data.val_fraction=0.2)"
        )


def group_counts(split: dict[str, Tensor], num_groups: int) -> Tensor:
    return torch.bincount(split["group"].long(), minlength=num_groups)


def warn_empty_groups(dm, split_names: tuple[str, ...] = ("train", "val")) -> list[int]:
    """Warn, naming them, about groups without examples in a split; returns the groups absent from ``train``
    (left out of the worst-group minimum, as WILDS leaves out groups it cannot measure)."""
    unseen: list[int] = []
    for name in split_names:
        if name not in dm.splits:
            continue
        counts = group_counts(dm.splits[name], dm.num_groups)
        empty = [g for g in range(dm.num_groups) if counts[g] == 0]
        for g in empty:
            warnings.warn(
                f"{describe(dm, g)} has no examples in the {name} split"
                + ("; it is left out of test/worst_group_acc" if name == "train" else ""),
                stacklevel=2,
            )
        if name == "train":
            unseen = empty
    return unseen


def split_for_selection(split: dict[str, Tensor], select_fraction: float, seed: int) -> tuple[dict, dict]:
    """(fit, select): a split divided stratified by group, so both halves keep every group."""
    if not 0.0 < select_fraction < 1.0:
        raise BenchError(f"selection.select_fraction must lie in (0, 1), got {select_fraction}")
    fit_idx, select_idx = stratified_split(split["group"], [1.0 - select_fraction, select_fraction], seed)
    return {k: v[fit_idx] for k, v in split.items()}, {k: v[select_idx] for k, v in split.items()}


def upsample(split: dict[str, Tensor], chosen: Tensor, factor: int) -> dict[str, Tensor]:
    """The split with the examples where ``chosen`` is true repeated ``factor`` times in all (JTT's upsampling)."""
    if factor < 1:
        raise BenchError(f"jtt.upweight must be an integer >= 1, got {factor}")
    extra = torch.nonzero(chosen).flatten().repeat(factor - 1)
    idx = torch.cat([torch.arange(len(chosen)), extra])
    return {k: v[idx] for k, v in split.items()}
