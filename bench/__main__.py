"""Command line: ``bench fit | verify | list | leaderboard | perf`` (``python -m bench`` is the same).

Heavy packages (torch, lightning, wandb) are imported only by the commands that need them, so ``bench list``
answers at once.
"""

from __future__ import annotations

import sys

USAGE = """usage: bench <command> [args]

commands:
  list                         the tasks, with their paper and version
  fit task=<name> [overrides]  train and evaluate (Hydra overrides; -m for multirun)
  verify task=<name> [overrides] [--rerun] [--jobs N|auto]
                               run (or reuse) the task's verify plan and check the paper's claims
  verify --all [--tasks a,b] [overrides] [--rerun] [--jobs N|auto]
                               every task's verify plan; one table of claims and wall / CPU time per task
  leaderboard [--results DIR] [--wandb ENTITY/PROJECT] [--out DIR]
                               build Markdown / HTML / CSV tables and plots from the result records
  perf [--epochs N]            harness overhead vs hand-written loops (printed ratios)
"""


def cmd_list(argv: list[str]) -> int:
    from bench.harness.registry import task_problems, tasks

    rows = tasks()
    width = max((len(n) for n in rows), default=4)
    from bench.harness.console import verify_status

    for name, t in rows.items():
        status = verify_status(name, t.version)
        print(f"{name:<{width}}  v{t.version:<5} arXiv:{t.arxiv:<11} {status:<30} {t.description}")
    for problem in task_problems().values():
        print(f"error: {problem}", file=sys.stderr)
    return 1 if task_problems() else 0


FIT_HELP = """usage: bench fit task=<name> [key=value ...] [-m]

Train and evaluate one task; writes one result record to <results_dir>/<task>/<run_id>.json.

  task=<name>            required; `bench list` shows the tasks
  <group>=<option>       swap a config group: data, model, optimizer, trainer, logger, attack, callbacks,
                         profile, experiment (e.g. profile=smoke: seconds; experiment=<task>_paper: the paper)
  key=value              set any value (e.g. seed=1 optimizer.lr=0.01 trainer.max_epochs=5); +key=value adds a key
  ckpt_path=last         continue the interrupted run of this config (finished stages are reused)
  ckpt_path=<file>       continue from that checkpoint (a stage's last.ckpt); the file is never deleted
  results_dir=DIR        where records go (default results/); work_dir=DIR: checkpoints, logs, figures (runs/)
  -m key=a,b             multirun: one run per value (a failing run is counted, the others go on)

examples:
  bench fit task=neural_collapse profile=smoke
  bench fit task=neural_collapse method=at seed=1 logger=none
  bench fit -m task=group_priors method=erm,dfr seed=0,1,2
"""

VERIFY_HELP = """usage: bench verify task=<name> [key=value ...] [--rerun] [--jobs N|auto]

Run the task's verify plan (task.verify in conf/task/<name>.yaml: its runs and seeds), reusing records with the
same config, then check the paper's claims and print PASS / FAIL per claim; the summary (with the profile) goes to
<results_dir>/<task>/verify/latest.json. Exit status 0 when every gating claim passes.

  task=<name>            required; `bench list` shows the tasks
  key=value              applied to every run of the plan (e.g. profile=smoke for a quick check of the wiring)
  --rerun                run every run again instead of reusing records
  --jobs N|auto          run up to N missing runs at once, each a `bench fit` process logging to
                         <results_dir>/<task>/verify/logs/; auto: the cores divided by each run's threads
                         (2 on a 2-core machine with num_threads auto). The records equal those of one process
  --all [--tasks a,b]    every task's plan (or those named), then one table: claims, wall and CPU time per task
"""


def _wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help", "help") for a in argv)


