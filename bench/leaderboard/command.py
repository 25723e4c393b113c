"""``bench leaderboard``: records (a results folder or a W&B project) -> the leaderboard folder, and optionally
the same tables published to W&B."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.harness.record import load_records_with_problems
from bench.leaderboard.build import fmt_result, prepare, write


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench leaderboard",
        description="Build Markdown / HTML / CSV tables and plots "
        "of every task from result records, with each task's claim status from its latest "
        "`bench verify`.",
    )
    p.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="folder of result records and verify summaries (default: results/)",
    )
    p.add_argument(
        "--wandb",
        default=None,
        metavar="ENTITY/PROJECT",
        help="read the records from a W&B project instead (claim status still comes from --results)",
    )
    p.add_argument(
        "--out",
        default="results/leaderboard",
        metavar="DIR",
        help="output folder (default: results/leaderboard/; the "
        "committed leaderboard is rebuilt with --out leaderboard/)",
    )
    p.add_argument("--include-smoke", action="store_true", help="also show runs of the smoke profile")
    p.add_argument(
        "--publish",
        default=None,
        metavar="ENTITY/PROJECT",
        help="also log the tables and plots to this "
        "W&B project (a run of job type `leaderboard`; WANDB_MODE=offline works)",
    )
    p.add_argument(
        "--wandb-dir",
        default="runs/leaderboard",
        metavar="DIR",
        help="folder of the publishing W&B run's files "
        "(default: runs/leaderboard/; upload an offline run with `wandb sync <its folder>`)",
    )
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    warnings: list[str] = []
    skipped: list[str] = []
    if a.wandb:
        from bench.leaderboard.wandb_io import records_from_wandb

        records, warnings = records_from_wandb(a.wandb)
        source = f"W&B project {a.wandb}"
    else:
        records, problems = load_records_with_problems(a.results)
        skipped = [f"{f}: {why}" for f, why in problems]
        source = f"{Path(a.results)}/ (no such folder)" if not Path(a.results).is_dir() else f"{Path(a.results)}/"
    lb = prepare(
        records, include_smoke=a.include_smoke, results_dir=a.results, source=source, out_dir=a.out, skipped=skipped
    )
    result = write(lb, a.out)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    lines = fmt_result(result, a.out)
    for line in lines[:-1]:
        print(line, file=sys.stderr)
    print(lines[-1])
    if a.publish:
        from bench.leaderboard.wandb_io import publish

        where, offline = publish(a.publish, lb.tables, lb.statuses, lb.files, a.wandb_dir)
        print(
            f"published {len(lb.tables)} tables to W&B {a.publish}: {where}"
            + (f" (offline; upload with `wandb sync {where}`)" if offline else "")
        )
    return 0
