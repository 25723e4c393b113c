"""Robust accuracy and its validity checks, on models where the answer is known: each of the four checks is
tripped by a model built to trip it, and the numbers do not depend on the number of DDP processes."""

import json
import subprocess
import sys

import lightning as L
import pytest
import torch
from torch import nn

from bench.callbacks.robust import RobustAccuracyCallback
from bench.data.gaussians import GaussianMixtureDataModule
from bench.harness.errors import BenchError
from bench.harness.module import BenchModule

PGD = {
    "name": "pgd_linf",
    "eps": [0.0, 0.05, 0.3],
    "steps": 10,
    "step_size": 0.25,
    "random_start": True,
    "validity": {"enabled": True, "steps_multiplier": 2, "tolerance": 0.01},
}


class ReversedGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward: an attack that follows the gradient walks the wrong way,
    a textbook case of gradient masking that the validity checks must catch."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -g


class Masked(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(ReversedGradient.apply(x))


def trained_linear(dm) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Linear(dm.input_shape[0], dm.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = dm.split("train")["x"], dm.split("train")["y"]
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def evaluate(net, dm, attack=PGD):
    cb = RobustAccuracyCallback(attack)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,
        enable_checkpointing=False,
    )
    trainer.test(BenchModule(net), datamodule=dm, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}, cb.validity


@pytest.fixture(scope="module")
def dm():
    d = GaussianMixtureDataModule(num_classes=3, dim=8, n_train=300, n_test=200, separation=1.5, eval_batch_size=64)
    d.setup()
    return d


def test_pgd_numbers_and_checks_on_an_honest_model(dm):
    net = trained_linear(dm)
    m, v = evaluate(net, dm)
    x, y = dm.split("test")["x"], dm.split("test")["y"]
    with torch.no_grad():
        clean = (net(x).argmax(1) == y).float().mean().item()
    assert m["test/robust_acc@eps=0"] == pytest.approx(clean)
    assert v["test/robust_acc@eps=0"]["eps0_equals_clean"] is True
    assert m["test/robust_acc@eps=0.3"] < m["test/robust_acc@eps=0.05"] <= m["test/robust_acc@eps=0"]
    for key in ("test/robust_acc@eps=0.05", "test/robust_acc@eps=0.3"):
        assert v[key]["reliable"] is True, v[key]
    assert m["test/robust_acc@eps=0.3"] < m["test/noise_acc@eps=0.3"]


def test_gradient_masking_is_flagged_unreliable(dm):
    net = Masked(trained_linear(dm))
    m, v = evaluate(net, dm)
    flags = v["test/robust_acc@eps=0.3"]
    assert flags["beats_noise"] is False  # PGD walks away from the boundary: weaker than noise
    assert flags["reliable"] is False


def test_fgsm_robust_accuracy_is_the_closed_form_one(dm):
    """Linear model: FGSM moves x by eps * sign(W^T (softmax - e_y)); the callback's robust accuracy must be the
    accuracy on exactly those points, and there is no "more steps" check for a single-step attack."""
    net = trained_linear(dm)
    m, v = evaluate(net, dm, {"name": "fgsm", "eps": [0.1], "validity": {"enabled": True}})
    x, y = dm.split("test")["x"], dm.split("test")["y"]
    with torch.no_grad():
        grad = (torch.softmax(net(x), 1) - nn.functional.one_hot(y, dm.num_classes).float()) @ net.weight
        adv = (x + 0.1 * grad.sign()).clamp(0, 1)
        expected = (net(adv).argmax(1) == y).float().mean().item()
        clean = (net(x).argmax(1) == y).float().mean().item()
    assert m["test/robust_acc"] == pytest.approx(expected, abs=1e-6)
    assert expected < clean - 0.02  # the step does something at this radius
    assert v["test/robust_acc"]["more_steps_not_weaker"] is None
    assert v["test/robust_acc"]["reliable"] is True


class NoisyInEval(nn.Module):
    """Stays random in eval mode without saying so (no ``stochastic`` attribute): its eps = 0 attack changes
    predictions, which the exact eps = 0 check of a deterministic model must catch."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x) + 3.0 * torch.randn(len(x), self.net.out_features)


class TurnAfter(torch.autograd.Function):
    """Identity forward; backward passes the gradient for the first ``owner.k`` backward calls after the
    model was last put in eval/train mode (every attack call does that), negated after."""

    @staticmethod
    def forward(ctx, x, owner):
        ctx.owner = owner
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        ctx.owner.calls += 1
        return (g if ctx.owner.calls <= ctx.owner.k else -g), None


class TurnsAround(nn.Module):
    """Honest for ``k`` attack steps, then its gradients point back: PGD-10 is a fair attack, PGD-20 walks back
    towards the clean points, so more steps give *higher* robust accuracy (what ``more_steps_not_weaker`` catches)."""

    def __init__(self, net, k=10):
        super().__init__()
        self.net, self.k, self.calls = net, k, 0

    def train(self, mode=True):
        self.calls = 0
        return super().train(mode)

    def forward(self, x):
        return self.net(TurnAfter.apply(x, self))


CHECKS = ("eps0_equals_clean", "robust_le_clean", "beats_noise", "more_steps_not_weaker")


def failing(flags):
    return {k for k in CHECKS if flags[k] is False}


def test_an_honest_model_passes_all_four_checks(dm):
    _, v = evaluate(trained_linear(dm), dm, {**PGD, "eps": [0.3]})
    assert failing(v["test/robust_acc"]) == set() and v["test/robust_acc"]["reliable"] is True


def test_a_model_random_in_eval_mode_fails_eps0_equals_clean(dm):
    torch.manual_seed(0)
    _, v = evaluate(NoisyInEval(trained_linear(dm)), dm, {**PGD, "eps": [0.3]})
    flags = v["test/robust_acc"]
    assert "eps0_equals_clean" in failing(flags) and flags["eps0_mismatch"] > 0.1
    assert flags["reliable"] is False


def test_reversed_gradients_fail_robust_le_clean(dm):
    net = Masked(trained_linear(dm))
    m, v = evaluate(net, dm, {**PGD, "eps": [0.3]})
    flags = v["test/robust_acc"]
    x, y = dm.split("test")["x"], dm.split("test")["y"]
    with torch.no_grad():
        clean = (net(x).argmax(1) == y).float().mean().item()
    assert m["test/robust_acc"] > clean  # the "attack" repairs mistakes
    assert flags["robust_le_clean"] is False and flags["reliable"] is False


def test_gradients_that_turn_around_fail_more_steps_not_weaker(dm):
    m, v = evaluate(TurnsAround(trained_linear(dm), k=PGD["steps"]), dm, {**PGD, "eps": [0.3]})
    flags = v["test/robust_acc"]
    assert failing(flags) == {"more_steps_not_weaker"}, flags  # PGD-10 itself is honest here
    assert flags["more_steps_acc"] > m["test/robust_acc"] + 0.05 and flags["reliable"] is False


def test_a_scalar_eps_and_bad_eps_in_the_callback():
    assert RobustAccuracyCallback({"name": "pgd_linf", "eps": 0.1}).eps == [0.1]
    with pytest.raises(BenchError, match=r"^attack.eps=\[-0.1\] is not allowed"):
        RobustAccuracyCallback({"name": "pgd_linf", "eps": [-0.1]})
    assert RobustAccuracyCallback({"name": "none", "eps": []}).enabled is False


def test_the_robust_callback_leaves_the_global_random_stream_alone(dm):
    torch.manual_seed(7)
    evaluate(trained_linear(dm), dm, {**PGD, "eps": [0.3]})
    after = torch.rand(3)
    torch.manual_seed(7)
    trained_linear(dm)  # the same draws as above, without the evaluation
    assert torch.equal(after, torch.rand(3))


def _fit(tmp_path, *overrides):
    args = [
        sys.executable,
        "-m",
        "bench",
        "fit",
        "task=neural_collapse",
        "profile=smoke",
        "attack=pgd_linf",
        "attack.eps=[0.1,0.2]",
        "callbacks.neural_collapse=null",
        "logger=none",
        "data.eval_batch_size=50",
        "print_summary=false",
        f"results_dir={tmp_path}/results",
        f"work_dir={tmp_path}/runs",
        *overrides,
    ]
    r = subprocess.run(args, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def test_ddp_robust_and_noise_accuracy_equal_one_process(tmp_path):
    """Same weights, 1 vs 2 gloo processes: each rank sees other batches, but the random start and the noise are
    keyed by example index, so every robust number and validity flag is identical."""
    _fit(tmp_path, "trainer.max_epochs=1")
    (single,) = [json.loads(p.read_text()) for p in (tmp_path / "results" / "neural_collapse").glob("*.json")]
    weights = tmp_path / "runs" / "neural_collapse" / single["run_id"] / "stages" / "main" / "final.pt"
    _fit(tmp_path, "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=0", f"init_weights={weights}")
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "neural_collapse").glob("*.json")]
    (ddp,) = [r for r in records if r["config"]["trainer"]["devices"] == 2]
    keys = [k for k in single["metrics"] if "robust" in k or "noise_acc" in k]
    assert len(keys) >= 6 and "test/noise_acc@eps=0.2" in keys
    for k in keys:
        assert ddp["metrics"][k] == single["metrics"][k], k
    for k in ("test/robust_acc@eps=0.1", "test/robust_acc@eps=0.2"):
        assert ddp["validity"][k] == single["validity"][k], k
        assert single["validity"][k]["n"] == 359


def test_a_second_evaluation_reuses_the_attacks_and_counts_from_zero(dm):
    """The callback builds its attacks once per model: a second ``trainer.test`` with the same callback gives the
    numbers and flags of a fresh one (its metrics were reset), and a different model gets its own attacks."""
    net, masked = trained_linear(dm), Masked(trained_linear(dm))
    fresh_m, fresh_v = evaluate(net, dm)
    cb = RobustAccuracyCallback(PGD)
    kw = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = L.Trainer(callbacks=[cb], inference_mode=False, enable_checkpointing=False, **kw)
    module = BenchModule(net)
    for _ in range(2):
        trainer.test(module, datamodule=dm, verbose=False)
        assert {k: float(v) for k, v in trainer.callback_metrics.items()} == fresh_m
        assert cb.validity == fresh_v
    attacks = cb.attacks
    trainer.test(module, datamodule=dm, verbose=False)
    assert cb.attacks is attacks  # reused, not rebuilt
    trainer.test(BenchModule(masked), datamodule=dm, verbose=False)
    assert cb.attacks is not attacks
    assert cb.validity["test/robust_acc@eps=0.3"]["beats_noise"] is False  # the masked model's own attacks
