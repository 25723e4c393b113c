"""Task neural_collapse: NC metrics on hand-computed non-collapsed features, the exact training subset and
per-example draws of the callback (and DDP = one process), the scheduler group, data-owned statistics and radius,
and every clause of every claim on synthetic records, passing and failing."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import fit_in_subprocess

from bench.data.digits import DigitsDataModule
from bench.data.statistics import input_statistics
from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.harness.module import cosine_schedule, step_schedule
from bench.metrics.neural_collapse import ClassFeatureStatistics, NearestClassCenter, alignment, collapse_metrics
from bench.models.mlp import MLP
from bench.tasks.neural_collapse import claims as C
from bench.tasks.neural_collapse.callbacks import NeuralCollapseCallback

# -- NC1-NC4 and alignment on features that have not collapsed -------------------------------------------------
# C = 3, d = 2; class means (1, 0), (0, 2), (-1, -1); two examples per class
H = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 3.0], [-1.0, -1.0], [-1.0, -1.0]])
Y = torch.tensor([0, 0, 1, 1, 2, 2])
W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])


def _stats(h, y):
    st = ClassFeatureStatistics(3, 2)
    st.update(h, y)
    return st.compute()


def test_nc1_nc2_nc3_by_hand():
    out = collapse_metrics(_stats(H, Y), W)
    # global mean (0, 1/3); centred means m0 = (1, -1/3), m1 = (0, 5/3), m2 = (-1, -4/3)
    m = np.array([[1, -1 / 3], [0, 5 / 3], [-1, -4 / 3]])
    # Sigma_W = (1/6)(diag(2, 0) + diag(0, 2)) = I / 3; Sigma_B = M'M / 3; NC1 = tr(Sigma_W Sigma_B^+) / 3
    sigma_b = m.T @ m / 3
    assert out["nc1"] == pytest.approx(np.trace(np.eye(2) / 3 @ np.linalg.inv(sigma_b)) / 3, rel=1e-9)
    norms = np.array([math.sqrt(10) / 3, 5 / 3, 5 / 3])
    assert out["nc2_equinorm"] == pytest.approx(norms.std() / norms.mean(), rel=1e-9)
    cos = [(m[i] @ m[j]) / (norms[i] * norms[j]) for i in range(3) for j in range(3) if i != j]
    assert out["nc2_equiangle"] == pytest.approx(np.mean([abs(c + 0.5) for c in cos]), rel=1e-9)
    w_norms = np.array([1, 1, math.sqrt(2)])
    assert out["nc2_equinorm_w"] == pytest.approx(w_norms.std() / w_norms.mean(), rel=1e-9)
    wn, mn = W.numpy() / np.linalg.norm(W.numpy()), m / np.linalg.norm(m)
    assert out["nc3"] == pytest.approx(((wn - mn) ** 2).sum(), rel=1e-9)
    assert out["nc3"] > 0.05 and out["nc2_equinorm"] > 0.1  # not collapsed: nothing here is ~0


def test_alignment_by_hand():
    clean = _stats(H, Y)
    # perturbed features: class 0 moves to mean (0, 0), the others stay -> global mean (-1/3, 1/3)
    moved = H.clone()
    moved[:2] = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    other = _stats(moved, Y)
    a = np.array([[1, -1 / 3], [0, 5 / 3], [-1, -4 / 3]])
    b = np.array([[0, 0], [0, 2], [-1, -1]]) - np.array([-1 / 3, 1 / 3])
    cos = [(a[i] @ b[i]) / (np.linalg.norm(a[i]) * np.linalg.norm(b[i])) for i in range(3)]
    assert alignment(clean, other) == pytest.approx(np.mean(cos), rel=1e-9)
    assert alignment(clean, clean) == pytest.approx(1.0)


def test_nc4_and_ncc_accuracy_by_hand():
    ncc = NearestClassCenter(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]]))
    # nearest centres: 0, 1, 2 ((0, -5) is 4.12 from (-1, -1), 5.10 from (1, 0), 7 from (0, 2))
    ncc.update(torch.tensor([[0.9, 0.0], [0.0, 1.8], [0.0, -5.0]]), torch.tensor([0, 2, 2]), torch.tensor([0, 1, 1]))
    r = ncc.compute()
    assert r["nc4"] == pytest.approx(1 / 3) and r["ncc_acc"] == pytest.approx(2 / 3)
    assert r["net_acc"] == pytest.approx(1 / 3)


# -- the callback: an exact training subset, draws keyed by example -------------------------------------------
def _setup(eval_batch_size=1024, seed=0):
    dm = DigitsDataModule(eval_batch_size=eval_batch_size)
    dm.setup()
    torch.manual_seed(seed)
    net = MLP([64], 10, hidden=[16, 16], mean=0.3, std=0.4)
    trainer = SimpleNamespace(datamodule=dm, global_rank=0, world_size=1)
    return trainer, SimpleNamespace(net=net, device=torch.device("cpu"))


ATTACK = {
    "_target_": "bench.attacks.standard.pgd_linf",
    "_partial_": True,
    "name": "pgd_linf",
    "eps": [0.2],
    "steps": 2,
    "step_size": 0.5,
    "random_start": True,
}


def test_max_train_samples_is_exact():
    trainer, module = _setup()
    got = {}
    for n in (1, 50, 256, 1024, None):
        got[n] = NeuralCollapseCallback(ATTACK, max_train_samples=n).evaluate(trainer, module)
    n_train = len(trainer.datamodule.split("train")["y"])
    assert [got[n]["nc/train_samples"] for n in (1, 50, 256, 1024, None)] == [1, 50, 256, 1024, n_train]
    assert len({got[n]["nc/clean/nc1"] for n in (50, 256, 1024, None)}) == 4
    with pytest.raises(BenchError, match="max_train_samples"):
        NeuralCollapseCallback(ATTACK, max_train_samples=0)


def test_rank_shards_are_disjoint_and_complete():
    trainer, _ = _setup(eval_batch_size=64)
    cb = NeuralCollapseCallback(ATTACK, max_train_samples=301)
    seen = []
    for rank in (0, 1):
        trainer.global_rank, trainer.world_size = rank, 2
        seen += [int(i) for _, _, idx in cb._batches(trainer, "train", 301) for i in idx]
    assert sorted(seen) == list(range(301))


def test_metrics_do_not_depend_on_the_batch_layout():
    # the noise and PGD random starts are keyed by example index: other batches, same numbers (what makes
    # DDP equal one process); a different seed changes the draws
    a = NeuralCollapseCallback(ATTACK, max_train_samples=200).evaluate(*_setup(eval_batch_size=1024))
    b = NeuralCollapseCallback(ATTACK, max_train_samples=200).evaluate(*_setup(eval_batch_size=37))
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k
    c = NeuralCollapseCallback(ATTACK, max_train_samples=200, seed=1).evaluate(*_setup(eval_batch_size=1024))
    assert c["nc/noise/nc1"] != a["nc/noise/nc1"] and c["nc/clean/nc1"] == a["nc/clean/nc1"]


def test_init_nc1_is_measured_in_eval_mode():
    trainer, module = _setup()
    module.net.features.insert(3, torch.nn.Dropout(0.9))  # train mode would zero most features
    module.net.train()
    cb = NeuralCollapseCallback(ATTACK, max_train_samples=300)
    init = cb.clean_nc1(trainer, module)["nc/init/clean/nc1"]
    assert module.net.training  # restored
    module.net.eval()
    assert init == pytest.approx(cb.evaluate(trainer, module)["nc/clean/nc1"], rel=1e-9)


def _fit(tmp_path, *overrides):
    nc = ["task=neural_collapse", "profile=smoke", "data.eval_batch_size=50"]
    fit_in_subprocess(tmp_path, *nc, "callbacks.neural_collapse.max_train_samples=301", *overrides)


def test_ddp_two_processes_give_the_nc_metrics_of_one(tmp_path):
    _fit(tmp_path, "trainer.max_epochs=1")
    (single,) = [json.loads(p.read_text()) for p in (tmp_path / "results" / "neural_collapse").glob("*.json")]
    weights = tmp_path / "runs" / "neural_collapse" / single["run_id"] / "stages" / "main" / "final.pt"
    _fit(tmp_path, "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=0", f"init_weights={weights}")
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "neural_collapse").glob("*.json")]
    (ddp,) = [r for r in records if r["config"]["trainer"]["devices"] == 2]
    a, b = single["metrics"], ddp["metrics"]
    keys = [k for k in a if k.startswith("nc/") and not k.startswith("nc/init") and "/init/" not in k]
    assert len(keys) > 40
    assert any(k.startswith("nc/pgd/") for k in keys) and any(k.startswith("nc/noise/") for k in keys)
    assert a["nc/train_samples"] == b["nc/train_samples"] == 301
    for k in keys:
        assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k


# -- scheduler group --------------------------------------------------------------------------------------------
def _lrs(sched, opt, epochs):
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


def test_step_schedule_milestones_are_fractions_of_the_run():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    lrs = _lrs(step_schedule(opt, max_epochs=8, milestones=[0.25, 0.375], gamma=0.1), opt, 8)
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.001, 0.001, 0.001, 0.001])
    with pytest.raises(BenchError, match="fractions"):
        step_schedule(opt, max_epochs=8, milestones=[25])


def test_cosine_schedule_ends_at_eta_min():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    lrs = _lrs(cosine_schedule(opt, max_epochs=4, eta_min=0.0), opt, 5)
    assert lrs == pytest.approx([1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5, 0.5 - 0.5 * math.cos(math.pi / 4), 0.0])


def test_scheduler_group_reaches_the_module_with_the_trainer_epochs():
    from hydra.utils import instantiate

    from bench.harness.config import compose

    cfg = compose(["task=neural_collapse", "scheduler=step"])
    optimizer = instantiate(cfg.optimizer, _partial_=True)
    module = instantiate(cfg.module, net=MLP([64], 10, hidden=[8]), optimizer=optimizer)
    module._trainer = SimpleNamespace(max_epochs=40)
    sched = module.configure_optimizers()["lr_scheduler"]
    assert sorted(sched.milestones) == [10, 15]
    assert compose(["task=neural_collapse"]).module.scheduler is None


# -- settings that belong to the data ---------------------------------------------------------------------------
def test_input_statistics_come_from_the_training_split_unless_declared():
    dm = DigitsDataModule()
    dm.setup()
    x = dm.split("train")["x"].double()
    mean, std = input_statistics(dm)
    assert mean == pytest.approx(float(x.mean())) and std == pytest.approx(float(x.std(unbiased=False)))
    declared = DigitsDataModule(input_mean=0.5, input_std=0.25)
    declared.setup()
    assert input_statistics(declared) == (0.5, 0.25)


def test_the_model_standardises_with_the_datamodule_statistics(tmp_path, monkeypatch):
    from bench.harness.config import compose
    from bench.harness.context import RunContext
    from bench.tasks.neural_collapse import protocol

    cfg = compose(["task=neural_collapse", "data=mnist1d", "data.num_samples=400", "attack.eps=[0.05]"])
    ctx = RunContext(cfg, tmp_path, [], False)
    got = []
    monkeypatch.setattr(ctx, "fit", lambda module, dm: got.append((module, dm)))
    protocol.run(ctx)
    module, dm = got[0]
    x = dm.split("train")["x"].double()
    norm = module.net.features[0]
    assert float(norm.mean) == pytest.approx(float(x.mean()), rel=1e-5)
    assert float(norm.std) == pytest.approx(float(x.std(unbiased=False)), rel=1e-5)
    assert module.train_eps == 0.05


def test_data_without_a_radius_is_refused_before_training(run_bench, tmp_path):
    # the harness's attack validation (before any run) or the task's own check names attack.eps
    with pytest.raises(BenchError, match="attack.eps"):
        run_bench(["task=neural_collapse", "profile=smoke", "data=mnist1d"])
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))
    from bench.harness.config import compose
    from bench.tasks.neural_collapse.protocol import check_radius

    with pytest.raises(BenchError, match="declares no eps_scale"):
        check_radius(compose(["task=neural_collapse", "data=mnist1d"]))
    check_radius(compose(["task=neural_collapse", "data=mnist1d", "attack.eps=[0.05]"]))


# -- claims on synthetic records -------------------------------------------------------------------------------
def _metrics(method: str, seed: int) -> dict:
    """A record that passes every claim: ST collapses cleanly but not under PGD, AT collapses on both, TRADES is
    robust and less collapsed, layer 1 keeps more collapse."""
    jitter = 1 + 0.01 * seed
    m = {
        "nc/init/clean/nc1": 1.0,
        "nc/noise/nc1": 0.06 * jitter,
        "nc/pgd/align_cos": 0.95,
        "nc/layer1/clean/nc1": 0.5,
        "nc/test_pgd/ncc_acc": 0.60,
        "nc/test_pgd/net_acc": 0.62,
    }
    if method == "st":
        m.update(
            {
                "nc/clean/nc1": 0.05 * jitter,
                "nc/pgd/nc1": 2.0 * jitter,
                "nc/layer1/pgd/nc1": 1.0,
                "test/robust_acc": 0.01,
            }
        )
    elif method == "at":
        m.update(
            {
                "nc/clean/nc1": 0.04 * jitter,
                "nc/pgd/nc1": 0.08 * jitter,
                "nc/layer1/pgd/nc1": 0.6,
                "test/robust_acc": 0.60,
            }
        )
    else:
        m.update(
            {
                "nc/clean/nc1": 0.09 * jitter,
                "nc/pgd/nc1": 0.2,
                "nc/layer1/pgd/nc1": 0.6,
                "test/robust_acc": 0.58 + 0.01 * seed,
            }
        )
    return m


def _records(edits: dict | None = None) -> RecordSet:
    """Three seeds of each method; ``edits[(method, seed)] = {metric: value}`` changes one record."""
    edits = edits or {}
    out = []
    for method in ("st", "at", "trades"):
        for seed in (0, 1, 2):
            m = _metrics(method, seed)
            m.update(edits.get((method, seed), {}))
            out.append({"config": {"method": method}, "seed": seed, "metrics": m})
    return RecordSet(copy.deepcopy(out))


def _outcome(check, edits: dict | None = None):
    return check(_records(edits))


def test_every_claim_passes_on_records_that_show_the_papers_findings():
    for claim in C.CLAIMS:
        out = claim.check(_records())
        assert out is not None and out.passed, (claim.name, out)
    assert _outcome(C.st_clean_collapse).measured["n"] == 3


@pytest.mark.parametrize(
    "check, edit",
    [
        # (a1) one seed whose clean NC1 fell only to 0.2 x init
        (C.st_clean_collapse, {("st", 2): {"nc/clean/nc1": 0.2}}),
        # (a2) the PGD gap is under 10x on one seed; noise doubles NC1 on one seed
        (C.st_collapse_fragile, {("st", 1): {"nc/pgd/nc1": 0.4}}),
        (C.st_collapse_fragile, {("st", 0): {"nc/noise/nc1": 0.11}}),
        # (b) AT's clean NC1, its PGD NC1, or the alignment fails on one seed
        (C.at_collapse_robust, {("at", 0): {"nc/clean/nc1": 0.15}}),
        (C.at_collapse_robust, {("at", 1): {"nc/pgd/nc1": 0.5}}),
        (C.at_collapse_robust, {("at", 2): {"nc/pgd/align_cos": 0.85}}),
        # (c) NCC 8 points below the network on one seed
        (C.at_ncc_matches_network, {("at", 1): {"nc/test_pgd/ncc_acc": 0.54}}),
        # (d) TRADES not robust (AT's level - 0.1), or not robust above ST, or more collapsed than AT
        (C.trades_robust_but_less_collapsed, {("trades", s): {"test/robust_acc": 0.5} for s in range(3)}),
        (
            C.trades_robust_but_less_collapsed,
            {
                **{("trades", s): {"test/robust_acc": 0.05} for s in range(3)},
                **{("at", s): {"test/robust_acc": 0.06} for s in range(3)},
            },
        ),
        (C.trades_robust_but_less_collapsed, {("trades", s): {"nc/clean/nc1": 0.03} for s in range(3)}),
        # (e) layer 1 loses more collapse than the last layer
        (C.earlier_layers_keep_collapse, {("st", s): {"nc/layer1/pgd/nc1": 40.0} for s in range(3)}),
    ],
)
def test_each_clause_fails_when_its_finding_is_absent(check, edit):
    out = _outcome(check, edit)
    assert out is not None and not out.passed, out


def test_claims_without_their_runs_are_not_checkable():
    only_st = RecordSet([r for r in _records() if r["config"]["method"] == "st"])
    assert C.at_collapse_robust(only_st) is None and C.trades_robust_but_less_collapsed(only_st) is None
    assert C.st_clean_collapse(only_st).passed
