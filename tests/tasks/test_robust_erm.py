"""robust_erm: exact worst-case perturbation, steepest-descent optimizers, the margin LP, the closed-form
gradient, config errors, claims logic, and smoke runs of both parts."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.harness.claims import RecordSet, evaluate
from bench.harness.errors import BenchError, NonFiniteLossError
from bench.optim.steepest import GD, CoordinateDescent, SignGD
from bench.tasks.robust_erm.linear_module import robust_risk_and_grad
from bench.tasks.robust_erm.margins import lp_margin, max_margin
from bench.tasks.robust_erm.threat import parse_p, robust_margin, worst_case_perturbation


# -- the exact worst case -------------------------------------------------------------------------------------
def test_linf_worst_case_equals_corner_search():
    g = torch.Generator().manual_seed(0)
    d, eps = 6, 0.3
    corners = torch.tensor(list(itertools.product([-eps, eps], repeat=d)), dtype=torch.float64)  # all 2^d corners
    for trial in range(20):
        w = torch.randn(d, generator=g, dtype=torch.float64)
        if trial % 4 == 0:
            w[trial % d] = 0.0  # a zero weight: sign(0) = 0 must still be a worst case
        x = torch.randn(d, generator=g, dtype=torch.float64)
        y = torch.tensor([1.0 if trial % 2 else -1.0], dtype=torch.float64)
        brute = (y * ((x[None, :] + corners) @ w)).min()
        closed = robust_margin(w, x[None, :], y, eps, math.inf)[0]
        delta = worst_case_perturbation(w, y, eps, math.inf)[0]
        assert torch.isclose(closed, brute, atol=1e-12)
        assert torch.isclose(y[0] * (x + delta) @ w, brute, atol=1e-12)
        assert delta.abs().max() <= eps + 1e-15


@pytest.mark.parametrize("p", [2.0, 1.0])
def test_l2_l1_worst_case_is_attained_and_not_beaten(p):
    g = torch.Generator().manual_seed(1)
    d, eps = 5, 0.7
    w = torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.randn(3, d, generator=g, dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    delta = worst_case_perturbation(w, y, eps, p)
    assert torch.allclose(torch.linalg.vector_norm(delta, ord=p, dim=1), torch.full((3,), eps, dtype=torch.float64))
    closed = robust_margin(w, x, y, eps, p)
    assert torch.allclose(y * ((x + delta) @ w), closed)
    if p == 1.0:  # the l1 ball is the hull of +-eps e_j: its vertices are an exhaustive search
        vertices = torch.cat([torch.eye(d), -torch.eye(d)]).double() * eps
    else:
        v = torch.randn(20000, d, generator=g, dtype=torch.float64)
        vertices = eps * v / v.norm(dim=1, keepdim=True)
    brute = (y[:, None] * ((x[:, None, :] + vertices[None]) @ w)).min(dim=1).values
    assert torch.all(closed <= brute + 1e-12)
    if p == 1.0:
        assert torch.allclose(closed, brute)


def test_parse_p_rejects_other_norms():
    assert (
        parse_p("inf") == math.inf and parse_p(2) == 2.0 and parse_p(1.0) == 1.0 and parse_p(float("inf")) == math.inf
    )
    for bad in (3, 0, "l3", -1):
        with pytest.raises(BenchError, match="threat.p"):
            parse_p(bad)


# -- steepest-descent optimizers --------------------------------------------------------------------------------
def test_coordinate_descent_changes_exactly_one_coordinate_per_step():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))
    ta, tb = torch.randn(3, 4), torch.randn(5)
    opt = CoordinateDescent([a, b], lr=0.3)
    for _ in range(25):
        before = torch.cat([a.detach().flatten(), b.detach().flatten()]).clone()
        loss = ((a - ta) ** 2).sum() + 2 * ((b - tb) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        grads = torch.cat([a.grad.flatten(), b.grad.flatten()])
        opt.step()
        change = torch.cat([a.detach().flatten(), b.detach().flatten()]) - before
        assert int((change != 0).sum()) == 1
        j = int(grads.abs().argmax())
        assert torch.isclose(change[j], -0.3 * grads[j])


def test_batched_steepest_descent_acts_per_row():
    torch.manual_seed(1)
    g = torch.randn(4, 7)
    w = torch.nn.Parameter(torch.zeros(4, 7))
    w.grad = g.clone()
    CoordinateDescent([w], lr=1.0, batched=True).step()
    assert ((w.detach() != 0).sum(dim=1) == 1).all()  # one coordinate per problem
    assert torch.equal(w.detach().abs().argmax(1), g.abs().argmax(1))
    s = torch.nn.Parameter(torch.zeros(4, 7))
    s.grad = g.clone()
    SignGD([s], lr=0.1, scale="dual", batched=True).step()  # l_inf steepest descent: -lr ||g_b||_1 sign(g_b)
    assert torch.allclose(s.detach(), -0.1 * g.abs().sum(1, keepdim=True) * g.sign())
    u = torch.nn.Parameter(torch.zeros(4, 7))
    u.grad = g.clone()
    GD([u], lr=0.3, scale="unit", batched=True).step()  # normalised GD: a step of length lr per problem
    assert torch.allclose(u.detach().norm(dim=1), torch.full((4,), 0.3))


def test_gd_and_sign_gd_match_their_textbook_updates():
    torch.manual_seed(2)
    w0 = torch.randn(10)
    g = torch.randn(10)
    p, q = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    p.grad, q.grad = g.clone(), g.clone()
    GD([p], lr=0.2).step()
    SignGD([q], lr=0.01).step()
    assert torch.allclose(p.detach(), w0 - 0.2 * g)
    assert torch.allclose(q.detach(), w0 - 0.01 * g.sign())


# -- margins by linear programming ------------------------------------------------------------------------------
def _teacher_data(m: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, d))
    return x, np.sign(x @ rng.standard_normal(d))


@pytest.mark.parametrize("q", [1.0, math.inf])
def test_lp_gamma_equals_direct_check_of_its_solution(q):
    x, y = _teacher_data(12, 6, seed=3)
    t, w = lp_margin(x, y, q)
    assert np.linalg.norm(w, ord=q) <= 1 + 1e-9  # feasible
    assert t == pytest.approx((y * (x @ w)).min(), abs=1e-9)  # the LP's value is the margin its w attains
    gamma, _ = max_margin(x, y, q)
    assert gamma == pytest.approx(t, abs=1e-9) and gamma > 0
    rng = np.random.default_rng(4)  # no other feasible direction does better
    v = rng.standard_normal((20000, 6)) * rng.random((20000, 6)) ** 3
    v /= np.linalg.norm(v, ord=q, axis=1, keepdims=True)
    assert (y[None, :] * (v @ x.T)).min(axis=1).max() <= gamma + 1e-9


@pytest.mark.parametrize("q", [1.0, 2.0, math.inf])
def test_max_margin_matches_brute_force_in_2d(q):
    x, y = _teacher_data(15, 2, seed=5)
    angles = np.linspace(0, 2 * np.pi, 200001)
    v = np.stack([np.cos(angles), np.sin(angles)], 1)
    v /= np.linalg.norm(v, ord=q, axis=1, keepdims=True)
    brute = (y[None, :] * (v @ x.T)).min(axis=1).max()
    assert max_margin(x, y, q)[0] == pytest.approx(brute, abs=1e-4)


def test_non_separable_data_have_no_positive_margin():
    x = np.array([[1.0, 2.0], [1.0, 2.0], [0.5, -1.0]])
    y = np.array([1.0, -1.0, 1.0])
    for q in (1.0, 2.0, math.inf):
        assert max_margin(x, y, q)[0] <= 1e-9


# -- closed-form gradient of the robust risk --------------------------------------------------------------------
@pytest.mark.parametrize("p", [math.inf, 2.0, 1.0])
@pytest.mark.parametrize("loss", ["exp", "logistic"])
def test_robust_risk_gradient_matches_autograd(p, loss):
    g = torch.Generator().manual_seed(6)
    b, n, d = 3, 9, 5
    w = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    eps = torch.tensor([0.0, 0.2, 0.5], dtype=torch.float64)
    member = torch.arange(n)[None, :] < torch.tensor([4, 9, 6])[:, None]
    weights = member.double() / member.sum(1, keepdim=True)
    margins = robust_margin(w, x, y, eps, p).T  # (b, n)
    pointwise = torch.exp(-margins) if loss == "exp" else torch.nn.functional.softplus(-margins)
    risk = (weights * pointwise).sum(1)
    (auto,) = torch.autograd.grad(risk.sum(), w)
    closed_risk, closed = robust_risk_and_grad(w.detach(), y[:, None] * x, weights, eps, p, loss)
    assert torch.allclose(closed_risk, risk.detach())
    assert torch.allclose(closed, auto)


# -- runs -------------------------------------------------------------------------------------------------------
def _problems(metrics: dict) -> list[str]:
    return sorted(k[: -len("problem/m")] for k in metrics if k.endswith("problem/m"))


def test_smoke_linear_sweep(run_bench):
    rec = run_bench(["task=robust_erm", "profile=smoke", "data.m=[8,16]", "threat.c=[0,0.5]"])
    m = rec["metrics"]
    prefixes = _problems(m)
    assert prefixes == ["m=16/c=0.5/", "m=16/c=0/", "m=8/c=0.5/", "m=8/c=0/"]
    for pre in prefixes:
        assert 0.0 <= m[pre + "test/robust_acc"] <= m[pre + "test/acc"] <= 1.0
        assert m[pre + "threat/gamma"] > 0
        assert m[pre + "problem/eps"] == pytest.approx(m[pre + "problem/c"] * m[pre + "threat/gamma"])
        assert m[pre + "train/robust_acc"] == 1.0  # the robust loss went small: every training point is robust
        # w withstands eps on the training set iff its normalised margin exceeds eps
        assert m[pre + "train/normalized_margin"] > m[pre + "problem/eps"]
        assert 1.0 <= m[pre + "w/l1_over_l2"] <= math.sqrt(16) + 1e-6
    for size in (8, 16):  # at eps = 0 robust accuracy is clean accuracy; eps > 0 can only lower it
        assert m[f"m={size}/c=0/test/robust_acc"] == m[f"m={size}/c=0/test/acc"]
    assert m["train/steps"] == 200
    for fig in ("robust_acc_vs_m", "l1_over_l2_vs_m"):
        assert Path(rec["artifacts"][fig]).is_file()
    again = run_bench(["task=robust_erm", "profile=smoke", "data.m=[8,16]", "threat.c=[0,0.5]"])
    assert again["metrics"]["m=8/c=0.5/test/robust_acc"] == m["m=8/c=0.5/test/robust_acc"]  # seeded


def test_smoke_single_problem_has_headline_metrics(run_bench):
    rec = run_bench(["task=robust_erm", "profile=smoke"])
    assert all(math.isfinite(rec["metrics"][m["name"]]) for m in rec["headline_metrics"])
    assert rec["metrics"]["problem/m"] == 16 and rec["metrics"]["problem/c"] == 0.5


def test_smoke_linear_coordinate_descent_is_sparse(run_bench):
    """CD from w0 = 0 touches at most one coordinate per step: 3 steps leave at most 3 nonzero weights."""
    rec = run_bench(
        [
            "task=robust_erm",
            "profile=smoke",
            "optimizer=cd",
            "data.m=16",
            "threat.c=0.5",
            "linear.steps=3",
            "linear.steps_per_call=3",
        ]
    )
    m = rec["metrics"]
    assert m["w/l1_over_l2"] <= math.sqrt(3) + 1e-6  # ||w||_1 / ||w||_2 <= sqrt(#nonzeros)
    assert "test/robust_acc" in m and m["problem/m"] == 16


@pytest.mark.parametrize(
    "method", [["model=diagonal_net"], ["model=diagonal_net", "optimizer=sign_gd"], ["optimizer=adam"]]
)
def test_smoke_other_methods_and_absolute_radius(run_bench, method):
    rec = run_bench(["task=robust_erm", "profile=smoke", *method, "threat.eps=0.05", "threat.p=2", "data.m=16"])
    m = rec["metrics"]
    assert m["problem/eps"] == 0.05 and "problem/c" not in m
    assert 0.0 <= m["test/robust_acc"] <= m["test/acc"] <= 1.0


def test_smoke_network(run_bench):
    rec = run_bench(["task=robust_erm", "profile=smoke", "part=network", "optimizer=sign_gd"])
    m = rec["metrics"]
    for split in ("test", "train"):
        assert 0.0 <= m[f"{split}/robust_acc@eps=0.1"] <= m[f"{split}/acc"] <= 1.0
    assert m["robust_gap@eps=0.1"] == pytest.approx(m["train/robust_acc@eps=0.1"] - m["test/robust_acc@eps=0.1"])
    assert m["problem/train_eps"] == 0.1 and m["train/steps"] == 4
    assert rec["validity"]["test/robust_acc@eps=0.1"]["robust_le_clean"] is True
    assert Path(rec["artifacts"]["robust_acc_vs_train_eps"]).is_file()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["threat.p=3"], "threat.p"),
        (["threat.c=-0.5"], "threat.c"),
        (["threat.eps=-0.1"], "threat.eps"),
        (["data.m=0"], "data.m"),
        (["data.teacher=sparse", "data.teacher_sparsity=17"], "teacher_sparsity"),
        (["data.m=64", "data.label_noise=0.5"], "not linearly separable"),
        (["part=network", "network.train_eps=-0.1"], "train_eps"),
        (["part=both"], "part"),
    ],
)
def test_bad_config_is_a_clear_error(run_bench, overrides, match):
    with pytest.raises(BenchError, match=match):
        run_bench(["task=robust_erm", "profile=smoke", *overrides])


def test_sparse_teacher_and_inputs():
    from bench.data.linear_teacher import LinearTeacherDataModule

    dm = LinearTeacherDataModule(
        d=40, m=[10, 30], n_test=200, teacher="sparse", teacher_sparsity=3, inputs="sparse", input_density=0.05, seed=0
    )
    dm.setup()
    assert int((dm.teacher != 0).sum()) == 3
    for split in ("train", "test"):
        x, y = dm.split(split)["x"], dm.split(split)["y"]
        assert set(x.unique().tolist()) <= {-1.0, 0.0, 1.0}
        assert ((x @ dm.teacher) != 0).all() and torch.equal(y, (x @ dm.teacher > 0).long())
    assert len(dm.split("train")["y"]) == 30


# -- claims logic -----------------------------------------------------------------------------------------------
def _record(model: str, opt: str, seed: int, values: dict, part: str = "linear") -> dict:
    metrics = {}
    for (m, c), (ra, ratio) in values.items():
        pre = f"m={m}/c={c:g}/"
        metrics.update(
            {
                pre + "problem/m": m,
                pre + "problem/c": c,
                pre + "problem/d": 256,
                pre + "test/robust_acc": ra,
                pre + "w/l1_over_l2": ratio,
            }
        )
    return {
        "config": {
            "part": part,
            "model": {"_target_": f"bench.models.linear.{model}"},
            "optimizer": {"_target_": f"bench.optim.steepest.{opt}"},
        },
        "seed": seed,
        "metrics": metrics,
    }


def test_claims_pass_on_paper_like_numbers_and_fail_when_reversed():
    from bench.tasks.robust_erm.claims import CLAIMS

    gd = {(32, 0.0): (0.59, 12.8), (256, 0.0): (0.75, 13.0), (32, 0.5): (0.12, 7.8), (256, 0.5): (0.55, 11.5)}
    cd = {(32, 0.0): (0.54, 4.4), (256, 0.0): (0.71, 9.8), (32, 0.5): (0.23, 4.7), (256, 0.5): (0.56, 10.0)}
    diag = {k: (v[0] + 0.02, v[1]) for k, v in cd.items()}
    jitter = [0.0, 0.004, -0.003]

    def records(a, b):
        out = []
        for s, j in enumerate(jitter):
            out.append(_record("LinearPredictor", "GD", s, {k: (v[0] + j, v[1]) for k, v in a.items()}))
            out.append(_record("LinearPredictor", "CoordinateDescent", s, {k: (v[0] - j, v[1]) for k, v in b.items()}))
            out.append(_record("DiagonalNet", "GD", s, {k: (v[0] - j, v[1]) for k, v in diag.items()}))
        return RecordSet(out)

    good = {r.name[:3]: r.passed for r in evaluate(CLAIMS, records(gd, cd))}
    assert good == {"(a)": True, "(b)": True, "(c)": True, "(d)": True}  # (e) has no network runs: not checked
    bad = {r.name[:3]: r.passed for r in evaluate(CLAIMS, records(cd, gd))}  # GD and CD swapped
    assert bad["(b)"] is False and bad["(d)"] is False and bad["(a)"] is False


def _write_idx(path: Path, data: np.ndarray, magic: int) -> None:
    header = np.array([magic, *data.shape], dtype=">i4").tobytes()
    path.write_bytes(header + data.astype(np.uint8).tobytes())


def test_network_part_on_mnist_files(run_bench, tmp_path):
    """MNIST 2-vs-7 for users with the files: torchvision's raw layout, written tiny here."""
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {"train": np.array([2, 7, 1, 2, 7, 7, 3, 2]), "t10k": np.array([7, 2, 0, 2, 9])}
    for split, y in labels.items():
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (len(y), 28, 28)), 2051)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", y, 2049)
    rec = run_bench(
        [
            "task=robust_erm",
            "profile=smoke",
            "part=network",
            "data@network.data=mnist",
            "~network.data.test_fraction",
            f"network.data.root={tmp_path / 'mnist'}",
            "network.data.classes=[2,7]",
        ]
    )
    m = rec["metrics"]
    assert m["test/class_count/0"] == 2 and m["test/class_count/1"] == 1  # the 2s and the 7 of the test file
    assert m["train/class_count/0"] == 3 and m["train/class_count/1"] == 3
    assert 0.0 <= m["test/robust_acc@eps=0.1"] <= m["test/acc"] <= 1.0