def cmd_fit(argv: list[str]) -> int:
    from bench.harness.registry import check_overrides, tasks

    if _wants_help(argv):
        print(FIT_HELP)
        return 0
    from bench.harness.experiments import select_task

    argv = select_task(argv, tasks())  # experiment=<task>_paper alone selects its task; a mismatch is refused
    # Hydra's own flags: `--cfg job` prints the composed config (`--cfg all` with Hydra's part), `-p KEY` one package
    overrides = [
        a
        for i, a in enumerate(argv)
        if not a.startswith("-") and not (i and argv[i - 1] in ("--cfg", "-c", "--package", "-p"))
    ]
    check_overrides(overrides)
    if not any(a.split("=", 1)[0].lstrip("+") == "task" for a in overrides):
        print(f"error: no task given; add task=<name> (known tasks: {', '.join(sorted(tasks()))})", file=sys.stderr)
        return 2
    from bench.harness.validation import check_composition, first_of_sweeps

    # a misspelled key or a bad value type: one line here instead of Hydra's block
    cfg = check_composition(first_of_sweeps([o for o in overrides if not o.startswith("hydra")]))
    from pathlib import Path

    from bench.harness.run import check_writable

    if not any(a in ("--cfg", "-c", "--info", "-i") for a in argv):  # those print, they run nothing
        # Hydra writes its own folder under work_dir before the run starts: an unusable one is one line here
        check_writable(Path(str(cfg.work_dir)) / "hydra", "work_dir")
    from bench.harness.config import searchpath_overrides
    from bench.harness.hydra_app import MULTIRUN, hydra_fit

    # Hydra's parser takes flags (-m, --cfg job) first, then the overrides: an override before a flag, or one after
    # `--cfg job`, is a stray positional
    flags = [a for a in argv if a not in overrides]
    sys.argv = [sys.argv[0], *flags, *overrides, *searchpath_overrides()]
    hydra_fit()
    failures = MULTIRUN["failures"]
    if MULTIRUN["jobs"] > 1:
        from bench.harness.console import print_multirun_table

        print_multirun_table(MULTIRUN["records"], failed=len(failures))
    if failures:
        for overrides_, message in failures:
            print(f"failed: {' '.join(overrides_)}: {message}", file=sys.stderr)
        print(
            f"error: {len(failures)} of {MULTIRUN['jobs']} runs failed (their errors are above and in failed.txt "
            "in each job's Hydra folder)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_verify(argv: list[str]) -> int:
    if _wants_help(argv):
        print(VERIFY_HELP)
        return 0
    from bench.harness.verify import run_verify

    rerun = "--rerun" in argv
    argv = [a for a in argv if a != "--rerun"]
    jobs, rest, it = None, [], iter(argv)
    for a in it:
        if a == "--jobs":
            jobs = next(it, "")
        elif a.startswith("--jobs="):
            jobs = a.split("=", 1)[1]
        else:
            rest.append(a)
    argv = rest
    if "--all" in argv:
        from bench.harness.verify_all import run_verify_all

        return run_verify_all([a for a in argv if a != "--all"], rerun=rerun, jobs=jobs)
    return run_verify(argv, rerun=rerun, jobs=jobs)


def cmd_leaderboard(argv: list[str]) -> int:
    from bench.leaderboard.command import main as leaderboard_main

    return leaderboard_main(argv)


def cmd_perf(argv: list[str]) -> int:
    from bench.perf import main as perf_main

    return perf_main(argv)


COMMANDS = {"list": cmd_list, "fit": cmd_fit, "verify": cmd_verify, "leaderboard": cmd_leaderboard, "perf": cmd_perf}


def take_includes(argv: list[str]) -> list[str]:
    """``--include DIR`` (any number, any position): folders of extra tasks and configs laid out like ``conf/``.
    They go into ``$BENCH_INCLUDE``, so Lightning's DDP children and Hydra's jobs see them too."""
    import os

    rest, dirs = [], []
    it = iter(argv)
    for a in it:
        if a == "--include":
            dirs.append(next(it, ""))
        elif a.startswith("--include="):
            dirs.append(a.split("=", 1)[1])
        else:
            rest.append(a)
    if dirs:
        known = list(filter(None, os.environ.get("BENCH_INCLUDE", "").split(os.pathsep)))
        os.environ["BENCH_INCLUDE"] = os.pathsep.join([*(str(os.path.abspath(d)) for d in dirs), *known])
    return rest


def main(argv: list[str] | None = None) -> int:
    argv = take_includes(list(sys.argv[1:] if argv is None else argv))
    if argv and "=" in argv[0] and not argv[0].startswith("-"):
        argv = ["fit", *argv]  # Lightning's DDP launcher re-runs us with the overrides only
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        print(f"error: unknown command {argv[0]!r}; known commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from bench.harness.errors import BenchError

    try:
        return cmd(argv[1:]) or 0
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
