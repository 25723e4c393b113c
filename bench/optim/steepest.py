"""Steepest descent with respect to a chosen norm, as ``torch.optim`` optimizers.

For a gradient g and a norm ||.|| with dual norm ||.||_*, the steepest unit direction is
s = argmax_{||s|| <= 1} <g, s>, and the classical steepest-descent step (Boyd & Vandenberghe 9.4; Gunasekar et al.
2018, "Characterizing implicit bias in terms of optimization geometry") is

    delta = -lr * ||g||_* * s        (``scale="dual"``: argmin_v <g, v> + ||v||^2 / (2 lr))
    delta = -lr * s                  (``scale="unit"``: a step of length lr in the norm)

  norm   s                                   dual-scaled step                  name
  l2     g / ||g||_2                         -lr g                             gradient descent (GD)
  l1     sign(g_j) e_j, j = argmax_k |g_k|   -lr g_j e_j (one coordinate)      greedy coordinate descent (CD)
  linf   sign(g)                             -lr ||g||_1 sign(g)               sign descent (unit: signSGD)

The norm is taken over all parameters of a param group as one vector (so coordinate descent changes exactly one
entry of one parameter per group per step). With ``batched=True``, dim 0 of every parameter indexes independent
problems trained at once (a batch of models): norms and the coordinate choice are per row.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

NORMS = ("l2", "l1", "linf")
SCALES = ("dual", "unit")


def steepest_direction(grad: Tensor, norm: str, scale: str) -> Tensor:
    """The update direction (before ``-lr``) of each row of ``grad`` (problems, coordinates)."""
    if norm == "l2":
        if scale == "dual":
            return grad
        return grad / grad.norm(dim=1, keepdim=True).clamp_min(torch.finfo(grad.dtype).tiny)
    if norm == "l1":
        j = grad.abs().argmax(dim=1, keepdim=True)
        picked = grad.gather(1, j)
        return torch.zeros_like(grad).scatter_(1, j, picked if scale == "dual" else picked.sign())
    direction = grad.sign()
    return direction * grad.abs().sum(dim=1, keepdim=True) if scale == "dual" else direction


class SteepestDescent(torch.optim.Optimizer):
    """Steepest descent w.r.t. ``norm`` in {l2, l1, linf}; see the module docstring.

    Args:
        params: parameters or param groups.
        lr: step size.
        norm: ``l2`` (GD), ``l1`` (greedy coordinate descent) or ``linf`` (sign descent).
        scale: ``dual`` (classical steepest descent) or ``unit`` (normalised: length ``lr`` in the norm).
        batched: dim 0 of every parameter indexes independent problems (same size in every parameter).
    """

    def __init__(self, params: Iterable, lr: float, norm: str = "l2", scale: str = "dual", batched: bool = False) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, dict(lr=float(lr), norm=norm, scale=scale, batched=bool(batched)))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, norm, scale = group["lr"], group["norm"], group["scale"]
            if norm == "l2" and scale == "dual":  # plain GD: no need to gather the vector
                for p in params:
                    p.add_(p.grad, alpha=-lr)
                continue
            rows = params[0].shape[0] if group["batched"] else 1
            flat = [p.grad.reshape(rows, -1) for p in params]
            if norm == "l1" and len(params) == 1:  # coordinate descent on one tensor: touch only the chosen entries
                g = flat[0]
                j = g.abs().argmax(dim=1, keepdim=True)
                picked = g.gather(1, j)
                params[0].view(rows, -1).scatter_add_(1, j, (picked if scale == "dual" else picked.sign()).mul_(-lr))
                continue
            grad = flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)
            delta = steepest_direction(grad, norm, scale)
            for p, d in zip(params, delta.split([f.shape[1] for f in flat], dim=1)):
                p.add_(d.reshape(p.shape), alpha=-lr)
        return loss


class GD(SteepestDescent):
    """Gradient descent: steepest descent w.r.t. the l2 norm (``w -= lr * g``)."""

    def __init__(self, params: Iterable, lr: float, scale: str = "dual", batched: bool = False) -> None:
        super().__init__(params, lr, norm="l2", scale=scale, batched=batched)


class CoordinateDescent(SteepestDescent):
    """Greedy (Gauss-Southwell) coordinate descent: steepest descent w.r.t. the l1 norm. Each step changes only
    the coordinate with the largest |gradient| (``w_j -= lr * g_j``)."""

    def __init__(self, params: Iterable, lr: float, scale: str = "dual", batched: bool = False) -> None:
        super().__init__(params, lr, norm="l1", scale=scale, batched=batched)


class SignGD(SteepestDescent):
    """Sign gradient descent: steepest descent w.r.t. the l_inf norm. Default ``scale="unit"`` is signSGD
    (``w -= lr * sign(g)``); ``scale="dual"`` multiplies the step by ||g||_1."""

    def __init__(self, params: Iterable, lr: float, scale: str = "unit", batched: bool = False) -> None:
        super().__init__(params, lr, norm="linf", scale=scale, batched=batched)
