"""``bench verify task=<name>``: run (or reuse the records of) the task's verify plan, check its claims.

A task's config declares its plan::

    task:
      claims: bench.tasks.<name>.claims:CLAIMS
      verify:
        overrides: [experiment=<name>_paper]     # applied to every run of the plan
        runs: [[method=st], [method=at]]         # one entry per run (each a list of overrides)
        seeds: [0]

A record is reused when its config hashes (recomputed) to the run's config hash (same config, same seed); ``--rerun``
ignores them.
``--jobs N`` runs up to N missing runs at once in N worker processes (each run's console output goes to
``<results_dir>/<task>/verify/logs/<run_id>.log``); a run's record is the same as in one process, since a run
depends only on its config and seed. ``--jobs auto``: one job per core the runs' threads leave free.
Cached stages shared between runs are computed once: a run waiting for another's stage blocks on its lock.
SIGTERM or Ctrl+C stops the runs in progress (and the workers: none outlives verify) and prints one line: rerun the
same command, which reuses the finished runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from bench.harness.atomic import atomic_write_text
from bench.harness.claims import RecordSet, all_pass, evaluate, load_claims
from bench.harness.config import compose
from bench.harness.errors import BenchError, RunInterrupted
from bench.harness.record import config_hash as hash_of
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


def _reusable(path: Path, config_hash: str) -> dict | None:
    """The record at ``path`` when it exists, reads and its config hashes to ``config_hash`` (recomputed: the stored
    ``config_hash`` alone does not prove what the config holds); otherwise ``None`` (a warning for an unreadable or
    edited one, which is then run again)."""
    if not path.is_file():
        return None
    try:
        rec = read_record(path)
    except (ValueError, OSError) as e:
        print(f"warning: not reusing {path} ({e}); running it again", file=sys.stderr)
        return None
    if rec["config_hash"] != config_hash:
        return None
    if hash_of(rec["config"]) != config_hash:
        print(
            f"warning: not reusing {path} (its config does not hash to its config_hash); running again", file=sys.stderr
        )
        return None
    return rec


def _summed(records: list[dict], field: str) -> float | None:
    """The sum of a time field over the records; ``None`` when any record lacks it (written before the field)."""
    values = [r.get(field) for r in records]
    return None if any(v is None for v in values) else round(sum(float(v) for v in values), 1)


def earlier_cost(path: Path) -> float | None:
    """CPU (else wall) seconds of the record already at ``path``, from an earlier run of the same config (the one a
    ``--rerun`` replaces); ``None`` when there is none or it does not say."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply to be a record
        return None
    cost = rec.get("cpu_s", rec.get("duration_s")) if isinstance(rec, dict) else None
    return float(cost) if isinstance(cost, (int, float)) else None


def longest_first(entries: list, costs: list[float | None]) -> list:
    """``entries`` in the order a worker pool finishes soonest: runs of unknown cost first (in plan order, they may
    be long), then the known ones by falling cost (greedy longest-processing-time scheduling)."""
    order = sorted(range(len(entries)), key=lambda i: (costs[i] is not None, -(costs[i] or 0.0), i))
    return [entries[i] for i in order]


def _threads_per_run(cfg) -> int:
    """The torch threads of a run whose config went through :func:`run_identity` (which resolves ``auto``)."""
    from bench.harness.threads import usable_cores

    n = cfg.get("num_threads")
    return int(n) if n else usable_cores()


