"""Standard training (ST), PGD adversarial training (AT) and TRADES on one classifier."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from bench.harness.errors import BenchError
from bench.harness.module import BenchModule

METHODS = ("st", "at", "trades")


class NeuralCollapseModule(BenchModule):
    """Args:
    method: ``st`` (cross-entropy), ``at`` (cross-entropy on l_inf PGD examples, Madry et al.) or ``trades``
        (cross-entropy + beta * KL(p(x) || p(x_adv)), x_adv from TRADES' KL attack, Zhang et al.).
    train_eps, train_steps, train_step_size: the training attack (step = train_step_size * eps).
    trades_beta: TRADES' trade-off (6 in the paper).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        method: str = "st",
        train_eps: float = 0.1,
        train_steps: int = 10,
        train_step_size: float = 0.25,
        trades_beta: float = 6.0,
    ) -> None:
        super().__init__(net, optimizer, scheduler)
        if method not in METHODS:
            raise BenchError(f"unknown neural_collapse method {method!r}; known methods: {', '.join(METHODS)}")
        self.method, self.train_eps, self.train_steps = method, train_eps, train_steps
        self.train_step_size, self.trades_beta = train_step_size, trades_beta
        self._attack = None

    def attack(self):
        """The training attack, built lazily on the module's device."""
        if self._attack is None:
            import torchattacks

            alpha = self.train_step_size * self.train_eps
            if self.method == "at":
                self._attack = torchattacks.PGD(
                    self.net, eps=self.train_eps, alpha=alpha, steps=self.train_steps, random_start=True
                )
            else:
                self._attack = torchattacks.TPGD(self.net, eps=self.train_eps, alpha=alpha, steps=self.train_steps)
            self._attack.set_model_training_mode(model_training=False)
        return self._attack

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        x, y = batch["x"], batch["y"]
        if self.method == "st":
            return F.cross_entropy(self.net(x), y)
        if self.method == "at":
            return F.cross_entropy(self.net(self.attack()(x, y)), y)
        x_adv = self.attack()(x)
        logits = self.net(x)
        kl = F.kl_div(F.log_softmax(self.net(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        return F.cross_entropy(logits, y) + self.trades_beta * kl
