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

Stable steps for any dimension and seed (``line_search=True``): a fixed ``lr`` diverges once the loss's curvature
along the chosen direction exceeds 2 / lr (the exponential loss's curvature grows with the data's dimension and
scale, e.g. coordinate descent at lr 1 on d = 128). With ``line_search`` each step starts at ``lr`` and halves it
until the Armijo condition holds, L(w - t d) <= L(w) - c t <g, d> (c = ``armijo``, d the direction above), so the
loss never increases: ``step(closure)`` with a closure that returns the loss at the current parameters (one
value per problem when ``batched``; it may also recompute the gradients, which are read before the trials).

The norm is taken over all parameters of a param group as one vector (so coordinate descent changes exactly one
entry of one parameter per group per step). With ``batched=True``, dim 0 of every parameter indexes independent
problems trained at once (a batch of models): norms and the coordinate choice are per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
        line_search: backtracking (Armijo) from ``lr`` at every step; needs ``step(closure)``.
        armijo: the sufficient-decrease fraction c of the line search, in (0, 1).
        max_halvings: at most this many halvings of the step (then the smallest step is taken).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        norm: str = "l2",
        scale: str = "dual",
        batched: bool = False,
        line_search: bool = False,
        armijo: float = 0.5,
        max_halvings: int = 40,
    ) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 < armijo < 1:
            raise ValueError(f"armijo must lie in (0, 1), got {armijo}")
        super().__init__(
            params,
            dict(
                lr=float(lr),
                norm=norm,
                scale=scale,
                batched=bool(batched),
                line_search=bool(line_search),
                armijo=float(armijo),
                max_halvings=int(max_halvings),
            ),
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        if any(g["line_search"] for g in self.param_groups):
            if closure is None:
                raise ValueError(
                    "line_search=True needs step(closure): a closure returning the loss at the current parameters"
                )
            return self._line_search_step(closure)
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

    def _directions(self, group: dict) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(params, per-parameter directions d, <g, d> per row) of a group."""
        params = [p for p in group["params"] if p.grad is not None]
        rows = params[0].shape[0] if group["batched"] else 1
        flat = [p.grad.reshape(rows, -1) for p in params]
        grad = flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)
        delta = steepest_direction(grad, group["norm"], group["scale"])
        decrease = (grad * delta).sum(dim=1)
        parts = [d.reshape(p.shape) for p, d in zip(params, delta.split([f.shape[1] for f in flat], dim=1))]
        return params, parts, decrease

    def _line_search_step(self, closure: Callable[[], Tensor]) -> Tensor:
        """One backtracking step per group (per row when batched): t = lr, lr/2, ... until Armijo holds."""
        with torch.enable_grad():
            loss0 = closure().detach()
        for group in self.param_groups:
            if not any(p.grad is not None for p in group["params"]):
                continue
            params, parts, decrease = self._directions(group)
            start = [p.detach().clone() for p in params]
            t = torch.full_like(decrease, group["lr"])
            base = loss0.reshape(-1).to(t).expand_as(t) if loss0.numel() in (1, len(t)) else None
            if base is None:
                raise ValueError(f"the closure returned {loss0.numel()} losses for {len(t)} problems")
            for halving in range(group["max_halvings"] + 1):
                for p, p0, d in zip(params, start, parts):
                    p.copy_(p0 - _per_row(t, d) * d)
                with torch.enable_grad():
                    trial = closure().detach().reshape(-1).to(t).expand_as(t)
                ok = torch.isfinite(trial) & (trial <= base - group["armijo"] * t * decrease)
                if bool(ok.all()) or halving == group["max_halvings"]:
                    break
                t = torch.where(ok, t, t / 2)
        return loss0


def _per_row(t: Tensor, like: Tensor) -> Tensor:
    """A per-row step size broadcast over a parameter whose dim 0 is the row (a scalar when there is one row)."""
    return t.reshape(-1, *([1] * (like.ndim - 1))) if t.numel() > 1 else t.reshape(())


class GD(SteepestDescent):
    """Gradient descent: steepest descent w.r.t. the l2 norm (``w -= lr * g``)."""

    def __init__(self, params: Iterable, lr: float, scale: str = "dual", batched: bool = False, **line_search) -> None:
        super().__init__(params, lr, norm="l2", scale=scale, batched=batched, **line_search)


class CoordinateDescent(SteepestDescent):
    """Greedy (Gauss-Southwell) coordinate descent: steepest descent w.r.t. the l1 norm. Each step changes only
    the coordinate with the largest |gradient| (``w_j -= lr * g_j``)."""

    def __init__(self, params: Iterable, lr: float, scale: str = "dual", batched: bool = False, **line_search) -> None:
        super().__init__(params, lr, norm="l1", scale=scale, batched=batched, **line_search)


class SignGD(SteepestDescent):
    """Sign gradient descent: steepest descent w.r.t. the l_inf norm. Default ``scale="unit"`` is signSGD
    (``w -= lr * sign(g)``); ``scale="dual"`` multiplies the step by ||g||_1."""

    def __init__(self, params: Iterable, lr: float, scale: str = "unit", batched: bool = False, **line_search) -> None:
        super().__init__(params, lr, norm="linf", scale=scale, batched=batched, **line_search)
