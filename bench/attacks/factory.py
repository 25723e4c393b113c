"""Build a torchattacks attack from config, and the random-noise baseline of the same radius.

Config keys (``conf/attack/*.yaml``): ``name`` (one of :data:`ATTACKS`), ``eps`` (a list of radii),
``steps``, ``step_size`` (step as a fraction of eps), ``random_start``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from bench.harness.errors import BenchError

ATTACKS = ("none", "fgsm", "pgd_linf", "pgd_l2", "autoattack")
ITERATIVE = ("pgd_linf", "pgd_l2")
NORM = {"fgsm": "linf", "pgd_linf": "linf", "pgd_l2": "l2", "autoattack": "linf"}


def attack_norm(cfg: Mapping[str, Any]) -> str:
    return cfg.get("norm") or NORM[cfg["name"]]


def build_attack(cfg: Mapping[str, Any], model: nn.Module, eps: float, steps: int | None = None, num_classes: int = 10, seed: int = 0):
    """A torchattacks attack on ``model`` (built where the model lives) at radius ``eps``."""
    import torchattacks

    name = cfg["name"]
    steps = int(steps if steps is not None else cfg.get("steps", 10))
    alpha = float(cfg.get("step_size", 0.25)) * eps
    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if name == "pgd_linf":
        return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=bool(cfg.get("random_start", True)))
    if name == "pgd_l2":
        return torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=bool(cfg.get("random_start", True)))
    if name == "autoattack":
        norm = "Linf" if attack_norm(cfg) == "linf" else "L2"
        return torchattacks.AutoAttack(model, norm=norm, eps=eps, version=cfg.get("version", "standard"), n_classes=num_classes, seed=seed)
    raise BenchError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")


def random_noise(x: Tensor, eps: float, norm: str, generator: torch.Generator | None = None) -> Tensor:
    """x plus random noise of the attack's radius, clipped to [0, 1]: uniform in the l_inf ball, or a random
    direction of l2 norm eps."""
    if norm == "linf":
        noise = (torch.rand(x.shape, generator=generator, device="cpu").to(x) * 2 - 1) * eps
    else:
        d = torch.randn(x.shape, generator=generator, device="cpu").to(x)
        flat = d.flatten(1).norm(dim=1).clamp(min=1e-12)
        noise = eps * d / flat.view(-1, *([1] * (x.ndim - 1)))
    return (x + noise).clamp(0, 1)
