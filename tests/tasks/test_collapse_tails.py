"""collapse_tails: Zipf distributions and tail cuts, the memorising model's exact error against brute force and
Monte Carlo, GCD data and label generation, and a smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bench.harness.errors import BenchError
from bench.tasks.collapse_tails import hutter
from bench.tasks.collapse_tails.gcd import GcdDataModule, gcd_bucket, generate_labels
from bench.tasks.collapse_tails.zipf import (
    TrainingDistribution,
    Zipf,
    cut_top_k,
    cut_top_p,
    empirical,
    generation_chain,
    mix,
)

D = torch.float64


# -- distributions and cuts, on hand-computed values ------------------------------------------------------------
def test_zipf_three_items_and_top_k_top_p():
    z = Zipf(2.0, head=10, support=3)  # p proportional to 1, 1/4, 1/9 = 36/49, 9/49, 4/49
    assert torch.allclose(z.head_probs, torch.tensor([36, 9, 4], dtype=D) / 49)
    assert z.tail_mass == pytest.approx(0.0, abs=1e-15)
    top2 = z.top_k(2)
    assert top2.clean_weight == 0 and top2.items.tolist() == [1, 2]
    assert torch.allclose(top2.probs, torch.tensor([0.8, 0.2], dtype=D))
    assert z.top_p_k(0.7) == 1 and z.top_p_k(36 / 49) == 1 and z.top_p_k(0.8) == 2 and z.top_p_k(0.95) == 3
    assert z.mass_beyond(1) == pytest.approx(13 / 49)
    with pytest.raises(BenchError):
        z.top_k(11)


def test_cuts_of_a_sparse_distribution_break_ties_to_the_smaller_item():
    q = TrainingDistribution(0.0, torch.tensor([5, 3, 9]), torch.tensor([0.25, 0.25, 0.5], dtype=D))
    top2 = cut_top_k(q, 2)
    assert top2.items.tolist() == [9, 3] and torch.allclose(top2.probs, torch.tensor([2 / 3, 1 / 3], dtype=D))
    assert cut_top_p(q, 0.5).items.tolist() == [9]
    assert cut_top_p(q, 0.6).items.tolist() == [9, 3]
    assert cut_top_p(q, 1.0).items.tolist() == [9, 3, 5]
    m = mix(q, 0.3)
    assert m.clean_weight == pytest.approx(0.3) and torch.allclose(m.probs, 0.7 * q.probs)
    e = empirical(torch.tensor([3, 3, 5, 3]))
    assert e.items.tolist() == [3, 5] and torch.allclose(e.probs, torch.tensor([0.75, 0.25], dtype=D))


def test_bad_inputs_raise_bench_errors():
    with pytest.raises(BenchError, match="beta"):
        Zipf(1.0)
    with pytest.raises(BenchError):
        mix(Zipf(2.0, head=10).top_k(3), 1.5)
    with pytest.raises(BenchError, match="head"):
        Zipf(1.5, head=10).top_p(0.99)


def test_sampling_follows_p_including_the_analytic_tail():
    z = Zipf(1.5, head=50)  # infinite support: ~25% of the mass lies beyond the head
    items = z.sample_clean(200_000, torch.Generator().manual_seed(0))
    observed = torch.bincount(items.clamp(max=51), minlength=52)[1:].double()  # 51 = "beyond the head"
    expected = torch.cat([z.head_probs, torch.tensor([z.tail_mass], dtype=D)]) * len(items)
    assert stats.chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3
    # within the tail, item i > head appears with probability ~ c i^-beta
    tail = items[items > 50]
    frac = float((tail <= 100).double().mean())
    expected_frac = float(z.prob(torch.arange(51, 101)).sum()) / z.tail_mass
    assert frac == pytest.approx(expected_frac, abs=4 * math.sqrt(expected_frac * (1 - expected_frac) / len(tail)))


# -- the memorising model's exact error --------------------------------------------------------------------------
def brute_force_error(p: np.ndarray, q: np.ndarray, T: np.ndarray) -> np.ndarray:
    return np.array([(p * (1 - q) ** t).sum() for t in T])


def test_exact_error_with_analytic_tail_equals_the_brute_force_sum():
    N, T = 20_000, np.array([1, 10, 300, 10_000, 10**6])
    explicit, short = Zipf(1.5, head=N, support=N), Zipf(1.5, head=5000, support=N)  # analytic beyond 5000
    p = explicit.head_probs.numpy()
    q_mix = 0.2 * p
    q_mix[:30] += 0.8 * p[:30] / p[:30].sum()
    for q_short, q_np in ((short.clean(), p), (mix(short.top_k(30), 0.2), q_mix)):
        got = hutter.expected_error(short, q_short, torch.tensor(T)).numpy()
        np.testing.assert_allclose(got, brute_force_error(p, q_np, T), rtol=1e-6)
    # T = 1 by hand: sum_i p_i (1 - p_i) = 1 - sum p_i^2
    assert float(hutter.expected_error(explicit, explicit.clean(), torch.tensor([1]))) == pytest.approx(
        1 - (p**2).sum()
    )


def test_sparse_items_beyond_the_head_are_counted_exactly():
    N = 5_000
    explicit, short = Zipf(2.0, head=N, support=N), Zipf(2.0, head=100, support=N)
    q_items = torch.tensor([1, 2, 150, 4000])
    q_probs = torch.tensor([0.3, 0.2, 0.1, 0.1], dtype=D)
    T = torch.tensor([1, 7, 50, 1000])
    ref = hutter.expected_error(explicit, TrainingDistribution(0.3, q_items, q_probs), T)
    got = hutter.expected_error(short, TrainingDistribution(0.3, q_items, q_probs), T)
    assert torch.allclose(got, ref, rtol=1e-6)


def test_exact_error_equals_monte_carlo_within_error_bars(monkeypatch):
    """The exact expectation against 400 sampled training sets per size, for clean, cut, mixed and generated
    data, through the protocol's own check; family-wise 0.1% Bonferroni t threshold over the compared points."""
    from bench.tasks.collapse_tails.sweeps import MonteCarloCheck

    g = torch.Generator().manual_seed(1)
    z = Zipf(1.5, head=300)
    reps = 400
    check = MonteCarloCheck(torch.tensor([1, 4, 30, 200, 3000]), reps)
    for q in (z.clean(), z.top_k(20), mix(z.top_k(20), 0.1), generation_chain(z, 500, 2, g)[-1]):
        check.run(z, q, g)
    threshold = stats.t.ppf(1 - 0.001 / (2 * check.comparisons), reps - 1)
    assert check.comparisons >= 15 and check.max_abs_t < threshold
    # a wrong formula is caught: the same draws against errors 2% off
    bad = MonteCarloCheck(check.T, reps)
    exact = hutter.expected_error
    monkeypatch.setattr(hutter, "expected_error", lambda *a: 1.02 * exact(*a))
    bad.run(z, z.clean(), torch.Generator().manual_seed(1))
    assert bad.max_abs_t > threshold


