"""Tasks and config groups, discovered from the config files (no heavy imports: ``bench list`` is instant)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bench.harness.errors import BenchError

GROUPS = ("task", "data", "model", "optimizer", "trainer", "logger", "attack", "callbacks", "profile", "experiment")


def conf_dir() -> Path:
    """The ``conf/`` folder: ``$BENCH_CONF_DIR`` or the one beside the package."""
    env = os.environ.get("BENCH_CONF_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "conf"
    if not (path / "config.yaml").is_file():
        raise BenchError(f"no conf/config.yaml found at {path}; install bench from its repository (pip install -e .) "
                         "or set BENCH_CONF_DIR")
    return path


@dataclass(frozen=True)
class TaskInfo:
    name: str
    version: str
    description: str
    arxiv: str
    path: Path


@lru_cache(maxsize=1)
def tasks() -> dict[str, TaskInfo]:
    """Every ``conf/task/<name>.yaml``, read as plain YAML."""
    out = {}
    for f in sorted((conf_dir() / "task").glob("*.yaml")):
        meta = (yaml.safe_load(f.read_text()) or {}).get("task", {})
        out[f.stem] = TaskInfo(
            name=f.stem,
            version=str(meta.get("version", "?")),
            description=str(meta.get("description", "")),
            arxiv=str(meta.get("arxiv", "")),
            path=f,
        )
    return out


def options(group: str) -> list[str]:
    """Names of the options of a config group (files under ``conf/<group>/``, sub-folders included)."""
    base = conf_dir() / group
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))


def check_choice(group: str, value: str) -> None:
    """Raise a one-line error naming the known options when ``value`` is not an option of ``group``."""
    if group == "task":
        known = sorted(tasks())
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
