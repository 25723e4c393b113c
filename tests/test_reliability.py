"""Reliability under interruption and bad input (issue 14): resume equals the uninterrupted run, signals exit
non-zero with the resume line, named checkpoints are honoured and kept, any seed works, bad values and unwritable
folders fail before training with one line, damaged checkpoints and records are named."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness.errors import BenchError, RunInterrupted

ROOT = Path(__file__).resolve().parents[1]
FAST_NC = ["task=neural_collapse", "profile=smoke", "callbacks.neural_collapse=null", "trainer.max_epochs=4"]
INTERRUPT = "+callbacks.interrupt._target_=interrupt_helper.InterruptAtEpoch"


def fit(overrides, base: Path, run_id: str | None = None):
    """One in-process run with its outputs under ``base`` (loggers off)."""
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    extra = [f"results_dir={base / 'results'}", f"work_dir={base / 'runs'}", "print_summary=false", "logger=none"]
    extra.append("checkpoint_min_interval_s=0")  # a checkpoint every epoch, so resume has something to resume
    if run_id:
        extra.append(f"run_id={run_id}")
    return run_fit(compose(list(overrides) + extra))


def cli(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'tests'}:{ROOT}", OMP_NUM_THREADS="1", WANDB_MODE="offline")
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def interrupted_then_resumed(overrides, tmp_path, epoch=2, stage=None):
    """(record of the run interrupted at ``epoch`` and resumed with ckpt_path=last, record of the same config run
    without interruption in another folder)."""
    where = [f"+callbacks.interrupt.epoch={epoch}"] + ([f"+callbacks.interrupt.stage={stage}"] if stage else [])
    with pytest.raises(RunInterrupted, match="ckpt_path=last"):
        fit([*overrides, INTERRUPT, *where], tmp_path / "a", run_id="r")
    assert not list((tmp_path / "a" / "results").rglob("*.json")), "an interrupted run writes no record"
    assert list((tmp_path / "a" / "runs").rglob("last.ckpt")), "nothing to resume from: the test would be vacuous"
    never = ["+callbacks.interrupt.epoch=99"]
    resumed = fit([*overrides, INTERRUPT, *never, "ckpt_path=last"], tmp_path / "a", run_id="r")
    whole = fit([*overrides, INTERRUPT, *never], tmp_path / "b", run_id="r")
    return resumed, whole


def assert_same_metrics(a, b):
    assert a.keys() == b.keys()
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diff, f"{len(diff)} of {len(a)} metrics differ after resume: {dict(list(diff.items())[:5])}"


# -- 1. resume equals the uninterrupted run when training draws random numbers ----------------------------------
@pytest.mark.parametrize("method", ["at", "trades"])
def test_resume_equals_uninterrupted_run_with_random_training(method, tmp_path):
    resumed, whole = interrupted_then_resumed([*FAST_NC, f"method={method}"], tmp_path)
    assert resumed["metrics"]["test/robust_acc"] is not None
    assert_same_metrics(resumed["metrics"], whole["metrics"])


def test_multi_stage_resume_equals_uninterrupted_run(tmp_path):
    """group_priors GAP: ERM (cached) -> two grid stages with validation selection and random context batches;
    interrupted in the second grid stage after 5 of 6 epochs. At seed 0 that stage selects epoch 4, so a selection
    callback that forgot its best epoch on resume would pick epoch 6."""
    ov = ["task=group_priors", "profile=smoke", "method=gap_last_layer", "gap.max_epochs=6", "seed=0"]
    resumed, whole = interrupted_then_resumed(ov, tmp_path, epoch=5, stage="gap_grid1")
    assert whole["metrics"]["gap_grid1/select/epoch"] < 5  # the best epoch lies before the interruption
    assert_same_metrics(resumed["metrics"], whole["metrics"])


def test_validation_selection_keeps_its_best_epoch_across_a_checkpoint():
    import torch

    from bench.tasks.group_priors.selection import ValidationSelection

    a = ValidationSelection(num_groups=2)
    a.best_score, a.best_epoch, a.best_state, a.history = 0.7, 3, {"w": torch.ones(2)}, [(1, 0.5), (3, 0.7)]
    b = ValidationSelection(num_groups=2)
    b.load_state_dict(a.state_dict())
    assert (b.best_score, b.best_epoch, b.history) == (0.7, 3, [(1, 0.5), (3, 0.7)])
    assert torch.equal(b.best_state["w"], torch.ones(2))


# -- 2, 4. SIGTERM and Ctrl+C: one line on stderr, non-zero exit, through the CLI ----------------------------------
@pytest.mark.parametrize("kind,code", [("interrupt", 130), ("sigterm", 143)])
def test_signal_prints_the_resume_line_and_exits_non_zero(kind, code, tmp_path):
    target = "InterruptAtEpoch" if kind == "interrupt" else "SigtermAtEpoch"
    args = [
        "fit",
        *FAST_NC,
        "method=st",
        "logger=none",
        f"results_dir={tmp_path}/results",
        f"work_dir={tmp_path}/runs",
        f"+callbacks.stop._target_=interrupt_helper.{target}",
        "+callbacks.stop.epoch=1",
    ]
    r = cli(args, tmp_path)
    assert r.returncode == code, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ckpt_path=last" in errors[0], r.stderr[-2000:]
    assert ("SIGTERM" in errors[0]) == (kind == "sigterm")
    assert "Traceback" not in r.stderr
    assert not list((tmp_path / "results").rglob("*.json"))
    (ckpt,) = (tmp_path / "runs" / "neural_collapse").glob("*/stages/main/last.ckpt")  # epoch 0 was saved


# -- 3. a named ckpt_path is honoured and never deleted -----------------------------------------------------------
def test_named_checkpoint_is_honoured_and_kept(tmp_path):
    import torch

    base = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null"]
    first = fit([*base, "trainer.max_epochs=2"], tmp_path)
    last = tmp_path / "runs" / "neural_collapse" / first["run_id"] / "stages" / "main" / "last.ckpt"
    mine = tmp_path / "mine.ckpt"
    shutil.copy(last, mine)
    # a file outside the run folder: a fresh run of another config starts its main stage from it
    more = fit([*base, "trainer.max_epochs=3", f"ckpt_path={mine}"], tmp_path)
    assert more["run_id"] != first["run_id"] and mine.is_file()
    again = tmp_path / "runs" / "neural_collapse" / more["run_id"] / "stages" / "main" / "last.ckpt"
    assert torch.load(again, weights_only=False)["epoch"] == 2  # epochs 0, 1 from the file, then epoch 2
    # the run's own last.ckpt, named as a path: continued, not deleted
    (last.parent / "done.json").unlink()
    fit([*base, "trainer.max_epochs=3", f"ckpt_path={last}"], tmp_path, run_id=first["run_id"])
    assert last.is_file() and torch.load(last, weights_only=False)["epoch"] == 2
    with pytest.raises(BenchError, match="no such file"):
        fit([*base, f"ckpt_path={tmp_path / 'missing.ckpt'}"], tmp_path)


# -- 5. any 32/64-bit seed works; seeds reach the numbers -----------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 2**31 - 1, 2**63 - 1, 20240101])
def test_any_integer_seed_runs(seed, tmp_path):
    rec = fit(
        [
            "task=neural_collapse",
            "profile=smoke",
            "attack=none",
            "callbacks.neural_collapse=null",
            "trainer.max_epochs=1",
            f"seed={seed}",
        ],
        tmp_path,
    )
    assert rec["seed"] == seed and rec["metrics"]["test/acc"] is not None


def test_stage_seeds_are_in_range_and_differ_by_stage_and_seed():
    from bench.harness.context import stage_seed

    seeds = {stage_seed(s, st) for s in (0, 1, 2**63 - 1, -5, 10**30) for st in ("main", "erm")}
    assert len(seeds) == 10 and all(0 <= s < 2**32 for s in seeds)


# -- 10. unwritable results_dir ------------------------------------------------------------------------------------
def test_unwritable_results_dir_is_found_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    cfg = compose(
        [
            "task=neural_collapse",
            "profile=smoke",
            "logger=none",
            f"results_dir={blocker / 'sub'}",
            f"work_dir={tmp_path / 'runs'}",
        ]
    )
    with pytest.raises(BenchError, match="results_dir=.* is not writable"):
        run_fit(cfg)
    assert not (tmp_path / "runs").exists(), "nothing may run before the check"


def test_a_record_that_cannot_be_written_at_the_end_says_how_to_reuse_the_stages(tmp_path, monkeypatch):
    import bench.harness.run as run

    def full_disk(record, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run, "write_record", full_disk)
    with pytest.raises(BenchError, match="ckpt_path=last and a writable results_dir"):
        fit(
            [
                "task=neural_collapse",
                "profile=smoke",
                "attack=none",
                "callbacks.neural_collapse=null",
                "trainer.max_epochs=1",
            ],
            tmp_path,
        )


# -- 11. values checked before training, one line each -----------------------------------------------------------
@pytest.mark.parametrize(
    "override,needle",
    [
        ("seed=foo", "seed='foo' is not allowed: seed must be an integer"),
        ("optimizer.lr=abc", "optimizer.lr='abc' is not allowed: optimizer.lr must be a positive number"),
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' is not allowed"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: data.batch_size must be an integer >= 1"),
        ("attack.eps=[-0.1]", "attack.eps=[-0.1] is not allowed"),
        ("attack.eps=abc", "attack.eps=abc is not allowed"),
    ],
)
def test_bad_values_fail_before_training_with_one_line(override, needle, tmp_path):
    with pytest.raises(BenchError) as e:
        fit(["task=neural_collapse", "profile=smoke", override], tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "override,needle",
    [
        ("trainer.max_epoch=3", "unknown config key `trainer.max_epoch`: did you mean `max_epochs`?"),
        ("data=null", "data=null: the task needs a data config; choose one of: "),
    ],
)
def test_composition_errors_are_one_line(override, needle):
    from bench.harness.validation import check_composition

    with pytest.raises(BenchError) as e:
        check_composition(["task=neural_collapse", override])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_scalar_eps_is_taken_as_a_one_element_list():
    from bench.harness.config import compose
    from bench.harness.validation import validate_run_config

    cfg = compose(["task=neural_collapse", "attack.eps=0.1"])
    validate_run_config(cfg)
    assert list(cfg.attack.eps) == [0.1] and cfg.module.train_eps == 0.1


def test_misspelled_key_is_one_line_through_the_cli(tmp_path):
    r = cli(["fit", "task=neural_collapse", "trainer.max_epoch=3"], tmp_path, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "did you mean `max_epochs`?" in r.stderr, r.stderr


# -- 12. damaged checkpoints; atomic writes ----------------------------------------------------------------------
def test_corrupt_last_checkpoint_names_the_file_and_the_fix(tmp_path):
    base = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null"]
    first = fit(base, tmp_path)
    last = tmp_path / "runs" / "neural_collapse" / first["run_id"] / "stages" / "main" / "last.ckpt"
    (last.parent / "done.json").unlink()
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a disk that filled during the save
    with pytest.raises(BenchError) as e:
        fit([*base, "ckpt_path=last"], tmp_path)
    assert str(last) in str(e.value) and "delete it" in str(e.value) and "\n" not in str(e.value)


def test_checkpoints_are_written_atomically_in_their_own_folder(tmp_path, monkeypatch):
    import tempfile

    import torch

    from bench.harness.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "stage" / "last.ckpt"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no_such_tmpdir"))  # $TMPDIR must not be used
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, target)

    class Boom:
        def __reduce__(self):
            raise OSError(28, "No space left on device")

    with pytest.raises(BenchError, match="could not write the checkpoint"):  # one line, not a traceback
        io.save_checkpoint({"epoch": 2, "w": Boom()}, target)
    assert io.load_checkpoint(target)["epoch"] == 1  # the old checkpoint survives whole
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temp file left
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# -- records: mode, schema checked in one place, hostile folders -----------------------------------------------------
def test_record_files_are_readable_like_other_outputs(tmp_path):
    from test_records import make

    from bench.harness.record import write_record

    p = write_record(make(), tmp_path / "t" / "r.json")
    assert p.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_hostile_results_folder_is_skipped_file_by_file_with_reasons(tmp_path, capsys):
    from test_records import make

    from bench.harness.record import load_records, load_records_with_problems, write_record

    write_record(make(run_id="good"), tmp_path / "t" / "good.json")
    bad = {
        "top42.json": "42",
        "label.json": json.dumps(make(label=None)),
        "metrics.json": json.dumps(make(metrics=[1])),
        "head.json": json.dumps(make(headline_metrics=None)),
        "validity.json": json.dumps(make(validity=[1])),
        "trunc.json": json.dumps(make())[:40],
        "empty.json": "",
        "foreign.json": json.dumps({"hello": "world"}),
        "escape.json": json.dumps(make(task="../pwned")),
    }
    for name, text in bad.items():
        (tmp_path / "t" / name).write_text(text)
    (tmp_path / "t" / "x.json").mkdir()
    records, problems = load_records_with_problems(tmp_path)
    assert [r["run_id"] for r in records] == ["good"]
    assert sorted(p.name for p, _ in problems) == sorted([*bad, "x.json"])
    assert all(why for _, why in problems)
    assert [r["run_id"] for r in load_records(tmp_path, warn=True)] == ["good"]
    err = capsys.readouterr().err
    assert "trunc.json" in err and f"{len(bad) + 1} file(s) skipped" in err


def test_verify_reruns_a_truncated_record_and_names_it(tmp_path, monkeypatch, capsys):
    """verify read a truncated record with a bare JSONDecodeError; now it names the file and runs it again."""
    import bench.harness.run as run
    from bench.harness import verify
    from bench.harness.config import compose
    from bench.harness.run import run_identity

    ov = [
        "task=neural_collapse",
        "profile=smoke",
        f"results_dir={tmp_path}/results",
        f"work_dir={tmp_path}/runs",
        "logger=none",
        "print_summary=false",
    ]
    plan = verify.verify_plan(ov)
    cfg = compose(plan[0])
    path = tmp_path / "results" / "neural_collapse" / f"{run_identity(cfg)[0]}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 2, "task": "neural')
    ran = []

    def fake_run_fit(cfg):
        ran.append(cfg)
        raise BenchError("stop here")

    monkeypatch.setattr(run, "run_fit", fake_run_fit)
    with pytest.raises(BenchError, match="stop here"):
        verify.run_verify(ov)
    assert ran and f"not reusing {path}" in capsys.readouterr().err


# -- also: lock, multirun, help, sync_dist warnings, data instructions ------------------------------------------------
def test_a_second_identical_run_refuses_while_the_first_holds_the_folder(tmp_path):
    from bench.harness.config import compose
    from bench.harness.run import run_identity, run_lock

    ov = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null"]
    cfg = compose([*ov, f"work_dir={tmp_path / 'runs'}", "logger=none"])
    run_dir = tmp_path / "runs" / "neural_collapse" / run_identity(cfg)[0]
    run_dir.mkdir(parents=True)
    with run_lock(run_dir, rank=0):
        with pytest.raises(BenchError, match="is in use by a run of the same config"):
            fit(ov, tmp_path)
    assert fit([*ov, "trainer.max_epochs=1"], tmp_path)["metrics"]  # free again afterwards


def test_multirun_goes_on_after_a_failing_job_and_counts_it(tmp_path):
    r = cli(
        [
            "fit",
            "-m",
            "task=neural_collapse",
            "profile=smoke",
            "attack=none",
            "logger=none",
            "callbacks.neural_collapse=null",
            "trainer.max_epochs=1",
            "optimizer.lr=1e30,0.1",
            f"results_dir={tmp_path}/results",
            f"work_dir={tmp_path}/runs",
        ],
        tmp_path,
    )
    assert r.returncode == 1, r.stderr[-2000:]
    assert "1 of 2 runs failed" in r.stderr and "non-finite training loss" in r.stderr
    recs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "neural_collapse").glob("*.json")]
    assert [rec["config"]["optimizer"]["lr"] for rec in recs] == [0.1]
    assert list((tmp_path / "runs").rglob("failed.txt"))


@pytest.mark.parametrize("command,words", [("fit", "ckpt_path=last"), ("verify", "--rerun")])
def test_help_prints_the_projects_words(command, words, capsys):
    from bench.__main__ import main

    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: bench {command}") and words in out


def test_exact_metric_sync_warnings_are_silenced_but_not_the_training_loss():
    import warnings

    from bench.harness.run import quiet_lightning

    def emitted(name):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_lightning()
            warnings.warn(
                f"It is recommended to use `self.log({name!r}, ..., sync_dist=True)` when logging on epoch "
                "level in distributed setting to accumulate the metric across devices.",
                UserWarning,
                stacklevel=1,
            )
        return len(caught)

    assert emitted("test/acc") == 0 and emitted("nc/clean/nc1") == 0
    assert emitted("train/loss") == 1


@pytest.mark.parametrize("name", ["waterbirds", "celeba"])
def test_wilds_datasets_say_how_to_get_the_files(name, tmp_path):
    from bench.data.wilds import read_wilds_table

    with pytest.raises(BenchError, match="to get it: pip install wilds"):
        read_wilds_table(tmp_path, name)


def test_sigterm_between_stages_is_an_interruption_too():
    """Outside a Lightning stage (building data, between stages) SIGTERM used to kill the run silently."""
    import signal

    from bench.harness.checkpoint import Terminated, run_signals

    before = signal.getsignal(signal.SIGTERM)
    with run_signals():
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5) if hasattr(signal, "sigtimedwait") else None
    assert signal.getsignal(signal.SIGTERM) == before


def test_checkpoints_within_the_minimum_interval_are_skipped(tmp_path):
    """A run shorter than checkpoint_min_interval_s writes no last.ckpt (nothing it would need); with 0 it writes one
    at every checkpoint_every_n_epochs; the numbers are the same either way."""
    base = ["task=neural_collapse", "profile=smoke", "seed=4"]
    every = fit([*base, "checkpoint_min_interval_s=0"], tmp_path / "every")
    rare = run_fit_with_interval(base, tmp_path / "rare", 3600)
    assert list((tmp_path / "every" / "runs").rglob("last.ckpt"))
    assert not list((tmp_path / "rare" / "runs").rglob("last.ckpt"))
    assert every["metrics"] == rare["metrics"] and every["config_hash"] == rare["config_hash"]


def run_fit_with_interval(overrides, base, seconds):
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    extra = [f"results_dir={base / 'results'}", f"work_dir={base / 'runs'}", "print_summary=false", "logger=none"]
    return run_fit(compose([*overrides, *extra, f"checkpoint_min_interval_s={seconds}"]))


# -- first contact: a failed first try leaves no empty run folder; a resume with nothing to resume says so ----------
def test_a_run_that_fails_before_writing_anything_leaves_no_run_folder(tmp_path, monkeypatch):
    from bench.harness.context import RunContext

    def refuse(self, *args, **kwargs):
        raise BenchError("this data cannot be built here")

    monkeypatch.setattr(RunContext, "build_datamodule", refuse)
    with pytest.raises(BenchError, match="cannot be built"):
        fit(["task=neural_collapse", "profile=smoke"], tmp_path)
    task_dir = tmp_path / "runs" / "neural_collapse"
    assert not task_dir.exists() or not list(task_dir.iterdir()), list(task_dir.rglob("*"))


def test_a_failed_run_keeps_a_run_folder_that_holds_files(tmp_path, monkeypatch):
    from bench.harness.run import remove_if_empty

    (tmp_path / "run" / "stages" / "main").mkdir(parents=True)
    (tmp_path / "run" / ".lock").write_text("pid 1\n")
    (tmp_path / "run" / "stages" / "main" / "last.ckpt").write_text("x")
    remove_if_empty(tmp_path / "run")
    assert (tmp_path / "run" / "stages" / "main" / "last.ckpt").is_file()
    (tmp_path / "run" / "stages" / "main" / "last.ckpt").unlink()
    remove_if_empty(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_before_the_first_checkpoint_says_the_stage_starts_again(tmp_path, capsys):
    ov = [*FAST_NC, "trainer.max_epochs=2"]
    with pytest.raises(RunInterrupted):
        fit([*ov, INTERRUPT, "+callbacks.interrupt.epoch=0"], tmp_path, run_id="r")
    assert not list((tmp_path / "runs").rglob("last.ckpt"))  # stopped before its first checkpoint
    capsys.readouterr()
    rec = fit([*ov, INTERRUPT, "+callbacks.interrupt.epoch=99", "ckpt_path=last"], tmp_path, run_id="r")
    err = capsys.readouterr().err
    assert "stage 'main' has no checkpoint to continue from" in err and "starts from its beginning" in err
    assert rec["metrics"]["test/acc"] is not None
