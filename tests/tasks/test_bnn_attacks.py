"""bnn_attacks: uncertainty metrics, posteriors, the HMC sampler, attacks, claims logic, bad input, smoke runs."""

from __future__ import annotations

import math

import pytest
import torch

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.metrics.uncertainty import auroc, uncertainty
from bench.models.posteriors import POSTERIORS, build_posterior
from bench.tasks.bnn_attacks import claims as C

POSTERIOR_KINDS = sorted(POSTERIORS)


# -- metrics ---------------------------------------------------------------------------------------------------
def test_mutual_information_is_zero_for_a_deterministic_model_and_positive_for_dropout():
    torch.manual_seed(0)
    x = torch.rand(32, 64)
    det = build_posterior("deterministic", [64], 10, hidden=[16])
    p, h, mi = uncertainty(det.sample_logits(x, 20))
    assert torch.equal(mi, torch.zeros(32))
    assert torch.allclose(p.sum(1), torch.ones(32)) and bool((h > 0).all())
    drop = build_posterior("mc_dropout", [64], 10, hidden=[16], p=0.5).eval()
    assert float(uncertainty(drop.sample_logits(x, 20))[2].mean()) > 1e-4  # eval() keeps sampling


def test_auroc_of_a_perfect_score_is_one_reversed_zero_ties_half():
    pos, neg = torch.tensor([2.0, 3.0, 4.0]), torch.tensor([0.0, 1.0, 1.5])
    assert auroc(pos, neg) == 1.0
    assert auroc(neg, pos) == 0.0
    assert auroc(torch.ones(4), torch.ones(5)) == 0.5


# -- posteriors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", POSTERIOR_KINDS)
def test_every_posterior_returns_num_samples_draws_and_takes_input_gradients(kind):
    kw = {"num_samples": 7} if kind == "hmc" else {}
    net = build_posterior(kind, [64], 10, hidden=[8], **kw).eval()
    x = torch.rand(5, 64, requires_grad=True)
    logits = net.sample_logits(x, 3)
    assert logits.shape == (3, 5, 10)
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_finite_posteriors_cycle_members_and_subsample_fewer():
    ens = build_posterior("ensemble", [4], 3, hidden=[5], members=5)
    x = torch.rand(2, 4)
    all_members = ens.net(ens._inputs(x))
    assert torch.allclose(ens.sample_logits(x, 10), all_members.repeat(2, 1, 1))  # draw k = member k % 5
    torch.manual_seed(1)
    a = ens.sample_logits(x, 2)
    assert any(torch.allclose(a[0], all_members[m]) for m in range(5))


# -- HMC -------------------------------------------------------------------------------------------------------
def test_hmc_recovers_mean_and_variance_of_a_2d_gaussian():
    from bench.tasks.bnn_attacks.hmc import run_chain

    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    var = torch.tensor([0.5, 2.0], dtype=torch.float64)
    potential = lambda th: 0.5 * (((th - mu) ** 2) / var).sum()  # noqa: E731
    theta, stats = run_chain(
        potential, torch.zeros(2, dtype=torch.float64), num_samples=1000, warmup=300, kernel="nuts", step_size=0.1
    )
    n_eff = 200  # conservative: NUTS on an axis-aligned Gaussian gives ESS close to the number of draws
    se = (var / n_eff).sqrt()
    assert ((theta.mean(0) - mu).abs() < 4 * se).all(), (theta.mean(0), mu)
    # sample variance of n_eff roughly independent draws: relative sd sqrt(2 / n_eff) = 0.1
    assert ((theta.var(0) / var - 1).abs() < 0.4).all(), (theta.var(0), var)
    assert 0.5 < stats["accept_rate"] <= 1.0 and stats["step_size"] > 0


def test_hmc_model_stores_samples_and_averages_them():
    net = build_posterior("hmc", [4], 3, hidden=[5], num_samples=4)
    theta = torch.randn(4, net.num_params())
    net.set_samples(theta)
    x = torch.rand(6, 4)
    expected = torch.stack([net.logits_at(x, theta[k])[0] for k in range(4)])
    assert torch.allclose(net.sample_logits(x, 4), expected, atol=1e-6)


