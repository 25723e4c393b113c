"""Predictive uncertainty of a posterior and how well it separates two sets of inputs.

From the logits of S posterior samples ``[S, N, C]``:
  * predictive ``p(y|x) = (1/S) sum_s softmax(f_s(x))``;
  * predictive entropy ``H[p] = -sum_c p_c log p_c`` (total uncertainty, nats);
  * mutual information ``MI = H[p] - (1/S) sum_s H[p_s]`` (epistemic part; exactly 0 where all samples agree,
    clamped at 0 against round-off).
Separation: :class:`SeparationAUROC` is torchmetrics' binary AUROC of a score (H or MI) with one set as the
positive class (adversarial inputs in detection, OOD inputs in semantic-shift detection) and the other negative.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryAUROC


def predictive_probs(logits: Tensor) -> Tensor:
    """``[S, N, C]`` logits -> ``[N, C]`` posterior predictive probabilities."""
    return torch.softmax(logits, dim=-1).mean(0)


def entropy(probs: Tensor) -> Tensor:
    """Entropy (nats) of each row of ``probs`` (``0 log 0 = 0``)."""
    return -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)


def uncertainty(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(p, H, MI)`` from ``[S, N, C]`` logits: predictive probabilities ``[N, C]``, entropy and MI ``[N]``."""
    per_sample = torch.softmax(logits, dim=-1)
    p = per_sample.mean(0)
    h = entropy(p)
    mi = (h - entropy(per_sample).mean(0)).clamp_min(0.0)
    # inputs whose samples all agree bit for bit (a deterministic net) have MI exactly 0: the float round-off of
    # the difference above (~1e-7) would otherwise rank them in an AUROC as if it were signal
    agree = (logits == logits[:1]).all(dim=-1).all(dim=0)
    return p, h, torch.where(agree, torch.zeros_like(mi), mi)


def mutual_information(logits: Tensor) -> Tensor:
    return uncertainty(logits)[2]


class SeparationAUROC(Metric):
    """AUROC of ``score`` for telling ``positive`` inputs from ``negative`` ones (higher score = more positive).
    ``update(score, positive: bool tensor)``; ``compute()`` -> the exact (threshold-free) AUROC. 0.5 is chance,
    1 perfect separation, below 0.5 the score ranks the sets the wrong way round."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, score: Tensor, positive: Tensor) -> None:
        self.scores.append(score.detach().flatten().double())
        self.labels.append(positive.detach().flatten().long())

    def compute(self) -> Tensor:
        scores = torch.cat(self.scores) if isinstance(self.scores, list) else self.scores
        labels = torch.cat(self.labels) if isinstance(self.labels, list) else self.labels
        if labels.numel() == 0 or labels.min() == labels.max():
            return torch.tensor(float("nan"))
        # ranks are all AUROC depends on: map scores to (0, 1) monotonically so BinaryAUROC takes them as
        # probabilities (it would otherwise apply a sigmoid, which saturates and creates false ties)
        # (equal scores stay tied: every member of a tie gets the tie's smallest rank)
        sorted_scores, idx = torch.sort(scores)
        ranks = torch.empty_like(scores)
        ranks[idx] = torch.searchsorted(sorted_scores, sorted_scores, right=False).double()
        probs = (ranks + 0.5) / (len(scores) + 1)
        metric = BinaryAUROC(thresholds=None)
        metric.update(probs.float(), labels)
        return metric.compute()


def auroc(positive_scores: Tensor, negative_scores: Tensor) -> float:
    """AUROC with ``positive_scores`` as the positive class (a one-shot :class:`SeparationAUROC`)."""
    m = SeparationAUROC()
    m.update(positive_scores, torch.ones_like(positive_scores, dtype=torch.bool))
    m.update(negative_scores, torch.zeros_like(negative_scores, dtype=torch.bool))
    return float(m.compute())
