"""The largest margin a training set allows, gamma = max over ||w||_q <= 1 of min_i y_i <w, x_i>, by linear
programming (scipy's HiGHS) for q in {1, inf} and the hard-margin SVM for q = 2.

With q the dual exponent of the threat p, gamma is the largest radius eps at which the training set is still
robustly separable (y<w, x> - eps ||w||_q > 0 for all i): for an l_inf threat this is gamma_inf (q = 1).
Every solver returns (gamma, w) with gamma recomputed from w (min_i y_i <w, x_i> / ||w||_q), so the number reported
is always attained by the returned w. gamma <= 0 means the data are not linearly separable.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog, minimize

from bench.harness.errors import BenchError


def attained_margin(w: np.ndarray, x: np.ndarray, y: np.ndarray, q: float) -> float:
    """min_i y_i <w, x_i> / ||w||_q (0 for w = 0)."""
    n = np.linalg.norm(w, ord=q)
    return float((y * (x @ w)).min() / n) if n > 0 else 0.0


def lp_margin(x: np.ndarray, y: np.ndarray, q: float) -> tuple[float, np.ndarray]:
    """(t, w): the LP max t s.t. t <= y_i <w, x_i> for all i, ||w||_q <= 1 (q = 1 or inf), in (w+, w-, t)."""
    m, d = x.shape
    z = y[:, None] * x
    cost = np.zeros(2 * d + 1)
    cost[-1] = -1.0  # maximise t
    a_ub = [np.hstack([-z, z, np.ones((m, 1))])]  # t <= y_i <w, x_i>
    b_ub = [np.zeros(m)]
    if q == 1:  # sum(w+ + w-) <= 1
        a_ub.append(np.r_[np.ones(2 * d), 0.0][None, :])
        b_ub.append(np.ones(1))
        bounds = [(0, None)] * (2 * d) + [(None, None)]
    else:  # |w_j| <= 1: w+ and w- in [0, 1] (at an optimum one of them is 0)
        bounds = [(0, 1)] * (2 * d) + [(None, None)]
    res = linprog(cost, A_ub=np.vstack(a_ub), b_ub=np.concatenate(b_ub), bounds=bounds, method="highs")
    if res.status != 0:
        raise BenchError(f"the margin linear program failed: {res.message}")
    return float(res.x[-1]), res.x[:d] - res.x[d : 2 * d]


def _svm_margin(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hard-margin SVM through its dual, min_{a >= 0} 0.5 ||Z' a||^2 - sum(a) (Z = y x), w = Z' a."""
    z = y[:, None] * x

    def objective(a: np.ndarray):
        w = z.T @ a
        return 0.5 * w @ w - a.sum(), z @ w - 1.0

    a0 = np.full(len(y), 1e-3)
    res = minimize(
        objective,
        a0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0, None)] * len(y),
        options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10},
    )
    return z.T @ res.x


def max_margin(x, y, q: float) -> tuple[float, np.ndarray]:
    """(gamma, w): gamma = max_{||w||_q <= 1} min_i y_i <w, x_i> for inputs x (m, d) and signs y (m,) in {-1, 1}."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if q not in (1.0, 2.0, math.inf):
        raise BenchError(f"max_margin supports q in {{1, 2, inf}}, got {q}")
    _, w = lp_margin(x, y, 1.0 if q == 2.0 else q)
    if q == 2.0 and attained_margin(w, x, y, 1.0) > 0:  # separable: the l2 solution exists
        w = _svm_margin(x, y)
    w = w / max(np.linalg.norm(w, ord=q), np.finfo(float).tiny) if np.any(w) else w
    return attained_margin(w, x, y, q), w
