"""robust_pruning: quotas, scores, theory and claims on hand-made inputs; the cached stages across densities and
methods; bad input; a smoke run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.tasks.robust_pruning import claims as C
from bench.tasks.robust_pruning import quotas as Q
from bench.tasks.robust_pruning import scores as S
from bench.tasks.robust_pruning.protocol import parse_method, validation_view
from bench.tasks.robust_pruning.theory import (
    average_risk,
    errors_at_ratio,
    optimal_threshold,
    theory_metrics,
)


# -- quotas ------------------------------------------------------------------------------------------------------
def test_drop_quotas_cap_a_class_and_redistribute_its_excess_in_proportion():
    sizes = torch.tensor([100, 10, 100])
    recall = torch.tensor([0.9, 0.2, 0.5])  # errors 0.1 : 0.8 : 0.5
    # uncapped: 100 * [0.1, 0.8, 0.5] / 1.4 = [7.1, 57.1, 35.7]; class 1 holds only 10, so the other 90 are shared
    # 0.1 : 0.5 between classes 0 and 2 = [15, 75]
    n = Q.drop_quotas(recall, sizes, 100)
    assert n.tolist() == [15, 10, 75]


def test_drop_quotas_sum_to_dn_and_respect_class_sizes():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        sizes = torch.randint(1, 60, (7,), generator=g)
        recall = torch.rand(7, generator=g)
        keep = int(torch.randint(1, int(sizes.sum()) + 1, (1,), generator=g))
        n = Q.drop_quotas(recall, sizes, keep)
        assert int(n.sum()) == keep and bool((n <= sizes).all()) and bool((n >= 0).all())


def test_drop_quotas_follow_the_validation_error_when_no_cap_binds():
    n = Q.drop_quotas(torch.tensor([0.8, 0.6, 0.4]), torch.tensor([1000, 1000, 1000]), 120)
    assert n.tolist() == [20, 40, 60]


def test_drop_quotas_with_perfect_recall_everywhere_fall_back_to_class_sizes():
    n = Q.drop_quotas(torch.ones(3), torch.tensor([10, 20, 30]), 30)
    assert n.tolist() == [5, 10, 15]


def test_the_floor_rule_raises_an_emptied_class_and_says_so():
    y = torch.tensor([0] * 10 + [1] * 10)
    score = torch.cat([torch.ones(10), torch.zeros(10)])  # class 1 is all "easy": a plain top-k drops it entirely
    n = Q.implied_quotas(score, y, 2, keep=5, tie_seed=0)
    assert n.tolist() == [5, 0]
    with pytest.warns(UserWarning, match="min_per_class"):
        floored, raised = Q.apply_floor(n, torch.tensor([10, 10]), min_per_class=2)
    assert floored.tolist() == [3, 2] and raised == [1]
    kept = Q.select(score, y, floored, tie_seed=0)
    assert torch.bincount(y[kept], minlength=2).tolist() == [3, 2]


def test_select_keeps_the_highest_scores_within_each_class():
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    score = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.2, 0.8])
    assert Q.select(score, y, torch.tensor([2, 1]), tie_seed=0).tolist() == [1, 2, 5]


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, "abc", float("nan")])
def test_a_density_outside_zero_one_is_an_error(density):
    with pytest.raises(BenchError, match=r"\(0, 1\]"):
        Q.check_density(density)


def test_a_density_too_low_for_one_example_per_class_is_an_error():
    sizes = torch.tensor([40, 40, 40])
    with pytest.raises(BenchError, match="min_per_class"):
        Q.check_budget(Q.keep_count(0.01, 120), sizes, 1, 0.01)
    Q.check_budget(Q.keep_count(0.03, 120), sizes, 1, 0.03)  # 4 >= 3 examples: fine


@pytest.mark.parametrize("method", ["el2n+bar", "foo", "el2n+score", "+drop"])
def test_unknown_score_or_quota_rule_is_an_error(method):
    with pytest.raises(BenchError, match="known methods"):
        parse_method(method)


def test_method_names_parse_into_score_and_quota_rule():
    assert parse_method("random") == ("random", "score")
    assert parse_method("dynamic_uncertainty+drop") == ("dynamic_uncertainty", "drop")


# -- scores ------------------------------------------------------------------------------------------------------
def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))


def test_el2n_equals_a_direct_per_example_computation():
    net = _tiny_net()
    x, y = torch.randn(9, 3), torch.randint(0, 4, (9,))
    got = S.el2n(S.predict_proba(net, x), y)
    for i in range(9):
        p = torch.softmax(net(x[i]), dim=0)
        onehot = torch.zeros(4)
        onehot[y[i]] = 1
        assert math.isclose(float(got[i]), float(torch.sqrt(((p - onehot) ** 2).sum())), rel_tol=1e-5)


def test_grand_equals_a_loop_over_examples_with_autograd():
    net = _tiny_net()
    x, y = torch.randn(11, 3), torch.randint(0, 4, (11,))
    got = S.grand(net, x, y, chunk=4)  # chunks of 4, 4, 3: chunking must not change anything
    for i in range(11):
        net.zero_grad()
        F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]).backward()
        direct = torch.sqrt(sum((p.grad**2).sum() for p in net.parameters()))
        assert math.isclose(float(got[i]), float(direct), rel_tol=1e-5)


def test_forgetting_counts_correct_to_incorrect_flips_of_a_scripted_sequence():
    correct = torch.tensor(
        [
            [1, 0, 1, 0, 1],  # learned, forgotten, learned, forgotten, learned: 2 events
            [0, 0, 1, 1, 1],  # learned once, never forgotten: 0
            [1, 1, 1, 1, 0],  # forgotten at the end: 1
            [0, 0, 0, 0, 0],  # never learned: more than any learned example (T + 1 = 6)
        ]
    ).T.bool()  # (T, N)
    assert S.forgetting(correct).tolist() == [2.0, 0.0, 1.0, 6.0]


def test_dynamic_uncertainty_is_the_mean_windowed_std():
    p = torch.tensor([[0.1, 0.5], [0.3, 0.5], [0.2, 0.5], [0.9, 0.5]])  # (T=4, N=2)
    got = S.dynamic_uncertainty(p, window=2)
    windows = [torch.tensor([0.1, 0.3]).std(), torch.tensor([0.3, 0.2]).std(), torch.tensor([0.2, 0.9]).std()]
    assert math.isclose(float(got[0]), float(sum(windows) / 3), rel_tol=1e-6) and float(got[1]) == 0.0


def test_coreset_picks_the_farthest_points_first():
    g = torch.Generator().manual_seed(0)
    cluster = 0.1 * torch.randn(20, 2, generator=g)
    far = torch.tensor([[10.0, 0.0], [0.0, 20.0], [-9.0, -9.0]])
    emb = torch.cat([cluster, far])
    order = S.k_center_order(emb)
    assert int(order[0]) == int((emb - emb.mean(0)).norm(dim=1).argmin())  # the point nearest the mean starts
    assert set(order[1:4].tolist()) == {20, 21, 22}
    assert int(order[1]) == 21  # (0, 20) is the farthest from the start, then the others in turn
    y = torch.zeros(23, dtype=torch.long)
    global_score, class_score = S.coreset_scores(emb, y, 1)
    assert set(torch.topk(global_score, 4).indices.tolist()) >= {20, 21, 22}
    assert torch.equal(global_score, class_score)  # one class: the same order


# -- theory ------------------------------------------------------------------------------------------------------
def test_priors_in_the_ratio_of_the_stds_equalise_the_class_errors():
    mu, sigma = (0.0, 4.0), (1.0, 2.0)
    t, e0, e1 = errors_at_ratio(0.5, mu, sigma)
    assert math.isclose(t, 4.0 / 3.0, rel_tol=1e-12) and math.isclose(e0, e1, rel_tol=1e-9)
    _, b0, b1 = errors_at_ratio(1.0, mu, sigma)  # balanced classes: the wider class is the worse one
    assert b1 > b0 + 0.05
    # a rare narrow class: predicting the wide class everywhere (t = -inf, risk phi_0) beats every finite threshold
    mu, sigma, phi = (0.0, 2.0), (1.0, 2.0), (0.2, 0.8)
    assert optimal_threshold(mu, sigma, phi) == -math.inf
    assert min(average_risk(t, mu, sigma, phi) for t in torch.linspace(-10, 10, 2001).tolist()) > 0.2


# -- claims on synthetic records ---------------------------------------------------------------------------------
def _record(method: str, density: float, seed: int, wca: float, acc: float) -> dict:
    return {
        "seed": seed,
        "config": {"method": method, "robust_pruning": {"density": density}},
        "metrics": {"test/worst_class_acc": wca, "test/acc": acc},
    }


def _records(drop_gain: float, drop_cost: float, bias: float) -> RecordSet:
    recs = []
    for seed in range(3):
        for d in (0.3, 0.5, 0.9):
            noise = 0.002 * seed
            base_wca = 0.5 - (bias if d == 0.3 else 0.0)
            for m in ("random", "el2n", "forgetting"):
                recs.append(_record(m, d, seed, base_wca + noise, 0.7 + noise))
            recs.append(_record("random+drop", d, seed, base_wca + drop_gain + noise, 0.7 - drop_cost + noise))
    return RecordSet(recs)


def test_claims_pass_on_records_that_show_the_effects():
    rs = _records(drop_gain=0.05, drop_cost=0.01, bias=0.1)
    assert C.drop_worst_class(rs).passed
    assert C.score_bias_grows(rs).passed
    assert C.drop_average_cost(rs).passed


def test_claims_fail_on_records_that_do_not():
    rs = _records(drop_gain=-0.01, drop_cost=0.05, bias=-0.02)
    a = C.drop_worst_class(rs)
    assert not a.passed and a.measured["d=0.3 drop-random"]["mean"] == pytest.approx(-0.01)
    assert not C.score_bias_grows(rs).passed
    c = C.drop_average_cost(rs)
    assert not c.passed and c.measured["d=0.9 acc loss"]["mean"] == pytest.approx(0.05)


def test_claims_without_their_runs_do_not_apply():
    rs = RecordSet([_record("el2n", 0.5, 0, 0.4, 0.6)])
    assert C.drop_worst_class(rs) is None and C.drop_average_cost(rs) is None and C.score_bias_grows(rs) is None


def test_theory_claim_passes_on_the_closed_form_and_fails_on_a_wrong_one():
    good = {"seed": 0, "config": {}, "metrics": theory_metrics((0.0, 4.0), (1.0, 2.0))}
    assert C.gaussian_theory(RecordSet([good])).passed
    bad = {"seed": 0, "config": {}, "metrics": {**good["metrics"], "theory/error_gap": 0.01}}
    assert not C.gaussian_theory(RecordSet([bad])).passed


# -- runs ----------------------------------------------------------------------------------------------------------
def _stage_dirs(tmp_path, rec) -> set[str]:
    d = tmp_path / "runs" / "robust_pruning" / rec["run_id"] / "stages"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def test_cached_stages_are_reused_across_densities_and_methods(run_bench, tmp_path):
    smoke = ["task=robust_pruning", "profile=smoke"]
    first = run_bench(smoke + ["method=el2n", "robust_pruning.density=0.5"])
    assert {"query0", "query1", "main"} <= _stage_dirs(tmp_path, first)
    # another density and quota rule: the query models and EL2N scores come from the cache
    second = run_bench(smoke + ["method=el2n+drop", "robust_pruning.density=0.3"])
    assert _stage_dirs(tmp_path, second) == {"main"}
    assert second["metrics"]["query/val_recall/0"] == first["metrics"]["query/val_recall/0"]
    assert second["metrics"]["prune/kept"] == 240 and first["metrics"]["prune/kept"] == 400
    cache = tmp_path / "runs" / "cache" / "robust_pruning"
    assert len(list(cache.glob("query-*/result.pt"))) == 1
    # at d = 1 every method keeps every example: the final model is trained once
    full = run_bench(smoke + ["method=forgetting", "robust_pruning.density=1.0"])
    again = run_bench(smoke + ["method=el2n+drop", "robust_pruning.density=1.0"])
    assert _stage_dirs(tmp_path, again) == set()
    assert again["metrics"]["test/acc"] == full["metrics"]["test/acc"]
    assert again["metrics"]["prune/min_class_density"] == 1.0


def test_smoke_run_records_the_class_metrics(run_bench):
    rec = run_bench(["task=robust_pruning", "profile=smoke", "method=random+drop", "robust_pruning.density=0.3"])
    m = rec["metrics"]
    kept = [m[f"prune/class_kept/{k}"] for k in range(10)]
    assert sum(kept) == m["prune/kept"] == 240 and min(kept) >= 1
    accs = [m[f"test/class_acc/{k}"] for k in range(10)]
    assert m["test/worst_class_acc"] == pytest.approx(min(accs))
    assert m["test/class_acc_gap"] == pytest.approx(max(accs) - min(accs))
    # the reported test split is about half of the package's 200 test examples (the other half is validation)
    assert 90 <= sum(m[f"test/class_count/{k}"] for k in range(10)) <= 110


def test_validation_is_a_stratified_half_of_test_disjoint_from_the_reported_test_split():
    from bench.data.digits import DigitsDataModule

    dm = DigitsDataModule(seed=0)
    dm.setup()
    view, carved = validation_view(dm, 0.5)
    assert carved
    val, test, full = view.splits["val"], view.splits["test"], dm.splits["test"]
    assert len(val["y"]) + len(test["y"]) == len(full["y"])
    rows = lambda s: {tuple(r) for r in s["x"].tolist()}
    assert not rows(val) & rows(test) and rows(val) | rows(test) == rows(full)
    per_class_val, per_class_full = torch.bincount(val["y"], minlength=10), torch.bincount(full["y"], minlength=10)
    assert ((per_class_val - per_class_full / 2).abs() <= 1).all()
    assert torch.equal(view.splits["train"]["x"], dm.splits["train"]["x"])


def test_bad_run_config_fails_before_training(run_bench, tmp_path):
    with pytest.raises(BenchError, match="known methods"):
        run_bench(["task=robust_pruning", "profile=smoke", "method=el2n+fair"])
    with pytest.raises(BenchError, match="min_per_class"):
        run_bench(["task=robust_pruning", "profile=smoke", "robust_pruning.density=0.005"])
    assert not list((tmp_path / "runs").rglob("stages/*"))


def test_report_draws_the_comparison_and_theory_figures(tmp_path):
    from bench.tasks.robust_pruning.report import report

    recs = []
    for r in _records(drop_gain=0.05, drop_cost=0.01, bias=0.1):
        d = r["config"]["robust_pruning"]["density"]
        r["config"]["robust_pruning"]["theory"] = {"mu": [0.0, 4.0], "sigma": [1.0, 2.0]}
        r["metrics"].update({f"prune/class_density/{k}": d * (0.5 + k / 3) for k in range(3)})
        recs.append(r)
    out = report(RecordSet(recs), tmp_path)
    assert set(out) == {"accuracy_vs_density", "class_densities", "theory_class_errors"}
    for path in out.values():
        assert (tmp_path / path).stat().st_size > 10_000


def test_cifar_files_with_a_cnn(run_bench, tmp_path):
    from test_data import write_fake_cifar10

    write_fake_cifar10(tmp_path / "cifar", n_per_batch=40)
    rec = run_bench(
        [
            "task=robust_pruning",
            "profile=smoke",
            "data=cifar10",
            f"data.root={tmp_path / 'cifar'}",
            "model=small_cnn",
            "~model.hidden",
            "model.mean=0.5",
            "model.std=0.25",
            "model.channels=[4,8]",
            "method=grand",
            "robust_pruning.density=0.5",
        ]
    )
    assert rec["metrics"]["prune/kept"] == 100 and rec["metrics"]["test/acc"] is not None


def test_the_mnist1d_standardisation_is_refused_on_other_data(run_bench, tmp_path):
    with pytest.raises(BenchError, match="are mnist1d's input statistics but data is DigitsDataModule") as err:
        run_bench(["task=robust_pruning", "profile=smoke", "data=digits"])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))
    rec = run_bench(
        [
            "task=robust_pruning",
            "profile=smoke",
            "data=digits",
            "model.mean=0.305",
            "model.std=0.376",
        ]
    )
    assert rec["metrics"]["test/acc"] is not None