def run_report(ref: str, records: RecordSet, out_dir: Path) -> dict[str, str]:
    """The task's report hook ``(RecordSet, out_dir) -> {name: path}``: figures and tables that compare the runs of
    the plan (a single run's artifacts never depend on other runs)."""
    import importlib

    module, _, attr = ref.partition(":")
    fn = getattr(importlib.import_module(module), attr or "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    return {str(k): str(v) for k, v in (fn(records, out_dir) or {}).items()}


def resolve_jobs(jobs: str | int | None, threads_per_run: int) -> int:
    """``--jobs``: a positive number, or ``auto`` (the cores divided by each run's threads)."""
    from bench.harness.threads import usable_cores

    if jobs is None:
        return 1
    if str(jobs) == "auto":
        return max(1, usable_cores() // max(1, threads_per_run))
    try:
        n = int(jobs)
    except ValueError:
        n = 0
    if n < 1:
        raise BenchError(f"--jobs takes a positive number of runs at once or 'auto', got {jobs!r}")
    return n


def _run_logged(overrides: list[str], log: str) -> tuple[int, str]:
    """In a worker process: one run of the plan, its console output (both streams) in ``log``. Returns (exit
    status, last line of the log)."""
    import os
    import traceback

    from bench.harness.config import compose
    from bench.harness.run import run_fit

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    status, stopped = 0, False
    with open(log, "w") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            run_fit(compose(list(overrides)))
        except RunInterrupted as e:  # verify is stopping its workers (or someone stopped this one)
            print(f"error: {e}", file=sys.stderr)
            status, stopped = e.exit_code, True
        except BenchError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
        except BaseException:  # noqa: BLE001 - the log keeps the traceback; the parent names the run and the log
            traceback.print_exc()
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    if stopped:  # end the worker: it must not take the next queued run of a verify that is stopping
        os._exit(status)
    lines = [ln for ln in Path(log).read_text(errors="replace").splitlines() if ln.strip()]
    return status, lines[-1] if lines else "no output"


def _worker_started(parent: int) -> None:
    """A worker's first step: it ends with verify. Ctrl+C reaches every process of the terminal's group; the
    workers ignore it and are stopped by verify instead (one line, no traceback per worker). On Linux the kernel
    sends the worker SIGTERM when verify dies by any means, SIGKILL included (``PR_SET_PDEATHSIG``)."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # verify ended before the line above took effect
        os._exit(143)


def _stop_workers(processes: list, grace_s: float = 10.0) -> None:
    """SIGTERM every worker (a run in progress ends as ``bench fit`` does on SIGTERM: no record), then SIGKILL
    those still alive after ``grace_s``; every one is reaped, so none outlives verify."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    end = time.time() + grace_s
    for p in processes:
        p.join(max(0.0, end - time.time()))
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join()


def run_in_processes(pending: list[tuple[int, list[str], Path, str]], n_total: int, jobs: int, log_dir: Path) -> None:
    """Run ``(index, overrides, record path, description)`` entries in ``jobs`` worker processes (each imports the
    suite once and runs its share of the plan one run after another, as ``bench fit`` would). Raises one
    :class:`BenchError` naming every failed run and its log after all have ended. Interrupted (SIGTERM, Ctrl+C), it
    cancels the queued runs and stops the workers before the interruption goes on."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    log_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    # spawn: a fresh interpreter per worker (no forked torch thread pools or open loggers)
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_worker_started, initargs=(os.getpid(),)
    )
    try:
        futures = {}
        for i, ov, path, what in pending:
            log = log_dir / f"{path.stem}.log"
            futures[pool.submit(_run_logged, list(ov), str(log))] = (i, what, log, time.time())
            print(f"[{i}/{n_total}] queued {what}  (log: {log})", flush=True)
        for fut in as_completed(futures):
            i, what, log, queued = futures[fut]
            try:
                status, last = fut.result()
            except Exception as e:  # a worker that died (killed, out of memory)
                status, last = 1, f"the worker process died ({e})"
            if status == 0:
                print(f"[{i}/{n_total}] done ({time.time() - queued:.0f} s after queueing): {what}", flush=True)
                continue
            failed.append(f"{what} (exit {status}: {last}; log: {log})")
            print(f"[{i}/{n_total}] FAILED: {failed[-1]}", file=sys.stderr, flush=True)
    except BaseException:
        workers = list((pool._processes or {}).values())  # the executor keeps no public handle on them
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_workers(workers)
        raise
    pool.shutdown(wait=True)
    if failed:
        raise BenchError(f"{len(failed)} run(s) of the verify plan failed: " + "; ".join(failed))


def verify_interrupted(exit_code: int) -> RunInterrupted:
    """The one line of an interrupted verify. ``bench fit``'s advice (``ckpt_path=last``) would stop at the first
    run of the plan that never started; rerunning the command reuses every finished run's record."""
    how = "stopped by SIGTERM" if exit_code == 143 else "interrupted (Ctrl+C)"
    err = RunInterrupted(
        f"verify was {how}; the runs in progress wrote no record. Continue it with the same bench verify command "
        "(finished runs are reused, the others run again)"
    )
    err.exit_code = exit_code
    return err


def run_verify(overrides: list[str], rerun: bool = False, jobs: str | int | None = None) -> int:
    """Run or reuse the task's verify plan and check its claims; exit status 0 iff every gating claim passes.
    SIGTERM and Ctrl+C end it (and any worker process) with one line that says how to continue."""
    from bench.harness.checkpoint import Terminated, run_signals

    with run_signals():  # SIGTERM raises here, so verify can stop its workers and say how to continue
        try:
            return _run_verify(overrides, rerun, jobs)
        except Terminated:
            raise verify_interrupted(143) from None
        except KeyboardInterrupt:
            raise verify_interrupted(130) from None
        except RunInterrupted as e:  # a run in this process: bench fit's line would advise ckpt_path=last
            raise verify_interrupted(e.exit_code) from None


def _run_verify(overrides: list[str], rerun: bool, jobs: str | int | None) -> int:
    from bench.harness.experiments import select_task
    from bench.harness.registry import tasks
    from bench.harness.run import run_fit, run_identity
    from bench.harness.summary import print_claims

    overrides = select_task(list(overrides), tasks())  # experiment=<task>_paper selects its task
    if not any(o.startswith("task=") for o in overrides):
        raise BenchError(f"verify needs task=<name>; known tasks: {', '.join(sorted(tasks()))}")
    t0 = time.time()
    plan = verify_plan(overrides)
    entries, pending = [], []
    for i, ov in enumerate(plan, 1):
        cfg = compose(ov)
        run_id, h, _ = run_identity(cfg)
        path = Path(str(cfg.results_dir)) / str(cfg.task.name) / f"{run_id}.json"
        rec = None if rerun else _reusable(path, h)
        what = " ".join(o for o in ov if not o.startswith("task="))
        entries.append((path, h, rec))
        if rec is not None:
            print(f"[{i}/{len(plan)}] reusing {what}", flush=True)
        else:
            pending.append((i, ov, path, what, cfg))
    n_jobs = resolve_jobs(jobs, _threads_per_run(pending[0][4]) if pending else 1)
    if n_jobs > 1 and len(pending) > 1:
        from bench.harness.run import quiet_lightning
        from bench.harness.validation import validate_run_config

        quiet_lightning()  # validation builds each run's trainer: no Lightning banner per run here
        for *_, cfg in pending:  # a bad value is one line here, not one failure per process
            validate_run_config(cfg)
        unique = {}
        for entry in pending:  # a plan whose user overrides make two runs the same config runs it once
            unique.setdefault(entry[2], entry)
        pending = list(unique.values())
        log_dir = Path(str(pending[0][4].results_dir)) / str(pending[0][4].task.name) / "verify" / "logs"
        # a rerun knows what each run cost last time: the long ones go first, so no worker idles at the end
        pending = longest_first(pending, [earlier_cost(e[2]) for e in pending])
        run_in_processes([(i, ov, p, w) for i, ov, p, w, _ in pending], len(plan), n_jobs, log_dir)
        records = []
        for path, h, rec in entries:
            rec = rec if rec is not None else _reusable(path, h)
            if rec is None:
                raise BenchError(f"a verify run ended without its record {path}; see its log in {log_dir}")
            records.append(rec)
    else:
        done = {}
        for i, _ov, _path, what, cfg in pending:
            print(f"[{i}/{len(plan)}] running {what}", flush=True)
            done[i] = run_fit(cfg)
        records = [rec if rec is not None else done[i] for i, (_, _, rec) in enumerate(entries, 1)]
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
        "runs_cpu_s": _summed(records, "cpu_s"),
        "runs_wall_s": _summed(records, "duration_s"),
    }
    out = Path(str(base.results_dir)) / str(base.task.name) / "verify" / "latest.json"
    atomic_write_text(out, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    report = base.task.get("report")
    if report:
        summary["artifacts"] = run_report(str(report), RecordSet(records), out.parent)
        atomic_write_text(out, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        for name, path in sorted(summary["artifacts"].items()):
            print(f"report: {name} -> {path}")
    print(f"verify: {'PASS' if ok else 'FAIL'} ({profile} profile) in {summary['duration_s']} s; summary at {out}")
    return 0 if ok else 1
