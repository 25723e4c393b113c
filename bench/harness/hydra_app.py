"""The Hydra entry of ``bench fit`` (also what Lightning's DDP launcher re-runs in each child process)."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from bench.harness.errors import BenchError, RunInterrupted
from bench.harness.registry import conf_dir

# conf/config.yaml names Hydra's output folder after the process (``${bench.pid:}``): concurrent runs get their own
if not OmegaConf.has_resolver("bench.pid"):
    OmegaConf.register_new_resolver("bench.pid", lambda: os.getpid())

# a multirun goes on after a failing job (a NaN in an lr sweep); ``bench fit`` then exits non-zero with the count
MULTIRUN: dict = {"jobs": 0, "failures": [], "records": []}


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(message: str) -> None:
    """Keep the failure for the final count and write it into the job's Hydra folder (``failed.txt``)."""
    import json
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    MULTIRUN["failures"].append((overrides, message))
    try:
        out = Path(hc.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "failed.txt").write_text(json.dumps({"overrides": overrides, "error": message}) + "\n")
    except OSError:
        pass
    print(f"multirun: job {hc.job.num} failed; continuing with the next", file=sys.stderr)


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def hydra_fit(cfg: DictConfig) -> None:
    from bench.harness.run import run_fit
    from bench.harness.summary import print_run_summary

    if cfg.get("task") is None or cfg.task.get("name") is None:
        from bench.harness.registry import tasks

        raise SystemExit(f"error: no task given; add task=<name> (known tasks: {', '.join(sorted(tasks()))})")
    multirun = _in_multirun()
    MULTIRUN["jobs"] += multirun
    from bench.harness.console import print_end, start_line

    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(start_line(cfg), flush=True)
    try:
        record = run_fit(cfg)
    except RunInterrupted as e:  # Ctrl+C / SIGTERM end a multirun too
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        if not multirun:
            raise SystemExit(e.exit_code) from None
        _record_failure(str(e))
        return
    except Exception as e:
        if not multirun:
            raise
        import traceback

        traceback.print_exc()
        _record_failure(f"{type(e).__name__}: {e}")
        return
    if cfg.get("print_summary", True) and "_path" in record:
        print_run_summary(record)
    if "_path" in record:
        print_end(record)  # the run folder, and `wandb sync ...` when W&B logged offline
        if multirun:
            MULTIRUN["records"].append(record)
