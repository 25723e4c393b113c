"""Linear generation chains, simulated for many repetitions at once (closed-form fits with torch.linalg).

Setting (TASKS.md section 6): x ~ N(0, Sigma) in R^d with Sigma diagonal (any Gaussian design is one up to a
rotation), y = x.w + noise. Generation 0 is the true w0; generation k draws T0 fresh inputs, labels them with
generation k-1 plus N(0, sigma0^2) noise and fits least squares (OLS when T0 >= d, the minimum-norm
interpolator when T0 < d). The downstream model fits ridge (X'X + lambda T I)^-1 X'y on T samples labelled by
generation n plus N(0, sigma^2) noise; its error is ||w_pred - w0||^2_Sigma.

Every function takes a leading repetition dimension and a ``torch.Generator``; the downstream fit of one
repetition shares its inputs and noise across generations and lambdas (common random numbers), so that
differences between generations or lambdas are measured with paired, much smaller, standard errors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.harness.errors import BenchError

SPECTRA = ("identity", "power_law")


def spectrum(d: int, kind: str = "identity", beta: float = 1.0) -> Tensor:
    """Eigenvalues of Sigma: all ones, or the power law lambda_j = j^-beta (j = 1..d)."""
    if kind == "identity":
        return torch.ones(d, dtype=torch.float64)
    if kind == "power_law":
        return torch.arange(1, d + 1, dtype=torch.float64) ** (-float(beta))
    raise BenchError(f"unknown spectrum {kind!r}; use one of {', '.join(SPECTRA)} (collapse.<study>.spectrum)")


def gaussian_inputs(reps: int, m: int, eigs: Tensor, generator: torch.Generator) -> Tensor:
    """(reps, m, d) inputs with rows ~ N(0, diag(eigs))."""
    z = torch.randn(reps, m, len(eigs), dtype=eigs.dtype, generator=generator)
    return z * eigs.sqrt()


def least_squares(x: Tensor, y: Tensor) -> Tensor:
    """Batched least squares in closed form: OLS (X'X)^-1 X'y when there are at least as many samples as
    dimensions, the minimum-norm interpolator X'(XX')^-1 y otherwise (float64 keeps both accurate down to
    T0 = d + 2; LAPACK's SVD-based lstsq gives the same numbers several times slower)."""
    m, d = x.shape[-2:]
    xt = x.transpose(-1, -2)
    if m >= d:
        return torch.linalg.solve(xt @ x, (xt @ y.unsqueeze(-1))).squeeze(-1)
    return (xt @ torch.linalg.solve(x @ xt, y.unsqueeze(-1))).squeeze(-1)


def generation_chain(
    w0: Tensor, eigs: Tensor, T0: int, generations: int, sigma0: float, reps: int, generator: torch.Generator
) -> Tensor:
    """(reps, generations + 1, d): w_hat_0 = w0, w_hat_k = least squares on T0 inputs labelled by w_hat_{k-1}."""
    w = w0.to(eigs.dtype).expand(reps, -1).clone()
    out = [w]
    for _ in range(generations):
        x = gaussian_inputs(reps, T0, eigs, generator)
        y = (x @ w.unsqueeze(-1)).squeeze(-1) + sigma0 * torch.randn(reps, T0, dtype=eigs.dtype, generator=generator)
        w = least_squares(x, y)
        out.append(w)
    return torch.stack(out, dim=1)


def ridge_errors(
    chain: Tensor, w0: Tensor, eigs: Tensor, T: int, sigma: float, lambdas: Tensor, generator: torch.Generator
) -> Tensor:
    """Downstream ridge on T fresh samples (inputs and noise shared by every generation and lambda) labelled by
    each generation of ``chain`` (reps, G, d); see :func:`ridge_errors_on`. Returns (reps, G, L)."""
    x = gaussian_inputs(chain.shape[0], T, eigs, generator)
    eps = sigma * torch.randn(chain.shape[0], T, dtype=eigs.dtype, generator=generator)
    return ridge_errors_on(x, eps, chain, w0, eigs, lambdas)


def ridge_errors_on(x: Tensor, eps: Tensor, chain: Tensor, w0: Tensor, eigs: Tensor, lambdas: Tensor) -> Tensor:
    """Errors ||w_pred - w0||^2_Sigma of ridge (X'X + lambda T I)^-1 X'y with y = X w_hat_n + eps, for inputs
    ``x`` (reps, T, d), noise ``eps`` (reps, T), every generation of ``chain`` (reps, G, d) and every lambda:
    ``lambdas`` (L,) shared by the generations or (G, L) one row per generation (lambda = 0 is the minimum-norm
    least-squares fit). One eigendecomposition of X'X / T per repetition serves every generation and lambda:
    the fit only needs X'X and X'y = X'X w_hat_n + X'eps."""
    reps, G, d = chain.shape
    T = x.shape[1]
    lambdas = lambdas.to(eigs.dtype)
    lam = lambdas.expand(G, -1) if lambdas.dim() == 1 else lambdas
    if lam.shape[0] != G:
        raise ValueError(f"lambdas has {lam.shape[0]} rows for {G} generations")
    gram = x.transpose(1, 2) @ x / T  # (reps, d, d)
    s, v = torch.linalg.eigh(gram)
    b = gram @ chain.transpose(1, 2) + (x.transpose(1, 2) @ eps.unsqueeze(-1)) / T  # X'y / T: (reps, d, G)
    c = v.transpose(1, 2) @ b  # eigenbasis: (reps, d, G)
    denom = s[:, :, None, None] + lam[None, None]  # (reps, d, G, L)
    # lambda = 0 on a rank-deficient X: the pseudo-inverse (zero on the null space) gives the min-norm fit
    tol = s.max(dim=1, keepdim=True).values[:, :, None, None] * d * torch.finfo(s.dtype).eps
    inv = torch.where(denom > tol, 1.0 / denom.clamp_min(tol), torch.zeros((), dtype=s.dtype))
    coef = inv * c[:, :, :, None]  # (reps, d, G, L)
    w = torch.einsum("rij,rjgl->rigl", v, coef)  # back to the input basis
    diff = w - w0.to(eigs.dtype)[None, :, None, None]
    return torch.einsum("i,rigl->rgl", eigs, diff * diff)


def in_chunks(total: int, chunk: int):
    """Sizes of consecutive chunks of ``total`` repetitions (bounded memory, same draws for any machine)."""
    for start in range(0, total, chunk):
        yield min(chunk, total - start)
