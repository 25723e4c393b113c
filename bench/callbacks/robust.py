"""Robust accuracy under a torchattacks attack at one or more radii, with validity checks next to each number.

Validity checks (RobustBench spirit: a robust number that fails one is marked ``unreliable``):
  * ``eps0_equals_clean``: the attack at eps = 0 leaves every prediction as on clean inputs;
  * ``robust_le_clean``: robust accuracy <= clean accuracy;
  * ``beats_noise``: robust accuracy <= accuracy under random noise of the same radius;
  * ``more_steps_not_weaker``: an iterative attack with ``steps_multiplier`` x the steps does not raise robust
    accuracy by more than ``tolerance`` (``None`` for single-step attacks).
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch

from bench.attacks.factory import ITERATIVE, attack_norm, build_attack, random_noise
from bench.metrics.classification import PerGroupAccuracy
from torchmetrics import SumMetric


def eps_key(eps: float) -> str:
    return f"{eps:g}"


class RobustAccuracyCallback(L.Callback):
    """Attack every test batch (gradients on, model in eval mode) and log ``test/robust_acc`` (first radius),
    ``test/robust_acc@eps=<e>`` and ``test/robust_worst_class_acc@eps=<e>`` for each radius. The validity flags
    are kept in ``self.validity`` (the harness puts them in the record). Does nothing for ``attack.name: none``.

    Args:
        attack: the ``attack`` config (name, eps, steps, step_size, random_start, validity).
        prefix: metric prefix.
    """

    def __init__(self, attack: Mapping[str, Any], prefix: str = "test") -> None:
        self.cfg = dict(attack)
        self.enabled = self.cfg.get("name", "none") != "none"
        eps = self.cfg.get("eps", [])
        self.eps = [float(e) for e in (eps if hasattr(eps, "__iter__") else [eps])]
        self.prefix = prefix
        v = dict(self.cfg.get("validity") or {})
        self.check = bool(v.get("enabled", True))
        self.steps_multiplier = int(v.get("steps_multiplier", 2))
        self.tolerance = float(v.get("tolerance", 0.01))
        self.validity: dict[str, dict[str, Any]] = {}

    def _counter(self, device) -> SumMetric:
        return SumMetric().to(device)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        dev = pl_module.device
        nc = trainer.datamodule.num_classes
        self.num_classes = nc
        self.clean = PerGroupAccuracy(nc).to(dev)
        self.robust = {e: PerGroupAccuracy(nc).to(dev) for e in self.eps}
        names = ("noise", "more_steps", "eps0_mismatch")
        self.counts = {e: {n: self._counter(dev) for n in names} for e in self.eps}
        self.attacks = {e: build_attack(self.cfg, pl_module, e, num_classes=nc, seed=trainer.global_rank) for e in self.eps}
        self.iterative = self.cfg["name"] in ITERATIVE
        if self.check:
            self.attack0 = build_attack(self.cfg, pl_module, 0.0, num_classes=nc)
            if self.iterative:
                steps = int(self.cfg.get("steps", 10)) * self.steps_multiplier
                self.stronger = {e: build_attack(self.cfg, pl_module, e, steps=steps, num_classes=nc) for e in self.eps}
        self.noise_gen = torch.Generator().manual_seed(1234 + trainer.global_rank)

    @torch.enable_grad()
    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.enabled:
            return
        was_training = pl_module.training
        pl_module.eval()
        x, y = batch["x"], batch["y"]
        clean_pred = outputs["logits"].argmax(1) if isinstance(outputs, dict) and "logits" in outputs else None
        if clean_pred is None:
            with torch.no_grad():
                clean_pred = pl_module(x).argmax(1)
        self.clean.update(clean_pred, y)
        if self.check:
            x0 = self.attack0(x, y)
            with torch.no_grad():
                pred0 = pl_module(x0).argmax(1)
            # attacks at eps=0 must not move any prediction
            for e in self.eps:
                self.counts[e]["eps0_mismatch"].update((pred0 != clean_pred).sum())
        for e in self.eps:
            adv = self.attacks[e](x, y)
            with torch.no_grad():
                self.robust[e].update(pl_module(adv), y)
                if self.check:
                    noisy = random_noise(x, e, attack_norm(self.cfg), self.noise_gen)
                    self.counts[e]["noise"].update((pl_module(noisy).argmax(1) == y).sum())
            if self.check and self.iterative:
                adv2 = self.stronger[e](x, y)
                with torch.no_grad():
                    self.counts[e]["more_steps"].update((pl_module(adv2).argmax(1) == y).sum())
        pl_module.train(was_training)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        clean = self.clean.compute()
        n = float(clean["count"].sum())
        metrics: dict[str, float] = {}
        for i, e in enumerate(self.eps):
            r = self.robust[e].compute()
            key = f"{self.prefix}/robust_acc@eps={eps_key(e)}"
            metrics[key] = r["acc"]
            metrics[f"{self.prefix}/robust_worst_class_acc@eps={eps_key(e)}"] = r["worst"]
            if i == 0:
                metrics[f"{self.prefix}/robust_acc"] = r["acc"]
                metrics[f"{self.prefix}/robust_worst_class_acc"] = r["worst"]
            flags: dict[str, Any] = {"eps": e, "attack": self.cfg["name"], "n": int(n)}
            if self.check:
                c = {k: float(m.compute()) for k, m in self.counts[e].items()}
                noise_acc = c["noise"] / n
                metrics[f"{self.prefix}/noise_acc@eps={eps_key(e)}"] = noise_acc
                flags["eps0_equals_clean"] = c["eps0_mismatch"] == 0
                flags["robust_le_clean"] = r["acc"] <= clean["acc"]
                flags["beats_noise"] = r["acc"] <= noise_acc
                if self.iterative:
                    more = c["more_steps"] / n
                    flags["more_steps_acc"] = more
                    flags["more_steps_not_weaker"] = more <= r["acc"] + self.tolerance
                else:
                    flags["more_steps_not_weaker"] = None
                flags["reliable"] = all(v is not False for k, v in flags.items() if k in (
                    "eps0_equals_clean", "robust_le_clean", "beats_noise", "more_steps_not_weaker"))
            else:
                flags["reliable"] = None
            self.validity[key] = flags
            if i == 0:
                self.validity[f"{self.prefix}/robust_acc"] = flags
        pl_module.log_dict(metrics, sync_dist=False)
