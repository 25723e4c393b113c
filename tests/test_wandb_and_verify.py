"""W&B offline logging with resume, and the verify command."""

import json

import pytest

from bench.harness.config import compose
from bench.harness.console import end_lines, verify_status
from bench.harness.errors import BenchError
from bench.harness.run import run_identity
from bench.harness.verify import run_verify, verify_plan
from bench.harness.wandb_run import check_login, read_offline_run


def _offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_wandb_run_carries_config_group_tags_and_name_read_back_from_the_offline_folder(
    run_bench, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    rec = run_bench(["task=fixture", "logger=wandb", "trainer.max_epochs=2", "optimizer.lr=0.05", "seed=3"])
    run_dir = tmp_path / "runs" / "fixture" / rec["run_id"]
    import wandb

    wandb.teardown()  # W&B's service writes the run's last records after finish() returns: stop it to read them all
    (folder,) = _offline_runs(run_dir)
    run = read_offline_run(folder)
    assert run["id"] == rec["wandb_run_id"] == (run_dir / "wandb_id").read_text().strip()
    assert run["name"] == "fixture/a/seed3"
    assert run["group"] == rec["group_hash"][:12]
    assert run["tags"] == ["fixture", "a", "default"]
    assert run["job_type"] == "fit_and_test"  # the task's protocol (stages log under <stage>/ in the same run)
    cfg = run["config"]
    assert cfg["task/name"] == "fixture" and cfg["seed"] == 3 and cfg["optimizer/lr"] == 0.05
    assert cfg["trainer/max_epochs"] == 2 and cfg["bench/label"] == "a"
    assert run["summary"]["test/acc"] == rec["metrics"]["test/acc"]  # the record's numbers, mirrored
    assert (run_dir / "csv").is_dir()  # the CSV logger writes beside it


def test_rerun_and_resume_keep_one_wandb_run(run_bench, tmp_path, monkeypatch, capsys):
    """The same config and seed is the same W&B run: a fresh rerun replaces the offline folder (no duplicate to
    sync), a resumed run continues the same id."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["task=fixture", "logger=wandb", "trainer.max_epochs=1"]
    first = run_bench(args)
    run_dir = tmp_path / "runs" / "fixture" / first["run_id"]
    again = run_bench(args)
    assert again["wandb_run_id"] == first["wandb_run_id"]
    assert len(_offline_runs(run_dir)) == 1, "a rerun left a second offline run that would sync twice"
    resumed = run_bench([*args, "ckpt_path=last"])
    assert resumed["wandb_run_id"] == first["wandb_run_id"]
    # offline-run-<date>_<time>-<id>[-<n>]: W&B adds -<n> when a resumed run starts within the same second
    assert {p.name.split("-")[3] for p in _offline_runs(run_dir)} == {first["wandb_run_id"]}
    # the end of a fit says how to upload
    (hint,) = [line for line in end_lines(resumed) if "wandb sync" in line]
    assert any(hint.endswith(str(p)) for p in _offline_runs(run_dir)), hint  # names this run's offline folder
    assert any(line.startswith(f"run folder: {run_dir}") for line in end_lines(resumed))


def test_online_wandb_without_login_is_one_line_before_training(run_bench, tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(BenchError, match=r"wandb login.*WANDB_API_KEY") as e:
        run_bench(["task=fixture", "logger=wandb", "logger.wandb.offline=false"])
    assert "\n" not in str(e.value)
    task_dir = tmp_path / "runs" / "fixture"
    assert not list(task_dir.rglob("stages/*")), "nothing was trained"
    assert not task_dir.exists() or not list(task_dir.iterdir()), "the failed run left no empty run folder"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    check_login({"offline": False})  # a key is configured: no refusal


def test_group_hash_ignores_thread_count_but_run_hash_keeps_it():
    one, two = (run_identity(compose(["task=fixture", f"num_threads={n}"])) for n in (1, 2))
    assert one[1] != two[1] and one[2] == two[2]
    auto = compose(["task=fixture", "num_threads=auto"])
    run_identity(auto)
    assert auto.num_threads in (1, None)  # auto resolves before hashing (the record says what ran)


def test_verify_plan_puts_user_overrides_last():
    plan = verify_plan(["task=neural_collapse", "profile=smoke"])
    assert len(plan) == 9  # 3 methods x 3 seeds
    assert all(p[0] == "task=neural_collapse" and p[-1] == "profile=smoke" for p in plan)
    assert {next(o for o in p if o.startswith("method=")) for p in plan} == {"method=st", "method=at", "method=trades"}
    assert compose(plan[0]).trainer.max_epochs == 2  # smoke shrinks the paper experiment


def test_verify_runs_then_reuses_records_and_shows_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["task=fixture", "trainer.max_epochs=2", "logger=none", "print_summary=false"]
    code = run_verify(args)
    out = capsys.readouterr().out
    assert [line.split(" ", 2)[:2] for line in out.splitlines() if line.startswith("[")] == [
        ["[1/4]", "running"],
        ["[2/4]", "running"],
        ["[3/4]", "running"],
        ["[4/4]", "running"],
    ]
    summary = json.loads((tmp_path / "results" / "fixture" / "verify" / "latest.json").read_text())
    assert [c["name"] for c in summary["claims"]] == ["(a) better than chance"]
    gate = all(c["passed"] for c in summary["claims"] if not c["trend"])
    assert code == (0 if gate else 1) and summary["passed"] == gate
    run_verify(args)
    assert capsys.readouterr().out.count("] reusing ") == 4
    # `bench list`'s status line reads this summary
    assert verify_status("fixture", "1.0", tmp_path / "results").startswith(f"verify {'PASS' if gate else 'FAIL'} (")


def test_verify_jobs_runs_the_plan_in_processes_with_the_records_of_one_process(tmp_path, capsys, monkeypatch):
    args = ["task=fixture", "trainer.max_epochs=2", "logger=none", "print_summary=false"]
    (tmp_path / "serial").mkdir()
    (tmp_path / "parallel").mkdir()
    monkeypatch.chdir(tmp_path / "serial")
    run_verify(args)
    monkeypatch.chdir(tmp_path / "parallel")
    run_verify(args, jobs=2)
    out = capsys.readouterr().out
    assert out.count("] done (") == 4 and "(log: " in out
    logs = sorted((tmp_path / "parallel" / "results" / "fixture" / "verify" / "logs").glob("*.log"))
    assert len(logs) == 4

    def records(where):
        return {p.name: json.loads(p.read_text()) for p in (tmp_path / where / "results" / "fixture").glob("*.json")}

    serial, parallel = records("serial"), records("parallel")
    assert len(serial) == 4 and serial.keys() == parallel.keys()
    for name, rec in serial.items():
        assert rec["metrics"] == parallel[name]["metrics"], name
    a = json.loads((tmp_path / "serial" / "results" / "fixture" / "verify" / "latest.json").read_text())
    b = json.loads((tmp_path / "parallel" / "results" / "fixture" / "verify" / "latest.json").read_text())
    assert a["claims"] == b["claims"] and a["runs"] == b["runs"]

    # a rerun queues the runs by what they cost last time, the longest first (the summary keeps the plan's order)
    folder = tmp_path / "parallel" / "results" / "fixture"
    costs = {run_id: 10.0 * k for k, run_id in enumerate(b["runs"])}  # the plan's last run was the longest
    for run_id, cost in costs.items():
        rec = json.loads((folder / f"{run_id}.json").read_text())
        (folder / f"{run_id}.json").write_text(json.dumps({**rec, "cpu_s": cost}))
    capsys.readouterr()
    run_verify(args, jobs=2, rerun=True)
    queued = [line for line in capsys.readouterr().out.splitlines() if "] queued " in line]
    assert [line.split("/verify/logs/")[1].split(".log")[0] for line in queued] == b["runs"][::-1]
    assert json.loads((folder / "verify" / "latest.json").read_text())["runs"] == b["runs"]


def test_longest_first_puts_unknown_costs_first_then_falling_costs(tmp_path):
    from bench.harness.verify import earlier_cost, longest_first

    assert longest_first(list("abcde"), [5.0, None, 9.0, 5.0, None]) == ["b", "e", "c", "a", "d"]
    (tmp_path / "cpu.json").write_text(json.dumps({"cpu_s": 12.5, "duration_s": 14.0}))
    (tmp_path / "wall.json").write_text(json.dumps({"duration_s": 14.0}))  # written before records had cpu_s
    (tmp_path / "broken.json").write_text("{")
    assert earlier_cost(tmp_path / "cpu.json") == 12.5 and earlier_cost(tmp_path / "wall.json") == 14.0
    assert earlier_cost(tmp_path / "broken.json") is None and earlier_cost(tmp_path / "missing.json") is None


def test_verify_jobs_checks_values_first_and_names_a_failing_run_and_its_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchError, match=r"^optimizer.lr='abc' is not allowed"):  # one line, no process started
        run_verify(["task=fixture", "optimizer.lr=abc", "logger=none"], jobs=2)
    assert not (tmp_path / "results" / "fixture" / "verify" / "logs").exists()
    # a run that fails inside its process (values are all checked first now: what is left is the run folder)
    with pytest.raises(
        BenchError,
        match=r"4 run\(s\) of the verify plan failed: fixture.variant=. seed=. .*\(exit 1: "
        r"error: ckpt_path=last: no earlier run.*log: ",
    ):
        run_verify(["task=fixture", "logger=none", "ckpt_path=last"], jobs=2)


def test_verify_jobs_rejects_a_bad_count():
    from bench.harness.verify import resolve_jobs

    assert resolve_jobs("auto", 1) >= 1 and resolve_jobs("3", 1) == 3 and resolve_jobs(None, 1) == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(BenchError, match="--jobs takes a positive number"):
            resolve_jobs(bad, 1)


def test_a_cached_stage_is_locked_while_it_is_computed(tmp_path):
    import subprocess
    import sys

    from bench.harness.context import _stage_lock

    probe = (
        "import fcntl, sys\n"
        "fh = open(sys.argv[1], 'a+')\n"
        "try:\n    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n"
    )
    lock = tmp_path / "stage" / ".lock"
    with _stage_lock(tmp_path / "stage"):
        held = subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode
    free = subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode
    assert (held, free) == (3, 0)
