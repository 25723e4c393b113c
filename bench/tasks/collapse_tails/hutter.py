"""The memorising ("Hutter") model: it answers correctly on every item it saw in training and errs elsewhere.

Trained on T i.i.d. samples of a training distribution q and tested on the clean law p, its expected test error
is exactly E_test(T) = sum_i p_i (1 - q_i)^T (:func:`expected_error`); :func:`monte_carlo_error` draws the
training sets instead. Theory (Dohmatob et al., arXiv:2402.07043): clean data scale as T^-(1 - 1/beta); a
tail cut at k leaves a plateau ~ k^-(beta - 1); a clean fraction pi leaves the plateau at T ~ k^beta / pi.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special, stats
from torch import Tensor

from bench.tasks.collapse_tails.zipf import DTYPE, TrainingDistribution, Zipf


# -- exact expected error ---------------------------------------------------------------------------------------
def _keep_pow(log_keep: Tensor, T: Tensor) -> Tensor:
    """(1 - q)^T for every T (rows) and item (columns), from log(1 - q)."""
    return torch.exp(T[:, None] * log_keep[None, :])


def _tail_error(zipf: Zipf, clean_weight: float, T: Tensor) -> Tensor:
    """sum over items beyond the head of p_i (1 - a p_i)^T, a = clean_weight, via the tail density:
    int c x^-b exp(-r x^-b) dx = (c / b) r^(1/b - 1) Gamma(1 - 1/b) [P(1 - 1/b, r x^-b)] over the tail, r = T a c
    (P the regularised lower incomplete gamma). (1 - a p)^T = exp(-T a p) up to T p^2 ~ 1e-7 at T = 1e9."""
    if zipf.tail_mass <= 0:
        return torch.zeros_like(T)
    if clean_weight == 0:
        return torch.full_like(T, zipf.tail_mass)
    b, shape = zipf.beta, 1.0 - 1.0 / zipf.beta
    r = T.numpy() * clean_weight * zipf.c
    hi = special.gammainc(shape, r * zipf.lower**-b)
    lo = 0.0 if math.isinf(zipf.upper) else special.gammainc(shape, r * zipf.upper**-b)
    out = zipf.c / b * r ** (1.0 / b - 1.0) * special.gamma(shape) * (hi - lo)
    return torch.as_tensor(out, dtype=DTYPE)


def expected_error(zipf: Zipf, q: TrainingDistribution, T: Tensor) -> Tensor:
    """E_test(T) = sum_i p_i (1 - q_i)^T, exact on the head and on the sparse items, analytic on the tail."""
    T = torch.as_tensor(T, dtype=DTYPE)
    a = float(q.clean_weight)
    if a == 0:  # purely synthetic: only its support is ever learnt, the rest of p is the floor
        p = zipf.prob(q.items)
        return floor(zipf, q) + (_keep_pow(torch.log1p(-q.probs.clamp(max=1.0)), T) * p).sum(1)
    in_head = q.items <= zipf.head
    synthetic_head = torch.zeros(zipf.head, dtype=DTYPE).index_add_(0, q.items[in_head] - 1, q.probs[in_head])
    p = zipf.head_probs
    log_keep = torch.log1p(-(a * p + synthetic_head).clamp(max=1.0))
    error = (_keep_pow(log_keep, T) * p).sum(1) + _tail_error(zipf, a, T)
    if (~in_head).any():  # synthetic items beyond the head: replace their share of the analytic tail
        items, s = q.items[~in_head], q.probs[~in_head]
        pt = zipf.prob(items)
        with_s = _keep_pow(torch.log1p(-(a * pt + s).clamp(max=1.0)), T)
        without = _keep_pow(torch.log1p(-a * pt), T)
        error = error + ((with_s - without) * pt).sum(1)
    return error


def floor(zipf: Zipf, q: TrainingDistribution) -> float:
    """E_test(T -> infinity): the clean mass q never shows (0 when q has a clean part)."""
    if q.clean_weight > 0:
        return 0.0
    return 1.0 - float(zipf.prob(q.items[q.probs > 0]).sum())


def expected_missed_items(q: TrainingDistribution, T: Tensor) -> Tensor:
    """Expected number of items of q's support that T samples miss: sum_i (1 - q_i)^T (infinite when q has a
    clean part: the Zipf law has infinitely many items)."""
    T = torch.as_tensor(T, dtype=DTYPE)
    if q.clean_weight > 0:
        return torch.full_like(T, math.inf)
    return _keep_pow(torch.log1p(-q.probs.clamp(max=1.0)), T).sum(1)


# -- Monte Carlo ------------------------------------------------------------------------------------------------
def unseen_mass(zipf: Zipf, stream: Tensor, T: Tensor) -> Tensor:
    """Test error of the model that memorised the first T items of ``stream``, for every T: the p-mass of items
    not among them."""
    items, inverse = torch.unique(stream, return_inverse=True)
    first = torch.full((len(items),), len(stream), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(stream)), reduce="amin")
    order = torch.argsort(first)
    seen_mass = torch.cumsum(zipf.prob(items[order]), 0)
    n_seen = torch.searchsorted(first[order], torch.as_tensor(T, dtype=torch.long))  # first occurrence < T
    seen = torch.where(n_seen > 0, seen_mass[(n_seen - 1).clamp(min=0)], torch.zeros((), dtype=DTYPE))
    return 1.0 - seen


def monte_carlo_error(zipf: Zipf, q: TrainingDistribution, T: Tensor, reps: int, generator: torch.Generator) -> Tensor:
    """(reps, len(T)) test errors of memorising models trained on sampled training sets. Within a repetition
    the training sets are nested (prefixes of one stream); each is an i.i.d. sample of its size."""
    T = torch.as_tensor(T, dtype=torch.long)
    return torch.stack([unseen_mass(zipf, zipf.sample(q, int(T.max()), generator), T) for _ in range(reps)])


# -- theory -----------------------------------------------------------------------------------------------------
def clean_slope(beta: float) -> float:
    return -(1.0 - 1.0 / beta)


def clean_theory(zipf: Zipf, T: Tensor | np.ndarray) -> np.ndarray:
    """Large-T law of the clean error: Gamma(1 - 1/beta) c^(1/beta) T^-(1 - 1/beta) / beta (the sum as an
    integral over items, int_0^inf c x^-beta exp(-T c x^-beta) dx)."""
    b = zipf.beta
    return special.gamma(1 - 1 / b) * zipf.c ** (1 / b) * np.asarray(T, dtype=float) ** clean_slope(b) / b


def cut_plateau_theory(zipf: Zipf, k: int | np.ndarray) -> np.ndarray:
    """Plateau of a top-k cut: the tail mass sum_{i > k} p_i ~ c k^-(beta - 1) / (beta - 1)."""
    return zipf.c * np.asarray(k, dtype=float) ** (1 - zipf.beta) / (zipf.beta - 1)


def mixing_scale(zipf: Zipf, k: int, pi: float) -> float:
    """k^beta / (c pi): the T at which the clean fraction pi has shown the first cut item about once."""
    return k**zipf.beta / (zipf.c * pi)


# -- measurements on curves -------------------------------------------------------------------------------------
def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (NaN with fewer than two points)."""
    if len(x) < 2:
        return math.nan
    return float(stats.linregress(np.log(np.asarray(x, float)), np.log(np.asarray(y, float))).slope)


def first_crossing(T, error, level: float) -> float:
    """The first T at which ``error`` falls to ``level`` (log-log interpolation between grid points; NaN if
    it never does)."""
    T, error = np.asarray(T, float), np.asarray(error, float)
    below = np.nonzero(error <= level)[0]
    if len(below) == 0:
        return math.nan
    j = int(below[0])
    if j == 0:
        return float(T[0])
    lx, ly = np.log(T[j - 1 : j + 1]), np.log(error[j - 1 : j + 1])
    frac = (math.log(level) - ly[0]) / (ly[1] - ly[0])
    return float(math.exp(lx[0] + frac * (lx[1] - lx[0])))


def log_grid(t_min: float, t_max: float, per_decade: int) -> Tensor:
    """Integer sizes, log-spaced from t_min to t_max, ``per_decade`` per decade, distinct."""
    n = int(round(math.log10(t_max / t_min) * per_decade)) + 1
    return torch.unique(torch.round(torch.logspace(math.log10(t_min), math.log10(t_max), n, dtype=DTYPE)).long())
