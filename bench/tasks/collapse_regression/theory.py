"""Closed-form test errors of the linear generation chain (Dohmatob, Feng & Kempe, arXiv:2402.07712).

Exact (finite sample, Gaussian inputs):
  * ridgeless, T, T0 >= d + 2:  E_test = sigma^2 d / (T - d - 1) + n sigma0^2 d / (T0 - d - 1)
    (E[(X'X)^-1] = Sigma^-1 / (T - d - 1) for a Gaussian design, for every Sigma);
  * noise-free chain of minimum-norm fits with T0 < d, Sigma = I:  E||w_n - w0||^2 = ||w0||^2 (1 - (T0/d)^n)
    (each fit projects onto a uniformly random T0-dimensional subspace).

Ridge (deterministic equivalents, exact as d, T -> infinity at fixed ratios, a few % off at d ~ 50):
the downstream fit is w = (S + lambda)^-1 (S w_hat_n + X'eps/T), S = X'X/T, and w_hat_n = w0 + delta with
E[delta delta'] = n sigma0^2 Sigma^-1 / (T0 - d - 1) (the chain is OLS). With kappa the effective
regularisation, kappa - lambda = (kappa / T) df1(kappa), df_k = tr(Sigma^k (Sigma + kappa)^-k):
  bias     = kappa^2 w0' Sigma (Sigma + kappa)^-2 w0 / (1 - df2/T)
  variance = sigma^2 df2 / (T - df2)
  collapse = n sigma0^2 / (T0 - d - 1) * [df2 + kappa^2 tr((Sigma + kappa)^-2) (df2/T) / (1 - df2/T)]
The collapse term uses tr(Sigma A S Sigma^-1 S A) = d - 2 lambda tr A + lambda^2 tr(Sigma A Sigma^-1 A) with
A = (S + lambda)^-1 and the usual equivalents lambda A ~ kappa (Sigma + kappa)^-1, lambda^2 A Sigma A ~
kappa^2 (Sigma + kappa)^-1 Sigma (Sigma + kappa)^-1 / (1 - df2/T). At lambda = 0 it is exactly n sigma0^2 d /
(T0 - d - 1); it decreases in lambda, which is why the best lambda grows with n.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq


def ridgeless_error(d: int, T: int, T0: int, n: int | np.ndarray, sigma: float, sigma0: float):
    """Exact expected ridgeless (OLS) test error after ``n`` generations; needs T, T0 >= d + 2."""
    if min(T, T0) < d + 2:
        raise ValueError(f"the ridgeless formula needs T, T0 >= d + 2, got d={d}, T={T}, T0={T0}")
    return sigma**2 * d / (T - d - 1) + np.asarray(n) * sigma0**2 * d / (T0 - d - 1)


def overparam_noise_free_error(w0_sq_norm: float, d: int, T0: int, n: int | np.ndarray):
    """Exact E||w_n - w0||^2 for noise-free minimum-norm fits on T0 < d isotropic Gaussian inputs."""
    return w0_sq_norm * (1.0 - (T0 / d) ** np.asarray(n, dtype=float))


def effective_regularisation(eigs: np.ndarray, lam: float, T: int) -> float:
    """kappa with kappa - lam = (kappa / T) sum_j e_j / (e_j + kappa) (lam = 0, T > d gives kappa = 0)."""
    eigs = np.asarray(eigs, dtype=float)

    def f(k: float) -> float:
        return k - lam - k * np.sum(eigs / (eigs + k)) / T

    if lam <= 0:
        if T >= len(eigs):
            return 0.0
        # min-norm interpolation with T < d: df1(kappa) = T, root below 2 tr(Sigma) / T since df1 <= tr / kappa
        return brentq(lambda k: np.sum(eigs / (eigs + k)) - T, 1e-300, 2 * eigs.sum() / T, xtol=1e-300, rtol=1e-13)
    return brentq(f, lam, lam + eigs.sum() / T, xtol=1e-300, rtol=1e-13)


def ridge_error(
    eigs: np.ndarray, w0: np.ndarray, lam: float, T: int, T0: int, n: int, sigma: float, sigma0: float
) -> dict[str, float]:
    """Deterministic-equivalent test error of ridge after ``n`` generations of OLS chain (T0 >= d + 2)."""
    eigs, w0 = np.asarray(eigs, dtype=float), np.asarray(w0, dtype=float)
    d = len(eigs)
    k = effective_regularisation(eigs, lam, T)
    df2 = float(np.sum(eigs**2 / (eigs + k) ** 2))
    if df2 >= T:  # interpolation threshold (lambda = 0, T = d): the variance diverges
        return {
            "bias": np.inf,
            "variance": np.inf,
            "collapse": np.inf,
            "per_generation": np.inf,
            "total": np.inf,
            "kappa": k,
        }
    amplification = 1.0 / (1.0 - df2 / T)
    bias = k**2 * float(np.sum(eigs * w0**2 / (eigs + k) ** 2)) * amplification
    variance = sigma**2 * df2 / (T - df2)
    per_generation = (
        sigma0**2 / (T0 - d - 1) * (df2 + k**2 * float(np.sum(1.0 / (eigs + k) ** 2)) * (df2 / T) * amplification)
    )
    collapse = n * per_generation
    return {
        "bias": bias,
        "variance": variance,
        "collapse": collapse,
        "per_generation": per_generation,
        "total": bias + variance + collapse,
        "kappa": k,
    }


def optimal_lambda(
    eigs: np.ndarray, w0: np.ndarray, T: int, T0: int, n: int, sigma: float, sigma0: float, grid: np.ndarray
) -> float:
    """The adaptive regularisation: the lambda of ``grid`` that minimises the closed-form error for this
    (T, n). It depends on T and n only through the formula (the paper's mitigation)."""
    errs = [ridge_error(eigs, w0, float(lam), T, T0, n, sigma, sigma0)["total"] for lam in grid]
    return float(grid[int(np.argmin(errs))])
