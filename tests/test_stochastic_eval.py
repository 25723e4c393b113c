"""Robust evaluation of stochastic models: the predictive-mean wrapper, EOT attacks, and the stochastic validity
checks (pass on MC dropout, fail on a gradient-masked posterior and on one whose attack weakens with more draws)."""

import math

import lightning as L
import pytest
import torch
from torch import nn

from bench.callbacks.robust import RobustAccuracyCallback
from bench.data.gaussians import GaussianMixtureDataModule
from bench.harness.errors import BenchError
from bench.harness.module import BenchModule
from bench.models.stochastic import PredictiveMean, dropout_active, find_stochastic, log_predictive_mean, seeded

PGD = {
    "name": "pgd_linf",
    "eps": [0.0, 0.3],
    "steps": 10,
    "step_size": 0.25,
    "random_start": True,
    "S_attack": 10,
    "S_eval": 50,
    "validity": {
        "enabled": True,
        "steps_multiplier": 2,
        "samples_multiplier": 2,
        "tolerance": 0.01,
        "stochastic_tolerance": 0.02,
    },
}


class Members(nn.Module):
    """A hand-made stochastic model: draw k is the linear map ``weights[k % M]``; records the sample counts asked."""

    stochastic = True

    def __init__(self, members: int = 7, d: int = 4, c: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.weights = nn.Parameter(torch.randn(members, c, d) * 3)
        self.asked: list[int] = []

    def sample_logits(self, x, num_samples):
        self.asked.append(num_samples)
        k = torch.arange(num_samples) % len(self.weights)
        return torch.einsum("scd,nd->snc", self.weights[k], x)


def test_the_wrapper_averages_exactly_s_softmax_outputs():
    model, x = Members(), torch.rand(5, 4)
    for s in (1, 3, 7, 10):
        out = PredictiveMean(model, s).eval()(x)
        by_hand = torch.stack([torch.softmax(x @ model.weights[k % 7].T, 1) for k in range(s)]).mean(0).log()
        assert torch.allclose(out, by_hand, atol=1e-5), s
        assert model.asked[-1] == s
    # S and S + 1 draws give different means here, so a wrapper averaging one draw too many or too few fails
    assert not torch.allclose(PredictiveMean(model, 3)(x), PredictiveMean(model, 4)(x), atol=1e-3)
    big = torch.tensor([[[1000.0, 0.0]], [[0.0, 1000.0]]])  # softmax saturates: log-sum-exp keeps it finite
    assert torch.allclose(log_predictive_mean(big), torch.full((1, 2), math.log(0.5)))


class MCDropout(nn.Module):
    """MC dropout MLP: ``sample_logits`` keeps dropout on whatever the mode (the protocol)."""

    stochastic = True

    def __init__(self, d: int, c: int, p: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d, 64), nn.ReLU(), nn.Dropout(p), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(p), nn.Linear(64, c)
        )

    def forward(self, x):
        return self.net(x)

    def sample_logits(self, x, num_samples):
        with dropout_active(self):
            return self.net(x.repeat(num_samples, 1)).view(num_samples, len(x), -1)


class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -g


class MaskedPosterior(nn.Module):
    """A posterior whose input gradients point the wrong way (gradient masking); ``reverse_above``: only when
    asked for more than that many draws per call (an attack that gets weaker with more samples)."""

    stochastic = True

    def __init__(self, inner: MCDropout, reverse_above: int = 0):
        super().__init__()
        self.inner, self.reverse_above = inner, reverse_above

    def forward(self, x):
        return self.inner(x)

    def sample_logits(self, x, num_samples):
        return self.inner.sample_logits(Reverse.apply(x) if num_samples > self.reverse_above else x, num_samples)


@pytest.fixture(scope="module")
def dm():
    d = GaussianMixtureDataModule(num_classes=3, dim=8, n_train=300, n_test=200, separation=1.5, eval_batch_size=64)
    d.setup()
    return d


