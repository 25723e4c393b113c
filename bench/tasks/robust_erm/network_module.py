"""Adversarial training of a network (the network part): cross-entropy on PGD examples at radius ``train_eps``
(Madry et al.), full batch, ``steps_per_call`` optimizer steps per Lightning step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks.factory import build_attack
from bench.harness.errors import BenchError
from bench.harness.module import BenchModule


class RobustNetModule(BenchModule):
    """Args:
    net: the classifier (inputs in [0, 1]).
    optimizer: factory ``params -> Optimizer``.
    train_eps: radius of the training attack (0: standard training).
    train_attack: attack config without ``eps`` (``name``, ``steps``, ``step_size``, ``random_start``), e.g.
        PGD-10 l_inf.
    steps_per_call: optimizer steps per Lightning step on each (full) batch.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable | None,
        train_eps: float = 0.0,
        train_attack: Mapping[str, Any] | None = None,
        steps_per_call: int = 1,
    ) -> None:
        super().__init__(net, optimizer)
        if train_eps < 0:
            raise BenchError(f"network.train_eps must be >= 0, got {train_eps}")
        if int(steps_per_call) < 1:
            raise BenchError(f"network.steps_per_call must be >= 1, got {steps_per_call}")
        self.train_eps, self.steps_per_call = float(train_eps), int(steps_per_call)
        self.attack_cfg = dict(
            train_attack or {"name": "pgd_linf", "steps": 10, "step_size": 0.25, "random_start": True}
        )
        self._attack = None

    def attack(self):
        """The training attack, built lazily on the module's device."""
        if self._attack is None:
            self._attack = build_attack(self.attack_cfg, self.net, self.train_eps)
            self._attack.set_model_training_mode(model_training=False)
        return self._attack

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        x, y = batch["x"], batch["y"]
        if self.train_eps > 0:
            x = self.attack()(x, y)
        return F.cross_entropy(self.net(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        batches = batch if isinstance(batch, list) else [batch]
        return super().training_step([b for b in batches for _ in range(self.steps_per_call)], batch_idx)
