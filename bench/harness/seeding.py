"""The one home of seed derivation: any integer seed (negative, 2**32, 2**64 - 1, ...) becomes the seeds the
generators accept.

Generators take seeds in a bounded range (numpy's legacy ``seed`` and ``RandomState``: [0, 2**32); torch's
``manual_seed``: 64 bits; ``seed_everything``: [0, 2**32)). Every place that seeds a generator from the run seed
goes through :func:`bounded_seed` (a value it computes from the seed, e.g. ``1234 + seed``: kept as it is inside
[0, 2**32), so the reference records of small seeds stay bit-identical, and hashed into that range otherwise) or
:func:`derive_seed` (always hashed: a seed per stage name).
"""

from __future__ import annotations

import hashlib
import json

import torch

SEED_RANGE = 2**32  # what every generator accepts (numpy's legacy seeding, Lightning's seed_everything)


def derive_seed(seed: int, *names: str | int) -> int:
    """A seed in [0, 2**32) derived from any integer ``seed`` and the names of what it seeds (sha256 of both)."""
    # the JSON layout of the stage seeds older records were made with (sorted keys, one name: {"seed", "stage"})
    key = {"seed": int(seed), "stage": "/".join(str(n) for n in names)}
    return int(hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8], 16)


def stage_seed(seed: int, stage: str) -> int:
    """The seed of a stage: :func:`derive_seed` of the seed and the stage name."""
    return derive_seed(seed, stage)


def bounded_seed(value: int, *names: str | int) -> int:
    """``value`` itself where it is a seed in [0, 2**32), else :func:`derive_seed` of it and ``names``.

    ``value`` is what a call site derives from the run seed (``seed``, ``1234 + seed``, ``seed * 1000 + i``):
    seeds in range give the numbers they always gave, any other integer a valid seed."""
    value = int(value)
    return value if 0 <= value < SEED_RANGE else derive_seed(value, *names)


def generator(value: int, *names: str | int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`bounded_seed` of ``value`` and ``names``."""
    return torch.Generator().manual_seed(bounded_seed(value, *names))