def _paper_like(gd_robust_by_m: dict, cd_robust_by_m: dict, diag_shift: float = 0.02) -> RecordSet:
    """GD / CD / diagonal-net records over 3 seeds with given robust accuracies at c = 0.5 (c = 0 fixed)."""
    out = []
    for s, j in enumerate([0.0, 0.004, -0.003]):
        gd = {(m, 0.5): (v + j, 11.0) for m, v in gd_robust_by_m.items()} | {
            (m, 0.0): (0.7 + j, 13.0) for m in gd_robust_by_m
        }
        cd = {(m, 0.5): (v - j, 5.0) for m, v in cd_robust_by_m.items()} | {
            (m, 0.0): (0.68 - j, 6.0) for m in cd_robust_by_m
        }
        out.append(_record("LinearPredictor", "GD", s, gd))
        out.append(_record("LinearPredictor", "CoordinateDescent", s, cd))
        out.append(_record("DiagonalNet", "GD", s, {k: (v[0] + diag_shift, v[1]) for k, v in cd.items()}))
    return RecordSet(out)


def test_claim_b_checks_every_consecutive_m_not_only_the_ends():
    from bench.tasks.robust_erm.claims import robust_cd_beats_gd

    gd = {32: 0.10, 64: 0.20, 128: 0.30, 256: 0.50}
    assert robust_cd_beats_gd(_paper_like(gd, {32: 0.25, 64: 0.30, 128: 0.36, 256: 0.52})).passed  # 0.15, .10, .06, .02
    # ends still shrink (0.15 -> 0.02) but the advantage jumps up in the middle (0.10 -> 0.16): not "shrinking with m"
    assert not robust_cd_beats_gd(_paper_like(gd, {32: 0.25, 64: 0.30, 128: 0.46, 256: 0.52})).passed


