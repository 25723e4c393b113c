"""collapse_regression: closed-form formulas against brute force, the fits against direct solves, a smoke run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.harness.naming import point_name
from bench.tasks.collapse_regression import claims, theory
from bench.tasks.collapse_regression.kernels import kernel_matrix, kernel_ridge_fit
from bench.tasks.collapse_regression.linear import least_squares, ridge_errors_on, spectrum
from bench.tasks.collapse_regression.module import KernelRidgeChainModule
from bench.tasks.collapse_regression.protocol import check_config
from bench.tasks.collapse_regression.studies import overparam_study, ridgeless_study

# Seeded simulations compared with exact expectations: 3 SE (a 0.3% chance per comparison for a fresh seed).
Z = 3.0


def test_ridgeless_formula_small_case():
    """OLS chain + OLS downstream at (d, T, T0) = (5, 20, 15), n = 0 and 3:
    sigma^2 d/(T-d-1) + n sigma0^2 d/(T0-d-1)."""
    cfg = {
        "repetitions": 4000,
        "sigma": 1.0,
        "sigma0": 0.7,
        "generations": [0, 3],
        "settings": [{"d": 5, "T": 20, "T0": 15, "spectrum": "power_law"}],
        "beta": 1.0,
    }
    (res,) = ridgeless_study(cfg, chunk=4000, g=torch.Generator().manual_seed(0))
    expected = [5 / 14, 5 / 14 + 3 * 0.49 * 5 / 9]
    assert np.allclose(res["theory"], expected)
    assert np.all(np.abs(res["err"] - res["theory"]) <= Z * res["err_se"]), (res["err"], res["err_se"], res["theory"])
    assert np.all(res["err_se"] < 0.03 * res["err"])  # tight enough to see a wrong d-1 vs d-2 denominator at n = 3


def test_overparam_noise_free_formula():
    cfg = {"repetitions": 2000, "d": 20, "w0_norm": 1.5, "T0s": [5], "generations": [1, 3]}
    (res,) = overparam_study(cfg, chunk=2000, g=torch.Generator().manual_seed(1))
    assert np.allclose(res["theory"], 2.25 * (1 - np.array([0.25, 0.25**3])))
    assert np.all(np.abs(res["err"] - res["theory"]) <= Z * res["err_se"])


def test_least_squares_is_ols_or_min_norm():
    g = torch.Generator().manual_seed(2)
    for m, d in [(12, 10), (5, 9)]:
        x = torch.randn(7, m, d, dtype=torch.float64, generator=g)
        y = torch.randn(7, m, dtype=torch.float64, generator=g)
        expected = (torch.linalg.pinv(x) @ y.unsqueeze(-1)).squeeze(-1)  # OLS if full column rank, else min-norm
        assert torch.allclose(least_squares(x, y), expected, atol=1e-10)


def test_ridge_errors_equal_direct_solve():
    g = torch.Generator().manual_seed(3)
    reps, T, d = 3, 8, 6
    eigs = spectrum(d, "power_law", 1.0)
    x = torch.randn(reps, T, d, dtype=torch.float64, generator=g) * eigs.sqrt()
    eps = torch.randn(reps, T, dtype=torch.float64, generator=g)
    w0 = torch.randn(d, dtype=torch.float64, generator=g)
    chain = w0 + 0.3 * torch.randn(reps, 2, d, dtype=torch.float64, generator=g)
    lambdas = torch.tensor([[0.0, 0.1], [0.01, 1.0]], dtype=torch.float64)  # one row per generation
    errs = ridge_errors_on(x, eps, chain, w0, eigs, lambdas)
    for r in range(reps):
        for n in range(2):
            y = x[r] @ chain[r, n] + eps[r]
            for j in range(2):
                w = torch.linalg.solve(
                    x[r].T @ x[r] + lambdas[n, j] * T * torch.eye(d, dtype=torch.float64), x[r].T @ y
                )
                assert math.isclose(float(((w - w0) ** 2 * eigs).sum()), float(errs[r, n, j]), rel_tol=1e-8)


def test_ridge_theory_limits_and_monotonicity():
    eigs, w0 = spectrum(30, "power_law", 1.5).numpy(), np.linspace(1, 0.1, 30)
    # lambda -> 0 with T > d: the collapse term is the exact n sigma0^2 d / (T0 - d - 1)
    r = theory.ridge_error(eigs, w0, 0.0, 60, 50, 2, 1.0, 0.5)
    assert math.isclose(r["collapse"], 2 * 0.25 * 30 / 19) and math.isclose(r["variance"], 30 / 30)
    k = theory.effective_regularisation(eigs, 0.05, 40)
    assert math.isclose(k - 0.05, k / 40 * np.sum(eigs / (eigs + k)), rel_tol=1e-10)
    per_gen = [
        theory.ridge_error(eigs, w0, lam, 60, 50, 1, 1.0, 0.5)["per_generation"] for lam in (1e-3, 1e-2, 1e-1, 1.0)
    ]
    assert all(a > b for a, b in zip(per_gen, per_gen[1:]))  # more regularisation, less collapse per generation
    grid = np.logspace(-4, 1, 101)
    best = [theory.optimal_lambda(eigs, w0, 60, 50, n, 1.0, 0.5, grid) for n in (0, 2, 8)]
    assert best[0] < best[1] < best[2]


def test_ridge_theory_matches_simulation():
    """The deterministic equivalent within 3% of a 300-repetition simulation at d = 40 (it is asymptotic)."""
    from bench.tasks.collapse_regression.linear import generation_chain, ridge_errors

    g = torch.Generator().manual_seed(4)
    eigs = spectrum(40, "identity")
    w0 = torch.full((40,), 1 / math.sqrt(40), dtype=torch.float64)
    chain = generation_chain(w0, eigs, 80, 2, 0.5, 300, g)
    errs = ridge_errors(chain, w0, eigs, 60, 1.0, torch.tensor([0.05, 0.5]), g).mean(0)
    for n in range(3):
        for j, lam in enumerate((0.05, 0.5)):
            th = theory.ridge_error(eigs.numpy(), w0.numpy(), lam, 60, 80, n, 1.0, 0.5)["total"]
            assert abs(float(errs[n, j]) - th) <= 0.03 * th, (n, lam, float(errs[n, j]), th)


def test_kernel_ridge_fit_equals_direct_solve():
    from sklearn.kernel_ridge import KernelRidge

    g = torch.Generator().manual_seed(5)
    x, xt = (
        torch.randn(2, 30, 4, dtype=torch.float64, generator=g),
        torch.randn(10, 4, dtype=torch.float64, generator=g),
    )
    y = torch.randn(2, 30, 3, dtype=torch.float64, generator=g)
    lam, ls = 1e-2, 1.3
    for kind in ("rbf", "laplacian"):
        gram = torch.stack([kernel_matrix(kind, xi, xi, ls) for xi in x])
        alpha = kernel_ridge_fit(gram, y, lam)
        direct = torch.linalg.solve(gram + lam * 30 * torch.eye(30, dtype=torch.float64), y)
        assert torch.allclose(alpha, direct, atol=1e-10)
    # the RBF fit is sklearn's KernelRidge with alpha = lam T and gamma = 1 / (2 l^2)
    gram = kernel_matrix("rbf", x[0], x[0], ls)
    ours = kernel_matrix("rbf", xt, x[0], ls) @ kernel_ridge_fit(gram, y[0], lam)
    ref = (
        KernelRidge(alpha=lam * 30, kernel="rbf", gamma=1 / (2 * ls**2))
        .fit(x[0].numpy(), y[0].numpy())
        .predict(xt.numpy())
    )
    assert np.allclose(ours.numpy(), ref, atol=1e-8)


def test_kernel_module_generation_zero_is_a_direct_solve():
    """With no downstream noise, the n = 0 model of each repetition is kernel ridge on the true one-hot labels."""
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    mod = KernelRidgeChainModule(
        kernel="laplacian",
        lengthscale=0.8,
        lam=1e-2,
        T=15,
        T0=12,
        generations=2,
        sigma=0.0,
        sigma0=0.3,
        repetitions=4,
        chunk=3,
        num_classes=3,
    )
    mod.log = lambda *a, **k: None  # no trainer attached
    torch.manual_seed(0)
    mod.training_step(
        [
            {"x": x[20:], "y": y[20:], "index": torch.arange(20, 40)},
            {"x": x[:20], "y": y[:20], "index": torch.arange(20)},
        ],
        0,
    )
    assert torch.equal(mod.pool_x, x.double())  # the pool is the training split in index order
    onehot = torch.nn.functional.one_hot(y, 3).double()
    for r in range(4):
        idx = mod.down_idx[r]
        gram = kernel_matrix("laplacian", x[idx].double(), x[idx].double(), 0.8)
        direct = torch.linalg.solve(gram + 1e-2 * 15 * torch.eye(15, dtype=torch.float64), onehot[idx])
        assert torch.allclose(mod.down_alpha[r, 0], direct, atol=1e-10)
    pred = mod(x[:7])
    assert pred.shape == (4, 3, 7, 3)
    assert torch.allclose(
        pred[1, 0], kernel_matrix("laplacian", x[:7].double(), x[mod.down_idx[1]].double(), 0.8) @ mod.down_alpha[1, 0]
    )


def test_bad_config_raises():
    base = {
        "studies": ["ridgeless"],
        "chunk": 10,
        "ridgeless": {"repetitions": 10, "generations": [0, 1], "settings": [{"d": 10, "T": 11, "T0": 30}]},
    }
    with pytest.raises(BenchError, match="T, T0 >= d \\+ 2"):
        check_config(base)
    with pytest.raises(BenchError, match="unknown collapse.studies"):
        check_config({**base, "studies": ["ridge_less"]})
    with pytest.raises(BenchError, match="unknown kernel"):
        KernelRidgeChainModule(kernel="cosine")


def test_formula_claim_detects_a_wrong_formula():
    good = {
        "ridgeless/setting=a/generation=0/err": 1.0,
        "ridgeless/setting=a/generation=0/err_se": 0.1,
        "ridgeless/setting=a/generation=0/theory": 1.05,
        "ridgeless/setting=a/generation=1/err": 2.0,
        "ridgeless/setting=a/generation=1/err_se": 0.1,
        "ridgeless/setting=a/generation=1/theory": 1.9,
    }
    out = claims.ridgeless_formula(RecordSet([{"seed": 0, "metrics": good, "config": {}}]))
    assert out.passed and out.measured["points"] == 2
    bad = {**good, "ridgeless/setting=a/generation=1/theory": 2.5}  # 5 SE off
    assert not claims.ridgeless_formula(RecordSet([{"seed": 0, "metrics": bad, "config": {}}])).passed
    assert claims.ridgeless_formula(RecordSet([{"seed": 0, "metrics": {}, "config": {}}])) is None


def test_smoke_run(run_bench):
    rec = run_bench(["task=collapse_regression", "profile=smoke"])
    m = rec["metrics"]
    for key in (
        "ridgeless/d=5/T=20/T0=15/spectrum=identity/generation=2/err",
        "overparam/d=20/T0=5/generation=2/err",
        "ridge/generation=2/adaptive/err",
        "ridge/fixed/slope",
        "ridge/T=40/generation=2/fixed/err",
        "kernel=rbf/generation=2/test_mse",
        "kernel=laplacian/test_mse_increase",
    ):
        assert m.get(key) is not None and math.isfinite(m[key]), key
    # the simulated ridgeless error of the smoke run is the formula's order of magnitude
    assert (
        0.5
        < m["ridgeless/d=5/T=20/T0=15/spectrum=identity/generation=2/err"]
        / m["ridgeless/d=5/T=20/T0=15/spectrum=identity/generation=2/theory"]
        < 2
    )
    assert (
        0 <= m["kernel=rbf/generation=0/test_acc"] <= 1 and m["kernel=rbf/generation=0/test_acc"] > 0.5
    )  # digits, 60 training inputs
    assert {c["name"][:3] for c in rec["claims"]} == {"(a)", "(b)", "(c)", "(d)", "(e)"}
    for name in ("error_vs_n", "error_vs_lambda", "error_vs_T", "kernel_error_vs_n", "curves"):
        assert Path(rec["artifacts"][name]).is_file(), name


def test_same_seed_same_numbers():
    cfg = {
        "repetitions": 8,
        "sigma": 1.0,
        "sigma0": 1.0,
        "generations": [0, 2],
        "settings": [{"d": 4, "T": 12, "T0": 10}],
    }
    a = ridgeless_study(cfg, 4, torch.Generator().manual_seed(7))[0]["err"]
    b = ridgeless_study(cfg, 4, torch.Generator().manual_seed(7))[0]["err"]
    assert np.array_equal(a, b)


def _one(metrics: dict) -> RecordSet:
    return RecordSet([{"seed": 0, "metrics": metrics, "config": {}}])


def test_claim_b_linear_growth_passes_and_fails():
    def m(slope, curvature):
        out = {}
        for name in ("fixed", "clean_tuned"):
            out |= {
                f"ridge/{name}/slope": slope,
                f"ridge/{name}/slope_se": 0.1,
                f"ridge/{name}/slope_theory": slope,
                f"ridge/{name}/curvature": curvature,
                f"ridge/{name}/curvature_se": 0.1,
            }
        return out

    assert claims.linear_in_n(_one(m(1.0, 0.05))).passed
    assert not claims.linear_in_n(_one(m(0.1, 0.05))).passed  # slope only 1 SE above 0
    assert not claims.linear_in_n(_one(m(1.0, 0.5))).passed  # curvature 5 SE: not a straight line
    assert claims.linear_in_n(_one({})) is None


def test_claim_c_best_lambda_passes_and_fails():
    def m(best, gains=3.0, moved=3.0):
        out = {"ridge/lambda_grid_ratio": 2.0}
        for n, b in enumerate(best):
            g = {
                "best_lambda": b,
                "best_lambda_theory": b,
                "adaptive_gain": gains,
                "adaptive_gain_se": 1.0,
                "clean_tuned_gain": moved,
                "clean_tuned_gain_se": 1.0,
            }
            out |= {"ridge/" + point_name(k, generation=n): v for k, v in g.items()}
        return out

    assert claims.best_lambda_grows(_one(m([0.1, 0.2, 0.4]))).passed
    assert claims.best_lambda_grows(_one(m([0.1, 0.2, 0.1, 0.4]))).passed  # one grid step down: tolerated
    assert not claims.best_lambda_grows(_one(m([0.1, 0.4, 0.1, 0.4]))).passed  # two steps down
    assert not claims.best_lambda_grows(_one(m([0.4, 0.2, 0.2]))).passed  # smaller at the end
    assert not claims.best_lambda_grows(_one(m([0.1, 0.2, 0.4], gains=1.5))).passed  # adaptive not > 2 SE better
    assert not claims.best_lambda_grows(_one(m([0.1, 0.2, 0.4], moved=1.0))).passed


def test_claim_e_kernel_error_growth_passes_and_fails():
    def m(increase, slope):
        k = "kernel=rbf/"
        return {
            k + "test_mse_increase": increase,
            k + "test_mse_increase_se": 0.1,
            k + "test_mse_slope": slope,
            k + "test_mse_slope_se": 0.1,
            k + point_name("test_mse", generation=0): 0.5,
        }

    assert claims.kernel_error_grows(_one(m(0.5, 0.3))).passed
    assert not claims.kernel_error_grows(_one(m(0.1, 0.3))).passed
    assert not claims.kernel_error_grows(_one(m(0.5, -0.3))).passed


def test_formula_claim_records_each_points_z():
    pts = {
        "ridgeless/" + point_name(k, d=4, generation=n): v
        for n in (0, 1)
        for k, v in {"err": 1.0 + n, "err_se": 0.1, "theory": 1.0 + n + 0.05}.items()
    }
    out = claims.ridgeless_formula(_one(pts))
    assert out.passed and out.measured["z by point"] == {"d=4/generation=0": -0.5, "d=4/generation=1": -0.5}
