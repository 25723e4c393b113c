"""galaxy_distillation: the matching loss and its gradients, the self-adaptive T+ rule on scripted losses, bad
input, the claims' logic on synthetic records, and smoke runs of the pipeline."""

from __future__ import annotations

import math

import pytest
import torch

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.tasks.galaxy_distillation import distill as D
from bench.tasks.galaxy_distillation.claims import CLAIMS
from bench.tasks.galaxy_distillation.convnet import ConvNet


def _net_and_set(k: int = 2, classes: int = 3, side: int = 32):
    torch.manual_seed(0)
    net = ConvNet([3, side, side], classes, width=4, depth=2)
    x = torch.rand(classes * k, 3, side, side)
    y = torch.arange(classes).repeat_interleave(k)
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    return net, x, y, start


# -- the matching loss -------------------------------------------------------------------------------------------------
def test_matching_loss_is_zero_when_the_student_reproduces_the_expert_segment():
    net, x, y, start = _net_and_set()
    lr = torch.tensor(0.05)
    # an "expert" segment that is exactly N full-batch SGD steps on the same images
    target = D.unroll(net, start, x, y, lr, steps=3, create_graph=False)
    student = D.unroll(net, start, x, y, lr, steps=3)
    assert float(D.matching_loss(student, start, target)) < 1e-10
    # any other set of images, or no steps at all, does not reproduce it
    other = D.unroll(net, start, torch.rand_like(x), y, lr, steps=3)
    assert float(D.matching_loss(other, start, target)) > 1e-3
    assert float(D.matching_loss(start, start, target)) == pytest.approx(1.0)


def test_gradients_reach_the_synthetic_images_and_the_step_size():
    net, x, y, start = _net_and_set()
    target = {k: v + 0.01 * torch.randn_like(v) for k, v in start.items()}
    images = x.clone().requires_grad_(True)
    log_lr = torch.tensor(math.log(0.01)).requires_grad_(True)
    student = D.unroll(
        net, start, images, y, torch.exp(log_lr), steps=4, batch_size=3, generator=torch.Generator().manual_seed(0)
    )
    D.matching_loss(student, start, target).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and float(images.grad.abs().sum()) > 0
    assert log_lr.grad is not None and math.isfinite(float(log_lr.grad)) and float(log_lr.grad) != 0
    # the expert parameters themselves are constants of the loss
    assert all(not v.requires_grad for v in start.values())


def test_a_distillation_step_lowers_the_matching_loss_on_a_fixed_segment():
    net, x, y, start = _net_and_set()
    lr = torch.tensor(0.05)
    target = D.unroll(net, start, torch.rand_like(x), y, lr, steps=3, create_graph=False)
    traj = [start, target]
    res = D.distill(
        net,
        [traj],
        x,
        y,
        iterations=15,
        syn_steps=3,
        expert_epochs=1,
        max_start_epoch=1,
        lr_init=0.05,
        lr_img=100.0,
        lr_lr=1e-5,
    )
    assert res.losses[-1] < res.losses[0]
    assert not torch.equal(res.images, x) and res.lr != 0.05


# -- the self-adaptive rule --------------------------------------------------------------------------------------------
def _feed(rule: D.AdaptiveStartEpoch, losses) -> list[int]:
    return [it for it, loss in enumerate(losses) if rule.update(it, loss)]


def test_adaptive_rule_moves_t_plus_on_a_falling_or_rising_loss_and_not_on_a_flat_one():
    # r = -1 beats -5 sigma = -5 / sqrt(n - 2) first at n >= 28, i.e. at the check after 30 probes
    falling = D.AdaptiveStartEpoch(cap=5)
    assert _feed(falling, [1.0 - 0.01 * i for i in range(30)]) == [29] and falling.t_plus == 2
    # r = +1 beats 3 sigma from n >= 12: the check after 20 probes; the window restarts after a move
    rising = D.AdaptiveStartEpoch(cap=5)
    assert _feed(rising, [0.5 + 0.01 * i for i in range(40)]) == [19, 39] and rising.t_plus == 3
    flat = D.AdaptiveStartEpoch(cap=5)
    assert _feed(flat, [0.7] * 200) == [] and flat.t_plus == 1
    zigzag = D.AdaptiveStartEpoch(cap=5)
    assert _feed(zigzag, [0.7 + 0.1 * (-1) ** i for i in range(200)]) == [] and zigzag.t_plus == 1
    capped = D.AdaptiveStartEpoch(cap=2)
    assert _feed(capped, [1.0 - 0.01 * i for i in range(200)]) == [29] and capped.probe_epoch is None


