"""Fast in-memory loaders.

Small-model tasks run 10^4-10^5 optimizer steps; a DataLoader (sampler, collate) and Lightning's per-step
machinery would cost more than the step itself. These loaders draw each minibatch by indexing in-memory tensors
with a random permutation, and in training hand Lightning a *chunk* of several minibatches per step, which
``BenchModule.training_step`` runs as several optimizer steps. Lightning still sees an ordinary iterable, so
callbacks, loggers, checkpointing and DDP work unchanged. Given a ``device`` (the trainer's, see
:func:`trainer_device`), the tensors are moved there once and every minibatch is drawn there: no per-step
host-to-device copy on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor

from bench.harness.seeding import generator as seeded_generator


class EpochSeed:
    """Holds the epoch for the shuffling generator. Lightning calls ``set_epoch`` on ``loader.sampler``,
    so a resumed run replays the same permutation for the same epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


def trainer_device(trainer) -> torch.device | None:
    """The device a trainer's module lives on (``None`` without a trainer): where an in-memory loader puts its data."""
    strategy = getattr(trainer, "strategy", None) if trainer is not None else None
    return getattr(strategy, "root_device", None)


class InMemoryLoader:
    """Minibatches (dicts of tensors) drawn from in-memory tensors by indexing.

    Args:
        tensors: mapping name -> tensor, all with the same first dimension. Every batch also carries ``index``
            (the example indices), which tasks that score examples (forgetting, EL2N) need.
        batch_size: examples per minibatch; ``None`` means the whole (local) dataset (full-batch GD).
        shuffle: draw a new permutation each epoch (seeded by ``seed`` and the epoch).
        drop_last: drop the last incomplete minibatch.
        chunk: minibatches handed to one Lightning step (a list), ``None`` = one plain batch per step.
            ``0`` means the whole epoch in one step.
        rank, world_size: DDP shard. ``pad=True`` (training) pads the permutation to a multiple of
            ``world_size`` like DistributedSampler; ``pad=False`` (evaluation) gives each rank a disjoint
            shard with no duplicates, so metrics summed over ranks are exact.
        device: where the tensors are kept and the minibatches drawn (``None``: where they are). The shuffling
            permutation is still drawn on the CPU generator, so batches are the same on every device.
    """

    def __init__(
        self,
        tensors: Mapping[str, Tensor],
        batch_size: int | None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        chunk: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        sizes = {k: len(v) for k, v in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all tensors must have the same length, got {sizes}")
        self.device = None if device is None else torch.device(device)
        # one copy per loader (a no-op for tensors already there), not one per step
        self.tensors = {k: v if self.device is None else v.to(self.device) for k, v in tensors.items()}
        self.n = next(iter(sizes.values()))
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.chunk, self.rank, self.world_size, self.pad = chunk, rank, world_size, pad
        self.sampler = EpochSeed()
        self.batch_sampler = None  # Lightning inspects it; there is none
        local = self._local_size()
        self.batch_size = local if batch_size is None else max(1, min(int(batch_size), max(local, 1)))

    def _local_size(self) -> int:
        if self.world_size == 1:
            return self.n
        if self.pad:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def _indices(self) -> Tensor:
        if self.shuffle:
            g = seeded_generator(self.seed * 1_000_003 + self.sampler.epoch, "shuffle")
            perm = torch.randperm(self.n, generator=g)
        else:
            perm = torch.arange(self.n)
        if self.world_size > 1:
            if self.pad:
                total = math.ceil(self.n / self.world_size) * self.world_size
                if total > self.n:
                    perm = torch.cat([perm, perm[: total - self.n]])
            perm = perm[self.rank :: self.world_size]
        return perm if self.device is None else perm.to(self.device)

    def num_minibatches(self) -> int:
        local = self._local_size()
        return local // self.batch_size if self.drop_last else math.ceil(local / self.batch_size)

    def __len__(self) -> int:
        m = self.num_minibatches()
        if self.chunk is None:
            return m
        per = m if self.chunk == 0 else self.chunk
        return math.ceil(m / max(per, 1))

    def _batches(self) -> Iterator[dict[str, Tensor]]:
        idx = self._indices()
        bs = self.batch_size
        for i in range(self.num_minibatches()):
            sel = idx[i * bs : (i + 1) * bs]
            batch = {k: v[sel] for k, v in self.tensors.items()}
            batch["index"] = sel
            yield batch

    def __iter__(self) -> Iterator:
        if self.chunk is None:
            yield from self._batches()
            return
        per = self.num_minibatches() if self.chunk == 0 else self.chunk
        buf: list = []
        for b in self._batches():
            buf.append(b)
            if len(buf) == per:
                yield buf
                buf = []
        if buf:
            yield buf
