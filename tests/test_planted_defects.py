"""Guards against defects that were planted one at a time and let through by the rest of the suite (issue 26):
each test checks the mechanism the defect breaks, on a model or a run built so that the defect shows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_robust import PGD, TurnsAround, evaluate, trained_linear
from torch import nn

from bench.data.gaussians import GaussianMixtureDataModule
from bench.harness.module import BenchModule

# tests/test_robust.py's harness: a linear model trained on a Gaussian mixture, evaluated by RobustAccuracyCallback
# in a Lightning test loop; TurnsAround is honest for k attack steps, then its gradients point back
PGD = {**PGD, "eps": [0.3]}


def mixture(separation: float) -> GaussianMixtureDataModule:
    dm = GaussianMixtureDataModule(
        num_classes=3, dim=8, n_train=300, n_test=200, separation=separation, eval_batch_size=64
    )
    dm.setup()
    return dm


# -- the robust callback attacks the model in eval mode -----------------------------------------------------------
class ModeRecorder(nn.Module):
    """A linear model that notes its train/eval mode at every forward (dropout or batch norm would make the two
    modes give other numbers; the attack must see the model that is evaluated)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.modes = net, []

    def forward(self, x):
        self.modes.append(self.training)
        return self.net(x)


def test_the_robust_callback_attacks_the_model_in_eval_mode():
    dm = mixture(1.5)
    net = ModeRecorder(trained_linear(dm))
    evaluate(net, dm, PGD)
    # PGD-10 plus the 2x-steps check, eps = 0 and noise: hundreds of forwards, every one in eval mode
    assert len(net.modes) > 100 and not any(net.modes), f"{sum(net.modes)} of {len(net.modes)} forwards in train mode"


# -- the noise baseline is symmetric: uniform in [-eps, eps], not one-sided ------------------------------------------
class SignOfShift(nn.Module):
    """Class 0 when the input's mean lies at or above 0.5, class 1 below: on inputs that are all 0.5 it reads the
    sign of a perturbation's mean, so symmetric noise is right about half the time and one-sided noise always or
    never."""

    def forward(self, x):
        s = (x - 0.5).mean(1, keepdim=True)
        return torch.cat([s, -s], 1)


@pytest.mark.parametrize("name", ["pgd_linf", "pgd_l2"])
def test_the_noise_baseline_is_symmetric_around_the_input(name):
    base = mixture(1.5)
    n = 400
    dm = base.with_splits(test={"x": torch.full((n, 8), 0.5), "y": torch.zeros(n, dtype=torch.long)})
    m, _ = evaluate(SignOfShift(), dm, {**PGD, "name": name, "eps": [0.1]})
    noise = m["test/noise_acc@eps=0.1"]
    assert 0.4 < noise < 0.6, f"noise accuracy {noise}: the noise is one-sided"  # one-sided gives 0 or 1


# -- "twice the steps is not weaker" compares with the robust accuracy, not the clean one ----------------------------
def test_more_steps_not_weaker_compares_with_the_robust_accuracy():
    # separated clusters: clean accuracy 1, so the stronger attack's accuracy can rise far above the robust one
    # and still not exceed the clean one (a check against clean accuracy would pass it)
    dm = mixture(4.0)
    net = trained_linear(dm)
    with torch.no_grad():
        clean = (net(dm.split("test")["x"]).argmax(1) == dm.split("test")["y"]).float().mean().item()
    m, v = evaluate(TurnsAround(net, k=PGD["steps"]), dm, PGD)
    flags = v["test/robust_acc"]
    assert m["test/robust_acc"] + 0.05 < flags["more_steps_acc"] <= clean, (clean, m["test/robust_acc"], flags)
    assert flags["more_steps_not_weaker"] is False and flags["reliable"] is False, flags


# -- resume restores numpy's global random state ----------------------------------------------------------------------
class NumpyNoiseModule(BenchModule):
    """The fixture task's module with its training noise drawn from numpy's global generator (as numpy-based
    augmentations and samplers do)."""

    def __init__(self, input_noise: float = 0.05, **kwargs) -> None:
        super().__init__(**kwargs)
        self.input_noise = float(input_noise)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        noise = np.random.normal(0.0, self.input_noise, size=tuple(batch["x"].shape))
        x = batch["x"] + torch.as_tensor(noise, dtype=batch["x"].dtype)
        return nn.functional.cross_entropy(self(x), batch["y"])


def test_resume_restores_numpy_random_state(tmp_path):
    from test_reliability import assert_same_metrics, interrupted_then_resumed

    overrides = ["task=fixture", "module._target_=test_planted_defects.NumpyNoiseModule", "fixture.input_noise=0.5"]
    resumed, whole = interrupted_then_resumed(overrides, tmp_path, epoch=2)
    # the final weights (module state dicts) are the sharpest comparison: any other noise moves them
    a, b = (torch.load(next((tmp_path / p / "runs").rglob("final.pt")), weights_only=True) for p in ("a", "b"))
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"resumed weights differ from the uninterrupted run's in {differ}"
    assert_same_metrics(resumed["metrics"], whole["metrics"])


