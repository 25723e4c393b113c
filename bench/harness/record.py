"""The result record: one JSON file per run, fixed schema, written atomically. The single source of truth of
``verify`` and ``leaderboard``."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 2  # 2: headline_metrics are {name, display, higher_is_better}; label from task.label keys

FIELDS = (
    "schema_version",
    "task",
    "task_version",
    "run_id",
    "label",
    "profile",
    "seed",
    "config",
    "config_hash",
    "group_hash",
    "headline_metrics",
    "metrics",
    "validity",
    "claims",
    "artifacts",
    "git_sha",
    "bench_version",
    "package_versions",
    "created_at",
    "duration_s",
    "wandb_run_id",
)

# Keys that do not change a run's numbers: they are left out of the config hash.
HASH_EXCLUDE = ("results_dir", "work_dir", "logger", "ckpt_path", "run_id", "print_summary", "trainer.enable_progress_bar")


def _drop(cfg: dict, dotted: str) -> None:
    parts = dotted.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node.get(p, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def config_hash(cfg: dict, exclude: Iterable[str] = ()) -> str:
    """sha256 of the resolved config without the keys that do not change the numbers."""
    c = json.loads(json.dumps(cfg, sort_keys=True, default=str))
    for k in (*HASH_EXCLUDE, *exclude):
        _drop(c, k)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()


def clean_number(v: Any) -> float | int | None:
    """JSON has no NaN: non-finite numbers become null."""
    if isinstance(v, bool):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(f) if isinstance(v, int) else f


def validate(record: dict) -> None:
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"record is missing fields {missing}")
    bad = [k for k, v in record["metrics"].items() if not (v is None or isinstance(v, (int, float)))]
    if bad:
        raise ValueError(f"record metrics must be numbers or null: {bad}")


def write_record(record: dict, path: str | Path) -> Path:
    """Validate, then write to a temp file in the same folder and rename: a reader sees the old file or the
    whole new one, never half of it."""
    validate(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_records(results_dir: str | Path, task: str | None = None) -> list[dict]:
    """Every valid record under ``results_dir`` (optionally of one task), sorted by (task, run_id)."""
    base = Path(results_dir)
    pattern = f"{task}/*.json" if task else "*/*.json"
    out = []
    for f in sorted(base.glob(pattern)):
        try:
            rec = json.loads(f.read_text())
            validate(rec)
        except (ValueError, json.JSONDecodeError):
            continue
        out.append(rec)
    return sorted(out, key=lambda r: (r["task"], r["run_id"]))
