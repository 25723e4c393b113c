"""The standard attacks as factories ``f(model, eps, **options)`` for ``_target_`` configs (``conf/attack/``),
wrapping torchattacks. Step sizes are fractions of the radius (``alpha = step_size * eps``), so one config serves
every radius."""

from __future__ import annotations

from torch import nn

from bench.attacks.factory import attack
from bench.attacks.pgd import PGD, PGDL2


@attack(norm="linf", iterative=False)
def fgsm(model: nn.Module, eps: float):
    """One signed-gradient step of size eps (Goodfellow et al.)."""
    import torchattacks

    return torchattacks.FGSM(model, eps=eps)


@attack(norm="linf", iterative=True)
def pgd_linf(
    model: nn.Module, eps: float, steps: int = 10, step_size: float = 0.25, random_start: bool = True, seed: int = 0
) -> PGD:
    """l_inf PGD with a per-example random start (``seed`` keys it with the example index)."""
    return PGD(model, eps=eps, alpha=step_size * eps, steps=steps, random_start=random_start, seed=seed)


@attack(norm="l2", iterative=True)
def pgd_l2(
    model: nn.Module, eps: float, steps: int = 10, step_size: float = 0.25, random_start: bool = True, seed: int = 0
) -> PGDL2:
    """l2 PGD with a per-example random start."""
    return PGDL2(model, eps=eps, alpha=step_size * eps, steps=steps, random_start=random_start, seed=seed)


@attack(norm=None, iterative=False)
def autoattack(
    model: nn.Module, eps: float, norm: str = "linf", version: str = "standard", num_classes: int = 10, seed: int = 0
):
    """AutoAttack (Croce & Hein): APGD-CE, APGD-T, FAB-T, Square. Its random draws follow its own ``seed``, not the
    example index, so under DDP its numbers depend on the shard (documented in the README)."""
    import torchattacks

    return torchattacks.AutoAttack(
        model,
        norm={"linf": "Linf", "l2": "L2"}.get(norm, norm),
        eps=eps,
        version=version,
        n_classes=num_classes,
        seed=seed,
    )
