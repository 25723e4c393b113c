"""Claim (d) in closed form: two 1-D Gaussian classes N(mu_k, sigma_k^2), k = 0, 1 (mu_0 < mu_1), priors phi_k, and
the threshold classifier "class 1 iff x > t".

Average risk R(t) = phi_0 (1 - Phi((t - mu_0) / sigma_0)) + phi_1 Phi((t - mu_1) / sigma_1). Its stationary points
solve phi_0 pdf((t - mu_0)/sigma_0) / sigma_0 = phi_1 pdf((t - mu_1)/sigma_1) / sigma_1, a quadratic in t; the
optimum is the best of its real roots and t = +-inf (predict one class everywhere). With phi_0 / phi_1 =
sigma_0 / sigma_1 the equation reads |z_0| = |z_1| (z_k = (t - mu_k) / sigma_k), so t* = (mu_0 sigma_1 + mu_1
sigma_0) / (sigma_0 + sigma_1) and both class errors equal Phi(-(mu_1 - mu_0) / (sigma_0 + sigma_1)): the class of
larger variance needs the larger prior (more data) for the average-risk optimum to treat both classes alike, which
is what DRoP's quotas (more data for the classes the model gets wrong) move towards.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm


def average_risk(t: float, mu, sigma, phi) -> float:
    e0, e1 = class_errors(t, mu, sigma)
    return phi[0] * e0 + phi[1] * e1


def class_errors(t: float, mu, sigma) -> tuple[float, float]:
    """(P(x > t | class 0), P(x <= t | class 1))."""
    return float(norm.sf((t - mu[0]) / sigma[0])), float(norm.cdf((t - mu[1]) / sigma[1]))


def optimal_threshold(mu, sigma, phi) -> float:
    """The average-risk-optimal threshold in closed form (roots of the quadratic stationarity condition)."""
    m0, m1 = float(mu[0]), float(mu[1])
    s0, s1 = float(sigma[0]), float(sigma[1])
    if not m0 < m1:
        raise ValueError(f"need mu_0 < mu_1, got {mu}")
    log_ratio = math.log(phi[0] / s0) - math.log(phi[1] / s1)
    a = 1.0 / (2 * s1**2) - 1.0 / (2 * s0**2)
    b = m0 / s0**2 - m1 / s1**2
    c = m1**2 / (2 * s1**2) - m0**2 / (2 * s0**2) + log_ratio
    if abs(a) < 1e-15:
        roots = [-c / b]
    else:
        disc = b * b - 4 * a * c
        roots = [] if disc < 0 else [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1.0, -1.0)]
    candidates = roots + [-math.inf, math.inf]
    return min(candidates, key=lambda t: average_risk(t, mu, sigma, phi))


def errors_at_ratio(ratio: float, mu, sigma) -> tuple[float, float, float]:
    """(t*, error of class 0, error of class 1) for priors with phi_0 / phi_1 = ``ratio``."""
    phi = (ratio / (1 + ratio), 1 / (1 + ratio))
    t = optimal_threshold(mu, sigma, phi)
    return (t, *class_errors(t, mu, sigma))


def numeric_threshold(mu, sigma, phi) -> float:
    """Brute-force check of :func:`optimal_threshold`: the risk minimised over a fine grid, then refined."""
    from scipy.optimize import minimize_scalar

    lo, hi = mu[0] - 8 * max(sigma), mu[1] + 8 * max(sigma)
    grid = np.linspace(lo, hi, 20001)
    risks = phi[0] * norm.sf((grid - mu[0]) / sigma[0]) + phi[1] * norm.cdf((grid - mu[1]) / sigma[1])
    i = int(np.argmin(risks))
    bounds = (grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)])
    res = minimize_scalar(
        lambda t: average_risk(t, mu, sigma, phi), bounds=bounds, method="bounded", options={"xatol": 1e-10}
    )
    return float(res.x)


def theory_metrics(mu, sigma) -> dict[str, float]:
    """The numbers claim (d) checks, for the record (``theory/...``)."""
    r = float(sigma[0]) / float(sigma[1])
    t, e0, e1 = errors_at_ratio(r, mu, sigma)
    _, lo0, lo1 = errors_at_ratio(r / 2, mu, sigma)
    _, hi0, hi1 = errors_at_ratio(r * 2, mu, sigma)
    _, eq0, eq1 = errors_at_ratio(1.0, mu, sigma)
    phi = (r / (1 + r), 1 / (1 + r))
    closed = (float(mu[0]) * sigma[1] + float(mu[1]) * sigma[0]) / (sigma[0] + sigma[1])
    return {
        "theory/sigma_ratio": r,
        "theory/threshold": t,
        "theory/threshold_formula_gap": abs(t - closed),
        "theory/threshold_numeric_gap": abs(t - numeric_threshold(mu, sigma, phi)),
        "theory/error_class0": e0,
        "theory/error_class1": e1,
        "theory/error_gap": e0 - e1,
        "theory/error_gap_half_ratio": lo0 - lo1,
        "theory/error_gap_double_ratio": hi0 - hi1,
        "theory/error_gap_equal_priors": eq0 - eq1,
    }