@pytest.fixture(scope="module")
def mc_dropout(dm):
    torch.manual_seed(0)
    model = MCDropout(8, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = dm.split("train")["x"], dm.split("train")["y"]
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def evaluate(net, dm, attack=PGD, seed=0):
    cb = RobustAccuracyCallback(attack, seed=seed)
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


def test_sampling_stays_on_in_eval_mode_and_the_harness_finds_the_posterior(mc_dropout):
    x = torch.rand(4, 8)
    pm = PredictiveMean(mc_dropout, 5).eval()
    assert not torch.equal(pm(x), pm(x))
    assert find_stochastic(BenchModule(mc_dropout)) is mc_dropout
    assert find_stochastic(BenchModule(nn.Linear(2, 2))) is None
    assert not mc_dropout.training and not any(m.training for m in mc_dropout.modules())


def test_stochastic_validity_passes_on_mc_dropout(mc_dropout, dm):
    m, v = evaluate(mc_dropout, dm)
    flags = v["test/robust_acc@eps=0.3"]
    assert flags["stochastic"] is True and flags["S_attack"] == 10 and flags["S_eval"] == 50
    assert flags["reliable"] is True, flags
    assert all(
        flags[k] is True
        for k in (
            "eps0_equals_clean",
            "robust_le_clean",
            "beats_noise",
            "more_steps_not_weaker",
            "more_samples_not_weaker",
        )
    )
    # the evaluation draws are fixed per batch: eps = 0 reproduces the clean predictive mean exactly
    assert v["test/robust_acc@eps=0"]["eps0_mismatch"] == 0.0
    assert m["test/robust_acc@eps=0"] == pytest.approx(m["test/predictive_acc"])
    assert m["test/robust_acc@eps=0.3"] < m["test/predictive_acc"] - 0.2
    assert m["test/robust_acc@eps=0.3"] < m["test/noise_acc@eps=0.3"] - 0.2
    # same config and seed: the same numbers (the draws are seeded, not taken from whatever the stream holds)
    torch.rand(5)
    again, _ = evaluate(mc_dropout, dm)
    assert again == m


def test_stochastic_validity_fails_on_a_gradient_masked_posterior(mc_dropout, dm):
    m, v = evaluate(MaskedPosterior(mc_dropout), dm)
    flags = v["test/robust_acc@eps=0.3"]
    assert flags["beats_noise"] is False and flags["reliable"] is False
    assert m["test/robust_acc@eps=0.3"] >= m["test/predictive_acc"] - 0.02  # the attack walks towards the labels


def test_an_attack_that_weakens_with_more_draws_fails_more_samples_not_weaker(mc_dropout, dm):
    _, v = evaluate(MaskedPosterior(mc_dropout, reverse_above=PGD["S_attack"]), dm)
    flags = v["test/robust_acc@eps=0.3"]
    assert flags["more_samples_not_weaker"] is False and flags["reliable"] is False
    assert flags["beats_noise"] is True and flags["more_steps_not_weaker"] is True  # S_attack = 10 is honest


def test_a_deterministic_model_keeps_the_exact_checks(dm):
    torch.manual_seed(0)
    net = nn.Linear(8, 3)
    m, v = evaluate(net, dm)
    flags = v["test/robust_acc@eps=0.3"]
    assert flags["stochastic"] is False and flags["more_samples_not_weaker"] is None
    assert "test/predictive_acc" not in m


@pytest.mark.parametrize("key, value", [("S_eval", 0), ("S_attack", -1), ("S_eval", "many")])
def test_bad_sample_counts_are_one_line(key, value):
    with pytest.raises(BenchError) as e:
        RobustAccuracyCallback({**PGD, key: value})
    assert str(e.value).startswith(
        f"attack.{key}={value!r} is not a valid number of posterior samples: use a positive integer"
    ) and "\n" not in str(e.value)


def test_seeded_draws_what_manual_seed_draws_and_restores_the_stream():
    torch.manual_seed(7)
    expected_after = torch.rand(4)
    torch.manual_seed(7)
    with seeded(5):
        inside = torch.rand(3)
    after = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(inside, torch.rand(3))  # the same numbers as torch.manual_seed(5) gives
    assert torch.equal(after, expected_after)  # and the outer stream goes on as if the block had not drawn
