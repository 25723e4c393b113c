"""The typed spec of a task's ``task:`` block, checked once when tasks are discovered.

A task file that does not fit gives one error naming the file, the key and what is expected (``bench list`` and
the smoke tests show it); nothing downstream reads the block with ``.get()`` defaults. Only the standard library
and PyYAML are used here, so discovery stays instant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.errors import BenchError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w.]*$")
REF_PATTERN = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class MetricSpec:
    """A headline metric: its record name, the name a table shows, and its direction."""

    name: str
    display: str
    higher_is_better: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "display": self.display, "higher_is_better": self.higher_is_better}


@dataclass(frozen=True)
class VerifyPlan:
    overrides: tuple[str, ...] = ()
    runs: tuple[tuple[str, ...], ...] = ((),)
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    version: str
    description: str
    arxiv: str
    protocol: str  # the protocol's ``_target_``
    claims: str | None  # ``module:ATTR`` of the claim list
    label: tuple[str, ...]  # config keys whose values name a leaderboard row
    headline_metrics: tuple[MetricSpec, ...]
    verify: VerifyPlan | None
    report: str | None = None  # ``module:function`` run by ``bench verify`` after the claims
    path: Path | None = field(default=None, compare=False)

    @property
    def version_label(self) -> str:
        return f"v{self.version}"


class _Reader:
    """Reads one task block, collecting the first problem as a one-line error naming file and key."""

    def __init__(self, block: Mapping[str, Any], where: str) -> None:
        self.block, self.where = block, where

    def fail(self, key: str, what: str) -> BenchError:
        return BenchError(f"{self.where}: task.{key} {what}")

    def text(self, key: str, required: bool = True, pattern: re.Pattern | None = None) -> str | None:
        v = self.block.get(key)
        if v is None:
            if required:
                raise self.fail(key, "is missing")
            return None
        if isinstance(v, (dict, list)):
            raise self.fail(key, f"must be a string, got {type(v).__name__}")
        v = str(v)
        if pattern is not None and not pattern.match(v):
            raise self.fail(key, f"is {v!r}, which does not match {pattern.pattern}")
        return v


def _str_list(r: _Reader, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, (str, int, float, bool)) for x in value):
        raise r.fail(key, f"must be a list of strings, got {value!r}")
    return tuple(str(x) for x in value)


def parse_task(block: Any, stem: str, path: Path | None = None) -> TaskSpec:
    """The :class:`TaskSpec` of the ``task:`` mapping of ``conf/task/<stem>.yaml``, or a one-line BenchError."""
    where = str(path) if path is not None else f"task {stem}"
    if not isinstance(block, Mapping):
        raise BenchError(
            f"{where}: needs a 'task:' mapping (name, version, description, arxiv, protocol, claims, "
            "label, headline_metrics, verify)"
        )
    r = _Reader(block, where)
    name = r.text("name", pattern=NAME_PATTERN)
    if name != stem:
        raise r.fail("name", f"is {name!r} but the file is {stem}.yaml; they must match")
    proto = block.get("protocol")
    if not isinstance(proto, Mapping) or not TARGET_PATTERN.match(str(proto.get("_target_", ""))):
        raise r.fail(
            "protocol", "must be a mapping with a _target_ (e.g. {_target_: bench.harness.protocol.fit_and_test})"
        )
    label = block.get("label")
    if isinstance(label, str) or not label:
        raise r.fail("label", f"must be a non-empty list of config keys (e.g. [method]), got {label!r}")
    metrics = block.get("headline_metrics")
    if not isinstance(metrics, list) or not metrics:
        raise r.fail("headline_metrics", "must be a non-empty list of {name, display, higher_is_better}")
    specs = []
    for i, m in enumerate(metrics):
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str):
            raise r.fail(f"headline_metrics[{i}]", f"must be a mapping with name, display, higher_is_better; got {m!r}")
        if not isinstance(m.get("higher_is_better"), bool):
            raise r.fail(f"headline_metrics[{i}].higher_is_better", f"must be true or false (metric {m['name']})")
        unknown = set(m) - {"name", "display", "higher_is_better"}
        if unknown:
            raise r.fail(f"headline_metrics[{i}]", f"has unknown keys {sorted(unknown)}")
        specs.append(MetricSpec(m["name"], str(m.get("display") or m["name"]), m["higher_is_better"]))
    verify = block.get("verify")
    plan = None
    if verify is not None:
        if not isinstance(verify, Mapping):
            raise r.fail("verify", "must be a mapping {overrides, runs, seeds}")
        runs = verify.get("runs") or [[]]
        if not isinstance(runs, list):
            raise r.fail("verify.runs", "must be a list of override lists")
        seeds = verify.get("seeds") or [0]
        if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise r.fail("verify.seeds", f"must be a list of integers, got {seeds!r}")
        plan = VerifyPlan(
            _str_list(r, "verify.overrides", verify.get("overrides")),
            tuple(_str_list(r, f"verify.runs[{i}]", x) for i, x in enumerate(runs)),
            tuple(seeds),
        )
    unknown = set(block) - {
        "name",
        "version",
        "description",
        "arxiv",
        "protocol",
        "claims",
        "label",
        "headline_metrics",
        "verify",
        "report",
        "label_text",
    }
    if unknown:
        raise BenchError(
            f"{where}: unknown task keys {sorted(unknown)}; a task's own knobs go under a root key "
            f"named like the task ({name}: ...)"
        )
    return TaskSpec(
        name=name,
        version=r.text("version"),
        description=r.text("description"),
        arxiv=r.text("arxiv", required=False) or "",
        protocol=str(proto["_target_"]),
        claims=r.text("claims", required=False, pattern=REF_PATTERN),
        label=_str_list(r, "label", label),
        headline_metrics=tuple(specs),
        verify=plan,
        report=r.text("report", required=False, pattern=REF_PATTERN),
        path=path,
    )


# -- what a run reads from its resolved config ----------------------------------------------------------------
def _lookup(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, IndexError):
            try:
                node = node[int(part)]
            except (KeyError, TypeError, ValueError, IndexError):
                return None
    return node


def _readable(key: str, value: Any) -> str:
    """How one label key shows: names as they are, a class path as its class name, numbers as ``key=value``."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return f"{key.split('.')[-1]}={value:g}" if isinstance(value, float) else f"{key.split('.')[-1]}={value}"
    text = str(value)
    if TARGET_PATTERN.match(text) and "." in text:
        return text.rsplit(".", 1)[-1]
    return text


def run_label(cfg: Any) -> str:
    """The leaderboard row name of a run: ``task.label_text`` if set, else the values of the ``task.label`` keys
    joined by ``/``."""
    task = cfg["task"]
    text = task.get("label_text") if hasattr(task, "get") else None
    if text:
        return str(text)
    keys = list(task["label"])
    return "/".join(_readable(k, _lookup(cfg, k)) for k in keys)


def headline(cfg: Any) -> list[dict]:
    """The run's headline metrics as record entries ``{name, display, higher_is_better}``."""
    out = []
    for m in cfg["task"]["headline_metrics"]:
        out.append(
            {
                "name": str(m["name"]),
                "display": str(m.get("display") or m["name"]),
                "higher_is_better": bool(m["higher_is_better"]),
            }
        )
    return out
