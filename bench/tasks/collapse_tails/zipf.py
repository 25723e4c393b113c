"""Zipf data and the training distributions built from it: clean, tail-cut (top-k / top-p), generated from a
model trained on T0 samples (its empirical distribution), and mixtures with a clean fraction.

The Zipf law p_i = c i^-beta lives on items 1..N (N = ``support``, infinite by default). Items up to ``head``
are kept explicitly; beyond it the law is continued by its density c x^-beta on (head + 1/2, N + 1/2), so the
tail mass is added analytically (the midpoint rule; against an explicit head of 10^6 the default head of 10^5
changes errors by < 1e-9 relative for T <= 1e9) and scaling curves are not bent by a finite support.

A training distribution is ``q = clean_weight * p + s``, where ``s`` is a sparse non-negative vector (``items``,
``probs``) of total mass 1 - clean_weight. Everything is float64: error values go down to ~1e-5 and are sums of
up to 10^5 terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.harness.errors import BenchError

DTYPE = torch.float64
# Tail items are drawn as round(x) from a continuous density; x is clamped here so it stays an exact integer in
# float64. Items beyond it have p < 1e-22 and are drawn with probability < 1e-7 per sample (beta >= 1.5).
MAX_ITEM = 1e15


@dataclass(frozen=True)
class TrainingDistribution:
    """q = clean_weight * p + (sparse part: ``probs`` on 1-based ``items``, summing to 1 - clean_weight)."""

    clean_weight: float
    items: Tensor  # int64, distinct
    probs: Tensor  # float64, >= 0

    @property
    def synthetic_mass(self) -> float:
        return float(self.probs.sum())


class Zipf:
    """p_i = c i^-beta on 1..support (``None`` = infinite), explicit up to ``head``, analytic beyond.

    Args:
        beta: the exponent (> 1).
        head: items kept explicitly (cut and generated distributions must live inside it where noted).
        support: the largest item; ``None`` for the infinite law.
    """

    def __init__(self, beta: float, head: int = 100_000, support: int | None = None) -> None:
        if not beta > 1:
            raise BenchError(f"Zipf exponent beta must be > 1 (a normalisable law), got {beta}")
        if head < 1 or (support is not None and support < 1):
            raise BenchError(f"Zipf head and support must be >= 1, got head={head}, support={support}")
        self.beta = float(beta)
        self.head = int(head if support is None else min(head, support))
        self.support = support
        self.lower = self.head + 0.5  # the tail density starts here
        self.upper = math.inf if support is None else float(support) + 0.5  # ... and ends here
        ranks = torch.arange(1, self.head + 1, dtype=DTYPE)
        unnormalised = ranks.pow(-self.beta)
        tail = (self.lower ** (1 - self.beta) - self._upper_pow()) / (self.beta - 1)
        self.c = 1.0 / (float(unnormalised.sum()) + tail)
        self.head_probs = self.c * unnormalised
        self.head_cdf = torch.cumsum(self.head_probs, 0)
        self.head_mass = float(self.head_cdf[-1])
        self.tail_mass = 1.0 - self.head_mass

    def _upper_pow(self) -> float:
        return 0.0 if math.isinf(self.upper) else self.upper ** (1 - self.beta)

    # -- probabilities ---------------------------------------------------------------------------------------
    def prob(self, items: Tensor) -> Tensor:
        """p_i of 1-based items (any item; beyond the head the density value c i^-beta)."""
        return self.c * items.to(DTYPE).pow(-self.beta)

    def mass_beyond(self, k: int) -> float:
        """sum_{i > k} p_i, for k inside the head."""
        if not 0 <= k <= self.head:
            raise BenchError(f"k={k} must lie in [0, head={self.head}]; raise hutter.head")
        return 1.0 - (float(self.head_cdf[k - 1]) if k > 0 else 0.0)

    # -- training distributions ------------------------------------------------------------------------------
    def clean(self) -> TrainingDistribution:
        return TrainingDistribution(1.0, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=DTYPE))

    def top_k(self, k: int) -> TrainingDistribution:
        """Keep the k most frequent items, renormalised (AI data that lost its tail)."""
        if not 1 <= k <= self.head:
            raise BenchError(f"top-k cut k={k} must lie in [1, head={self.head}]; raise hutter.head or lower k")
        probs = self.head_probs[:k]
        return TrainingDistribution(0.0, torch.arange(1, k + 1), probs / probs.sum())

    def top_p_k(self, p: float) -> int:
        """The smallest k whose top-k items hold mass >= p."""
        if not 0 < p < 1:
            raise BenchError(f"top-p cut needs 0 < p < 1, got {p}")
        k = int(torch.searchsorted(self.head_cdf, torch.tensor(p - 1e-12, dtype=DTYPE))) + 1  # rounding of the cdf
        if k > self.head:
            raise BenchError(f"top-p cut p={p} needs more than head={self.head} items; raise hutter.head")
        return k

    def top_p(self, p: float) -> TrainingDistribution:
        return self.top_k(self.top_p_k(p))

    # -- sampling --------------------------------------------------------------------------------------------
    def sample_clean(self, n: int, generator: torch.Generator) -> Tensor:
        """n i.i.d. items from p: inverse CDF on the head, inverse of the continuous tail beyond it."""
        u = torch.rand(n, dtype=DTYPE, generator=generator)
        items = torch.searchsorted(self.head_cdf, u, right=True) + 1
        in_tail = items > self.head
        if self.tail_mass <= 0:  # finite support inside the head: rounding can step past the last item
            return items.clamp_(max=self.head)
        if in_tail.any():
            v = (u[in_tail] - self.head_mass) / self.tail_mass  # uniform on (0, 1) within the tail
            lo = self.lower ** (1 - self.beta)
            x = (lo - v * (lo - self._upper_pow())).pow(1.0 / (1 - self.beta))
            items[in_tail] = torch.round(x.clamp(max=MAX_ITEM)).to(torch.long)
        return items

    def sample(self, q: TrainingDistribution, n: int, generator: torch.Generator) -> Tensor:
        """n i.i.d. items from q, in stream order (a prefix of length T is a training set of size T)."""
        from_clean = torch.rand(n, dtype=DTYPE, generator=generator) < q.clean_weight
        out = torch.empty(n, dtype=torch.long)
        n_clean = int(from_clean.sum())
        if n_clean:
            out[from_clean] = self.sample_clean(n_clean, generator)
        if n - n_clean:
            if len(q.items) == 0:
                raise BenchError("training distribution has no mass outside its clean part")
            idx = torch.multinomial(q.probs, n - n_clean, replacement=True, generator=generator)
            out[~from_clean] = q.items[idx]
        return out


# -- operations on training distributions ---------------------------------------------------------------------
def empirical(samples: Tensor) -> TrainingDistribution:
    """The distribution a memorising model trained on ``samples`` generates from: item frequencies."""
    items, counts = torch.unique(samples, return_counts=True)
    return TrainingDistribution(0.0, items, counts.to(DTYPE) / len(samples))


def _ranked(q: TrainingDistribution) -> tuple[Tensor, Tensor]:
    """The sparse part sorted by probability, descending; ties go to the smaller (more frequent) item."""
    by_item = torch.argsort(q.items)
    order = by_item[torch.argsort(q.probs[by_item], descending=True, stable=True)]
    return q.items[order], q.probs[order]


def cut_top_k(q: TrainingDistribution, k: int) -> TrainingDistribution:
    """Keep the k most probable items of a (purely synthetic) distribution, renormalised."""
    if q.clean_weight != 0:
        raise BenchError("cut_top_k applies to generated (synthetic) distributions, not mixtures")
    if k < 1:
        raise BenchError(f"top-k cut needs k >= 1, got {k}")
    items, probs = _ranked(q)
    items, probs = items[:k], probs[:k]
    return TrainingDistribution(0.0, items, probs / probs.sum())


def cut_top_p(q: TrainingDistribution, p: float) -> TrainingDistribution:
    """Keep the most probable items of a (purely synthetic) distribution up to mass >= p, renormalised."""
    if not 0 < p <= 1:
        raise BenchError(f"top-p cut needs 0 < p <= 1, got {p}")
    _, probs = _ranked(q)
    cum = torch.cumsum(probs, 0) / probs.sum()
    k = int(torch.searchsorted(cum, torch.tensor(p, dtype=DTYPE) - 1e-12)) + 1
    return cut_top_k(q, min(k, len(probs)))


def mix(q: TrainingDistribution, clean_fraction: float) -> TrainingDistribution:
    """A fraction ``clean_fraction`` of clean data mixed with (1 - clean_fraction) of q."""
    if not 0 <= clean_fraction <= 1:
        raise BenchError(f"clean fraction pi must lie in [0, 1], got {clean_fraction}")
    keep = 1.0 - clean_fraction
    return TrainingDistribution(clean_fraction + keep * q.clean_weight, q.items, keep * q.probs)


def generation_chain(
    zipf: Zipf, T0: int, generations: int, generator: torch.Generator, top_p: float | None = None
) -> list[TrainingDistribution]:
    """Generation n (1..generations) memorises T0 samples of generation n - 1 (generation 0 is the clean law)
    and generates from their empirical distribution, optionally cut to its top-p mass."""
    q, chain = zipf.clean(), []
    for _ in range(generations):
        q = empirical(zipf.sample(q, T0, generator))
        if top_p is not None and top_p < 1:
            q = cut_top_p(q, top_p)
        chain.append(q)
    return chain
