"""``bench verify task=<name>``: run (or reuse the records of) the task's verify plan, check its claims.

A task's config declares its plan::

    task:
      claims: bench.tasks.<name>.claims:CLAIMS
      verify:
        overrides: [experiment=<name>_paper]     # applied to every run of the plan
        runs: [[method=st], [method=at]]         # one entry per run (each a list of overrides)
        seeds: [0]

A record is reused when one with the same config hash exists (same config, same seed); ``--rerun`` ignores them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from bench.harness.claims import RecordSet, all_pass, evaluate, load_claims
from bench.harness.config import compose
from bench.harness.errors import BenchError
from bench.harness.record import read_record


def verify_plan(overrides: list[str]) -> list[list[str]]:
    """The override lists of every run in the task's plan (user overrides last, so they win)."""
    base = compose(overrides)
    if base.get("task") is None or base.task.get("verify") is None:
        raise BenchError("this task declares no verify plan (task.verify in its config)")
    plan = OmegaConf.to_container(base.task.verify, resolve=True)
    task_overrides = [o for o in overrides if o.startswith("task=")]
    user = [o for o in overrides if not o.startswith("task=")]
    runs = plan.get("runs") or [[]]
    seeds = plan.get("seeds") or [0]
    return [
        task_overrides + list(plan.get("overrides") or []) + list(r) + [f"seed={s}"] + user for r in runs for s in seeds
    ]


def run_report(ref: str, records: RecordSet, out_dir: Path) -> dict[str, str]:
    """The task's report hook ``(RecordSet, out_dir) -> {name: path}``: figures and tables that compare the runs of
    the plan (a single run's artifacts never depend on other runs)."""
    import importlib

    module, _, attr = ref.partition(":")
    fn = getattr(importlib.import_module(module), attr or "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    return {str(k): str(v) for k, v in (fn(records, out_dir) or {}).items()}


def run_verify(overrides: list[str], rerun: bool = False) -> int:
    from bench.harness.experiments import select_task
    from bench.harness.registry import tasks
    from bench.harness.run import run_fit, run_identity
    from bench.harness.summary import print_claims

    overrides = select_task(list(overrides), tasks())  # experiment=<task>_paper selects its task
    if not any(o.startswith("task=") for o in overrides):
        raise BenchError(f"verify needs task=<name>; known tasks: {', '.join(sorted(tasks()))}")
    t0 = time.time()
    records = []
    plan = verify_plan(overrides)
    for i, ov in enumerate(plan, 1):
        cfg = compose(ov)
        run_id, h, _ = run_identity(cfg)
        path = Path(str(cfg.results_dir)) / str(cfg.task.name) / f"{run_id}.json"
        rec = None
        if path.is_file() and not rerun:
            try:
                rec = read_record(path)
            except (ValueError, OSError) as e:
                print(f"warning: not reusing {path} ({e}); running it again", file=sys.stderr)
                rec = None
            if rec is not None and rec.get("config_hash") != h:
                rec = None
        what = " ".join(o for o in ov if not o.startswith("task="))
        print(f"[{i}/{len(plan)}] {'reusing' if rec else 'running'} {what}", flush=True)
        if rec is None:
            rec = run_fit(cfg)
        records.append(rec)
    base = compose(overrides)
    claims = load_claims(str(base.task.claims))
    results = evaluate(claims, RecordSet(records))
    missing = [c.name for c in claims if c.name not in {r.name for r in results}]
    # a smoke PASS must not read as a paper-scale one: the profile is in the table title and the summary
    profile = ", ".join(sorted({str(r.get("profile") or "default") for r in records})) or str(base.get("profile_name"))
    print_claims(results, title=f"{base.task.name} v{base.task.version} ({profile} profile): claims", profile=profile)
    for m in missing:
        print(f"not checked (its runs are missing from the plan): {m}")
    ok = all_pass(results) and not [c for c in claims if c.name in missing and not c.trend]
    summary = {
        "task": str(base.task.name),
        "task_version": str(base.task.version),
        "profile": profile,
        "runs": [r["run_id"] for r in records],
        "claims": [r.to_dict() for r in results],
        "passed": ok,
        "duration_s": round(time.time() - t0, 1),
    }
    out = Path(str(base.results_dir)) / str(base.task.name) / "verify" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(out)
    report = base.task.get("report")
    if report:
        summary["artifacts"] = run_report(str(report), RecordSet(records), out.parent)
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        tmp.replace(out)
        for name, path in sorted(summary["artifacts"].items()):
            print(f"report: {name} -> {path}")
    print(f"verify: {'PASS' if ok else 'FAIL'} ({profile} profile) in {summary['duration_s']} s; summary at {out}")
    return 0 if ok else 1
