"""Settings that must follow the data (issue #26, round 3): each was found on data other than a task's default.

The ConvNet's depth vs the image size, goldilocks' divergence at one scale and its curvature dtype, paper and smoke
profiles that pinned keys of one data set, one validity tolerance for bnn_attacks and the harness, and DRoP's
quota 0 from a perfect validation recall."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
from hydra.utils import get_class

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.harness.naming import point_name
from bench.harness.validation import check_composition
from bench.tasks.goldilocks import claims as goldilocks_claims
from bench.tasks.goldilocks.module import AlphaSweepModule


def _no_records(tmp_path) -> bool:
    return not list((tmp_path / "results").rglob("*.json"))


# -- 1. galaxy_distillation: the ConvNet's depth follows the image size ------------------------------------------------
def test_convnet_depth_allowed_by_the_image_size():
    from bench.tasks.galaxy_distillation.convnet import max_depth

    assert [max_depth(s) for s in (8, 16, 28, 32, 64)] == [2, 3, 3, 4, 5]


def test_convnet_too_deep_for_8x8_images_is_refused_before_training(run_bench, tmp_path):
    digits = ["task=galaxy_distillation", "profile=smoke", "method=random_real", "data=digits", "data.flatten=false"]
    digits += ["model.mean=0.0", "model.std=1.0"]
    with pytest.raises(BenchError, match=r"model.depth=3 on 8x8 images .* largest depth this image size allows is 2"):
        run_bench(digits)
    assert _no_records(tmp_path)
    rec = run_bench([*digits, "model.depth=2"])  # the depth it names runs
    assert rec["metrics"]["test/acc"] is not None


# -- 2. goldilocks: divergence at one scale is recorded, not a failed run -------------------------------------------
def test_goldilocks_divergence_at_one_scale_is_recorded_per_scale(run_bench, monkeypatch):
    init = AlphaSweepModule.__init__

    def huge_step_at_the_smallest_alpha(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.lr_factor[0] = 1e300  # the step at alpha = 0.01 overflows the weights: its loss turns non-finite

    monkeypatch.setattr(AlphaSweepModule, "__init__", huge_step_at_the_smallest_alpha)
    rec = run_bench(["task=goldilocks", "profile=smoke", "goldilocks.train.steps_per_epoch=3"])
    m = rec["metrics"]
    assert m[point_name("diverged", alpha=0.01)] == 1 and m["sweep/diverged"] == 1
    assert m[point_name("test/acc", alpha=0.01)] is None and m[point_name("train/acc", alpha=0.01)] is None
    for a in (1.0, 100.0):  # the other scales trained as usual
        assert point_name("diverged", alpha=a) not in m
        assert 0 <= m[point_name("test/acc", alpha=a)] <= 1
    assert {c["name"][:3] for c in rec["claims"]} >= {"(a)", "(d)"}  # the claims ran on the record


def _sweep_record(acc: dict[float, float | None], dtype: str = "float64") -> dict:
    alphas = [10 ** (-3 + 0.25 * i) for i in range(25)]
    m = {"model/depth": 3, "inits/corr": 0.97}
    for a in alphas:
        c = 2.0 * math.exp(-((math.log10(a) / 1.2) ** 2))  # peak at alpha = 1
        m[point_name("curv/positive_curvature", alpha=a)] = c
        m[point_name("curv/positive_curvature", temperature=a**-3)] = c
        m[point_name("identity/hessian_rel_err", alpha=a)] = 1e-15
        m[point_name("test/acc", alpha=a)] = acc.get(round(math.log10(a), 2), 0.5)
        if acc.get(round(math.log10(a), 2), 0.5) is None:
            m[point_name("diverged", alpha=a)] = 1.0
    config = {"data": {"_target_": "bench.data.digits.DigitsDataModule"}, "goldilocks": {"curvature": {"dtype": dtype}}}
    return {"seed": 0, "metrics": m, "config": config}


def test_goldilocks_trend_claim_says_when_the_peak_alpha_diverged():
    res = goldilocks_claims.best_not_at_peak(RecordSet([_sweep_record({0.0: None, -1.0: 0.9})]))
    assert res.passed is False and res.measured["digits"]["test_acc_at_peak"] is None
    assert "diverged at the curvature-peak alpha" in res.measured["digits"]["note"]
    res = goldilocks_claims.best_not_at_peak(RecordSet([_sweep_record({-3.0: None, -1.0: 0.9})]))
    assert res.passed and res.measured["digits"]["diverged_alphas"] == [pytest.approx(1e-3)]


# -- 3. goldilocks: the identity's tolerance needs float64 curvature ------------------------------------------------
def test_goldilocks_float32_curvature_is_refused_in_one_line(run_bench, tmp_path):
    with pytest.raises(BenchError, match="goldilocks.curvature.dtype='float32': use float64") as err:
        run_bench(["task=goldilocks", "profile=smoke", "goldilocks.curvature.dtype=float32"])
    assert "\n" not in str(err.value) and _no_records(tmp_path)
    res = goldilocks_claims.identity(RecordSet([_sweep_record({}, dtype="float32")]))
    assert res.passed is False and "float64" in res.measured["note"]
    assert goldilocks_claims.identity(RecordSet([_sweep_record({})])).passed


# -- 4. paper / smoke profiles compose with other data of the same kind ---------------------------------------------
# experiment -> (task, an embedded data option of the same kind). Not listed: collapse_tails and iteration_heads
# (their data are the task's own datamodule) and robust_erm (linear_teacher is the only data of its kind).
OTHER_DATA = {
    "bnn_attacks_paper": ("bnn_attacks", "mnist1d"),
    "collapse_regression_paper": ("collapse_regression", "mnist1d"),
    "galaxy_distillation_paper": ("galaxy_distillation", "digits"),
    "goldilocks_paper": ("goldilocks", "digits"),
    "group_priors_paper": ("group_priors", "colored_digits"),
    "neural_collapse_paper": ("neural_collapse", "mnist1d"),
    "robust_pruning_paper": ("robust_pruning", "digits"),
}


def _unknown_data_keys(cfg) -> list[str]:
    """Keys of ``cfg.data`` no ``__init__`` along the datamodule's MRO accepts (``**kwargs`` passes them up)."""
    accepted: set[str] = set()
    for cls in get_class(cfg.data._target_).__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters
        accepted |= set(params)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return [k for k in cfg.data if k != "_target_" and k not in accepted]
    return []


