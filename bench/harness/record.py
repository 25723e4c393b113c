"""The result record: one JSON file per run, fixed schema, written atomically. The single source of truth of
``verify`` and ``leaderboard``."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.harness.atomic import atomic_write_text
from bench.harness.errors import BenchError
from bench.harness.spec import NAME_PATTERN

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
HASH_EXCLUDE = (
    "results_dir",
    "work_dir",
    "logger",
    "ckpt_path",
    "checkpoint_min_interval_s",
    "run_id",
    "print_summary",
    "trainer.enable_progress_bar",
)


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


TASK_NAME = NAME_PATTERN  # the registry's pattern (a task name is also a module, folder and file name)
# One file or folder name: no separator, not "." / "..", not hidden, not an option ("-x"), no control characters,
# short enough for a temp name beside it. Anything that becomes a path (run_id, a name a report builds from a
# record) passes this first.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+@-]{0,199}")


def is_plain_name(value: object) -> bool:
    """Whether ``value`` is a string that is safe as one path component (:data:`PLAIN_NAME`)."""
    return isinstance(value, str) and PLAIN_NAME.fullmatch(value) is not None


def check_plain_name(value: object, key: str) -> str:
    """``value`` when it is a plain name, else a :class:`BenchError` naming ``key``, the value and the rule."""
    if not is_plain_name(value):
        raise BenchError(
            f"{key}={value!r} is not a plain file name: use letters, digits and _ . = + @ - (not first: . - ), "
            "at most 200 characters, no / or \\"
        )
    return str(value)


# field -> the JSON types it may hold (null only where listed)
_TYPES: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "task": (str,),
    "task_version": (str,),
    "run_id": (str,),
    "label": (str,),
    "profile": (str,),
    "seed": (int,),
    "config": (dict,),
    "config_hash": (str,),
    "group_hash": (str,),
    "headline_metrics": (list,),
    "metrics": (dict,),
    "validity": (dict,),
    "claims": (list,),
    "artifacts": (dict,),
    "git_sha": (str, type(None)),
    "bench_version": (str, type(None)),
    "package_versions": (dict, type(None)),
    "created_at": (str, type(None)),
    "duration_s": (int, float, type(None)),
    "wandb_run_id": (str, type(None)),
}
# Fields added after schema 2 was fixed: records written before them stay valid without them.
OPTIONAL_FIELDS = {
    "cpu_s": (int, float, type(None)),  # CPU seconds of the run (every thread, child processes)
    "filled_config": (dict,),  # values the run used where its config said null (records before it lack it)
}


def validate(record: Any) -> None:
    """Raise ``ValueError`` naming the first way ``record`` breaks the schema (fields, their types, a task name that
    is a safe file name, numeric metrics, well-formed headline metrics)."""
    if not isinstance(record, dict):
        raise ValueError(f"a record is a JSON object, not a {type(record).__name__}")
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"record is missing fields {missing}")
    for name, kinds in [*_TYPES.items(), *((k, t) for k, t in OPTIONAL_FIELDS.items() if k in record)]:
        v = record[name]
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
            allowed = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ValueError(f"record field {name} is {type(v).__name__}, expected {allowed}")
    if not TASK_NAME.match(record["task"]):
        raise ValueError(f"record task {record['task']!r} does not match {TASK_NAME.pattern}")
    if not is_plain_name(record["run_id"]):
        raise ValueError(f"record run_id {record['run_id']!r} is not a plain name")
    bad = [
        k for k, v in record["metrics"].items() if not (v is None or isinstance(v, (int, float))) or isinstance(v, bool)
    ]
    if bad:
        raise ValueError(f"record metrics must be numbers or null: {bad}")
    for m in record["headline_metrics"]:
        ok = isinstance(m, str) or (isinstance(m, dict) and isinstance(m.get("name"), str))
        if not ok:
            raise ValueError(
                f"record headline_metrics entries are metric names or {{name, display, higher_is_better}}, got {m!r}"
            )
    for name, v in record["validity"].items():
        if not isinstance(v, dict):
            raise ValueError(f"record validity[{name!r}] is {type(v).__name__}, expected an object")


def write_record(record: dict, path: str | Path) -> Path:
    """Validate, then write atomically (:mod:`bench.harness.atomic`): a reader sees the old file or the whole new
    one, never half of it."""
    validate(record)
    return atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_record(path: str | Path) -> dict:
    """One record file, validated; ``ValueError`` names the problem (not JSON, empty, wrong schema)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError("is not a file")
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ValueError("is empty")
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"is not valid JSON ({e.msg} at line {e.lineno}; truncated?)") from None
    except RecursionError:  # nested deeper than the parser goes: no record is
        raise ValueError("is JSON nested too deeply to be a record") from None
    validate(rec)
    return rec


def load_records_with_problems(
    results_dir: str | Path, task: str | None = None
) -> tuple[list[dict], list[tuple[Path, str]]]:
    """(every valid record under ``results_dir`` (optionally of one task), sorted by (task, run_id);
    [(file, why it was skipped)] for every other ``*/*.json``)."""
    base = Path(results_dir)
    pattern = f"{task}/*.json" if task else "*/*.json"
    out, problems = [], []
    for f in sorted(base.glob(pattern)):
        try:
            rec = read_record(f)
        except (ValueError, OSError) as e:
            problems.append((f, str(e)))
            continue
        out.append(rec)
    return sorted(out, key=lambda r: (r["task"], r["run_id"])), problems


def load_records(results_dir: str | Path, task: str | None = None, warn: bool = False) -> list[dict]:
    """Every valid record under ``results_dir`` (optionally of one task), sorted by (task, run_id). With ``warn``,
    each skipped file and their count are printed to stderr."""
    records, problems = load_records_with_problems(results_dir, task)
    if warn:
        warn_skipped(problems)
    return records


def warn_skipped(problems: list[tuple[Path, str]]) -> None:
    for f, why in problems:
        print(f"warning: skipped {f}: {why}", file=sys.stderr)
    if problems:
        print(f"warning: {len(problems)} file(s) skipped as not valid records", file=sys.stderr)