def test_floor_and_theory():
    z = Zipf(2.0)
    q = z.top_k(100)
    assert hutter.floor(z, q) == pytest.approx(z.mass_beyond(100), rel=1e-12)
    assert float(hutter.expected_error(z, q, torch.tensor([1e9]))) == pytest.approx(z.mass_beyond(100), rel=1e-9)
    # the clean law: Gamma(1 - 1/b) c^(1/b) T^-(1 - 1/b) / b at large T; the tail mass ~ c k^(1-b)/(b-1)
    big = torch.tensor([1e8])
    assert float(hutter.expected_error(z, z.clean(), big)) / float(hutter.clean_theory(z, big)[0]) == pytest.approx(
        1, abs=1e-3
    )
    assert z.mass_beyond(1000) / float(hutter.cut_plateau_theory(z, 1000)) == pytest.approx(1, abs=1e-3)
    # the generation-1 floor's expectation is the clean error at T0 (the expected unseen mass)
    g = torch.Generator().manual_seed(0)
    floors = np.array([hutter.floor(z, generation_chain(z, 1000, 1, g)[0]) for _ in range(64)])
    exact = float(hutter.expected_error(z, z.clean(), torch.tensor([1000])))
    assert abs(floors.mean() - exact) < 4 * floors.std(ddof=1) / 8


