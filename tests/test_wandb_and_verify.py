"""W&B offline logging with resume, and the verify command."""

import json
import os

from bench.harness.config import compose
from bench.harness.verify import run_verify, verify_plan


def test_wandb_offline_record_and_resumed_run_keep_the_run_id(run_bench, tmp_path):
    os.environ["WANDB_MODE"] = "offline"
    rec = run_bench(["task=neural_collapse", "profile=smoke", "attack=none", "logger=wandb"])
    wid = rec["wandb_run_id"]
    assert wid and len(wid) >= 6
    run_dir = tmp_path / "runs" / "neural_collapse" / rec["run_id"]
    assert (run_dir / "wandb_id").read_text().strip() == wid
    assert list((run_dir / "wandb").glob(f"offline-run-*-{wid}")), "offline W&B files are written"
    assert (run_dir / "csv").is_dir()  # the CSV logger writes beside it
    again = run_bench(["task=neural_collapse", "profile=smoke", "attack=none", "logger=wandb", "ckpt_path=last"])
    assert again["wandb_run_id"] == wid


def test_verify_plan_puts_user_overrides_last():
    plan = verify_plan(["task=neural_collapse", "profile=smoke"])
    assert len(plan) == 3
    assert all(p[0] == "task=neural_collapse" and p[-1] == "profile=smoke" for p in plan)
    assert {next(o for o in p if o.startswith("method=")) for p in plan} == {"method=st", "method=at", "method=trades"}
    assert compose(plan[0]).trainer.max_epochs == 2  # smoke shrinks the paper experiment


def test_verify_runs_then_reuses_records_and_exit_code_follows_claims(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["task=neural_collapse", "profile=smoke", "logger=none", "print_summary=false"]
    code = run_verify(args)
    out = capsys.readouterr().out
    assert out.count("running ") == 3 and "claims" in out
    summary = json.loads((tmp_path / "results" / "neural_collapse" / "verify" / "latest.json").read_text())
    assert {c["name"].split(")")[0] + ")" for c in summary["claims"]} == {"(a1)", "(a2)", "(b)", "(c)", "(d)", "(e)"}
    gate = all(c["passed"] for c in summary["claims"] if not c["trend"])
    assert code == (0 if gate else 1) and summary["passed"] == gate
    run_verify(args)
    assert capsys.readouterr().out.count("reusing ") == 3
