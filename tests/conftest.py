"""Shared fixtures: run a task in-process, composed exactly as ``bench fit`` composes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# the harness tests' own task (tests/fixtures/task/fixture.yaml) is found like a user's included task folder;
# subprocesses (CLI, DDP) inherit it
FIXTURES = Path(__file__).resolve().parent / "fixtures"
os.environ["BENCH_INCLUDE"] = os.pathsep.join(
    [str(FIXTURES), *filter(None, os.environ.get("BENCH_INCLUDE", "").split(os.pathsep))]
)


@pytest.fixture
def run_bench(tmp_path):
    """``run_bench(["task=x", "profile=smoke", ...]) -> record``: results and run folders go to tmp_path,
    loggers off unless the overrides name one."""
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    def _run(overrides: list[str]) -> dict:
        base = [f"results_dir={tmp_path / 'results'}", f"work_dir={tmp_path / 'runs'}", "print_summary=false"]
        if not any(o.startswith("logger=") for o in overrides):
            base.append("logger=none")
        cfg = compose(list(overrides) + base)
        return run_fit(cfg)

    return _run


def fit_in_subprocess(tmp_path: Path, *overrides: str, timeout: float = 600) -> None:
    """``python -m bench fit <overrides>`` as a separate process (DDP launches its workers from there), with results
    and run folders in ``tmp_path``, loggers and the summary off; fails the test with the run's stderr."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "bench", "fit", "logger=none", "print_summary=false"]
    args += [f"results_dir={tmp_path}/results", f"work_dir={tmp_path}/runs", *overrides]
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