def test_adaptive_distillation_raises_t_plus_from_one():
    net, x, y, start = _net_and_set(k=1)
    lr = torch.tensor(0.05)
    traj = [start]
    for _ in range(4):  # a 4-epoch "expert" trajectory: SGD steps on other images
        traj.append(D.unroll(net, traj[-1], torch.rand_like(x), y, lr, steps=2, create_graph=False))
    # the wiring of the rule into distillation (the thresholds themselves are tested above on scripted losses):
    # with 1-sigma thresholds the falling probe loss of the first iterations moves T+ up to its cap
    res = D.distill(
        net,
        [traj],
        x,
        y,
        iterations=40,
        syn_steps=2,
        expert_epochs=1,
        max_start_epoch=3,
        lr_init=0.05,
        lr_img=300.0,
        lr_lr=1e-5,
        adaptive=True,
        check_every=10,
        lower_sigmas=1.0,
        upper_sigmas=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.t_plus[0] == 1 and res.t_plus == sorted(res.t_plus) and res.t_plus[-1] > 1
    assert max(res.t_plus) <= 3 and len(res.probe_losses) == sum(t < 3 for t in res.t_plus)  # no probe at the cap


# -- bad input ---------------------------------------------------------------------------------------------------------
def test_bad_segment_lengths_are_one_clear_line():
    with pytest.raises(BenchError, match="expert_epochs=12: M must be 1..10"):
        D.check_segment(10, 2, 12, 20)
    with pytest.raises(BenchError, match="max_start_epoch=10 with expert_epochs=2.*max_start_epoch <= 9"):
        D.check_segment(10, 10, 2, 20)
    with pytest.raises(BenchError, match="syn_steps=0"):
        D.check_segment(10, 2, 2, 0)
    D.check_segment(10, 9, 2, 1)  # the longest segment that fits: t = 8, t + M = 10


def test_more_images_per_class_than_a_class_has_is_one_clear_line():
    y = torch.tensor([0, 0, 0, 1, 1])
    with pytest.raises(BenchError, match="images_per_class=3: must be 1..2 \\(class 1 has 2"):
        D.random_real(torch.zeros(5, 3, 4, 4), y, 2, 3, torch.Generator())
    x, yy = D.class_means(torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 4, 4), y, 2, 1, torch.Generator())
    assert yy.tolist() == [0, 1] and x[:, 0, 0, 0].tolist() == [1.0, 3.5]


@pytest.mark.parametrize(
    "override, message",
    [
        ("galaxy_distillation.images_per_class=50", "images_per_class=50: must be 1..12"),
        ("galaxy_distillation.distill.expert_epochs=4", "expert_epochs=4: M must be 1..3"),
        ("galaxy_distillation.distill.max_start_epoch=4", "max_start_epoch=4 with expert_epochs=1"),
    ],
)
def test_bad_run_config_fails_before_training(run_bench, tmp_path, override, message):
    with pytest.raises(BenchError, match=message):
        run_bench(["task=galaxy_distillation", "profile=smoke", "method=mtt", override])
    assert not list((tmp_path / "results").rglob("*.json"))
    assert not (tmp_path / "runs" / "cache").exists() or not any((tmp_path / "runs" / "cache").rglob("result.pt"))


# -- the claims' logic -------------------------------------------------------------------------------------------------
def _record(method, k, accs, seed=0, t_plus=None):
    metrics = {f"net={i}/test/acc": a for i, a in enumerate(accs)}
    metrics["test/acc"] = sum(accs) / len(accs)
    if t_plus is not None:
        metrics["distill/t_plus_final"] = t_plus
    return {
        "seed": seed,
        "config": {"method": method, "galaxy_distillation": {"images_per_class": k}},
        "metrics": metrics,
    }


