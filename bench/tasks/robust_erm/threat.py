"""The exact worst case of a norm-ball perturbation against a linear model.

For ||delta||_p <= eps:  min_delta y <w, x + delta> = y <w, x> - eps ||w||_q  with 1/p + 1/q = 1 (Hoelder, tight),
attained at delta* = -eps y s, where s is a unit-p-norm vector with <w, s> = ||w||_q:
  p = inf (q = 1): s = sign(w);  p = 2 (q = 2): s = w / ||w||_2;  p = 1 (q = inf): s = sign(w_j) e_j, j = argmax |w_j|.
Labels here are signs y in {-1, +1}.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.harness.errors import BenchError

THREATS = {"inf": math.inf, "2": 2.0, "1": 1.0}


def parse_p(p) -> float:
    """The threat exponent p in {1, 2, inf} from a config value (``inf``, ``2``, 2.0, ...)."""
    key = str(p).strip().lower().replace(".0", "")
    if key in ("infinity", "linf", "l_inf"):
        key = "inf"
    if key not in THREATS:
        raise BenchError(f"threat.p must be one of 1, 2, inf (an l_p ball), got {p!r}")
    return THREATS[key]


def dual_exponent(p: float) -> float:
    """q with 1/p + 1/q = 1."""
    return {math.inf: 1.0, 2.0: 2.0, 1.0: math.inf}[p]


def dual_norm(w: Tensor, p: float) -> Tensor:
    """||w||_q along the last dimension."""
    return torch.linalg.vector_norm(w, ord=dual_exponent(p), dim=-1)


def robust_margin(w: Tensor, x: Tensor, y: Tensor, eps: float | Tensor, p: float) -> Tensor:
    """y_i <w, x_i> - eps ||w||_q for weight rows w (problems, d) or (d,), inputs x (n, d), signs y (n,):
    shape (n, problems) or (n,)."""
    scores = x @ w.T if w.dim() == 2 else x @ w
    yy = y[:, None] if w.dim() == 2 else y
    return yy * scores - torch.as_tensor(eps, dtype=x.dtype) * dual_norm(w, p)


def worst_case_perturbation(w: Tensor, y: Tensor, eps: float, p: float) -> Tensor:
    """delta* (n, d) for one weight vector w (d,) and signs y (n,)."""
    if p == math.inf:
        s = torch.sign(w)
    elif p == 2.0:
        s = w / torch.linalg.vector_norm(w).clamp_min(torch.finfo(w.dtype).tiny)
    else:
        j = int(w.abs().argmax())
        s = torch.zeros_like(w)
        s[j] = torch.sign(w[j])
    return -eps * y[:, None] * s[None, :]