def test_claim_c_fails_when_the_diagonal_net_is_far_from_cd():
    from bench.tasks.robust_erm.claims import diag_net_like_cd

    gd, cd = {32: 0.10, 256: 0.50}, {32: 0.25, 256: 0.52}
    assert diag_net_like_cd(_paper_like(gd, cd, diag_shift=0.02)).passed
    assert not diag_net_like_cd(_paper_like(gd, cd, diag_shift=0.08)).passed
    assert not diag_net_like_cd(_paper_like(gd, cd, diag_shift=-0.08)).passed


def _network_record(opt: str, seed: int, acc_by_eps: dict) -> dict:
    metrics = {}
    for e, (clean, robust) in acc_by_eps.items():
        pre = f"train_eps={e:g}/"
        metrics.update(
            {pre + "problem/train_eps": e, pre + "test/acc": clean, pre + f"test/robust_acc@eps={e:g}": robust}
        )
    return {
        "config": {"part": "network", "optimizer": {"_target_": f"bench.optim.steepest.{opt}"}},
        "seed": seed,
        "metrics": metrics,
    }


def test_claim_e_compares_the_optimizer_spread_robust_vs_clean():
    from bench.tasks.robust_erm.claims import networks_optimizer_matters_more_robust as claim_e

    def records(robust_spread: float) -> RecordSet:
        out = []
        for s in range(2):
            for i, opt in enumerate(("GD", "SignGD", "Adam")):
                out.append(
                    _network_record(
                        opt, s, {0.0: (0.95 + 0.005 * i, 0.95 + 0.005 * i), 0.1: (0.9, 0.5 + robust_spread * i / 2)}
                    )
                )
        return RecordSet(out)

    assert claim_e(records(0.2)).passed  # spread 0.2 at eps 0.1 vs 0.01 at eps 0
    assert not claim_e(records(0.004)).passed  # the optimizers differ less under attack than clean
    assert claim_e(RecordSet([])) is None