# -- attacks ---------------------------------------------------------------------------------------------------
def test_attacks_stay_in_the_ball_and_do_what_they_say():
    from bench.attacks.factory import build_attack

    torch.manual_seed(0)
    net = build_posterior("mc_dropout", [64], 10, hidden=[32], p=0.1).eval()
    x, y = torch.rand(64, 64), torch.randint(0, 10, (64,))
    from bench.metrics.uncertainty import uncertainty as unc

    def h(z):
        return float(unc(net.sample_logits(z, 50))[1].mean())

    base = {"_partial_": True, "steps": 10, "step_size": 0.25, "random_start": True}
    for target in ("LabelPGD", "AdaptiveDetectionPGD", "EntropyPGD"):
        cfg = {"_target_": f"bench.tasks.bnn_attacks.attacks.{target}", **base}
        adv = build_attack(cfg, net, 0.1, samples=5)(x, y)
        assert float((adv - x).abs().max()) <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        if target == "EntropyPGD":
            assert h(adv) < h(x)


# -- claims logic on synthetic records ----------------------------------------------------------------------------
def _record(posterior: str, seed: int, **metrics) -> dict:
    return {
        "seed": seed,
        "metrics": metrics,
        "config": {
            "posterior": posterior,
            "data": {"_target_": "bench.data.digits.DigitsDataModule"},
            "bnn_attacks": {"S_eval": metrics.pop("_S_eval", 100)},
        },
    }


def _good(posterior: str, seed: int, **override) -> dict:
    m = {
        "test/acc": 0.97,
        "test/robust_acc@eps=0.2": 0.01,
        "test/robust_acc_few_samples@eps=0.2": 0.01,
        "detect/adaptive_auroc_entropy@eps=0.2": 0.4,
        "detect/adaptive_auroc_mi@eps=0.2": 0.5,
        "ood/auroc_entropy": 0.9,
        "ood/attacked_auroc_entropy@eps=0.2": 0.1,
        "ood/auroc_drop_entropy@eps=0.2": 0.8,
        "ood/auroc_drop_mi@eps=0.2": 0.3,
        "test/robust_acc@eps=0.1": 0.2,
        "test/robust_acc_no_eot@eps=0.1": 0.4,
        "test/robust_acc_one_draw@eps=0.1": 0.2,
    }
    m.update(override)
    return _record(posterior, seed, **m)


def _check(name: str, records: list[dict]):
    claim = next(c for c in C.CLAIMS if c.name.startswith(name))
    return claim.check(RecordSet(records))


CASES = {
    "(a)": {"test/acc": 0.93},
    "(b)": {"test/robust_acc@eps=0.2": 0.08},
    "(c)": {"detect/adaptive_auroc_mi@eps=0.2": 0.75},
    "(d)": {"ood/auroc_drop_entropy@eps=0.2": 0.4},
    "(e)": {"test/robust_acc@eps=0.2": 0.04, "test/robust_acc_few_samples@eps=0.2": 0.01},
    "(f)": {"test/robust_acc_no_eot@eps=0.1": 0.1, "test/robust_acc_one_draw@eps=0.1": 0.15},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_claim_passes_on_good_records_and_fails_on_bad_ones(name):
    good = [_good(p, s) for p in ("deterministic", "mc_dropout", "hmc") for s in (0, 1, 2)]
    assert _check(name, good).passed
    # the stochastic posteriors off at every seed (claims compare means over seeds, (f) pools posteriors)
    bad = good[:3] + [_good(p, s, **CASES[name]) for p in ("mc_dropout", "hmc") for s in (0, 1, 2)]
    outcome = _check(name, bad)
    assert outcome is not None and not outcome.passed, outcome


def test_claim_e_needs_100_evaluation_samples_and_claims_skip_missing_runs():
    few = [_good("mfvi", s, _S_eval=10) for s in (0, 1)]
    assert not _check("(e)", few).passed
    assert _check("(a)", []) is None and _check("(f)", [_good("deterministic", 0)]) is None


# -- bad input: one clear line before training ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, match",
    [
        (["bnn_attacks.S_eval=0"], "bnn_attacks.S_eval=0 is not a valid number of posterior samples"),
        (["model.posterior=laplace"], "unknown posterior 'laplace'"),
        (["model=bnn_hmc", "model.hidden=[256,256]"], "exceeds its budget model.max_params"),
    ],
)
def test_bad_input_is_one_clear_line(run_bench, overrides, match, tmp_path):
    with pytest.raises(BenchError, match=match) as err:
        run_bench(["task=bnn_attacks", "profile=smoke"] + overrides)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "results").rglob("*.json"))


