"""What a person reads: the start line, smoke claims, the multirun table, the progress bar, experiment -> task, the
thread default, ``--cfg job``, and ``bench list``'s verify status."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.callbacks.progress import EpochProgressBar, format_loss
from bench.harness.config import compose
from bench.harness.console import aggregate_rows, start_line, verify_status
from bench.harness.errors import BenchError
from bench.harness.experiments import owner_task, select_task
from bench.harness.summary import print_claims
from bench.harness.threads import apply_thread_default, auto_threads

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["neural_collapse", "group_priors", "robust_erm", "fixture"]


def test_start_line_names_task_label_profile_and_overrides():
    cfg = compose(["task=neural_collapse", "method=at", "profile=smoke"])
    line = start_line(cfg, ["method=at", "profile=smoke"])
    assert line == "bench fit: neural_collapse · at · profile smoke · seed 0 · overrides: method=at profile=smoke"


def test_smoke_claims_are_not_meaningful_instead_of_fail(capsys):
    claims = [{"name": "(a) x", "measured": 0.5, "expected": "> 1", "passed": False, "trend": False}]
    print_claims(claims, profile="smoke")
    out = capsys.readouterr().out
    assert "not meaningful" in out and "(smoke" in out
    print_claims(claims, profile="default")
    out = capsys.readouterr().out
    assert "FAIL" in out and "not meaningful" not in out


def _record(label, seed, acc):
    return {
        "task": "t",
        "label": label,
        "seed": seed,
        "profile": "default",
        "duration_s": 1.5,
        "headline_metrics": [{"name": "test/acc", "display": "accuracy", "higher_is_better": True}],
        "metrics": {"test/acc": acc},
    }


def test_multirun_table_has_one_row_per_label_with_mean_and_std():
    header, rows = aggregate_rows([_record("st", 0, 0.5), _record("st", 1, 0.7), _record("at", 0, 0.9)])
    assert header == ["task", "label", "profile", "seeds", "accuracy", "time (s)"]
    assert rows == [["t", "st", "default", "0,1", "0.6 ± 0.14", "3.0"], ["t", "at", "default", "0", "0.9", "1.5"]]


class _Trainer:
    max_epochs, current_epoch, global_step = 10, 2, 300
    callback_metrics = {"train/loss": 3.2e-5}


def test_progress_bar_shows_epochs_steps_per_second_and_a_real_loss():
    bar = EpochProgressBar()
    bar._t0, bar._step0 = time.monotonic() - 2.0, 100
    status = bar.status(_Trainer(), 3)
    assert status["epoch"] == "epoch 3/10" and status["loss"] == "loss 3.2e-05"
    assert status["rate"].endswith(" steps/s") and 90 <= float(status["rate"].split()[0]) <= 100  # 200 steps / ~2 s
    assert format_loss(None) == "-"


def test_a_fit_uses_the_epoch_progress_bar(run_bench, capsys):
    run_bench(["task=fixture", "trainer.max_epochs=3", "trainer.enable_progress_bar=true"])
    out = capsys.readouterr().out
    assert "epoch 3/3" in out and "steps/s" in out and "loss " in out
    assert "it/s" not in out  # Lightning's own bars are gone


def test_experiment_selects_its_task_and_a_mismatch_is_refused():
    assert owner_task("neural_collapse_paper", TASKS) == "neural_collapse"
    assert owner_task("iteration_heads_gpu", ["iteration_heads"]) == "iteration_heads"
    assert owner_task("shared_thing", TASKS) is None
    assert select_task(["experiment=neural_collapse_paper"], TASKS) == [
        "experiment=neural_collapse_paper",
        "task=neural_collapse",
    ]
    assert select_task(["task=group_priors", "experiment=group_priors_paper"], TASKS) == [
        "task=group_priors",
        "experiment=group_priors_paper",
    ]
    with pytest.raises(
        BenchError, match="experiment=group_priors_paper belongs to task group_priors, not neural_collapse"
    ):
        select_task(["task=neural_collapse", "experiment=group_priors_paper"], TASKS)


def test_cli_experiment_alone_prints_its_config_and_mismatch_is_one_line(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "bench", "fit", "experiment=neural_collapse_paper", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    cfg = OmegaConf.create(ok.stdout)  # `--cfg job`: the full composed config
    assert cfg.task.name == "neural_collapse" and cfg.trainer.max_epochs == 200
    bad = subprocess.run(
        [sys.executable, "-m", "bench", "fit", "task=neural_collapse", "experiment=group_priors_paper"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "belongs to task group_priors" in bad.stderr


def test_auto_threads_is_one_on_a_small_cpu_only():
    assert auto_threads("cpu", cores=2) == 1 and auto_threads("cpu", cores=4) == 1
    assert auto_threads("cpu", cores=16) is None and auto_threads("gpu", cores=2) is None
    cfg = OmegaConf.create({"num_threads": "auto", "trainer": {"accelerator": "gpu"}})
    apply_thread_default(cfg)
    assert cfg.num_threads is None
    cfg = OmegaConf.create({"num_threads": 3, "trainer": {"accelerator": "cpu"}})
    apply_thread_default(cfg)
    assert cfg.num_threads == 3
    assert compose(["task=group_priors"]).num_threads == "auto"  # the root default, resolved when a run starts


def test_verify_status_reads_the_summary(tmp_path):
    assert verify_status("nothing_here", results_dir=tmp_path) == "not verified"
    folder = tmp_path / "t" / "verify"
    folder.mkdir(parents=True)
    (folder / "latest.json").write_text(
        json.dumps({"passed": False, "profile": "smoke", "task_version": "1.0", "duration_s": 12.3})
    )
    assert verify_status("t", "2.0", tmp_path) == "verify FAIL (smoke, of v1.0, 12 s)"
    assert verify_status("t", "1.0", tmp_path) == "verify FAIL (smoke, 12 s)"
