"""Class quotas (how many examples of each class survive pruning) and the kept subset they imply.

Quota rules:
  score   the classes' shares of the dN highest-scoring examples overall (what a plain score method keeps)
  drop    DRoP: n_k proportional to the query model's validation error 1 - r_k, capped at the class size, the excess
          redistributed to the uncapped classes in proportion to their errors (water-filling), rounded to integers
          by largest remainder so that the quotas sum to exactly dN.
Every rule then applies the floor rule: a class left with fewer than ``min_per_class`` examples (an easy class a
score method prunes away, or a class with perfect validation recall under DRoP) is raised to that floor (or to its
size), the examples taken one at a time from the class holding the most kept examples. Floors are recorded
(``prune/floored_classes``) and warned about: never a silent empty class.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator

QUOTAS = ("score", "drop")


def keep_count(density: float, num_examples: int) -> int:
    """dN rounded to the nearest integer (half up)."""
    return math.floor(density * num_examples + 0.5)


def check_density(density) -> float:
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise BenchError(f"robust_pruning.density must be a number in (0, 1], got {density!r}") from None
    if not (0.0 < d <= 1.0) or math.isnan(d):
        raise BenchError(f"robust_pruning.density must lie in (0, 1] (the fraction of training data kept), got {d}")
    return d


def check_budget(keep: int, class_sizes: Tensor, min_per_class: int, density: float) -> None:
    """The floor rule needs room: dN must cover min_per_class examples of every class."""
    if min_per_class < 0:
        raise BenchError(f"robust_pruning.min_per_class must be >= 0, got {min_per_class}")
    need = int(torch.clamp(class_sizes, max=min_per_class).sum())
    if keep < max(need, 1):
        raise BenchError(
            f"robust_pruning.density={density} keeps {keep} of {int(class_sizes.sum())} training "
            f"examples, fewer than min_per_class={min_per_class} for each of the {len(class_sizes)} "
            f"classes ({need}); raise the density or lower robust_pruning.min_per_class"
        )


def water_fill(weights: Tensor, total: float, caps: Tensor) -> Tensor:
    """Real quotas a_k = min(cap_k, lam * w_k) with sum a_k = total: proportional to ``weights``, capped, and the
    excess of capped classes redistributed to the others in proportion to their weights, repeated until no quota
    exceeds its cap. Requires total <= sum(caps). All-zero weights fall back to weights = caps (the class sizes:
    the quotas of random pruning)."""
    w = weights.double().clamp(min=0)
    caps = caps.double()
    if float(total) > float(caps.sum()) + 1e-9:
        raise BenchError(f"cannot keep {total} examples from {int(caps.sum())}")
    if float(w.sum()) <= 0:
        w = caps.clone()
    a = torch.zeros_like(w)
    free = (w > 0) & (caps > 0)
    remaining = float(total)
    while True:
        if not free.any() or remaining <= 0:
            break
        lam = remaining / float(w[free].sum())
        proposal = torch.where(free, lam * w, a)
        over = free & (proposal > caps)
        if not over.any():
            a = proposal
            break
        a[over] = caps[over]
        free &= ~over
        remaining = float(total) - float(a[~free].sum())
    if free.sum() == 0 and float(a.sum()) < float(total) - 1e-9:
        # every weighted class is capped: the rest goes to the zero-weight classes by size
        rest = (caps - a).clamp(min=0)
        a = a + rest * ((float(total) - float(a.sum())) / float(rest.sum()))
    return a


def round_quotas(real: Tensor, total: int, caps: Tensor) -> Tensor:
    """Integers n_k <= cap_k summing to ``total`` (largest remainder): floor(a_k), then one more for each of the
    largest remainders (ties: the lower class index) among classes below their cap. Since sum a_k = total and
    a_k <= cap_k, fewer than K examples are short and every class with a remainder has room."""
    caps = caps.long()
    n = torch.floor(real.double() + 1e-9).long().clamp(max=caps)
    frac = real.double() - n.double()
    frac[n >= caps] = -math.inf
    short = int(total) - int(n.sum())
    if short < 0 or short > int((n < caps).sum()):
        raise BenchError(f"cannot round quotas {real.tolist()} to {total} within class sizes {caps.tolist()}")
    order = torch.sort(frac, descending=True, stable=True).indices
    n[order[:short]] += 1
    return n


def drop_quotas(recall: Tensor, class_sizes: Tensor, keep: int) -> Tensor:
    """DRoP quotas: n_k = keep * (1 - r_k) / sum_j (1 - r_j), capped at the class size with the excess
    redistributed (see :func:`water_fill`), as integers summing to ``keep``."""
    # A class with validation recall 1.0 gets weight 0, so quota 0 (then the floor rule), however few validation
    # examples that recall rests on (a handful on a small split): the paper's formula at face value, as the official
    # code has it. The run records and warns about such classes (perfect_recall_classes, protocol.py).
    real = water_fill(1.0 - recall.double(), float(keep), class_sizes)
    return round_quotas(real, keep, class_sizes)


def perfect_recall_classes(recall: Tensor) -> list[int]:
    """Classes whose validation recall is exactly 1: DRoP's weight 1 - r_k is 0 and their quota 0 before the floor."""
    return [int(c) for c in torch.nonzero(recall.double() >= 1.0).flatten()]


def implied_quotas(score: Tensor, y: Tensor, num_classes: int, keep: int, tie_seed: int) -> Tensor:
    """The class counts of the ``keep`` highest-scoring examples (ties broken by a seeded random order)."""
    top = top_indices(score, keep, tie_seed)
    return torch.bincount(y[top], minlength=num_classes)


def apply_floor(quotas: Tensor, class_sizes: Tensor, min_per_class: int) -> tuple[Tensor, list[int]]:
    """Raise every class below min(min_per_class, size) to that floor, taking one example at a time from the class
    with the most kept examples above its own floor. Returns (quotas, the raised classes)."""
    q = quotas.clone().long()
    floor = torch.clamp(class_sizes.long(), max=int(min_per_class))
    raised = [int(k) for k in torch.nonzero(q < floor).flatten()]
    for k in raised:
        while q[k] < floor[k]:
            spare = torch.where(q > floor, q, torch.zeros_like(q))
            donor = int(spare.argmax())
            if spare[donor] <= 0:
                raise BenchError("the floor rule found no class to take an example from; raise the density")
            q[donor] -= 1
            q[k] += 1
    if raised:
        warnings.warn(
            f"classes {raised} would keep fewer than min_per_class={min_per_class} examples; raised to "
            "it (recorded as prune/floored_classes)",
            stacklevel=2,
        )
    return q, raised


def top_indices(score: Tensor, k: int, tie_seed: int) -> Tensor:
    """Indices of the ``k`` highest scores; equal scores in a random order fixed by ``tie_seed``."""
    perm = torch.randperm(len(score), generator=seeded_generator(int(tie_seed), "ties"))
    order = torch.sort(score[perm].double(), descending=True, stable=True).indices
    return perm[order[:k]]


def select(score: Tensor, y: Tensor, quotas: Tensor, tie_seed: int) -> Tensor:
    """The kept subset (sorted indices): the ``quotas[k]`` highest-scoring examples of each class k."""
    kept = []
    for k, n in enumerate(quotas.tolist()):
        idx = torch.nonzero(y == k).flatten()
        if n > len(idx):
            raise BenchError(f"quota {n} of class {k} exceeds its {len(idx)} examples")
        kept.append(idx[top_indices(score[idx], int(n), tie_seed + k)])
    return torch.sort(torch.cat(kept)).values