def test_measurements_on_curves():
    T = np.array([1, 10, 100, 1000])
    assert hutter.loglog_slope(T, 3 * T**-0.4) == pytest.approx(-0.4)
    assert hutter.first_crossing(T, np.array([1.0, 0.5, 0.1, 0.01]), 0.1) == pytest.approx(100)
    assert hutter.first_crossing(T, np.array([1.0, 1.0, 0.1, 0.01]), math.sqrt(0.1)) == pytest.approx(math.sqrt(1000))
    assert math.isnan(hutter.first_crossing(T, np.ones(4), 0.5))


# -- GCD data and generated labels --------------------------------------------------------------------------------
def test_gcd_data_splits_pairs_and_labels_gcd():
    dm = GcdDataModule(max_int=30, fractions=[0.4, 0.4, 0.2], num_buckets=4, seed=0)
    dm.setup()
    seen = {}
    for name in ("train", "generated", "test"):
        s = dm.split(name)
        a = s["x"][:, :30].argmax(1) + 1
        b = s["x"][:, 30:].argmax(1) + 1
        assert torch.equal(s["y"], torch.gcd(a, b) - 1)
        assert torch.equal(s["group"], gcd_bucket(torch.gcd(a, b), 4))
        for u, v in zip(a.tolist(), b.tolist()):
            seen.setdefault((min(u, v), max(u, v)), set()).add(name)
    assert len(seen) == 30 * 31 // 2 and all(len(v) == 1 for v in seen.values())  # each unordered pair: one split
    assert gcd_bucket(torch.tensor([1, 2, 3, 4, 7, 8, 30]), 4).tolist() == [0, 1, 1, 2, 2, 3, 3]
    labels = torch.zeros_like(dm.split("generated")["y"])
    relabelled = dm.with_generated_labels(labels)
    assert torch.equal(relabelled.split("train")["y"], labels)
    assert relabelled.split("train")["x"] is dm.split("generated")["x"] and relabelled.split("test") is dm.split("test")
    assert dm.splits["train"] is not relabelled.splits["train"]  # the original keeps its clean training split
    with pytest.raises(BenchError):
        GcdDataModule(max_int=30, fractions=[0.5, 0.5, 0.5])


def test_generated_labels_cut_the_tail():
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 4], [0, 0, 0, 5], [5, 0, 0, 0]])
    g = torch.Generator().manual_seed(0)
    assert generate_labels(logits, "none", 0, 1.0, g).tolist() == [0, 1, 2, 3, 0]
    # top-2 emitted classes: 0 (twice), then 1 (tie with 2 and 3 broken towards the smaller gcd)
    assert generate_labels(logits, "top_k", 2, 1.0, g).tolist() == [0, 1, 0, 0, 0]
    # nucleus p = 0.5: only each row's top class survives (its softmax mass exceeds 0.5)
    assert generate_labels(logits, "top_p", 0, 0.5, g).tolist() == [0, 1, 2, 3, 0]
    with pytest.raises(BenchError):
        generate_labels(logits, "bogus", 0, 1.0, g)


# -- runs ---------------------------------------------------------------------------------------------------------
def test_smoke_run(run_bench):
    rec = run_bench(["task=collapse_tails", "profile=smoke"])
    m = rec["metrics"]
    for beta in (1.5, 2.0):
        b = f"hutter/beta={beta:g}"
        # each beta its own theory slope -(1 - 1/beta) (-1/3 and -1/2): swapped betas fail
        assert m[f"{b}/clean/slope"] == pytest.approx(-(1 - 1 / beta), abs=0.05)
        assert m[f"{b}/k=10/topk/plateau"] > m[f"{b}/k=30/topk/plateau"] > 0
        assert m[f"{b}/generation=2/chain/floor"] >= m[f"{b}/generation=1/chain/floor"] > 0
        assert m[f"{b}/pi=0.1/mix/t_leave"] > m[f"{b}/pi=0.3/mix/t_leave"]
    assert m["hutter/mc/comparisons"] > 0 and m["hutter/mc/max_abs_t"] >= 0
    for n in (0, 1):
        assert 0 <= m[f"gcd/generation={n}/test/acc"] <= 1
        assert sum(m[f"gcd/generation={n}/test/bucket_count/{b}"] for b in range(4)) > 0
    assert m["gcd/generation=1/generated/distinct_labels"] <= 3  # top-3 cut
    assert {"clean_scaling", "tail_cut", "mixing", "generations", "gcd_buckets", "hutter_curves"} <= set(
        rec["artifacts"]
    )
    names = {c["name"][:4] for c in rec["claims"]}
    assert {"(a) ", "(b) ", "(c) ", "(d) ", "(e) ", "(sim"} <= names


