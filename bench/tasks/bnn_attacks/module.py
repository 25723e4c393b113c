"""Training a posterior (:mod:`bench.models.posteriors`) and testing its predictive mean.

The loss of one minibatch is ``mean_k CE(f_k(x), y) + penalty / N_train`` with ``f_k`` the posterior's training
samples (one per ensemble member; the dropout / VI draw; the MAP point of HMC's start) and ``penalty`` its
dataset-level term (KL to the prior for VI: the negative ELBO per example; the negative log prior for HMC's MAP
start). ``test_step`` returns ``log p(y|x)`` of the predictive mean over ``eval_samples`` seeded posterior draws
(MC dropout and VI: keyed by example index, the same on any number of DDP processes), which the harness's
classification callback scores as ``test/acc``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from bench.harness.module import BenchModule
from bench.harness.seeding import bounded_seed
from bench.models.stochastic import draws_keyed_by_example, log_predictive_mean, seeded


class PosteriorModule(BenchModule):
    def __init__(
        self, net, optimizer=None, num_train: int = 1, eval_samples: int = 100, eval_seed: int = 0, scheduler=None
    ) -> None:
        super().__init__(net=net, optimizer=optimizer, scheduler=scheduler)
        self.num_train = int(num_train)
        self.eval_samples = int(eval_samples)
        self.eval_seed = int(eval_seed)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        logits = self.net.training_logits(batch["x"])
        k = logits.shape[0]
        nll = F.cross_entropy(logits.flatten(0, 1), batch["y"].repeat(k))
        return nll + self.net.penalty() / self.num_train

    def predictive_log_probs(self, x: Tensor, num_samples: int | None = None) -> Tensor:
        return log_predictive_mean(self.net.sample_logits(x, num_samples or self.eval_samples))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        # MC dropout and VI draw per example (keyed by its index): the same numbers on 1 or N DDP processes, whose
        # batches hold other examples; what still draws from torch's generator (a member subset when S < M) is
        # seeded per batch
        index = batch.get("index")
        keyed = nullcontext() if index is None else draws_keyed_by_example(index, self.eval_seed)
        with seeded(bounded_seed(self.eval_seed + batch_idx, "bnn_attacks/test_step"), self.device), keyed:
            return {"logits": self.predictive_log_probs(batch["x"])}
