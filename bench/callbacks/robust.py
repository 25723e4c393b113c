"""Robust accuracy under an attack config at one or more radii, with validity checks next to each number.

Validity checks (RobustBench spirit: a robust number that fails one is marked ``unreliable``). For a deterministic
model they are exact:
  * ``eps0_equals_clean``: the attack at eps = 0 leaves every prediction as on clean inputs;
  * ``robust_le_clean``: robust accuracy <= clean accuracy;
  * ``beats_noise``: robust accuracy <= accuracy under random noise of the same radius;
  * ``more_steps_not_weaker``: an iterative attack with ``steps_multiplier`` x the steps does not raise robust
    accuracy by more than ``tolerance`` (``None`` for single-step attacks).

A stochastic model (:mod:`bench.models.stochastic`: MC dropout, VI, ensembles, HMC samples) is attacked through
its predictive mean over ``S_attack`` fresh posterior draws per step (EOT) and scored by its predictive mean over
``S_eval`` draws. Every scoring of one batch (clean, eps = 0, attacked, noisy, stronger attacks) uses the *same*
``S_eval`` draws (the generator is seeded per batch inside ``fork_rng``), so differences between them are the
perturbation's, not sampling noise. The checks then allow ``stochastic_tolerance`` (default 0.02: the attack
itself is random through its posterior draws. Measured on an MC-dropout MLP 64-256-256-10 on digits 0-4, 180 test
examples, PGD-40 at eps 0.1, S_attack = 10: robust accuracy over 5 attack seeds had std 0.0068 and range 0.0167,
and the 2x-steps / 2x-samples attacks differed from it by at most 0.0056; 0.02 is ~4 of those 180 examples):
  * ``eps0_equals_clean``: at most that fraction of predictions change at eps = 0 (0 when the model samples
    through torch's generator, as the protocol asks);
  * ``robust_le_clean``, ``beats_noise``, ``more_steps_not_weaker``: as above, within the tolerance;
  * ``more_samples_not_weaker``: the attack with ``samples_multiplier`` x ``S_attack`` draws per step does not
    raise robust accuracy by more than the tolerance (``None`` for deterministic models).

Random draws (PGD's random start, the noise baseline) are keyed by the example index the batches carry, so one
process and N DDP processes give the same robust and noise accuracies on the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import SumMetric

from bench.attacks.factory import (
    attack_enabled,
    attack_iterative,
    attack_name,
    attack_norm,
    build_attack,
    check_attack,
    eot_samples,
    random_noise,
    run_attack,
)
from bench.attacks.noise import example_seed
from bench.harness.seeding import generator as seeded_generator
from bench.metrics.classification import PerGroupAccuracy
from bench.models.stochastic import PredictiveMean, find_stochastic, seeded

CHECKS = ("eps0_equals_clean", "robust_le_clean", "beats_noise", "more_steps_not_weaker", "more_samples_not_weaker")


def validity_tolerances(validity: Mapping[str, Any] | None, stochastic: bool) -> tuple[float, float]:
    """(slack of the eps = 0 / robust <= clean / beats-noise checks, slack of the stronger-attack checks) for an
    attack's ``validity`` config: exact and ``tolerance`` (0.01) for a deterministic model, ``stochastic_tolerance``
    (0.02) for both on a stochastic one. The one rule for every robust number (bnn_attacks' own checks use it too)."""
    v = dict(validity or {})
    tol = float(v.get("stochastic_tolerance", 0.02)) if stochastic else 0.0
    return tol, max(float(v.get("tolerance", 0.01)), tol)


def eps_key(eps: float) -> str:
    return f"{eps:g}"


class RobustAccuracyCallback(L.Callback):
    """Attack every test batch (gradients on, model in eval mode) and log ``test/robust_acc`` (first radius),
    ``test/robust_acc@eps=<e>``, ``test/robust_worst_class_acc@eps=<e>`` and ``test/noise_acc@eps=<e>`` for each
    radius; for a stochastic model also ``test/predictive_acc`` (clean accuracy of the ``S_eval`` predictive mean,
    the number the robust accuracies compare with). The validity flags are kept in ``self.validity`` (the harness
    puts them in the record). Does nothing for ``attack=none``.

    Args:
        attack: the ``attack`` config (a ``_target_`` partial with eps, options, validity, S_attack, S_eval), or the
            partial Hydra built from it.
        prefix: metric prefix.
        seed: keys the per-example random draws (random start, noise) and the per-batch posterior draws.
    """

    def __init__(self, attack: Mapping[str, Any] | Any, prefix: str = "test", seed: int = 0) -> None:
        self.cfg = check_attack(attack)
        self.enabled = attack_enabled(self.cfg)
        self.eps = self.cfg["eps"]
        self.prefix = prefix
        self.seed = int(seed)
        v = dict(self.cfg.get("validity") or {})
        self.check = bool(v.get("enabled", True))
        self.steps_multiplier = int(v.get("steps_multiplier", 2))
        self.samples_multiplier = int(v.get("samples_multiplier", 2))
        self.validity_cfg = v
        if self.enabled:
            self.name, self.norm = attack_name(self.cfg), attack_norm(self.cfg)
            self.iterative = attack_iterative(self.cfg)
            self.s_attack, self.s_eval = eot_samples(self.cfg)
        self.validity: dict[str, dict[str, Any]] = {}
        self._built_for: tuple | None = None  # (module, stochastic part, device, classes) the attacks were built for

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        dev = pl_module.device
        nc = trainer.datamodule.num_classes
        stochastic = find_stochastic(pl_module)
        prev = self._built_for
        if prev is not None and prev[0] is pl_module and prev[1] is stochastic and prev[2:] == (dev, nc):
            # another evaluation of the same model: its attacks are reused and the metrics start from zero
            for m in (self.clean, *self.robust.values(), *(c for e in self.eps for c in self.counts[e].values())):
                m.reset()
        else:
            self._build(pl_module, stochastic, dev, nc)
            self._built_for = (pl_module, stochastic, dev, nc)
        self.noise_gen = seeded_generator(1234 + self.seed, "robust/noise")

    def _build(self, pl_module: L.LightningModule, stochastic: Any, dev: torch.device, nc: int) -> None:
        self.stochastic = stochastic
        self.scorer = pl_module if stochastic is None else PredictiveMean(stochastic, self.s_eval)
        self.clean = PerGroupAccuracy(nc).to(dev)
        self.robust = {e: PerGroupAccuracy(nc).to(dev) for e in self.eps}

        def build(e: float, **kw: Any) -> Any:
            return build_attack(self.cfg, pl_module, e, num_classes=nc, seed=self.seed, **kw)

        self.attacks = {e: build(e) for e in self.eps}
        self.stronger: dict[float, Any] = {}
        self.more_samples: dict[float, Any] = {}
        names: list[str] = []
        if self.check:
            self.attack0 = build(0.0)
            if self.iterative:
                steps = int(self.cfg.get("steps", 10)) * self.steps_multiplier
                self.stronger = {e: build(e, steps=steps) for e in self.eps}
            if stochastic is not None:
                self.more_samples = {e: build(e, samples=self.s_attack * self.samples_multiplier) for e in self.eps}
            names = [
                "noise",
                "eps0_mismatch",
                *(["more_steps"] if self.stronger else []),
                *(["more_samples"] if self.more_samples else []),
            ]
        self.counts = {e: {n: SumMetric().to(dev) for n in names} for e in self.eps}

    def _predict(self, x: Tensor, eval_seed: int) -> Tensor:
        """Predictions (deterministic model) or predictive-mean log-probabilities under the batch's fixed draws."""
        with torch.no_grad():
            if self.stochastic is None:
                return self.scorer(x)
            with seeded(eval_seed, x.device):
                return self.scorer(x)

    @torch.enable_grad()
    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.enabled:
            return
        was_training = pl_module.training
        pl_module.eval()
        x, y = batch["x"], batch["y"]
        index = batch.get("index") if isinstance(batch, Mapping) else None
        first = int(index[0]) if index is not None and len(index) else batch_idx
        eval_seed = example_seed(self.seed, "eval", first)
        # the attacks' own posterior draws (and any draw an attack makes without an index) come from a generator
        # seeded for this batch; fork_rng leaves the training stream as it was
        with seeded(example_seed(self.seed, "attack", first), x.device):
            self._batch(pl_module, outputs, x, y, index, eval_seed)
        pl_module.train(was_training)

    def _batch(self, pl_module, outputs: Any, x: Tensor, y: Tensor, index: Tensor | None, eval_seed: int) -> None:
        has_logits = self.stochastic is None and isinstance(outputs, Mapping) and "logits" in outputs
        clean_pred = outputs["logits"].argmax(1) if has_logits else self._predict(x, eval_seed).argmax(1)
        self.clean.update(clean_pred, y)

        def count(e: float, name: str, adv: Tensor) -> None:
            self.counts[e][name].update((self._predict(adv, eval_seed).argmax(1) == y).sum())

        if self.check:
            pred0 = self._predict(run_attack(self.attack0, x, y, index), eval_seed).argmax(1)
            for e in self.eps:
                self.counts[e]["eps0_mismatch"].update((pred0 != clean_pred).sum())
        for e in self.eps:
            adv = run_attack(self.attacks[e], x, y, index)
            self.robust[e].update(self._predict(adv, eval_seed), y)
            if not self.check:
                continue
            count(e, "noise", random_noise(x, e, self.norm, self.noise_gen, index=index, seed=self.seed))
            if e in self.stronger:
                count(e, "more_steps", run_attack(self.stronger[e], x, y, index))
            if e in self.more_samples:
                count(e, "more_samples", run_attack(self.more_samples[e], x, y, index))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        clean = self.clean.compute()
        n = float(clean["count"].sum())
        stochastic = self.stochastic is not None
        tol, stronger_tol = validity_tolerances(self.validity_cfg, stochastic)
        metrics: dict[str, float] = {}
        if stochastic:
            metrics[f"{self.prefix}/predictive_acc"] = clean["acc"]
        for i, e in enumerate(self.eps):
            r = self.robust[e].compute()
            key = f"{self.prefix}/robust_acc@eps={eps_key(e)}"
            metrics[key] = r["acc"]
            metrics[f"{self.prefix}/robust_worst_class_acc@eps={eps_key(e)}"] = r["worst"]
            if i == 0:
                metrics[f"{self.prefix}/robust_acc"] = r["acc"]
                metrics[f"{self.prefix}/robust_worst_class_acc"] = r["worst"]
            flags: dict[str, Any] = {"eps": e, "attack": self.name, "n": int(n), "stochastic": stochastic}
            if stochastic:
                flags.update(S_attack=self.s_attack, S_eval=self.s_eval, tolerance=tol)
            if self.check:
                c = {k: float(m.compute()) for k, m in self.counts[e].items()}
                robust, clean_acc = float(r["acc"]), float(clean["acc"])
                noise_acc = c["noise"] / n
                metrics[f"{self.prefix}/noise_acc@eps={eps_key(e)}"] = noise_acc
                flags["eps0_mismatch"] = c["eps0_mismatch"] / n
                flags["eps0_equals_clean"] = c["eps0_mismatch"] / n <= tol
                flags["robust_le_clean"] = robust <= clean_acc + tol
                flags["beats_noise"] = robust <= noise_acc + tol
                flags["more_steps_not_weaker"] = None
                flags["more_samples_not_weaker"] = None
                if self.stronger:
                    flags["more_steps_acc"] = c["more_steps"] / n
                    flags["more_steps_not_weaker"] = c["more_steps"] / n <= robust + stronger_tol
                if self.more_samples:
                    flags["more_samples_acc"] = c["more_samples"] / n
                    flags["more_samples_not_weaker"] = c["more_samples"] / n <= robust + stronger_tol
                flags["reliable"] = all(flags[k] is not False for k in CHECKS)
            else:
                flags["reliable"] = None
            self.validity[key] = flags
            if i == 0:
                self.validity[f"{self.prefix}/robust_acc"] = flags
        pl_module.log_dict(metrics, sync_dist=False)
