"""torchattacks' PGD (l_inf) and PGD-L2 with a random start keyed by the example index.

Called as ``attack(x, y, index=batch["index"])`` each example's random start comes from a generator seeded by
(``seed``, its index), so the result does not depend on the batch or the DDP rank layout. Called as
``attack(x, y)`` (no index) they draw from torch's global generator exactly as torchattacks does (same numbers).
PGD-L2 also works on flat inputs ``(N, D)``; torchattacks' own reshapes assume images ``(N, C, H, W)``.
"""

from __future__ import annotations

import torch
import torchattacks
from torch import Tensor, nn

from bench.attacks.noise import unit_l2, unit_linf


def _per_row(v: Tensor, like: Tensor) -> Tensor:
    """A per-example vector ``(N,)`` shaped to broadcast against ``like`` ``(N, ...)``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


class _Steps:
    """The shared PGD loop: ``steps`` ascent steps on the cross-entropy (or descent towards a target label)."""

    def _loss(self, images: Tensor, labels: Tensor):
        target = self.get_target_label(images, labels) if self.targeted else None
        ce = nn.CrossEntropyLoss()
        return (lambda out: -ce(out, target)) if target is not None else (lambda out: ce(out, labels))

    def _grad(self, adv: Tensor, loss) -> Tensor:
        adv.requires_grad = True
        cost = loss(self.get_logits(adv))
        return torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]


class PGD(_Steps, torchattacks.PGD):
    """l_inf PGD (Madry et al.): ``torchattacks.PGD`` plus ``seed`` and the per-example random start."""

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        self.seed = int(seed)

    def forward(self, images: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        loss = self._loss(images, labels)
        adv = images.clone().detach()
        if self.random_start:
            if index is None:
                start = torch.empty_like(adv).uniform_(-self.eps, self.eps)
            else:
                start = self.eps * unit_linf(index, tuple(adv.shape[1:]), self.seed, "start", device=adv.device).to(adv)
            adv = torch.clamp(adv + start, min=0, max=1).detach()
        for _ in range(self.steps):
            grad = self._grad(adv, loss)
            adv = adv.detach() + self.alpha * grad.sign()
            delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
            adv = torch.clamp(images + delta, min=0, max=1).detach()
        return adv


class PGDL2(_Steps, torchattacks.PGDL2):
    """l2 PGD: ``torchattacks.PGDL2`` plus ``seed``, the per-example random start, and any input shape."""

    def __init__(
        self,
        model: nn.Module,
        eps: float = 1.0,
        alpha: float = 0.2,
        steps: int = 10,
        random_start: bool = True,
        eps_for_division: float = 1e-10,
        seed: int = 0,
    ) -> None:
        super().__init__(
            model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, eps_for_division=eps_for_division
        )
        self.seed = int(seed)

    def forward(self, images: Tensor, labels: Tensor, index: Tensor | None = None) -> Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        loss = self._loss(images, labels)
        adv = images.clone().detach()
        n = len(images)
        if self.random_start:
            if index is None:
                delta = torch.empty_like(adv).normal_()
                norms = _per_row(delta.reshape(n, -1).norm(p=2, dim=1), adv)
                r = torch.zeros_like(norms).uniform_(0, 1)
                delta = delta * (r / norms * self.eps)
            else:
                delta = self.eps * unit_l2(
                    index, tuple(adv.shape[1:]), self.seed, "start", radius="uniform", device=adv.device
                ).to(adv)
            adv = torch.clamp(adv + delta, min=0, max=1).detach()
        for _ in range(self.steps):
            grad = self._grad(adv, loss)
            grad_norms = grad.reshape(n, -1).norm(p=2, dim=1) + self.eps_for_division
            adv = adv.detach() + self.alpha * (grad / _per_row(grad_norms, grad))
            delta = adv - images
            # clamp: at eps = 0 the step and delta are 0, and torchattacks' 0 / 0 would give NaN inputs
            factor = torch.clamp(self.eps / delta.reshape(n, -1).norm(p=2, dim=1).clamp(min=1e-12), max=1.0)
            adv = torch.clamp(images + delta * _per_row(factor, delta), min=0, max=1).detach()
        return adv
