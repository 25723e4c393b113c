"""goldilocks: circles data, the alpha grid and its errors, the stacked per-alpha GD against one-by-one GD,
claims on synthetic records (pass and fail), the report hook, and a run's bad-input errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bench.data.circles import CirclesDataModule
from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.harness.naming import point_name
from bench.models.mlp import MLP
from bench.tasks.goldilocks import claims as C
from bench.tasks.goldilocks.module import AlphaSweepModule
from bench.tasks.goldilocks.protocol import alpha_grid, check_homogeneous, depth, kaiming_init
from bench.tasks.goldilocks.report import report

ALPHAS = [10 ** (-3 + 0.25 * i) for i in range(25)]


def test_circles_has_the_papers_counts_and_three_rings():
    dm = CirclesDataModule(seed=0)
    dm.setup()
    tr, te = dm.split("train"), dm.split("test")
    assert torch.bincount(tr["y"]).tolist() == [654, 739, 1007] and torch.bincount(te["y"]).tolist() == [376, 403, 585]
    assert tr["x"].dtype == torch.float64 and tr["x"].shape == (2400, 2)
    r = tr["x"].norm(dim=1)
    assert r[tr["y"] == 0].max() <= 0.5 and r[tr["y"] == 1].min() >= 0.45 and r[tr["y"] == 2].max() <= 0.9
    again = CirclesDataModule(seed=0)
    again.setup()
    assert torch.equal(again.split("train")["x"], tr["x"])


def test_alpha_grid_is_the_papers_and_rejects_non_positive_scales():
    grid = alpha_grid(OmegaConf.create({"alphas": None, "log10_min": -3, "log10_max": 3, "log10_step": 0.25}))
    assert len(grid) == 25 and grid[0] == pytest.approx(1e-3) and grid[-1] == pytest.approx(1e3)
    for bad in ([0.0, 1.0, 10.0], [-1.0, 1.0, 2.0], [1.0, float("nan"), 2.0]):
        with pytest.raises(BenchError, match="must all be finite and > 0"):
            alpha_grid(OmegaConf.create({"alphas": bad}))


def test_homogeneity_check_and_depth():
    net = MLP([2], 3, hidden=[32, 32], bias=False)
    check_homogeneous(net)
    assert depth(net) == 3
    with pytest.raises(BenchError, match="model.bias=false"):
        check_homogeneous(MLP([2], 3, hidden=[4], bias=True))


def test_stacked_sweep_takes_the_same_gd_steps_as_training_each_alpha_alone():
    """lr / alpha^(L-2) folded into the summed loss gives every copy exactly its own GD step."""
    torch.manual_seed(0)
    x, y = torch.randn(50, 2, dtype=torch.float64), torch.randint(0, 3, (50,))
    net = kaiming_init(MLP([2], 3, hidden=[5, 4], bias=False).double(), torch.Generator().manual_seed(1))
    alphas, lr, steps = [0.01, 1.0, 30.0], 0.1, 3
    module = AlphaSweepModule(net, lambda params: torch.optim.SGD(params, lr=lr), alphas=alphas, depth=3)
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        module.training_loss({"x": x, "y": y}).backward()
        opt.step()
    for i, a in enumerate(alphas):
        alone = MLP([2], 3, hidden=[5, 4], bias=False).double()
        alone.load_state_dict({k: a * v if k.endswith("weight") else v for k, v in net.state_dict().items()})
        o = torch.optim.SGD(alone.parameters(), lr=lr / a)
        for _ in range(steps):
            o.zero_grad()
            F.cross_entropy(alone(x), y).backward()
            o.step()
        for w_stacked, w_alone in zip(module.weights, alone.parameters()):
            assert torch.allclose(w_stacked[i], w_alone, rtol=1e-10, atol=1e-12 * a)


# -- claims on synthetic records ---------------------------------------------------------------------------------
def record(seed=0, curv=None, temp_shift=0.0, acc=None, corr=0.97, target="bench.data.circles.CirclesDataModule"):
    curv = curv or [2.0 * math.exp(-((math.log10(a) / 1.2) ** 2)) - 0.05 for a in ALPHAS]  # an inverted U
    acc = acc or [0.5 + 0.4 * math.exp(-(((math.log10(a) + 0.5) / 1.0) ** 2)) for a in ALPHAS]
    m = {"model/depth": 3, "inits/corr": corr}
    for a, c, t in zip(ALPHAS, curv, acc):
        m[point_name("curv/positive_curvature", alpha=a)] = c
        m[point_name("curv/positive_curvature", temperature=a**-3)] = c + temp_shift
        m[point_name("curv/dim", alpha=a)] = 50.0
        m[point_name("identity/hessian_rel_err", alpha=a)] = 1e-15
        m[point_name("test/acc", alpha=a)] = t
    return {"seed": seed, "metrics": m, "config": {"data": {"_target_": target}}}


def outcome(claim, records):
    return claim(RecordSet(records))


def test_claims_pass_on_the_papers_picture():
    recs = [record(s) for s in range(3)]
    for check in (C.identity, C.inverted_u, C.grad_tracks_mismatch, C.best_not_at_peak):
        res = outcome(check, recs)
        assert res is not None and res.passed, (check.__name__, res)


def test_identity_fails_on_a_1e_6_gap_or_a_missing_point():
    assert not outcome(C.identity, [record(temp_shift=1e-6)]).passed
    bad = record()
    del bad["metrics"][point_name("curv/positive_curvature", temperature=ALPHAS[4] ** -3)]
    assert not outcome(C.identity, [bad]).passed


def test_inverted_u_fails_for_a_monotone_curve_a_low_peak_or_a_high_tail():
    monotone = [2.0 / (1 + a) for a in ALPHAS]  # high at small alpha
    assert not outcome(C.inverted_u, [record(curv=monotone)]).passed
    low = [0.8 * math.exp(-((math.log10(a)) ** 2)) for a in ALPHAS]
    assert not outcome(C.inverted_u, [record(curv=low)]).passed
    tail = [2.0 * math.exp(-((math.log10(a) / 1.2) ** 2)) + (0.5 if a > 100 else 0) for a in ALPHAS]
    assert not outcome(C.inverted_u, [record(curv=tail)]).passed


def test_gradient_claim_uses_the_worst_seed():
    assert not outcome(C.grad_tracks_mismatch, [record(0, corr=0.99), record(1, corr=0.85)]).passed


def test_best_accuracy_at_the_peak_fails_the_trend():
    at_peak = [0.5 + 0.4 * math.exp(-((math.log10(a)) ** 2)) for a in ALPHAS]  # best exactly at alpha = 1
    res = outcome(C.best_not_at_peak, [record(acc=at_peak)])
    assert not res.passed and res.measured["circles"]["best_alpha"] == pytest.approx(1.0)


def test_claims_skip_records_without_sweeps():
    empty = [{"seed": 0, "metrics": {"test/acc": 0.5}, "config": {}}]
    checks = (C.identity, C.inverted_u, C.grad_tracks_mismatch, C.best_not_at_peak)
    assert all(outcome(c, empty) is None for c in checks)


def test_report_hook_draws_the_three_figures(tmp_path):
    recs = [record(s) for s in range(2)] + [record(0, target="bench.data.digits.DigitsDataModule")]
    for r in recs:
        for i in range(5):
            r["metrics"][point_name("init/grad_norm", init=i)] = 0.1 * (i + 1)
            r["metrics"][point_name("init/prior_mismatch", init=i)] = 0.05 * (i + 1)
    paths = report(RecordSet(recs), tmp_path)
    assert set(paths) == {"curvature_vs_alpha", "accuracy_vs_alpha", "grad_vs_mismatch"}
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in paths.values())


# -- runs: bad input is one clear error before training -----------------------------------------------------------
def test_a_run_rejects_non_positive_alphas_and_a_too_large_exact_hessian(run_bench, tmp_path):
    with pytest.raises(BenchError, match="must all be finite and > 0"):
        run_bench(["task=goldilocks", "profile=smoke", "goldilocks.alphas=[0.0,1.0,10.0]"])
    with pytest.raises(BenchError, match=r"1,184 parameters.*curvature.mode=subspace"):
        run_bench(
            [
                "task=goldilocks",
                "profile=smoke",
                "goldilocks.curvature.mode=exact",
                "goldilocks.curvature.max_hessian_gb=0.001",
            ]
        )
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))


def test_smoke_run_records_named_sweep_points(run_bench):
    rec = run_bench(["task=goldilocks", "profile=smoke"])
    m = rec["metrics"]
    for a in (0.01, 1.0, 100.0):
        for name in ("curv/positive_curvature", "test/acc", "train/acc", "identity/curv_abs_diff"):
            assert point_name(name, alpha=a) in m, point_name(name, alpha=a)
        assert point_name("curv/positive_curvature", temperature=a**-3) in m
    assert m["identity/max_curv_abs_diff"] <= 1e-8
    assert {c["name"][:3] for c in rec["claims"]} >= {"(a)", "(c)"}


def test_standardisation_follows_the_data_and_circles_identity_is_refused_elsewhere(run_bench, tmp_path):
    with pytest.raises(BenchError, match="model.mean=0 model.std=1 leave the inputs unstandardised") as err:
        run_bench(["task=goldilocks", "profile=smoke", "data=digits"])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))
    rec = run_bench(["task=goldilocks", "profile=smoke", "data=digits", "model.mean=null", "model.std=null"])
    assert rec["config"]["data"]["_target_"].endswith("DigitsDataModule") and "curv/peak" in rec["metrics"]
