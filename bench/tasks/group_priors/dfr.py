"""Deep feature reweighting (DFR, Kirichenko et al. 2023): logistic regression on frozen features, fitted on
group-balanced subsets of the group-annotated data and averaged over subsets."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from bench.harness.seeding import bounded_seed


@torch.no_grad()
def extract_features(net: nn.Module, x: Tensor, batch_size: int = 4096) -> np.ndarray:
    net.eval()
    return torch.cat([net.features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).double().numpy()


def balanced_subset(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a group-balanced subset: min_g n_g examples of every present group, without replacement."""
    present = np.unique(groups)
    n = min(int((groups == g).sum()) for g in present)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(groups == g), n, replace=False) for g in present]))


class AveragedLogisticHead:
    """Logistic regression (``C``, ``l1_ratio``: 1 = the L1 penalty of DFR) on standardised features, fitted on
    ``num_subsets`` group-balanced subsets; coefficients and intercepts averaged. ``as_linear`` folds the
    standardisation into an ``nn.Linear`` giving class logits."""

    def __init__(self, C: float, num_subsets: int = 10, l1_ratio: float = 1.0, max_iter: int = 1000) -> None:
        self.C, self.num_subsets, self.l1_ratio, self.max_iter = C, num_subsets, l1_ratio, max_iter

    def fit(self, features: np.ndarray, y: np.ndarray, groups: np.ndarray, num_classes: int, seed: int):
        from sklearn.linear_model import LogisticRegression

        self.mean = features.mean(0)
        self.scale = features.std(0) + 1e-8
        z = (features - self.mean) / self.scale
        rng = np.random.default_rng(bounded_seed(seed, "dfr"))
        coefs, intercepts = [], []
        for _ in range(self.num_subsets):
            idx = balanced_subset(groups, rng)
            solver = "liblinear" if num_classes == 2 else "saga"
            lr = LogisticRegression(
                C=self.C,
                l1_ratio=self.l1_ratio,
                solver=solver,
                max_iter=self.max_iter,
                random_state=int(rng.integers(2**31)),
            )
            lr.fit(z[idx], y[idx])
            coef, intercept = self._full(lr, num_classes)
            coefs.append(coef)
            intercepts.append(intercept)
        self.coef, self.intercept = np.mean(coefs, 0), np.mean(intercepts, 0)
        return self

    @staticmethod
    def _full(lr, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(num_classes, d) logit weights; a binary fit gives logit 0 to class 0 and w.z + b to class 1. Classes
        absent from a subset get weight 0 and a very negative intercept."""
        d = lr.coef_.shape[1]
        coef, intercept = np.zeros((num_classes, d)), np.full(num_classes, -1e4)
        if len(lr.classes_) == 2:
            c0, c1 = lr.classes_
            coef[c1], intercept[c1], intercept[c0] = lr.coef_[0], lr.intercept_[0], 0.0
        else:
            coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
        return coef, intercept

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef.T + self.intercept

    def as_linear(self) -> nn.Linear:
        w = self.coef / self.scale[None, :]
        b = self.intercept - w @ self.mean
        layer = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            layer.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
        return layer
