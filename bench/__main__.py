"""Command line: ``bench fit | verify | list | leaderboard | perf`` (``python -m bench`` is the same).

Heavy packages (torch, lightning, wandb) are imported only by the commands that need them, so ``bench list``
answers at once.
"""

from __future__ import annotations

import argparse
import sys

USAGE = """usage: bench <command> [args]

commands:
  list                         the tasks, with their paper and version
  fit task=<name> [overrides]  train and evaluate (Hydra overrides; -m for multirun)
  verify task=<name> [overrides] [--rerun]
                               run (or reuse) the task's verify plan and check the paper's claims
  leaderboard [--results DIR] [--wandb ENTITY/PROJECT] [--out DIR]
                               build Markdown / HTML / CSV tables and plots from the result records
  perf [--epochs N]            harness overhead vs hand-written loops (printed ratios)
"""


def cmd_list(argv: list[str]) -> int:
    from bench.harness.registry import tasks

    rows = tasks()
    width = max((len(n) for n in rows), default=4)
    for name, t in rows.items():
        print(f"{name:<{width}}  v{t.version:<5} arXiv:{t.arxiv:<11} {t.description}")
    return 0


def cmd_fit(argv: list[str]) -> int:
    from bench.harness.registry import check_overrides, tasks

    overrides = [a for a in argv if not a.startswith("-")]
    check_overrides(overrides)
    if not any(a.split("=", 1)[0].lstrip("+") == "task" for a in overrides):
        print(f"error: no task given; add task=<name> (known tasks: {', '.join(sorted(tasks()))})", file=sys.stderr)
        return 2
    from bench.harness.hydra_app import hydra_fit

    sys.argv = [sys.argv[0], *argv]
    hydra_fit()
    return 0


def cmd_verify(argv: list[str]) -> int:
    from bench.harness.verify import run_verify

    rerun = "--rerun" in argv
    return run_verify([a for a in argv if a != "--rerun"], rerun=rerun)


def cmd_leaderboard(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench leaderboard")
    p.add_argument("--results", default="results", help="folder of result records (default: results/)")
    p.add_argument("--wandb", default=None, metavar="ENTITY/PROJECT", help="read records from a W&B project instead")
    p.add_argument("--out", default="leaderboard", help="output folder (default: leaderboard/)")
    p.add_argument("--include-smoke", action="store_true", help="also list runs of the smoke profile")
    a = p.parse_args(argv)
    from bench.leaderboard.build import build_leaderboard, records_from_wandb
    from bench.harness.record import load_records

    records = records_from_wandb(a.wandb) if a.wandb else load_records(a.results)
    written = build_leaderboard(records, a.out, include_smoke=a.include_smoke)
    print(f"leaderboard: {len(records)} records -> {len(written)} files in {a.out}/")
    return 0


def cmd_perf(argv: list[str]) -> int:
    from bench.perf import main as perf_main

    return perf_main(argv)


COMMANDS = {"list": cmd_list, "fit": cmd_fit, "verify": cmd_verify, "leaderboard": cmd_leaderboard, "perf": cmd_perf}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
        return 1


if __name__ == "__main__":
    sys.exit(main())
