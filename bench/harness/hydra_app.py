"""The Hydra entry of ``bench fit`` (also what Lightning's DDP launcher re-runs in each child process)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from bench.harness.errors import BenchError
from bench.harness.registry import conf_dir


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def hydra_fit(cfg: DictConfig) -> None:
    from bench.harness.run import run_fit
    from bench.harness.summary import print_run_summary

    if cfg.get("task") is None or cfg.task.get("name") is None:
        from bench.harness.registry import tasks

        raise SystemExit(f"error: no task given; add task=<name> (known tasks: {', '.join(sorted(tasks()))})")
    try:
        record = run_fit(cfg)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1)
    if cfg.get("print_summary", True) and "_path" in record:
        print_run_summary(record)
