"""The harness contract: the typed task spec, the sweep-point naming convention, seed statistics, data views,
epoch snapshots, user task folders and the verify rules (on the fixture task's claim lists)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.harness.naming import parse_point, point_name, points
from bench.harness.spec import parse_task, run_label
from bench.harness.stats import paired, summarize

GOOD = {
    "name": "toy",
    "version": "1",
    "description": "d",
    "arxiv": "1",
    "protocol": {"_target_": "a.b"},
    "claims": "a.b:CLAIMS",
    "label": ["method"],
    "headline_metrics": [{"name": "test/acc", "display": "accuracy", "higher_is_better": True}],
    "verify": {"overrides": [], "runs": [["method=a"]], "seeds": [0, 1]},
}


# -- the task spec -----------------------------------------------------------------------------------------------
def test_a_valid_task_block_parses():
    spec = parse_task(GOOD, "toy")
    assert spec.headline_metrics[0].higher_is_better is True and spec.verify.seeds == (0, 1)
    assert spec.label == ("method",)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"name": "other"}, "task.name is 'other' but the file is toy.yaml"),
        ({"label": "${method}"}, "task.label must be a non-empty list of config keys"),
        ({"headline_metrics": ["test/acc"]}, "task.headline_metrics[0] must be a mapping"),
        ({"headline_metrics": [{"name": "test/acc"}]}, "higher_is_better must be true or false"),
        ({"protocol": "a.b"}, "task.protocol must be a mapping with a _target_"),
        ({"verify": {"seeds": ["zero"]}}, "task.verify.seeds must be a list of integers"),
        ({"knob": 3}, "unknown task keys ['knob']"),
        ({"version": None}, "task.version is missing"),
    ],
)
def test_a_malformed_task_block_is_one_clear_error(change, needle):
    with pytest.raises(BenchError) as e:
        parse_task({**GOOD, **change}, "toy")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_labels_are_readable_names():
    cfg = {
        "task": {"label": ["method", "optimizer._target_", "gap.tau"], "label_text": None},
        "method": "gap",
        "optimizer": {"_target_": "bench.optim.steepest.GD"},
        "gap": {"tau": 0.0},
    }
    assert run_label(cfg) == "gap/GD/tau=0"
    assert run_label({**cfg, "task": {**cfg["task"], "label_text": "gap_tau0"}}) == "gap_tau0"


def _write_task(folder: Path, name: str, body: str) -> None:
    (folder / "task").mkdir(parents=True, exist_ok=True)
    (folder / "task" / f"{name}.yaml").write_text(body)


def _bench(*args, cwd, env_include=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "BENCH_INCLUDE"}
    if env_include:
        env["BENCH_INCLUDE"] = env_include
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_bench_list_names_a_malformed_task_file_and_fails(tmp_path):
    _write_task(
        tmp_path,
        "broken",
        "task:\n  name: broken\n  version: '1'\n  description: x\n  protocol: {_target_: a.b}\n"
        "  label: [method]\n  headline_metrics: [test/acc]\n",
    )
    r = _bench("--include", str(tmp_path), "list", cwd=tmp_path)
    assert r.returncode == 1
    assert "broken.yaml: task.headline_metrics[0] must be a mapping" in r.stderr and "Traceback" not in r.stderr
    assert "neural_collapse" in r.stdout  # the valid tasks are still listed


def test_a_user_task_in_its_own_folder_is_listed_and_runs(tmp_path):
    """A task defined outside the repository (``--include DIR``: its YAML and its Python package) runs like a
    built-in one."""
    _write_task(
        tmp_path / "mine",
        "my_task",
        (Path(__file__).parent / "fixtures" / "task" / "fixture.yaml")
        .read_text()
        .replace("name: fixture", "name: my_task")
        .replace("fixture_task.", "my_pkg."),
    )
    pkg = tmp_path / "mine" / "my_pkg"
    pkg.mkdir()
    for f in ("__init__.py", "module.py", "claims.py"):
        (pkg / f).write_text((Path(__file__).parent / "fixtures" / "fixture_task" / f).read_text())
    listed = _bench("--include", str(tmp_path / "mine"), "list", cwd=tmp_path)
    assert listed.returncode == 0 and any(row.startswith("my_task ") for row in listed.stdout.splitlines())
    r = _bench(
        "--include", str(tmp_path / "mine"), "fit", "task=my_task", "logger=none", "trainer.max_epochs=1", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "results" / "my_task").glob("*.json"))


def test_every_task_file_of_the_suite_fits_the_spec():
    from bench.harness.registry import task_problems, tasks

    assert task_problems() == {}
    assert {"neural_collapse", "group_priors", "fixture"} <= set(tasks())


# -- sweep-point names -------------------------------------------------------------------------------------------
def test_point_names_round_trip_and_are_read_back_by_one_helper():
    name = point_name("test/acc", density=0.3, method="el2n")
    assert name == "density=0.3/method=el2n/test/acc"
    assert parse_point(name) == ({"density": "0.3", "method": "el2n"}, "test/acc")
    # a radius in a metric name is not an axis
    assert parse_point("test/robust_acc@eps=0.1") == ({}, "test/robust_acc@eps=0.1")
    metrics = {point_name("err", generation=n): float(n) for n in (2, 0, 1)} | {"err": 9.0, "other/err": 1.0}
    assert [(a["generation"], v) for a, v in points(metrics, "err")] == [("0", 0.0), ("1", 1.0), ("2", 2.0)]
    staged = {"ridge/" + point_name("err", generation=1): 3.0, point_name("err", generation=1): 4.0}
    assert points(staged, "err", stage="ridge") == [({"generation": "1"}, 3.0)]
    with pytest.raises(ValueError):
        point_name("x", method="a/b")


# -- statistics --------------------------------------------------------------------------------------------------
def test_summary_matches_scipy_and_drops_missing_values():
    v = [0.61, 0.74, 0.68, 0.70]
    s = summarize(v + [None, math.nan])
    assert s.n == 4 and s.mean == pytest.approx(np.mean(v)) and s.std == pytest.approx(np.std(v, ddof=1))
    lo, hi = scipy_stats.t.interval(0.95, 3, loc=np.mean(v), scale=scipy_stats.sem(v))
    assert (s.lower95, s.upper95) == (pytest.approx(lo), pytest.approx(hi))
    lower, upper = s.one_sided(0.95)
    assert lower == pytest.approx(np.mean(v) - scipy_stats.t.ppf(0.95, 3) * scipy_stats.sem(v))
    assert math.isnan(summarize([1.0]).std) and summarize([1.0]).one_sided() == (1.0, 1.0)


def test_paired_differences_use_common_seeds_only():
    d = paired({0: 0.9, 1: 0.8, 2: 0.7, 5: 1.0}, {0: 0.8, 1: 0.8, 2: 0.5, 7: 0.0})
    assert d.n == 3 and d.mean == pytest.approx((0.1 + 0.0 + 0.2) / 3)


def _rec(seed, method, acc):
    return {"seed": seed, "config": {"method": method}, "metrics": {"test/acc": acc}}


def test_recordset_by_seed_and_paired_diff():
    rs = RecordSet([_rec(s, m, a) for s, m, a in [(0, "a", 0.9), (1, "a", 0.8), (0, "b", 0.7), (1, "b", 0.75)]])
    assert rs.where(method="a").by_seed("test/acc") == {0: 0.9, 1: 0.8}
    assert rs.where(method="a").paired_diff(rs.where(method="b"), "test/acc").mean == pytest.approx(0.125)
    with pytest.raises(ValueError, match="two records of seed 0"):
        rs.by_seed("test/acc")  # two methods mixed: an error, not an average


# -- data views and snapshots ------------------------------------------------------------------------------------
def test_with_splits_keeps_the_metadata_and_serves_the_chosen_splits():
    from bench.data.spurious import SpuriousFeaturesDataModule

    dm = SpuriousFeaturesDataModule()
    dm.setup()
    subset = {k: v[:10] for k, v in dm.split("train").items()}
    view = dm.with_splits(train=subset, test="train", val=None, batch_size=4)
    assert (view.num_classes, view.num_groups, view.input_shape) == (dm.num_classes, dm.num_groups, dm.input_shape)
    assert view.group_names == dm.group_names and view.batch_size == 4
    assert torch.equal(view.split("test")["x"], dm.split("train")["x"]) and len(view.split("train")["y"]) == 10
    assert "val" not in view.splits and "val" in dm.splits
    assert len(view.train_dataloader()) == 1  # 10 examples, batch 4, the whole epoch in one Lightning step


def test_epoch_snapshots_keep_chosen_epochs_and_travel_with_the_checkpoint(run_bench):
    import lightning as L

    from bench.callbacks.snapshots import EpochSnapshots
    from bench.data.gaussians import GaussianMixtureDataModule
    from bench.harness.module import BenchModule
    from bench.models.mlp import MLP

    dm = GaussianMixtureDataModule(num_classes=2, dim=4, n_train=64, n_test=16, batch_size=16)
    module = BenchModule(
        MLP(input_shape=[4], num_classes=2, hidden=[8]), optimizer=lambda params: torch.optim.SGD(params, lr=0.1)
    )
    snaps = EpochSnapshots(epochs=[1, 3], include_start=True)
    L.Trainer(
        max_epochs=3,
        callbacks=[snaps],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, datamodule=dm)
    assert sorted(snaps.states) == [0, 1, 3]
    final = module.state_dict()
    assert all(torch.equal(snaps.states[3][k], final[k]) for k in final)
    assert any(not torch.equal(snaps.states[0][k], final[k]) for k in final)  # epoch 0 is the untrained net
    again = EpochSnapshots(epochs=[1, 3])
    again.load_state_dict(snaps.state_dict())
    assert sorted(again.states) == [0, 1, 3]


# -- verify rules (fixture claim lists with known outcomes) ------------------------------------------------------
@pytest.mark.parametrize(
    "claims, code", [("PASSING", 0), ("FAILING", 1), ("RAISING", 1), ("MISSING", 1), ("MISSING_TREND", 0)]
)
def test_verify_exit_code_follows_the_rules(tmp_path, monkeypatch, capsys, claims, code):
    """A failing trend claim does not gate; a failing claim, a check that raises, and a gating claim whose runs are
    missing from the plan all fail verify."""
    from bench.harness.verify import run_verify

    monkeypatch.chdir(tmp_path)
    args = [
        "task=fixture",
        f"task.claims=fixture_task.claims:{claims}",
        "logger=none",
        "print_summary=false",
        "trainer.max_epochs=1",
    ]
    assert run_verify(args) == code
    summary = json.loads((tmp_path / "results" / "fixture" / "verify" / "latest.json").read_text())
    assert summary["passed"] is (code == 0)
    out = capsys.readouterr().out
    if claims == "RAISING":
        assert "check raised RuntimeError" in out or any("check raised" in c["detail"] for c in summary["claims"])
    if claims.startswith("MISSING"):
        assert "not checked" in out


def test_verify_runs_the_report_hook_after_the_claims(tmp_path, monkeypatch):
    from bench.harness.verify import run_verify

    monkeypatch.chdir(tmp_path)
    args = [
        "task=fixture",
        "+task.report=fixture_task.report:report",
        "logger=none",
        "print_summary=false",
        "trainer.max_epochs=1",
    ]
    run_verify(args)
    summary = json.loads((tmp_path / "results" / "fixture" / "verify" / "latest.json").read_text())
    table = Path(summary["artifacts"]["runs"])
    assert table.is_file() and table.resolve().parent == tmp_path / "results" / "fixture" / "verify"
    assert len(json.loads(table.read_text())) == 4  # 2 variants x 2 seeds


def test_an_override_that_breaks_the_task_block_is_refused_before_training(run_bench, tmp_path):
    """Experiments and profiles may override parts of ``task:``; the composed block must still fit the spec."""
    with pytest.raises(BenchError, match=r"headline_metrics\[0\] must be a mapping .*after the experiment"):
        run_bench(["task=fixture", "task.headline_metrics=[test/acc]"])
    assert not (tmp_path / "runs" / "fixture").exists() and not (tmp_path / "results").exists()


def test_task_docs_match_their_sources():
    """docs/tasks/<task>.md is generated from each task's docstring, config, claims and committed verify summary:
    a change to any of them without `python tools/task_docs.py` fails here."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "task_docs.py"
    spec = importlib.util.spec_from_file_location("task_docs", path)
    task_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task_docs)
    assert len(task_docs.tasks()) == 10
    assert task_docs.main(["--check"]) == 0, "docs/tasks is out of date: run python tools/task_docs.py"
