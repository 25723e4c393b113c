"""The reliability probe: runs the CLI on bad values, hostile identifiers, signals, multi-stage interruptions and
DDP of the stochastic models, each case in its own folder, and counts what went wrong.

    python tools/reliability_probe.py [--only CATEGORY[,CATEGORY]] [--jobs N] [--keep DIR]

Each case runs ``python -m bench ...`` as a user would, with the working directory, results_dir and work_dir inside
a fresh case folder ``<tmp>/<case>/`` (cwd ``<case>/cwd``, outputs under ``<case>/out``). A case *holds* when the
command ended as the case expects (exit status, one ``error:`` line for a refusal, equal metrics where a resumed or
DDP run is compared with its reference), printed no traceback, and wrote nothing outside ``<case>/out`` (every file
the case folder holds elsewhere is counted). Not run by the tests: it takes minutes (the categories print their
times) and exists to re-run the issue's probe by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NC = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null"]


@dataclass
class Outcome:
    case: str
    category: str
    holds: bool
    traceback: bool
    outside: list[str]
    detail: str
    seconds: float


@dataclass
class Case:
    name: str
    category: str
    run: Callable[[Path], tuple[bool, str, list[subprocess.CompletedProcess]]]
    extra: dict = field(default_factory=dict)


def bench(args: list[str], case_dir: Path, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """``python -m bench <args>`` with outputs under ``case_dir/out`` and cwd ``case_dir/cwd``."""
    out = case_dir / "out"
    cwd = case_dir / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bench", *args]
    if args and args[0] in ("fit", "verify"):
        # the case's own value wins: Hydra takes the last override, so only missing keys are added
        argv += [
            f"{k}={out / d}"
            for k, d in (("results_dir", "results"), ("work_dir", "runs"))
            if not any(a.startswith(f"{k}=") for a in args)
        ]
        if not any(a.startswith("logger=") for a in args):
            argv.append("logger=none")
        if args[0] == "fit":
            argv.append("print_summary=false")
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **popen)


def records(case_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((case_dir / "out" / "results").rglob("*.json"))]


def error_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def same_metrics(a: dict, b: dict) -> tuple[bool, str]:
    diff = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x is None or y is None or isinstance(x, str) or isinstance(y, str):
            if x != y:
                diff.append(k)
        elif not (x == y or (math.isnan(x) and math.isnan(y))):
            diff.append(k)
    return not diff, f"{len(diff)} of {len(set(a) | set(b))} metrics differ ({', '.join(diff[:4])})" if diff else ""


# -- categories ------------------------------------------------------------------------------------------------
def refusal(overrides: list[str], command: str = "fit") -> Callable:
    """A bad value: non-zero exit, exactly one ``error:`` line, no record."""

    def run(case_dir: Path):
        args = [command, *overrides] if command else overrides
        r = bench(args, case_dir, timeout=300)
        errs = error_lines(r)
        ok = r.returncode != 0 and len(errs) == 1 and not records(case_dir)
        detail = errs[0][:160] if errs else f"rc {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1][:160]}"
        return ok, detail, [r]

    return run


def victim_run_id(case_dir: Path):
    victim = case_dir / "victim"
    (victim / "stages").mkdir(parents=True)
    (victim / "stages" / "keep.txt").write_text("mine")
    r = bench(["fit", *NC, "trainer.max_epochs=1", f"run_id={victim}"], case_dir, timeout=300)
    kept = (victim / "stages" / "keep.txt").is_file()
    ok = r.returncode != 0 and len(error_lines(r)) == 1 and kept
    return ok, (error_lines(r) or ["no error line"])[0][:160] + ("" if kept else " | victim/stages wiped"), [r]


def signal_case(sig: int, expect: int, command: str = "fit", jobs: int = 0) -> Callable:
    """Send ``sig`` once the run has trained a while; expect exit ``expect``, one resume line, no orphans."""

    def run(case_dir: Path):
        out = case_dir / "out"
        if command == "fit":
            args = ["fit", *NC, "method=st", "trainer.max_epochs=400", "checkpoint_min_interval_s=0"]
        else:
            args = ["verify", "task=neural_collapse", "profile=smoke", f"--jobs={jobs}", "--rerun"]
        cwd = case_dir / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "bench", *args, f"results_dir={out / 'results'}", f"work_dir={out / 'runs'}"]
        argv += ["logger=none"]
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 240
        while time.time() < deadline and not list((out / "runs").rglob("last.ckpt")):
            if p.poll() is not None:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        children = _descendants(p.pid)
        p.send_signal(sig)
        try:
            stdout, stderr = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # its children may hold the pipes open after it ended: count, then end them
            alive = [c for c in children if _alive(c)]
            for pid in [p.pid, *alive]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            stdout, stderr = p.communicate()
            r = subprocess.CompletedProcess(argv, p.returncode, stdout, stderr)
            return False, f"rc {p.returncode}; no exit within 120 s; {len(alive)} child processes left running", [r]
        time.sleep(3)
        alive = [c for c in children if _alive(c)]
        for c in alive:
            os.kill(c, signal.SIGKILL)
        r = subprocess.CompletedProcess(argv, p.returncode, stdout, stderr)
        errs = error_lines(r)
        ok = p.returncode == expect and len(errs) == 1 and not alive
        detail = f"rc {p.returncode}; {errs[0][:140] if errs else 'no error line'}"
        if alive:
            detail += f"; {len(alive)} child processes left running"
        return ok, detail, [r]

    return run


def _descendants(pid: int) -> list[int]:
    try:
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    except OSError:
        return []
    parents: dict[int, list[int]] = {}
    for line in out.splitlines():
        a, b = (int(x) for x in line.split())
        parents.setdefault(b, []).append(a)
    found, todo = [], [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not running
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


def multi_stage(task: str, overrides: list[str]) -> Callable:
    """kill -9 right after the first stage finished (its done.json appears), resume with ckpt_path=last, compare
    with an uninterrupted run in another folder; then a run of another seed reuses the shared caches."""

    def run(case_dir: Path):
        base = ["fit", f"task={task}", "profile=smoke", *overrides]
        whole_dir = case_dir / "whole"
        whole = bench(base, whole_dir)
        if whole.returncode != 0:
            return (
                False,
                f"uninterrupted run failed: {(error_lines(whole) or [f'rc {whole.returncode}'])[0]}",
                [whole],
            )
        out = case_dir / "out"
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "bench", *base, f"results_dir={out / 'results'}", f"work_dir={out / 'runs'}"]
        argv += ["logger=none", "print_summary=false"]
        (case_dir / "cwd").mkdir(parents=True, exist_ok=True)
        p = subprocess.Popen(argv, cwd=case_dir / "cwd", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        killed = False
        while p.poll() is None:
            if any("stages" in p.parts for p in (out / "runs").rglob("done.json")):  # stage names may hold "/"
                p.kill()
                killed = True
                break
            time.sleep(0.05)
        p.communicate()
        if not killed:
            return False, "the run finished before a stage completed (nothing to interrupt)", [whole]
        resumed = bench([*base, "ckpt_path=last"], case_dir)
        if resumed.returncode != 0:
            return (
                False,
                f"resume failed: {(error_lines(resumed) or [resumed.stderr[-200:]])[0][:160]}",
                [whole, resumed],
            )
        (a,), (b,) = records(case_dir), records(whole_dir)
        ok, detail = same_metrics(a["metrics"], b["metrics"])
        again = bench([*base, "seed=1"], case_dir)  # shares every seed-independent cache with the resumed run
        if again.returncode != 0:
            return False, f"a later run on the same caches failed: {(error_lines(again) or ['?'])[0][:120]}", [again]
        return ok, detail or "resumed == uninterrupted; later run on the caches ok", [whole, resumed, again]

    return run


def ddp_equal(method: str) -> Callable:
    """A stochastic posterior trained once, then evaluated from the same weights on 1 and on 2 processes (gloo)."""

    def run(case_dir: Path):
        base = ["fit", "task=bnn_attacks", "profile=smoke", f"model={method}", "trainer.max_epochs=1"]
        first = bench(base, case_dir)
        if first.returncode != 0:
            return False, f"training failed: {(error_lines(first) or ['?'])[0][:160]}", [first]
        (rec,) = records(case_dir)
        final = next((case_dir / "out" / "runs").rglob("stages/main/final.pt"))
        ev = [*base, f"init_weights={final}", "trainer.max_epochs=0", "bnn_attacks.shift.enabled=false"]
        one = bench([*ev, "run_id=one"], case_dir)
        two = bench([*ev, "run_id=two", "trainer=ddp_cpu", "trainer.devices=2"], case_dir)
        if one.returncode or two.returncode:
            bad = one if one.returncode else two
            return False, f"evaluation failed: {(error_lines(bad) or [bad.stderr[-160:]])[0][:160]}", [one, two]
        recs = {r["run_id"]: r for r in records(case_dir)}
        ok, detail = same_metrics(recs["one"]["metrics"], recs["two"]["metrics"])
        return ok, detail or f"{len(recs['one']['metrics'])} metrics equal on 1 and 2 processes", [first, one, two]

    return run


def cases() -> list[Case]:
    bad = {
        "eps_huge": [*NC[:2], "attack=pgd_linf", "attack.eps=[1e300]"],
        "momentum_negative": [*NC, "optimizer.momentum=-1"],
        "interval_not_a_number": [*NC, "checkpoint_min_interval_s=abc"],
        "optimizer_unknown_key": [*NC, "+optimizer.nope=1"],
        "gap_context_negative": ["task=group_priors", "profile=smoke", "method=gap_last_layer", "gap.context_size=-1"],
        "gap_tau_nan": ["task=group_priors", "profile=smoke", "method=gap_last_layer", "gap.tau=nan"],
        "train_steps_negative": [*NC, "module.train_steps=-2"],
        "trainer_gpu_without_gpu": [*NC, "trainer=gpu"],
        "trainer_ddp_without_gpu": [*NC, "trainer=ddp"],
        "devices_not_a_number": [*NC, "trainer.devices=abc"],
        "data_unknown_key": [*NC, "+data.nope=1"],
        "init_weights_not_a_checkpoint": [*NC, "init_weights=/etc/passwd"],
        "init_weights_missing": [*NC, "init_weights=/nonexistent/weights.pt"],
        "cifar10_without_files": ["task=neural_collapse", "profile=smoke", "data=cifar10", "data.root=/nonexistent"],
        "seed_not_a_number": [*NC, "seed=abc"],
        "unknown_task": ["task=nope"],
        "misspelled_key": [*NC, "trainer.max_epoch=3"],
    }
    out = [Case(f"bad/{k}", "bad values", refusal(v)) for k, v in bad.items()]
    out += [
        Case("bad/perf_epochs_negative", "bad values", refusal(["perf", "--epochs", "-1"], command="")),
        Case("bad/perf_repeats_zero", "bad values", refusal(["perf", "--repeats", "0"], command="")),
        Case("bad/work_dir_is_a_file", "bad values", refusal([*NC, "work_dir=/etc/hostname"])),
    ]
    ids = {
        "run_id_dotdot": [*NC, "trainer.max_epochs=1", "run_id=../../../ESCAPED"],
        "run_id_slash": [*NC, "trainer.max_epochs=1", "run_id=a/b"],
        "run_id_empty_dot": [*NC, "trainer.max_epochs=1", "run_id=.."],
    }
    out += [Case(f"ids/{k}", "identifiers", refusal(v)) for k, v in ids.items()]
    out.append(Case("ids/run_id_absolute_victim", "identifiers", victim_run_id))
    out += [
        Case("signals/fit_sigterm", "signals", signal_case(signal.SIGTERM, 143)),
        Case("signals/fit_sigint", "signals", signal_case(signal.SIGINT, 130)),
        Case("signals/verify_jobs2_sigterm", "signals", signal_case(signal.SIGTERM, 143, "verify", jobs=2)),
    ]
    stages = {
        "galaxy_distillation": ["method=mtt", "galaxy_distillation.experts.epochs=4"],
        "robust_pruning": [],
        "group_priors": ["method=gap_last_layer"],
        "bnn_attacks": [],
        "collapse_tails": [],
        "collapse_regression": [],
        "iteration_heads": [],
        "robust_erm": [],
    }
    out += [Case(f"stages/{t}", "multi-stage interruption", multi_stage(t, ov)) for t, ov in stages.items()]
    out += [
        Case(f"ddp/{m}", "DDP of stochastic models", ddp_equal(m))
        for m in ("bnn_mc_dropout", "bnn_mfvi", "bnn_ensemble")
    ]
    return out


def outside_files(case_dir: Path) -> list[str]:
    keep = {case_dir / "out", case_dir / "whole" / "out"}
    found = []
    for p in case_dir.rglob("*"):
        if p.is_file() and not any(k in p.parents for k in keep):
            if p.name == "keep.txt":
                continue
            found.append(str(p.relative_to(case_dir)))
    return found


def run_case(case: Case, root: Path) -> Outcome:
    case_dir = root / case.name.replace("/", "__")
    case_dir.mkdir(parents=True)
    t0 = time.time()
    try:
        ok, detail, runs = case.run(case_dir)
    except subprocess.TimeoutExpired as e:
        ok, detail, runs = False, f"timed out after {e.timeout} s", []
    tb = any("Traceback" in (r.stderr or "") for r in runs)
    outside = outside_files(case_dir)
    return Outcome(case.name, case.category, ok and not tb and not outside, tb, outside, detail, time.time() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated case-name prefixes (bad, ids, signals, stages, ddp)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--keep", default=None, help="case folders go here (default: a temp folder, removed)")
    args = ap.parse_args(argv)
    selected = [c for c in cases() if not args.only or any(c.name.startswith(p) for p in args.only.split(","))]
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="bench-probe-")
    root = Path(args.keep or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda c: run_case(c, root), selected))
    for o in outcomes:
        flag = "holds" if o.holds else "FAILS"
        extra = (" TRACEBACK" if o.traceback else "") + (f" OUTSIDE {o.outside[:3]}" if o.outside else "")
        print(f"{flag:5}  {o.case:42} {o.seconds:6.1f}s  {o.detail}{extra}")
    print()
    print(f"{'category':28} {'cases':>5} {'holds':>5} {'tracebacks':>10} {'outside':>7}")
    cats = sorted({o.category for o in outcomes}, key=[o.category for o in outcomes].index)
    for cat in [*cats, None]:
        sel = [o for o in outcomes if cat is None or o.category == cat]
        name = cat or "all"
        n_out = sum(bool(o.outside) for o in sel)
        print(f"{name:28} {len(sel):5} {sum(o.holds for o in sel):5} {sum(o.traceback for o in sel):10} {n_out:7}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if all(o.holds for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
