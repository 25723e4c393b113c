"""Neural-collapse metrics (Papyan, Han & Donoho 2020) from per-class feature statistics.

Conventions (N examples, C classes, features h in R^d, class means mu_c, global mean mu_G over all examples):
  Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})'
  Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)'
  NC1 = Tr(Sigma_W Sigma_B^+) / C
  NC2 equinorm  = std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||      (and of the rows of W)
  NC2 equiangle = mean_{c != c'} | cos(mu_c - mu_G, mu_c' - mu_G) + 1/(C-1) |
  NC3 = || W'/||W||_F - M/||M||_F ||_F^2, M = [mu_c - mu_G]_c (d x C), W the classifier (C x d)
  NC4 = 1 - agreement between nearest-class-centre predictions and the network's predictions.

:class:`ClassFeatureStatistics` accumulates per-class sums, outer-product sums and counts in float64 with
``dist_reduce_fx="sum"``, so the metrics are exact under DDP; :class:`NearestClassCenter` counts NCC agreement
and accuracy given class means.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


class ClassFeatureStatistics(Metric):
    full_state_update = False

    def __init__(self, num_classes: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.dim = num_classes, dim
        self.add_state("sums", torch.zeros(num_classes, dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outer", torch.zeros(num_classes, dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features: Tensor, labels: Tensor) -> None:
        h = features.detach().flatten(1).to(torch.float64)
        onehot = torch.nn.functional.one_hot(labels.long(), self.num_classes).to(torch.float64)  # N x C
        self.sums += onehot.T @ h
        self.counts += onehot.sum(0)
        for c in torch.unique(labels).tolist():  # sum_{i: y_i = c} h_i h_i', N d^2 flops in all
            hc = h[labels == c]
            self.outer[c] += hc.T @ hc

    def compute(self) -> dict[str, Tensor]:
        present = self.counts > 0
        means = self.sums / self.counts.clamp(min=1).unsqueeze(1)
        n = self.counts.sum()
        global_mean = self.sums.sum(0) / n
        within = self.outer - torch.einsum("cd,ce->cde", self.sums, self.sums) / self.counts.clamp(min=1).view(-1, 1, 1)
        sigma_w = within[present].sum(0) / n
        centred = means[present] - global_mean
        sigma_b = centred.T @ centred / int(present.sum())
        return {
            "means": means,
            "global_mean": global_mean,
            "sigma_w": sigma_w,
            "sigma_b": sigma_b,
            "present": present,
            "count": n,
        }


def nc1(stats: dict[str, Tensor]) -> float:
    c = int(stats["present"].sum())
    return float(torch.trace(stats["sigma_w"] @ torch.linalg.pinv(stats["sigma_b"], hermitian=True)) / c)


def _centred(stats: dict[str, Tensor]) -> Tensor:
    return stats["means"][stats["present"]] - stats["global_mean"]


def equinorm(vectors: Tensor) -> float:
    norms = vectors.norm(dim=1)
    return float(norms.std(unbiased=False) / norms.mean())


def equiangularity(vectors: Tensor) -> float:
    c = vectors.shape[0]
    if c < 2:  # no pair of classes: undefined
        return math.nan
    u = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cos = u @ u.T
    off = ~torch.eye(c, dtype=torch.bool, device=vectors.device)
    return float((cos[off] + 1.0 / (c - 1)).abs().mean())


def nc3(stats: dict[str, Tensor], weight: Tensor) -> float:
    m = _centred(stats).T  # d x C
    w = weight.detach().to(torch.float64)[stats["present"]].T  # d x C
    return float(((w / w.norm()) - (m / m.norm())).pow(2).sum())


def alignment(clean: dict[str, Tensor], other: dict[str, Tensor]) -> float:
    """Mean cosine between the clean and the perturbed centred class means (1 = the two simplices align)."""
    a, b = _centred(clean), other["means"][clean["present"]] - other["global_mean"]
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())


def collapse_metrics(stats: dict[str, Tensor], weight: Tensor | None = None) -> dict[str, float]:
    m = _centred(stats)
    out = {"nc1": nc1(stats), "nc2_equinorm": equinorm(m), "nc2_equiangle": equiangularity(m)}
    if weight is not None:
        w = weight.detach().to(torch.float64)[stats["present"]]
        out["nc2_equinorm_w"] = equinorm(w)
        out["nc2_equiangle_w"] = equiangularity(w)
        out["nc3"] = nc3(stats, weight)
    return out


class NearestClassCenter(Metric):
    """Counts, for features classified by their nearest class mean (``means`` fixed at construction): agreement
    with the network's predictions (NC4 = 1 - agreement) and accuracy against the labels."""

    full_state_update = False

    def __init__(self, means: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("means", means.detach().to(torch.float64).clone())
        self.add_state("agree", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("correct", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("net_correct", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features: Tensor, net_preds: Tensor, labels: Tensor) -> None:
        h = features.detach().flatten(1).to(torch.float64)
        ncc = torch.cdist(h, self.means.to(h.device)).argmin(1)
        self.agree += (ncc == net_preds).sum()
        self.correct += (ncc == labels).sum()
        self.net_correct += (net_preds == labels).sum()
        self.total += labels.numel()

    def compute(self) -> dict[str, float]:
        n = float(self.total)
        if n == 0:
            return {"nc4": math.nan, "ncc_acc": math.nan, "net_acc": math.nan}
        return {
            "nc4": 1 - float(self.agree) / n,
            "ncc_acc": float(self.correct) / n,
            "net_acc": float(self.net_correct) / n,
        }
