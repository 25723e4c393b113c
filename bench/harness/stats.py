"""Seed statistics for claims and the leaderboard: a summary of values, and paired differences over seeds.

Every claim that compares methods over seeds uses these, so "mean", "spread" and "95% bound" mean the same thing
in every task: the sample standard deviation (ddof=1), and a two-sided t interval on the mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1), count, standard error and the two-sided t-based 95% interval of the mean.
    With one value the std, sem and interval are NaN (no spread can be estimated); with none everything is."""

    mean: float
    std: float
    n: int
    sem: float
    lower95: float
    upper95: float

    def to_dict(self) -> dict:
        return asdict(self)

    def one_sided(self, confidence: float = 0.95) -> tuple[float, float]:
        """(lower, upper) one-sided t bounds of the mean at ``confidence``: ``mean -/+ t_conf * sem``. With one
        value there is no spread to estimate and both bounds are the value itself (claims on a single run then
        read the point value); with none, NaN."""
        if self.n == 0:
            return math.nan, math.nan
        if self.n == 1:
            return self.mean, self.mean
        half = t_quantile(confidence, self.n - 1) * self.sem
        return self.mean - half, self.mean + half


def t_quantile(q: float, dof: int) -> float:
    """The ``q`` quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(q, dof))


def summarize(values: Iterable[float]) -> Summary:
    """Summary of ``values`` with NaNs (and None) dropped.

    >>> s = summarize([1.0, 2.0, 3.0])
    >>> round(s.mean, 3), round(s.std, 3), s.n, round(s.upper95, 3)
    (2.0, 1.0, 3, 4.484)
    """
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan, math.nan)
    std = float(v.std(ddof=1))
    sem = std / math.sqrt(n)
    half = t_quantile(0.975, n - 1) * sem
    return Summary(mean, std, n, sem, mean - half, mean + half)


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Summary:
    """Summary of ``a[s] - b[s]`` over the seeds ``s`` that both have a finite value for.

    >>> paired({0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.8, 1: 0.8, 3: 0.1}).n
    2
    """
    common = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    return summarize(float(a[s]) - float(b[s]) for s in common)


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))