def test_hutter_part_is_reproducible_and_bad_config_is_refused(run_bench):
    from bench.harness.config import compose
    from bench.tasks.collapse_tails import sweeps

    cfg = compose(["task=collapse_tails", "profile=smoke"]).hutter
    first = sweeps.run_all(cfg, 3)[0]
    assert first == sweeps.run_all(cfg, 3)[0]  # same seed, same numbers
    assert first["beta=2/clean/mc_slope"] != sweeps.run_all(cfg, 4)[0]["beta=2/clean/mc_slope"]  # the seed matters
    with pytest.raises(BenchError, match="part"):
        run_bench(["task=collapse_tails", "profile=smoke", "part=everything"])
    with pytest.raises(BenchError, match="beta"):
        run_bench(["task=collapse_tails", "profile=smoke", "hutter.betas=[1.0]"])


# -- claims logic on synthetic records ---------------------------------------------------------------------------
def _hutter_record(
    seed=0, slope_shift=0.0, plateau_shift=0.0, leave_slope=-1.0, rise=0.01, max_t=1.0, rare=(0.4, 0.05)
):
    from bench.harness.naming import point_name

    m = {"hutter/mc/max_abs_t": max_t, "hutter/mc/comparisons": 20, "hutter/mc/dof": 9}
    for beta in (1.5, 2.0):
        h = lambda metric, beta=beta, **axes: "hutter/" + point_name(metric, beta=beta, **axes)  # noqa: E731
        theory = -(1 - 1 / beta)
        m |= {
            h("clean/slope"): theory + slope_shift,
            h("clean/mc_slope"): theory,
            h("clean/mc_slope_se"): 0.005,
            h("topk/plateau_slope"): -(beta - 1) + plateau_shift,
            h("mix/leave_slope"): leave_slope,
        }
        for n in (1, 2):
            m |= {
                h("chain/floor", generation=n): 0.01 * n,
                h("chain/floor_se", generation=n): 0.001,
                h("chain/rise", generation=n): rise,
                h("chain/rise_se", generation=n): 0.001,
            }
    m |= {
        "gcd/generation=0/test/rare_acc": rare[0],
        "gcd/generation=1/test/rare_acc": rare[1] + 0.02 * (seed - 1),
        "gcd/generation=0/test/common_acc": 0.9,
        "gcd/generation=1/test/common_acc": 0.9,
    }
    config = {"hutter": {"betas": [1.5, 2.0], "chain": {"generations": 2}}, "gcd": {"generations": 1}}
    return {"seed": seed, "metrics": m, "config": config}


@pytest.mark.parametrize(
    "bad, claim",
    [
        ({"slope_shift": 0.05}, "(a)"),
        ({"plateau_shift": 0.08}, "(b)"),
        ({"leave_slope": -0.9}, "(c)"),
        ({"rise": 0.001}, "(d)"),
        ({"max_t": 9.0}, "(sim)"),
        ({"rare": (0.4, 0.39)}, "(e)"),
    ],
)
def test_each_claim_passes_on_theory_numbers_and_fails_when_its_clause_breaks(bad, claim):
    from bench.harness.claims import RecordSet, evaluate
    from bench.tasks.collapse_tails.claims import CLAIMS

    good = {r.name.split(" ")[0]: r.passed for r in evaluate(CLAIMS, RecordSet([_hutter_record(s) for s in range(3)]))}
    assert set(good) == {"(a)", "(b)", "(c)", "(d)", "(e)", "(sim)"} and all(good.values()), good
    broken = {
        r.name.split(" ")[0]: r.passed
        for r in evaluate(CLAIMS, RecordSet([_hutter_record(s, **bad) for s in range(3)]))
    }
    assert broken[claim] is False
    assert all(v for k, v in broken.items() if k != claim), broken