@pytest.mark.parametrize("experiment", sorted(OTHER_DATA))
@pytest.mark.parametrize("profile", ["default", "smoke"])
def test_paper_experiment_composes_with_other_data(experiment, profile):
    task, data = OTHER_DATA[experiment]
    cfg = check_composition([f"task={task}", f"experiment={experiment}", f"data={data}", f"profile={profile}"])
    assert _unknown_data_keys(cfg) == [], f"{experiment} pins keys {data} does not have"


def test_data_specific_pins_still_apply_to_their_own_data():
    pins = {
        ("robust_pruning", "default"): ("num_samples", 5000),
        ("robust_pruning", "smoke"): ("num_samples", 1000),
        ("galaxy_distillation", "default"): ("n_train", 200),
        ("galaxy_distillation", "smoke"): ("n_train", 12),
    }
    for (task, profile), (key, value) in pins.items():
        cfg = check_composition([f"task={task}", f"experiment={task}_paper", f"profile={profile}"])
        assert cfg.data[key] == value, (task, profile, key)


# -- 5. bnn_attacks judges validity with the harness's tolerance ----------------------------------------------------
def test_one_validity_tolerance_rule_for_the_harness_and_bnn_attacks(run_bench):
    from bench.callbacks.robust import validity_tolerances

    assert validity_tolerances(None, stochastic=True) == (0.02, 0.02)
    assert validity_tolerances({}, stochastic=False) == (0.0, 0.01)
    assert validity_tolerances({"stochastic_tolerance": 0.05}, stochastic=True) == (0.05, 0.05)
    rec = run_bench(
        ["task=bnn_attacks", "profile=smoke", "model=bnn_mc_dropout", "+attack.validity.stochastic_tolerance=0.3"]
    )
    flags = rec["validity"]["test/robust_acc"]
    assert flags["tolerance"] == 0.3
    m = rec["metrics"]
    assert flags["robust_le_clean"] == (m["test/robust_acc"] <= m["test/acc"] + 0.3)


# -- 6. DRoP: a perfect validation recall (quota 0) is recorded and warned about ------------------------------------
def test_drop_records_classes_whose_perfect_recall_sets_quota_zero(run_bench, monkeypatch):
    from bench.tasks.robust_pruning import protocol

    measured = protocol.recall

    def class0_perfect(net, split, num_classes):
        r = measured(net, split, num_classes)
        r[0] = 1.0
        return r

    monkeypatch.setattr(protocol, "recall", class0_perfect)
    with pytest.warns(UserWarning, match=r"DRoP: classes \[0\] have validation recall 1.0 \(on \[\d+\] validation"):
        rec = run_bench(["task=robust_pruning", "profile=smoke", "method=random+drop"])
    assert rec["metrics"]["prune/drop_perfect_recall_classes"] >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = run_bench(["task=robust_pruning", "profile=smoke", "method=random"])
    assert "prune/drop_perfect_recall_classes" not in plain["metrics"]