def test_headline_radius_follows_the_data_and_data_without_one_are_refused(run_bench, tmp_path):
    from bench.harness.config import compose

    cfg = compose(["task=bnn_attacks", "profile=smoke"])
    assert cfg.bnn_attacks.headline_eps == 0.2  # digits' eps_scale
    with pytest.raises(BenchError, match="declares no eps_scale") as err:
        run_bench(["task=bnn_attacks", "profile=smoke", "data=mnist1d"])
    assert "\n" not in str(err.value) and "bnn_attacks.headline_eps" in str(err.value)
    with pytest.raises(BenchError, match=r"headline_eps=0.05 \(default: data.eps_scale\) is not one of attack.eps"):
        run_bench(["task=bnn_attacks", "profile=smoke", "data=mnist1d", "data.eps_scale=0.05"])
    assert not list((tmp_path / "results").rglob("*.json"))


# -- smoke runs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", POSTERIOR_KINDS)
def test_every_posterior_runs_under_smoke(run_bench, kind):
    rec = run_bench(["task=bnn_attacks", "profile=smoke", f"model=bnn_{kind}"])
    m = rec["metrics"]
    assert rec["config"]["posterior"] == kind
    for name in (
        "test/acc",
        "test/robust_acc",
        "test/robust_acc_no_eot@eps=0.2",
        "detect/auroc_mi@eps=0.2",
        "detect/adaptive_auroc_entropy@eps=0.2",
        "ood/auroc_entropy",
        "ood/attacked_auroc_entropy@eps=0.2",
        "shift/test/acc",
    ):
        assert m.get(name) is not None and math.isfinite(m[name]), name
    assert 0.0 <= m["test/robust_acc"] <= 1.0
    if kind == "hmc":
        assert 0.0 < m["hmc/accept_rate"] <= 1.0 and m["hmc/step_size"] > 0
    if kind == "deterministic":
        assert m["detect/auroc_mi@eps=0.2"] == 0.5  # MI is identically 0: every score ties


# -- real datasets for users with the files: tiny files in the real formats ----------------------------------------
def _write_idx(path, data, magic: int) -> None:
    import numpy as np

    path.write_bytes(np.array([magic, *data.shape], dtype=">i4").tobytes() + data.astype(np.uint8).tobytes())


def test_runs_on_mnist_files_with_the_semantic_shift_split(run_bench, tmp_path):
    import numpy as np

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, y in {"train": np.tile(np.arange(10), 3), "t10k": np.arange(10)}.items():
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (len(y), 28, 28)), 2051)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", y, 2049)
    rec = run_bench(
        [
            "task=bnn_attacks",
            "profile=smoke",
            "model=bnn_mc_dropout",
            "data=mnist",
            f"data.root={tmp_path}",
            "bnn_attacks.headline_eps=0.2",  # mnist declares no eps_scale: the paper's MNIST radii
        ]
    )
    m = rec["metrics"]
    assert rec["config"]["data"]["_target_"].endswith("MNISTDataModule")
    assert m["test/class_count/0"] == 1 and m["shift/test/class_count/4"] == 1  # 10 test digits; 0-4 in-distribution
    assert 0.0 <= m["test/robust_acc"] <= 1.0 and math.isfinite(m["ood/auroc_entropy"])


def test_runs_on_cifar10_files(run_bench, tmp_path):
    import pickle

    import numpy as np

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            b"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, size=4)),
            b"batch_label": name.encode(),
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
    rec = run_bench(
        [
            "task=bnn_attacks",
            "profile=smoke",
            "model=bnn_ensemble",
            "data=cifar10",
            f"data.root={tmp_path}",
            "bnn_attacks.shift.enabled=false",
            "bnn_attacks.headline_eps=0.2",  # cifar10 declares no eps_scale (wiring only: not its scale)
        ]
    )
    assert rec["config"]["data"]["_target_"].endswith("CIFARDataModule")
    assert 0.0 <= rec["metrics"]["test/robust_acc"] <= 1.0 and "ood/auroc_entropy" not in rec["metrics"]
