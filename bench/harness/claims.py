"""Claims: a paper's findings as checks over result records.

A task lists its claims (``task.claims`` in its config names a module-level list of :class:`Claim`). Each claim
is a function of a :class:`RecordSet` (the runs of its ``verify`` plan) that returns a :class:`Outcome`, or
``None`` when the records it needs are not there. After every run the harness evaluates the claims on that run
alone and keeps those that apply in the run's record; ``bench verify`` evaluates them on the whole plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench.harness.stats import Summary, paired, summarize


@dataclass
class Outcome:
    measured: Any
    passed: bool
    detail: str = ""


@dataclass
class Claim:
    name: str
    expected: str
    check: Callable[[RecordSet], Outcome | None]
    trend: bool = False
    description: str = ""


@dataclass
class ClaimResult:
    name: str
    passed: bool
    measured: Any
    expected: str
    trend: bool
    detail: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["measured"] = _jsonable(d["measured"])
        return d


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


class RecordSet:
    """A list of records with selection helpers. ``where(method="st", data__name="digits")`` keeps records whose
    config has those values (``__`` stands for a dot in the config path)."""

    def __init__(self, records: Iterable[dict]) -> None:
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def where(self, **conditions: Any) -> RecordSet:
        def ok(r: dict) -> bool:
            return all(_get(r["config"], k.replace("__", ".")) == v for k, v in conditions.items())

        return RecordSet(r for r in self.records if ok(r))

    def values(self, metric: str) -> np.ndarray:
        """The metric over the records (NaN where missing), in seed order."""
        rs = sorted(self.records, key=lambda r: r.get("seed", 0))
        return np.array([np.nan if r["metrics"].get(metric) is None else r["metrics"][metric] for r in rs], dtype=float)

    def mean(self, metric: str) -> float:
        v = self.values(metric)
        return float(np.nanmean(v)) if len(v) and not np.all(np.isnan(v)) else math.nan

    def has(self, metric: str) -> bool:
        return any(r["metrics"].get(metric) is not None for r in self.records)

    def by_seed(self, metric: str) -> dict[int, float]:
        """``seed -> value`` of ``metric`` (records without it are left out). Two records of one seed mean the
        selection was not specific enough: that is an error, not an average."""
        out: dict[int, float] = {}
        for r in self.records:
            v = r["metrics"].get(metric)
            if v is None:
                continue
            seed = int(r.get("seed", 0))
            if seed in out:
                raise ValueError(f"two records of seed {seed} carry {metric}; select one config with where(...)")
            out[seed] = float(v)
        return dict(sorted(out.items()))

    def summary(self, metric: str) -> Summary:
        """Mean, std, n and the t-based 95% interval of ``metric`` over the records' seeds."""
        return summarize(self.by_seed(metric).values())

    def paired_diff(self, other: RecordSet, metric: str, other_metric: str | None = None) -> Summary:
        """``self[metric] - other[other_metric or metric]`` paired by seed (only seeds both have)."""
        return paired(self.by_seed(metric), other.by_seed(other_metric or metric))


def evaluate(claims: Sequence[Claim], records: RecordSet) -> list[ClaimResult]:
    """Claims that apply to ``records``; a claim whose check raises is reported failed with the error."""
    out = []
    for c in claims:
        try:
            res = c.check(records)
        except Exception as e:  # a broken check must not pass silently
            out.append(ClaimResult(c.name, False, None, c.expected, c.trend, f"check raised {type(e).__name__}: {e}"))
            continue
        if res is None:
            continue
        out.append(ClaimResult(c.name, bool(res.passed), res.measured, c.expected, c.trend, res.detail))
    return out


def load_claims(path: str) -> list[Claim]:
    """``module.sub:NAME`` -> the list of claims."""
    import importlib

    mod, _, attr = path.partition(":")
    return list(getattr(importlib.import_module(mod), attr or "CLAIMS"))


def all_pass(results: Sequence[ClaimResult]) -> bool:
    """True when every non-trend claim passed (trend claims are reported, never gate)."""
    return all(r.passed for r in results if not r.trend)