def _plan(random=0.3, mean=0.45, mtt=0.55, adaptive=0.56, full=0.8, t_plus=4.0):
    jitter = [0.0, 0.01, -0.01, 0.02, -0.02]
    row = lambda m, turn=0: [m + j for j in jitter[turn:] + jitter[:turn]]  # noqa: E731
    return RecordSet(
        [
            _record("random_real", 1, row(random)),
            _record("class_mean", 1, row(mean)),
            _record("mtt", 1, row(mtt), t_plus=4.0),
            _record("adaptive", 1, row(adaptive, 2), t_plus=t_plus),
            _record("random_real", 10, row(random + 0.2)),
            _record("mtt", 10, row(mtt + 0.15), t_plus=4.0),
            _record("adaptive", 10, row(adaptive + 0.15, 2), t_plus=t_plus),
            _record("full", 1, row(full)),
        ]
    )


def _outcomes(records):
    return {c.name[:3]: c.check(records) for c in CLAIMS}


def test_claims_pass_on_the_paper_pattern():
    out = _outcomes(_plan())
    assert all(o is not None and o.passed for o in out.values()), out
    assert out["(b)"].measured["mtt - random"] == pytest.approx(0.25)


def test_claims_fail_when_the_pattern_breaks():
    assert not _outcomes(_plan(mean=0.6))["(a)"].passed  # class mean above distilled
    assert not _outcomes(_plan(full=0.5))["(a)"].passed  # full data below distilled
    assert not _outcomes(_plan(mtt=0.37, adaptive=0.37))["(b)"].passed  # +7 points: not "well above"
    assert not _outcomes(_plan(t_plus=1.0))["(c)"].passed  # T+ never moved
    assert not _outcomes(_plan(adaptive=0.45))["(c)"].passed  # self-adaptive clearly below MTT
    assert _outcomes(_plan(adaptive=0.545))["(c)"].passed  # within the networks' noise


def test_claims_skip_when_their_runs_are_missing():
    only = RecordSet([_record("random_real", 1, [0.3, 0.31])])
    assert all(c.check(only) is None for c in CLAIMS)


# -- the pipeline ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["random_real", "class_mean", "full"])
def test_smoke_baselines(run_bench, method):
    rec = run_bench(["task=galaxy_distillation", "profile=smoke", f"method={method}"])
    m = rec["metrics"]
    assert 0 <= m["test/acc"] <= 1 and m["test/num_nets"] == 2
    assert m["test/acc"] == pytest.approx((m["net=0/test/acc"] + m["net=1/test/acc"]) / 2)
    assert "galaxy_samples" in rec["artifacts"]
    assert ("synthetic_images" in rec["artifacts"]) == (method != "full")


def test_smoke_distillation_caches_the_experts_and_is_reproducible(run_bench, tmp_path):
    mtt = run_bench(["task=galaxy_distillation", "profile=smoke", "method=mtt"])
    caches = list((tmp_path / "runs" / "cache" / "galaxy_distillation").glob("experts-*"))
    assert len(caches) == 1 and (caches[0] / "result.pt").is_file()
    trajs = torch.load(caches[0] / "result.pt", weights_only=True)
    assert len(trajs) == 2 and sorted(trajs[0]) == [0, 1, 2, 3]  # 2 experts, epochs 0..3
    assert mtt["metrics"]["distill/t_plus_final"] == 2 and mtt["metrics"]["expert0/test/acc"] is not None
    mtime = (caches[0] / "result.pt").stat().st_mtime_ns
    ada = run_bench(["task=galaxy_distillation", "profile=smoke", "method=adaptive"])
    assert (caches[0] / "result.pt").stat().st_mtime_ns == mtime  # reused, not retrained
    assert ada["metrics"]["expert0/test/acc"] == mtt["metrics"]["expert0/test/acc"]  # replayed into the record
    assert ada["metrics"]["distill/t_plus_first"] == 1
    assert {"synthetic_images", "t_plus", "distilled"} <= set(ada["artifacts"])
    again = run_bench(["task=galaxy_distillation", "profile=smoke", "method=adaptive"])
    assert again["metrics"] == ada["metrics"]


def test_the_galaxies_standardisation_is_refused_on_other_data(run_bench, tmp_path):
    import h5py
    import numpy as np

    # a tiny Galaxy10-style file: the data must exist (a missing file is reported first, as the cause)
    path = tmp_path / "galaxy10.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.random.default_rng(0).integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
        f["ans"] = np.repeat(np.arange(10), 4)
    base = ["task=galaxy_distillation", "profile=smoke", "data=galaxy10"]  # the galaxies' sizes apply to them only
    with pytest.raises(BenchError, match="model.mean / model.std are the generated galaxies' per-band") as err:
        run_bench(base + [f"data.path={path}"])
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "results").rglob("*.json"))
