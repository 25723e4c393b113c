"""Kernels and the batched kernel ridge fit (alpha = (K + lambda T I)^-1 Y, the same lambda T convention as the
linear ridge fit, so lambda means the same thing in both)."""

from __future__ import annotations

import torch
from torch import Tensor

from bench.harness.errors import BenchError

KERNELS = ("rbf", "laplacian")


def kernel_matrix(kind: str, a: Tensor, b: Tensor, lengthscale: float) -> Tensor:
    """k(a_i, b_j): ``rbf`` exp(-|a - b|^2 / (2 l^2)); ``laplacian`` exp(-|a - b| / l) (a rougher kernel whose
    spectrum decays polynomially, against the RBF's exponential decay)."""
    dist = torch.cdist(a, b)
    if kind == "rbf":
        return torch.exp(-dist.square() / (2.0 * lengthscale**2))
    if kind == "laplacian":
        return torch.exp(-dist / lengthscale)
    raise BenchError(f"unknown kernel {kind!r}; use one of {', '.join(KERNELS)} (collapse.kernel.kernels)")


def median_distance(x: Tensor) -> float:
    """The median heuristic for the length scale: median pairwise distance between distinct points."""
    dist = torch.cdist(x, x)
    iu = torch.triu_indices(len(x), len(x), offset=1)
    return float(dist[iu[0], iu[1]].median())


def kernel_ridge_fit(gram: Tensor, targets: Tensor, lam: float) -> Tensor:
    """Batched kernel ridge: solves (K + lambda T I) alpha = Y for gram (..., T, T), targets (..., T, C)."""
    T = gram.shape[-1]
    eye = torch.eye(T, dtype=gram.dtype, device=gram.device)
    chol = torch.linalg.cholesky(gram + lam * T * eye)
    return torch.cholesky_solve(targets, chol)