# -- the record is written through a temp file and a rename ------------------------------------------------------------
def test_the_record_appears_only_by_a_rename_from_a_temp_file_in_its_folder(tmp_path, monkeypatch):
    """A reader (the leaderboard, a parallel verify) must see no record or a whole one: the final path is created
    by ``os.replace`` / ``os.rename`` of a finished temp file next to it, never opened for writing itself."""
    from test_records import make

    from bench.harness.record import write_record

    path = tmp_path / "t" / "r.json"
    renames: list[tuple[Path, Path, bool]] = []
    real_replace, real_rename, real_open, real_os_open = os.replace, os.rename, open, os.open

    def spy(real):
        def move(src, dst, *a, **kw):
            renames.append((Path(src), Path(dst), Path(dst).exists()))
            return real(src, dst, *a, **kw)

        return move

    def guarded_open(file, mode="r", *a, **kw):
        if not isinstance(file, int) and Path(file) == path and any(c in mode for c in "wax+"):
            raise AssertionError(f"the record itself was opened for writing ({mode!r})")
        return real_open(file, mode, *a, **kw)

    def guarded_os_open(file, flags, *a, **kw):
        if Path(file) == path and flags & (os.O_WRONLY | os.O_RDWR):
            raise AssertionError("the record itself was opened for writing (os.open)")
        return real_os_open(file, flags, *a, **kw)

    monkeypatch.setattr(os, "replace", spy(real_replace))
    monkeypatch.setattr(os, "rename", spy(real_rename))
    monkeypatch.setattr("builtins.open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    for acc in (0.5, 0.75):  # a first write and an overwrite
        write_record(make(metrics={"test/acc": acc}), path)
    monkeypatch.undo()
    onto = [(src, existed) for src, dst, existed in renames if dst == path]
    assert len(onto) == 2, f"the record was not renamed into place: {renames}"
    assert all(src.parent == path.parent and src != path for src, _ in onto), onto
    assert [f.name for f in path.parent.iterdir()] == ["r.json"]
    assert '"test/acc": 0.75' in path.read_text()


# -- NCC accuracy on perturbed inputs uses the clean class means -------------------------------------------------------
def test_every_ncc_uses_the_clean_training_class_means(monkeypatch):
    """NC4 and the NCC accuracies (clean, PGD and noise training inputs, PGD test inputs) classify by the class
    means of the *clean* training features: means of the perturbed features would make NCC robust accuracy
    measure something else (the paper's claim (c) compares it with the network's)."""
    from types import SimpleNamespace

    from bench.data.digits import DigitsDataModule
    from bench.models.mlp import MLP
    from bench.tasks.neural_collapse import callbacks as nc_callbacks

    dm = DigitsDataModule(eval_batch_size=1024)
    dm.setup()
    torch.manual_seed(0)
    net = MLP([64], 10, hidden=[16, 16], mean=0.3, std=0.4).eval()
    seen: list[torch.Tensor] = []

    class Spy(nc_callbacks.NearestClassCenter):
        def __init__(self, means, **kw):
            seen.append(means.detach().clone())
            super().__init__(means, **kw)

    monkeypatch.setattr(nc_callbacks, "NearestClassCenter", Spy)
    attack = {"name": "pgd_linf", "eps": [0.2], "steps": 2, "step_size": 0.5, "random_start": True}
    n = 300
    out = nc_callbacks.NeuralCollapseCallback(attack, max_train_samples=n).evaluate(
        SimpleNamespace(datamodule=dm, global_rank=0, world_size=1),
        SimpleNamespace(net=net, device=torch.device("cpu")),
    )
    x, y = dm.split("train")["x"][:n], dm.split("train")["y"][:n]
    with torch.no_grad():
        h = net.features(x).double()  # the penultimate features: the classifier's input
    clean_means = torch.stack([h[y == c].mean(0) for c in range(10)])
    assert len(seen) == 4  # clean, PGD and noise training inputs, PGD test inputs
    for means in seen:
        torch.testing.assert_close(means.double(), clean_means, rtol=1e-5, atol=1e-6)
    assert out["nc/pgd/ncc_acc"] != out["nc/clean/ncc_acc"]  # the perturbations change what the NCC sees


# -- iteration_heads: fine-tuning starts from the pre-trained weights --------------------------------------------------
def test_fine_tuning_starts_from_the_pretrained_weights(run_bench, monkeypatch):
    """Each fine-tuning stage of ``pipeline=transfer`` starts from the weights the pre-training stage ended with;
    the scratch stage does not (it is the from-scratch reference of claim (c))."""
    from bench.tasks.iteration_heads import protocol

    start: dict[str, dict[str, torch.Tensor]] = {}
    end: dict[str, dict[str, torch.Tensor]] = {}
    real = protocol.train_stage

    def spy(ctx, module, dm, stage, *a, **kw):
        start[stage] = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        out = real(ctx, module, dm, stage, *a, **kw)
        end[stage] = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        return out

    monkeypatch.setattr(protocol, "train_stage", spy)
    run_bench(["task=iteration_heads", "profile=smoke", "pipeline=transfer"])
    assert set(start) == {"pretrain", "full", "layer2_mlp", "scratch"}
    pretrained = end["pretrain"]
    assert any(not torch.equal(pretrained[k], start["pretrain"][k]) for k in pretrained)  # pre-training trained
    for stage in ("full", "layer2_mlp"):
        differ = [k for k in pretrained if not torch.equal(start[stage][k], pretrained[k])]
        assert not differ, f"fine-tuning stage {stage} does not start from the pre-trained weights: {differ[:3]}"
    assert any(not torch.equal(start["scratch"][k], pretrained[k]) for k in pretrained)
