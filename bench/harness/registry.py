"""Tasks and config groups, discovered from the config files (no heavy imports: ``bench list`` is instant)."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import yaml

from bench.harness.errors import BenchError
from bench.harness.spec import TaskSpec, parse_task

GROUPS = (
    "task",
    "data",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "attack",
    "callbacks",
    "profile",
    "experiment",
)


def conf_dir() -> Path:
    """The ``conf/`` folder: ``$BENCH_CONF_DIR``, else the repository's top-level ``conf/`` (a checkout or an editable
    install), else the copy shipped inside the package (``bench/conf``, a wheel install)."""
    env = os.environ.get("BENCH_CONF_DIR")
    package = Path(__file__).resolve().parents[1]
    candidates = [Path(env)] if env else [package.parent / "conf", package / "conf"]
    for path in candidates:
        if (path / "config.yaml").is_file():
            return path
    raise BenchError(
        f"no conf/config.yaml found at {' or '.join(map(str, candidates))}; reinstall bench (pip install "
        ". or the wheel ships bench/conf) or set BENCH_CONF_DIR to a folder holding config.yaml"
    )


def include_dirs() -> list[Path]:
    """Extra config folders (``$BENCH_INCLUDE``, ``os.pathsep``-separated; ``bench --include DIR`` sets it), each laid
    out like ``conf/`` (``task/<name>.yaml``, other groups). Python packages beside their YAML files are importable:
    each folder goes on ``sys.path``. Tasks and options there are found like the built-in ones."""
    out = []
    for part in filter(None, os.environ.get("BENCH_INCLUDE", "").split(os.pathsep)):
        path = Path(part).expanduser().resolve()
        if not path.is_dir():
            raise BenchError(f"include folder {part} does not exist; pass a folder holding task/<name>.yaml")
        out.append(path)
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return out


def search_dirs() -> list[Path]:
    """``conf/`` first, then the include folders."""
    return [conf_dir(), *include_dirs()]


TaskInfo = TaskSpec  # what ``tasks()`` returns: the validated spec of each task


def _discover() -> tuple[dict[str, TaskSpec], dict[str, str]]:
    found: dict[str, TaskSpec] = {}
    problems: dict[str, str] = {}
    for base in search_dirs():
        for f in sorted((base / "task").glob("*.yaml")):
            try:
                data = yaml.safe_load(f.read_text()) or {}
                found[f.stem] = parse_task(data.get("task") if isinstance(data, dict) else None, f.stem, f)
            except yaml.YAMLError as e:
                problems[f.stem] = f"{f}: not valid YAML ({str(e).splitlines()[0]})"
            except BenchError as e:
                problems[f.stem] = str(e)
    return found, problems


@lru_cache(maxsize=4)
def _discover_cached(key: str) -> tuple[dict[str, TaskSpec], dict[str, str]]:
    return _discover()


def tasks() -> dict[str, TaskSpec]:
    """Every valid ``task/<name>.yaml`` of the search folders, by name (malformed ones: :func:`task_problems`)."""
    return _discover_cached(os.environ.get("BENCH_INCLUDE", ""))[0]


def task_problems() -> dict[str, str]:
    """``name -> one-line error`` for every task file that does not fit the task spec."""
    return _discover_cached(os.environ.get("BENCH_INCLUDE", ""))[1]


def options(group: str) -> list[str]:
    """Names of the options of a config group (files under ``conf/<group>/``, sub-folders included)."""
    names = set()
    for root in search_dirs():
        base = root / group
        names.update(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))
    return sorted(names)


def check_choice(group: str, value: str) -> None:
    """Raise a one-line error naming the known options when ``value`` is not an option of ``group``."""
    if group == "task":
        known = sorted(tasks())
        for v in value.split(","):
            if v.strip() in task_problems():
                raise BenchError(task_problems()[v.strip()])
    else:
        known = options(group)
    for v in value.split(","):  # multirun: task=a,b
        v = v.strip()
        if v == "null" and group != "task":
            continue
        if v not in known:
            raise BenchError(f"unknown {group} {v!r}; known {group} options: {', '.join(known) or '(none)'}")


def check_overrides(overrides: list[str]) -> None:
    """Validate ``group=value`` overrides before Hydra sees them (Hydra's own error is a stack trace)."""
    for o in overrides:
        if "=" not in o or o.startswith("hydra"):
            continue
        key, value = o.split("=", 1)
        key = key.lstrip("+~")
        if key in GROUPS and "/" not in key:
            if value.startswith(("choice(", "range(", "glob(", "interval(")):
                continue
            check_choice(key, value)