@pytest.mark.parametrize("d", [128, 256])
def test_coordinate_descent_with_line_search_is_stable_at_any_dimension(run_bench, d):
    """A fixed CD step diverges once the loss's curvature along a coordinate exceeds 2 / lr (issue 16: lr 1 went to
    NaN at d = 128 for some seeds). At lr 4 a fixed step diverges at once; the line search backtracks from it and
    every run ends finite, at two dimensions and several seeds."""
    base = [
        "task=robust_erm",
        "profile=smoke",
        "optimizer=cd",
        "optimizer.lr=4",
        f"data.d={d}",
        "data.m=64",
        "threat.c=0.5",
        "linear.steps=400",
    ]
    with pytest.raises(NonFiniteLossError):
        run_bench(base + ["seed=0"])
    for seed in (0, 1, 2):
        m = run_bench(base + ["optimizer.line_search=true", f"seed={seed}"])["metrics"]
        assert math.isfinite(m["train/loss"]) and math.isfinite(m["test/robust_acc"]), (d, seed, m["train/loss"])


def test_a_zero_score_is_an_error_and_the_ties_half_variant_counts_it_half(run_bench):
    # sparse inputs (5% nonzero) and one coordinate-descent step: w has one nonzero weight, so every test point that
    # is 0 on that coordinate (about 95%) scores exactly 0
    rec = run_bench(
        [
            "task=robust_erm",
            "profile=smoke",
            "optimizer=cd",
            "data.inputs=sparse",
            "data.input_density=0.05",
            "linear.steps=1",
            "linear.steps_per_call=1",
            "threat.c=0.0",
        ]
    )
    m = rec["metrics"]
    assert 0.8 < m["test/tie_frac"] < 1.0
    assert m["test/acc"] <= 1.0 - m["test/tie_frac"] + 1e-9  # a tie is never counted right
    assert m["test/acc_ties_half"] == pytest.approx(m["test/acc"] + 0.5 * m["test/tie_frac"])
    assert m["test/robust_acc_ties_half"] == pytest.approx(m["test/acc_ties_half"])  # eps = 0: robust = clean
