"""``bench verify --all``: every task's verify plan in turn, then one table of claims and time per task.

The time columns: wall and CPU seconds of this command per task (runs it reused cost nothing here), and the CPU
seconds its runs took when they ran (``cpu_s`` of their records), so a table built from reused records still says
what each plan costs.

Overrides after ``--all`` go to every task's plan (``profile=smoke`` for a quick check of the wiring); ``--tasks
a,b`` restricts the run to those tasks. A task whose plan raises is counted as failed and the others still run.
Exit status 0 iff every task passes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness.errors import BenchError, RunInterrupted
from bench.harness.run import process_cpu_seconds


@dataclass
class TaskOutcome:
    task: str
    passed: bool
    claims_pass: int = 0
    claims_fail: int = 0
    trends: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    profile: str = ""
    runs_cpu_s: float | None = None  # CPU seconds its runs took when they ran (from their records)
    error: str = ""


def count_claims(summary: dict) -> tuple[int, int, int]:
    """(gating claims passed, gating claims failed, trend claims) of a verify summary (``latest.json``)."""
    claims = summary.get("claims") or []
    gating = [c for c in claims if not c.get("trend")]
    passed = sum(1 for c in gating if c.get("passed"))
    return passed, len(gating) - passed, len(claims) - len(gating)


def select_tasks(known: list[str], wanted: str | None) -> list[str]:
    if not wanted:
        return sorted(known)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"--tasks: unknown task(s) {', '.join(unknown)}; known tasks: {', '.join(sorted(known))}")
    return names


def verify_task(name: str, overrides: list[str], rerun: bool, jobs: str | int | None = None) -> TaskOutcome:
    from bench.harness.config import compose
    from bench.harness.verify import run_verify

    wall, cpu = time.perf_counter(), process_cpu_seconds()
    error = ""
    try:
        status = run_verify([f"task={name}", *overrides], rerun=rerun, jobs=jobs)
    except RunInterrupted:  # Ctrl+C / SIGTERM end --all, not just this task's plan
        raise
    except BenchError as e:  # one task's bad plan must not hide the others' results
        status, error = 1, str(e)
        print(f"error: {name}: {e}", file=sys.stderr)
    wall, cpu = time.perf_counter() - wall, process_cpu_seconds() - cpu
    out = TaskOutcome(name, status == 0, wall_s=wall, cpu_s=cpu, error=error)
    if not error:
        base = compose([f"task={name}", *overrides])
        summary_path = Path(str(base.results_dir)) / name / "verify" / "latest.json"
        summary = json.loads(summary_path.read_text())
        out.claims_pass, out.claims_fail, out.trends = count_claims(summary)
        out.profile = str(summary.get("profile", ""))
        out.runs_cpu_s = summary.get("runs_cpu_s")
    return out


def format_table(rows: list[TaskOutcome]) -> list[str]:
    width = max([len(r.task) for r in rows] + [4])
    lines = [
        f"{'task':<{width}}  {'profile':<14} {'pass':>4} {'fail':>4} {'trend':>5}  {'result':<6} {'wall s':>8} "
        f"{'cpu s':>8} {'runs cpu s':>10}"
    ]
    for r in rows:
        lines.append(
            f"{r.task:<{width}}  {r.profile or '-':<14} {r.claims_pass:>4} {r.claims_fail:>4} {r.trends:>5}  "
            f"{'PASS' if r.passed else 'FAIL':<6} {r.wall_s:>8.1f} {r.cpu_s:>8.1f} "
            f"{'-' if r.runs_cpu_s is None else f'{r.runs_cpu_s:.1f}':>10}" + (f"  ({r.error})" if r.error else "")
        )
    ok = all(r.passed for r in rows)
    lines.append(
        f"{'overall':<{width}}  {'':<14} {sum(r.claims_pass for r in rows):>4} "
        f"{sum(r.claims_fail for r in rows):>4} {sum(r.trends for r in rows):>5}  {'PASS' if ok else 'FAIL':<6} "
        f"{sum(r.wall_s for r in rows):>8.1f} {sum(r.cpu_s for r in rows):>8.1f}"
    )
    lines.append(
        "(wall s, cpu s: this command, every process; runs cpu s: what the plan's runs took when they ran, summed "
        "from their records; '-' where a record predates the field)"
    )
    return lines


def run_verify_all(argv: list[str], rerun: bool = False, jobs: str | int | None = None) -> int:
    """``argv``: overrides for every plan, and optionally ``--tasks a,b``."""
    from bench.harness.registry import tasks

    wanted, overrides = None, []
    it = iter(argv)
    for a in it:
        if a == "--tasks":
            wanted = next(it, "")
        elif a.startswith("--tasks="):
            wanted = a.split("=", 1)[1]
        elif a.startswith("task="):
            raise BenchError("verify --all runs every task; name a subset with --tasks a,b instead of task=")
        else:
            overrides.append(a)
    names = select_tasks(list(tasks()), wanted)
    rows = []
    for name in names:
        print(f"== verify {name} ==", flush=True)
        rows.append(verify_task(name, overrides, rerun, jobs))
    print("\n".join(["", "verify --all:", *format_table(rows)]))
    return 0 if all(r.passed for r in rows) else 1
