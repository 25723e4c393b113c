"""A LightningDataModule over in-memory tensors, the base of every embedded dataset."""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch
from torch import Tensor

from bench.harness.loaders import InMemoryLoader, trainer_device
from bench.harness.seeding import generator as seeded_generator

Split = Mapping[str, Tensor]
_KEEP: Any = object()  # "keep the datamodule's own value" in with_splits


class TensorDataModule(L.LightningDataModule):
    """Holds train / val / test splits as dicts of tensors (``x``, ``y`` and optionally ``group``) and serves
    them through :class:`InMemoryLoader`.

    Subclasses implement :meth:`build` and set ``num_classes`` (and ``num_groups`` when they have groups).

    Args:
        batch_size: training minibatch size (``None`` = full batch).
        eval_batch_size: evaluation batch size (``None`` = whole split).
        steps_per_call: minibatches per Lightning step in training (0 = the whole epoch, null = one).
        seed: seed of the data generation and of the shuffling.
    """

    num_classes: int = 0
    num_groups: int = 0
    input_shape: tuple[int, ...] = ()

    def __init__(
        self,
        batch_size: int | None = 128,
        eval_batch_size: int | None = 1024,
        steps_per_call: int | None = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.steps_per_call = steps_per_call
        self.seed = seed
        self.splits: dict[str, dict[str, Tensor]] | None = None

    # -- to implement ------------------------------------------------------------------------------------
    def build(self) -> dict[str, dict[str, Tensor]]:
        """Return {"train": {...}, "val": {...}, "test": {...}} (val may be absent)."""
        raise NotImplementedError

    # -- Lightning ---------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.build()
            for name, split in splits.items():
                if "x" not in split or "y" not in split:
                    raise ValueError(f"split {name!r} must hold tensors 'x' and 'y', got {sorted(split)}")
            self.splits = {k: dict(v) for k, v in splits.items()}
            if not self.input_shape:
                self.input_shape = tuple(self.splits["train"]["x"].shape[1:])

    def with_splits(self, *, batch_size: Any = _KEEP, eval_batch_size: Any = _KEEP, steps_per_call: Any = _KEEP,
                    **splits: str | Split | None) -> "TensorDataModule":
        """A view of this datamodule over other splits, keeping ``num_classes``, ``num_groups``, ``input_shape``,
        the batch settings (unless given) and the seed.

        Each keyword names a split of the view: the *name* of one of this datamodule's splits (``test="train"``
        evaluates on the training data), a dict of tensors (a kept subset, a synthetic set), or ``None`` to drop
        it. Splits not named are kept as they are.

        >>> from bench.data.digits import DigitsDataModule
        >>> dm = DigitsDataModule(); dm.setup()
        >>> view = dm.with_splits(test="train", batch_size=32)
        >>> view.num_classes, len(view.split("test")["y"]) == len(dm.split("train")["y"]), view.batch_size
        (10, True, 32)
        """
        self.setup()
        assert self.splits is not None
        chosen: dict[str, dict[str, Tensor]] = dict(self.splits)
        for name, value in splits.items():
            if value is None:
                chosen.pop(name, None)
            elif isinstance(value, str):
                chosen[name] = self.split(value)
            else:
                chosen[name] = dict(value)
        keep = lambda given, own: own if given is _KEEP else given  # noqa: E731
        view = SplitsView(chosen, like=self, batch_size=keep(batch_size, self.batch_size),
                          eval_batch_size=keep(eval_batch_size, self.eval_batch_size),
                          steps_per_call=keep(steps_per_call, self.steps_per_call))
        view.setup()
        return view

    def split(self, name: str) -> dict[str, Tensor]:
        self.setup()
        assert self.splits is not None
        if name not in self.splits:
            raise KeyError(f"this datamodule has no {name!r} split; it has {sorted(self.splits)}")
        return self.splits[name]

    def _shard(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def loader(self, name: str, train: bool = False, batch_size: int | None | str = "eval") -> InMemoryLoader:
        """A loader over split ``name``; ``train=True`` shuffles, chunks and pads shards (DistributedSampler
        semantics), otherwise shards are disjoint and complete, so metrics are exact under DDP."""
        rank, world = self._shard()
        if batch_size == "eval":
            batch_size = self.batch_size if train else self.eval_batch_size
        return InMemoryLoader(
            self.split(name),
            batch_size=batch_size,
            shuffle=train,
            seed=self.seed,
            chunk=self.steps_per_call if train else None,
            rank=rank,
            world_size=world,
            pad=train,
            device=trainer_device(getattr(self, "trainer", None)),  # data moved to the module's device once
        )

    def train_dataloader(self) -> InMemoryLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> InMemoryLoader:
        return self.loader("val")

    def test_dataloader(self) -> InMemoryLoader:
        return self.loader("test")

    def train_eval_dataloader(self) -> InMemoryLoader:
        """The training split in evaluation order (no shuffle, no padding), for metrics on training data."""
        return self.loader("train")


class SplitsView(TensorDataModule):
    """The datamodule :meth:`TensorDataModule.with_splits` returns: given splits, the metadata of another
    datamodule (classes, groups and their names, input shape)."""

    def __init__(self, splits: dict[str, dict[str, Tensor]], like: TensorDataModule, **kwargs: Any) -> None:
        super().__init__(seed=like.seed, **kwargs)
        self.given = splits
        self.num_classes, self.num_groups = like.num_classes, like.num_groups
        self.input_shape = tuple(like.input_shape)
        for attr in ("group_names", "class_names"):
            if getattr(like, attr, None) is not None:
                setattr(self, attr, getattr(like, attr))

    def build(self) -> dict[str, dict[str, Tensor]]:
        return self.given


def stratified_split(y: Tensor, fractions: list[float], seed: int) -> list[Tensor]:
    """Indices of a stratified split of labels ``y`` into parts with the given fractions (sum <= 1)."""
    g = seeded_generator(seed, "split")
    parts: list[list[Tensor]] = [[] for _ in fractions]
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        for i, f in enumerate(fractions):
            stop = start + int(round(f * len(idx))) if i < len(fractions) - 1 else len(idx)
            parts[i].append(idx[start:stop])
            start = stop
    return [torch.sort(torch.cat(p)).values for p in parts]
