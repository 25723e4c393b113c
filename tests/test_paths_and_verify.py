"""Identifiers and paths stay inside the output folders; verify's reuse, writes, processes and signals; one seed
counted once on the leaderboard; one Hydra folder per process (issue #26)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness.errors import BenchError, RunInterrupted

ROOT = Path(__file__).resolve().parents[1]
FAST = ["task=fixture", "profile=smoke", "logger=none", "print_summary=false"]


def _outputs(tmp_path: Path) -> list[str]:
    work = tmp_path / "w1" / "w2"
    return [f"results_dir={tmp_path / 'results'}", f"work_dir={work}"]


# -- 1. a run_id or task name that is not one plain name is refused before the disk is touched -----------------------
@pytest.mark.parametrize("bad", ["victim", "../../../X", "..", "a/b", "-x"])
def test_a_run_id_that_is_not_a_plain_name_is_refused_before_anything_is_touched(tmp_path, bad):
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    victim = tmp_path / "victim"
    (victim / "stages").mkdir(parents=True)
    (victim / "stages" / "keep").write_text("precious")
    run_id = str(victim) if bad == "victim" else bad
    with pytest.raises(BenchError, match=r"^run_id=.* is not a plain file name"):
        run_fit(compose([*FAST, *_outputs(tmp_path), f"run_id={run_id}"]))
    assert (victim / "stages" / "keep").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no X, no results or run folder


def test_verify_refuses_such_a_run_id_before_any_run(tmp_path):
    from bench.harness.verify import run_verify

    with pytest.raises(BenchError, match=r"^run_id='../../../X' is not a plain file name"):
        run_verify([*FAST, *_outputs(tmp_path), "run_id=../../../X"], jobs=2)
    assert not list(tmp_path.iterdir())


def test_a_task_name_that_is_not_a_plain_name_is_refused_before_anything_is_touched(tmp_path):
    # held already (validate_run_config checks task.name against the registry pattern first): kept as a guard
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    with pytest.raises(BenchError, match=r"task.name is '../../../X', which does not match"):
        run_fit(compose([*FAST, *_outputs(tmp_path), "task.name=../../../X"]))
    assert not list(tmp_path.iterdir())


def test_one_check_of_a_plain_name_serves_run_ids_records_and_reports():
    from bench.harness.record import is_plain_name, validate

    assert all(is_plain_name(s) for s in ("0806c7a843ad", "my-run_2.1", "seed=3"))
    assert not any(is_plain_name(s) for s in ("", ".", "..", ".hidden", "a/b", "a\\b", "-rf", "a\nb", "x" * 201, 3))
    rec = json.loads(next((ROOT / "leaderboard" / "records" / "goldilocks").glob("*.json")).read_text())
    validate(rec)
    with pytest.raises(ValueError, match="run_id"):
        validate({**rec, "run_id": "../x"})


# -- 2. verify recomputes a reused record's hash; a report builds no path from an unchecked record value -------------
@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """One smoke verify of the fixture plan (4 runs, in process); tests copy its results folder."""
    from bench.harness.verify import run_verify

    base = tmp_path_factory.mktemp("verified")
    args = [*FAST, f"results_dir={base / 'results'}", f"work_dir={base / 'runs'}"]
    run_verify(args)
    return base


def _copy_results(verified: Path, tmp_path: Path) -> list[str]:
    import shutil

    shutil.copytree(verified / "results", tmp_path / "results")
    return [*FAST, f"results_dir={tmp_path / 'results'}", f"work_dir={tmp_path / 'runs'}"]


def test_verify_reuses_a_record_only_when_its_config_has_the_hash(verified, tmp_path, capsys):
    from bench.harness.verify import run_verify

    args = _copy_results(verified, tmp_path)
    folder = tmp_path / "results" / "fixture"
    summary = json.loads((folder / "verify" / "latest.json").read_text())
    target = folder / f"{summary['runs'][0]}.json"
    rec = json.loads(target.read_text())
    rec["config"]["fixture"]["variant"] = "x/../../../../ESCAPED"  # the stored config_hash no longer fits
    target.write_text(json.dumps(rec))
    capsys.readouterr()
    run_verify(args)
    out = capsys.readouterr().out
    assert out.count("] reusing ") == 3 and out.count("] running ") == 1, out
    assert json.loads(target.read_text())["config"]["fixture"]["variant"] == "a"


def test_galaxy_report_builds_no_file_name_from_an_unchecked_record_value(tmp_path):
    import torch

    from bench.harness.claims import RecordSet
    from bench.tasks.galaxy_distillation.report import report

    distilled = tmp_path / "distilled.pt"
    torch.save({"images": torch.rand(2, 3, 8, 8), "labels": torch.tensor([0, 1])}, distilled)
    rec = {
        "seed": 0,
        "run_id": "abc",
        "metrics": {},
        "artifacts": {"distilled": str(distilled)},
        "config": {"method": "x/../../ESCAPED", "galaxy_distillation": {"images_per_class": 1}, "data": {}},
    }
    out = tmp_path / "a" / "b" / "report"
    out.mkdir(parents=True)
    with pytest.raises(BenchError, match="not a plain file name"):
        report(RecordSet([rec]), out)
    assert not list(tmp_path.rglob("*ESCAPED*"))


# -- 3. the verify summary goes through the one atomic writer: a unique temp name, no planted link followed ----------
def test_atomic_write_follows_no_link_planted_at_a_temp_name(tmp_path):
    from bench.harness.context import atomic_write_text

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out" / "latest.json"
    target.parent.mkdir()
    for planted in (f".{target.name}.{os.getpid()}.tmp", f"{target.stem}.tmp"):
        (target.parent / planted).symlink_to(victim)
    atomic_write_text(target, "new")
    assert victim.read_text() == "precious" and target.read_text() == "new" and not target.is_symlink()


def test_verify_summary_follows_no_link_planted_beside_it(verified, tmp_path):
    from bench.harness.verify import run_verify

    args = _copy_results(verified, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "results" / "fixture" / "verify" / "latest.tmp").symlink_to(victim)
    run_verify(args)
    assert victim.read_text() == "precious"
    latest = tmp_path / "results" / "fixture" / "verify" / "latest.json"
    assert not latest.is_symlink() and json.loads(latest.read_text())["task"] == "fixture"


# -- 4, 5. an interrupted verify: workers end with it, and the advice printed works ---------------------------------
def _gone(pgid: int, within: float) -> bool:
    end = time.time() + within
    while time.time() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_sigterm_ends_verify_jobs_with_its_workers_and_the_resume_line(tmp_path):
    # ~50 s on 2 busy cores: a real `bench verify --jobs 2` process and its two spawned workers must start (each
    # imports torch and Lightning) before the signal means anything
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "tests")}
    args = [*FAST, f"results_dir={tmp_path / 'results'}", f"work_dir={tmp_path / 'runs'}", "trainer.max_epochs=100000"]
    cmd = [sys.executable, "-m", "bench", "verify", *args, "--jobs", "2"]
    # output to files, not pipes: workers left running would hold a pipe open and hang the test
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        logs = tmp_path / "results" / "fixture" / "verify" / "logs"
        end = time.time() + 120
        while time.time() < end and len(list(logs.glob("*.log"))) < 2 and proc.poll() is None:
            time.sleep(0.5)
        assert len(list(logs.glob("*.log"))) == 2, (tmp_path / "err.txt").read_text()[-2000:]
        time.sleep(3)  # the workers are inside their runs now
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        gone = _gone(proc.pid, 10)  # the process group: verify and every worker it started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    err = (tmp_path / "err.txt").read_text()
    assert proc.returncode == 143, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "SIGTERM" in errors[0] and "bench verify" in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert gone, "a worker of the stopped verify is still running"
    assert not list((tmp_path / "results" / "fixture").glob("*.json"))


def test_ctrl_c_in_verify_advises_a_rerun_that_works(tmp_path, capsys):
    from bench.harness.verify import run_verify

    args = [*FAST, f"results_dir={tmp_path / 'results'}", f"work_dir={tmp_path / 'runs'}"]
    stop = ["+callbacks.stop._target_=interrupt_helper.InterruptAtEpoch", "+callbacks.stop.epoch=1"]
    with pytest.raises(RunInterrupted) as e:
        run_verify([*args, "seed=5", *stop])  # seed=5: 2 runs (a, b); the first is interrupted
    message = str(e.value)
    assert e.value.exit_code == 130 and "\n" not in message
    assert "ckpt_path=last" not in message and "the same bench verify command" in message, message
    # the advice: the same command again (here without the interrupting callback) finishes the plan
    run_verify([*args, "seed=5"])
    assert "verify: " in capsys.readouterr().out


def test_ctrl_c_ends_verify_all_instead_of_going_on_with_the_next_task(tmp_path, capsys):
    from bench.harness.verify_all import run_verify_all

    args = [*FAST[1:], f"results_dir={tmp_path / 'results'}", f"work_dir={tmp_path / 'runs'}", "seed=5"]
    stop = ["+callbacks.stop._target_=interrupt_helper.InterruptAtEpoch", "+callbacks.stop.epoch=1"]
    with pytest.raises(RunInterrupted, match="the same bench verify command"):
        run_verify_all(["--tasks", "fixture,fixture", *args, *stop])
    assert capsys.readouterr().out.count("== verify fixture ==") == 1


# -- 6. copies of one seed count once on the leaderboard -----------------------------------------------------------
def test_copies_of_one_seed_count_once_and_the_newest_copy_wins():
    from bench.leaderboard.table import task_table

    rec = json.loads(next((ROOT / "leaderboard" / "records" / "goldilocks").glob("*.json")).read_text())
    metric = rec["headline_metrics"][0]["name"]
    older = {**rec, "run_id": "copy-old", "created_at": "2026-01-01T00:00:00+00:00"}
    newer = {**rec, "run_id": "copy-new", "created_at": "2026-02-01T00:00:00+00:00"}
    newer["metrics"] = {**rec["metrics"], metric: 0.123}
    other_seed = {**rec, "run_id": "seed-other", "seed": rec["seed"] + 1}
    for records in ([older, newer, other_seed], [newer, other_seed, older]):
        (row,) = task_table(rec["task"], records).rows
        assert row.n == 2 and row.seeds == sorted({rec["seed"], rec["seed"] + 1})
        assert 0.123 in row.cells[metric].values and row.cells[metric].n == 2


# -- 7. each process gets its own Hydra output folder ----------------------------------------------------------------
HYDRA_DIR = """
import sys
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
import bench.harness.hydra_app  # noqa: F401 - registers the resolvers `bench fit` uses
from bench.harness.registry import conf_dir

with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):  # (registers Hydra's `now`)
    OmegaConf.register_new_resolver("now", lambda pattern: "SAME-SECOND", replace=True)
    cfg = compose("config", return_hydra_config=True)
    print(cfg.hydra.run.dir)
"""


def test_two_processes_started_in_the_same_second_get_separate_hydra_folders():
    dirs = [
        subprocess.run([sys.executable, "-c", HYDRA_DIR], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(2)
    ]
    assert dirs[0] != dirs[1] and all(d.startswith("runs/hydra/SAME-SECOND") for d in dirs), dirs
