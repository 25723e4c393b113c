"""Metric units on hand-computed values."""

import math

import numpy as np
import pytest
import torch

from bench.metrics.classification import PerGroupAccuracy
from bench.metrics.neural_collapse import ClassFeatureStatistics, NearestClassCenter, collapse_metrics, nc1


def test_group_accuracy_hand_values_and_empty_group():
    m = PerGroupAccuracy(num_groups=3)
    preds = torch.tensor([0, 1, 1, 0, 1])
    target = torch.tensor([0, 1, 0, 0, 0])
    groups = torch.tensor([0, 0, 1, 1, 1])  # group 2 has no example
    m.update(preds, target, groups)
    r = m.compute()
    assert r["acc"] == pytest.approx(3 / 5)
    assert r["per_group"][0].item() == pytest.approx(1.0)
    assert r["per_group"][1].item() == pytest.approx(1 / 3)
    assert math.isnan(r["per_group"][2].item())
    assert r["worst"] == pytest.approx(1 / 3)  # the empty group is left out, as in WILDS
    assert r["adjusted"] == pytest.approx((1 + 1 / 3) / 2)
    assert r["count"].tolist() == [2, 3, 0]


def test_group_accuracy_from_logits_and_class_recall():
    m = PerGroupAccuracy(num_groups=2)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 1])
    m.update(logits, y)  # groups = classes -> per-class recall
    r = m.compute()
    assert r["per_group"].tolist() == pytest.approx([1.0, 1 / 3])
    assert r["worst"] == pytest.approx(1 / 3)


def test_group_accuracy_rejects_out_of_range_group():
    m = PerGroupAccuracy(num_groups=2)
    with pytest.raises(ValueError, match="group ids"):
        m.update(torch.tensor([0]), torch.tensor([0]), torch.tensor([5]))


def simplex(c: int, d: int, seed: int = 0) -> torch.Tensor:
    """C class means forming a simplex ETF in R^d (d >= C)."""
    q, _ = torch.linalg.qr(torch.randn(d, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    etf = (torch.eye(c, dtype=torch.float64) - 1.0 / c) * math.sqrt(c / (c - 1))
    return (q @ etf).T  # C x d


def test_nc_metrics_vanish_on_a_collapsed_simplex():
    c, d = 4, 6
    means = simplex(c, d)
    y = torch.arange(c).repeat(5)
    h = means[y]  # every feature sits on its class mean
    stats = ClassFeatureStatistics(c, d)
    stats.update(h, y)
    st = stats.compute()
    m = collapse_metrics(st, weight=means)  # classifier rows = class means (self-duality)
    assert m["nc1"] == pytest.approx(0.0, abs=1e-10)
    assert m["nc2_equinorm"] == pytest.approx(0.0, abs=1e-10)
    assert m["nc2_equiangle"] == pytest.approx(0.0, abs=1e-10)
    assert m["nc3"] == pytest.approx(0.0, abs=1e-10)
    ncc = NearestClassCenter(st["means"])
    ncc.update(h, y, y)
    assert ncc.compute()["nc4"] == 0.0 and ncc.compute()["ncc_acc"] == 1.0


def test_nc1_matches_direct_computation_and_is_batch_invariant():
    rng = np.random.default_rng(0)
    c, d, n = 3, 5, 60
    y = np.arange(n) % c
    h = rng.normal(size=(n, d)) + 3 * rng.normal(size=(c, d))[y]
    mu = np.stack([h[y == k].mean(0) for k in range(c)])
    mg = h.mean(0)
    sw = sum(np.outer(h[i] - mu[y[i]], h[i] - mu[y[i]]) for i in range(n)) / n
    sb = sum(np.outer(mu[k] - mg, mu[k] - mg) for k in range(c)) / c
    expected = np.trace(sw @ np.linalg.pinv(sb)) / c
    stats = ClassFeatureStatistics(c, d)
    for part in np.array_split(np.arange(n), 4):  # several updates == one
        stats.update(torch.tensor(h[part]), torch.tensor(y[part]))
    assert nc1(stats.compute()) == pytest.approx(expected, rel=1e-9)
    assert expected > 0.01
