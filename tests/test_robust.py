"""Robust accuracy and its validity checks, on models where the answer is known."""

import lightning as L
import pytest
import torch
from torch import nn

from bench.callbacks.robust import RobustAccuracyCallback
from bench.data.gaussians import GaussianMixtureDataModule
from bench.harness.module import BenchModule

PGD = {"name": "pgd_linf", "eps": [0.0, 0.05, 0.3], "steps": 10, "step_size": 0.25, "random_start": True,
       "validity": {"enabled": True, "steps_multiplier": 2, "tolerance": 0.01}}


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
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[cb], enable_progress_bar=False,
                        enable_model_summary=False, inference_mode=False, enable_checkpointing=False)
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


def test_fgsm_has_no_more_steps_check(dm):
    m, v = evaluate(trained_linear(dm), dm, {"name": "fgsm", "eps": [0.1], "validity": {"enabled": True}})
    assert v["test/robust_acc"]["more_steps_not_weaker"] is None
    assert 0.0 <= m["test/robust_acc"] <= 1.0
