"""The three attacks of Feng et al. (arXiv:2404.19640), l_inf PGD on the posterior predictive mean.

Each attack is called like a torchattacks attack, ``attack(x, y) -> x_adv``, on a model whose output is the log
posterior predictive ``log p(y|x)`` (or the logits of a deterministic net: the attacks take ``log_softmax`` of
the output, which leaves a log-probability unchanged). The harness's ``build_attack`` wraps a posterior in
:class:`bench.models.stochastic.PredictiveMean` with ``S_attack`` fresh posterior samples per call, so every
gradient step averages over new samples (expectation over transformation, EOT). ``S_attack = 1`` is the attack
without EOT that the paper finds in earlier work (one posterior sample per step).

Objectives (maximised; one PGD loop: random start in the ball, ``steps`` signed-gradient steps of size
``step_size * eps``, projection onto the l_inf ball and [0, 1]):
  * :class:`LabelPGD`               cross-entropy of the true label under the predictive mean (fool the label);
  * :class:`AdaptiveDetectionPGD`   ``log p_target(x) - H[p(x)]``: reach a wrong label *and* look certain, so an
                                    uncertainty-based detector does not flag the example. The target is the most
                                    probable wrong class on the clean input;
  * :class:`EntropyPGD`             ``-H[p(x)]`` on out-of-distribution inputs (semantic-shift attack): make OOD
                                    inputs look as certain as in-distribution ones.
Configs: ``conf/attack/bnn_{pgd,adaptive,entropy}.yaml`` (``_target_`` + ``_partial_``; the task passes ``model``
and ``eps``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.attacks.factory import attack
from bench.metrics.uncertainty import entropy


class PredictiveMeanPGD:
    """l_inf PGD with random start on a log-probability model; subclasses define :meth:`objective` per example.

    Args:
        model: ``x -> log p(y|x)`` (a :class:`~bench.models.stochastic.PredictiveMean`) or ``x -> logits``.
        eps: l_inf radius in input units ([0, 1]).
        steps: PGD steps (the paper: ~40).
        step_size: step as a fraction of eps (0.0625 = 2.5 eps / 40 steps, the paper's 2.5 eps / steps).
        random_start: start uniformly in the ball.
    """

    def __init__(
        self, model: nn.Module, eps: float, steps: int = 40, step_size: float = 0.0625, random_start: bool = True
    ) -> None:
        self.model, self.eps, self.steps = model, float(eps), int(steps)
        self.alpha = float(step_size) * self.eps
        self.random_start = bool(random_start)

    def log_probs(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.model(x), dim=-1)

    def prepare(self, x: Tensor, y: Tensor) -> dict:
        return {}

    def objective(self, logp: Tensor, y: Tensor, state: dict) -> Tensor:
        raise NotImplementedError

    @torch.enable_grad()
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        x = x.detach()
        state = self.prepare(x, y)
        adv = x.clone()
        if self.random_start and self.eps > 0:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            gain = self.objective(self.log_probs(adv), y, state).sum()
            (grad,) = torch.autograd.grad(gain, adv)
            adv = adv.detach() + self.alpha * grad.sign()
            adv = (x + (adv - x).clamp(-self.eps, self.eps)).clamp(0, 1)
        return adv.detach()


@attack(norm="linf", iterative=True)
class LabelPGD(PredictiveMeanPGD):
    """Untargeted: maximise the cross-entropy ``-log p_y(x)`` of the predictive mean."""

    def objective(self, logp: Tensor, y: Tensor, state: dict) -> Tensor:
        return -logp.gather(1, y[:, None]).squeeze(1)


@attack(norm="linf", iterative=True)
class AdaptiveDetectionPGD(PredictiveMeanPGD):
    """Maximise ``log p_target(x) - H[p(x)]`` with target = the most probable wrong class on the clean input."""

    def prepare(self, x: Tensor, y: Tensor) -> dict:
        with torch.no_grad():
            logp = self.log_probs(x)
        logp = logp.scatter(1, y[:, None], float("-inf"))
        return {"target": logp.argmax(1)}

    def objective(self, logp: Tensor, y: Tensor, state: dict) -> Tensor:
        return logp.gather(1, state["target"][:, None]).squeeze(1) - entropy(logp.exp())


@attack(norm="linf", iterative=True)
class EntropyPGD(PredictiveMeanPGD):
    """Minimise the predictive entropy ``H[p(x)]`` (labels are ignored: the inputs are out-of-distribution)."""

    def objective(self, logp: Tensor, y: Tensor, state: dict) -> Tensor:
        return -entropy(logp.exp())
