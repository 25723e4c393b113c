"""The in-memory loader: chunks, determinism, exact DDP shards."""

import torch

from bench.harness.loaders import InMemoryLoader


def tensors(n=10):
    return {"x": torch.arange(n).float().unsqueeze(1), "y": torch.arange(n)}


def test_chunks_cover_an_epoch_once():
    dl = InMemoryLoader(tensors(10), batch_size=3, shuffle=True, chunk=0)
    chunks = list(dl)
    assert len(dl) == len(chunks) == 1
    ids = torch.cat([b["index"] for b in chunks[0]])
    assert sorted(ids.tolist()) == list(range(10))
    assert [len(b["y"]) for b in chunks[0]] == [3, 3, 3, 1]
    dl2 = InMemoryLoader(tensors(10), batch_size=3, chunk=2)
    assert [len(c) for c in dl2] == [2, 2] and len(dl2) == 2


def test_batches_carry_matching_rows_and_indices():
    dl = InMemoryLoader(tensors(7), batch_size=4, shuffle=True)
    for b in dl:
        assert torch.equal(b["y"], b["index"]) and torch.equal(b["x"][:, 0].long(), b["index"])


def test_shuffle_depends_on_seed_and_epoch_only():
    a = InMemoryLoader(tensors(20), batch_size=20, shuffle=True, seed=1)
    b = InMemoryLoader(tensors(20), batch_size=20, shuffle=True, seed=1)
    first = next(iter(a))["index"]
    assert torch.equal(first, next(iter(b))["index"])
    a.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(a))["index"])
    b.sampler.set_epoch(1)
    assert torch.equal(next(iter(a))["index"], next(iter(b))["index"])


def test_eval_shards_are_disjoint_and_complete():
    n, world = 11, 3
    seen = []
    for rank in range(world):
        dl = InMemoryLoader(tensors(n), batch_size=2, rank=rank, world_size=world, pad=False)
        seen += torch.cat([b["index"] for b in dl]).tolist()
    assert sorted(seen) == list(range(n))  # no padding duplicates


def test_train_shards_are_padded_to_equal_length():
    n, world = 11, 3
    lens = [
        sum(
            len(b["y"])
            for b in InMemoryLoader(tensors(n), batch_size=2, shuffle=True, rank=r, world_size=world, pad=True)
        )
        for r in range(world)
    ]
    assert lens == [4, 4, 4]
