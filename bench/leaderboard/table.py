"""One task's leaderboard table from its records: rows, cells, ranks and best values (no rendering here).

A row is one (label, config without the seed) of the task's newest version; a cell is a headline metric's mean ±
std (ddof = 1) over the row's distinct seeds (copies of one seed count once: :func:`one_per_seed`). Rows are ranked
by the first headline metric in its direction (ties share a rank, rows without a value come last, unranked); the best
mean of every column with two or more values is marked.

Records of schema 1 name their headline metrics as a plain list of names: those keep their order, display as
their name and count as higher-is-better (schema 1 had no direction). Schema 2 records carry
``{name, display, higher_is_better}`` per metric.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.harness.stats import summarize


@dataclass(frozen=True)
class Metric:
    name: str
    display: str
    higher_is_better: bool = True


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    unreliable: bool
    values: list[float] = field(default_factory=list)  # the finite per-seed values, in seed order
    best: bool = False


@dataclass
class Row:
    label: str
    group_hash: str
    n: int
    seeds: list[int]
    cells: dict[str, Cell]
    rank: int | None = None


@dataclass
class TaskTable:
    task: str
    version: str
    metrics: list[Metric]
    rows: list[Row]
    description: str = ""
    arxiv: str = ""

    @property
    def runs(self) -> int:
        return sum(r.n for r in self.rows)


def version_key(v: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in str(v).replace("-", ".").split("."))


def headline(record: dict) -> list[Metric]:
    """The record's headline metrics as :class:`Metric` (schema 1 names or schema 2 mappings)."""
    out = []
    for m in record.get("headline_metrics") or []:
        if isinstance(m, str):
            out.append(Metric(m, m, True))
        else:
            out.append(
                Metric(str(m["name"]), str(m.get("display") or m["name"]), bool(m.get("higher_is_better", True)))
            )
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _unreliable(records: list[dict], metric: str) -> bool:
    return any(((r.get("validity") or {}).get(metric) or {}).get("reliable") is False for r in records)


def _cell(records: list[dict], metric: str) -> Cell:
    values = [float(r["metrics"][metric]) for r in records if _finite(r["metrics"].get(metric))]
    s = summarize(values)
    std = s.std if s.n > 1 else math.nan
    return Cell(s.mean if s.n else math.nan, std, s.n, _unreliable(records, metric), values)


def _order_and_rank(rows: list[Row], first: Metric | None) -> list[Row]:
    if first is None:
        return sorted(rows, key=lambda r: (r.label, r.group_hash))

    def key(r: Row) -> tuple:
        m = r.cells[first.name].mean
        if not math.isfinite(m):
            return (1, 0.0, r.label, r.group_hash)
        return (0, -m if first.higher_is_better else m, r.label, r.group_hash)

    rows = sorted(rows, key=key)
    rank, prev = 0, None
    for i, r in enumerate(rows, start=1):
        m = r.cells[first.name].mean
        if not math.isfinite(m):
            continue
        if m != prev:  # competition ranking: equal means share a rank (1, 2, 2, 4)
            rank, prev = i, m
        r.rank = rank
    return rows


def _mark_best(rows: list[Row], metrics: list[Metric]) -> None:
    for m in metrics:
        means = [r.cells[m.name].mean for r in rows if math.isfinite(r.cells[m.name].mean)]
        if len(means) < 2:  # a lone value is not "best" of anything
            continue
        best = max(means) if m.higher_is_better else min(means)
        for r in rows:
            r.cells[m.name].best = r.cells[m.name].mean == best


def one_per_seed(records: list[dict]) -> dict[int, dict]:
    """Seed -> the record a row shows for it. Copies of one seed (another run_id, a copied file) are one seed, not
    several: the newest ``created_at`` wins (a rerun replaces what it reran), ties and records without it by the
    largest run_id, so the choice does not depend on the order the records were read in."""
    chosen: dict[int, dict] = {}
    for r in sorted(records, key=lambda r: (str(r.get("created_at") or ""), str(r["run_id"]))):
        chosen[r["seed"]] = r
    return chosen


def task_table(task: str, records: list[dict]) -> TaskTable:
    """The table of ``task`` from its (already validated) records, for the newest task version among them."""
    newest = max((str(r["task_version"]) for r in records), key=version_key)
    recs = sorted((r for r in records if str(r["task_version"]) == newest), key=lambda r: str(r["run_id"]))
    metrics: list[Metric] = []
    seen: set[str] = set()
    for r in recs:
        for m in headline(r):
            if m.name not in seen:
                seen.add(m.name)
                metrics.append(m)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in recs:
        groups[(str(r["label"]), str(r["group_hash"]))].append(r)
    configs_per_label: dict[str, set[str]] = defaultdict(set)
    for label, g in groups:
        configs_per_label[label].add(g)
    rows = []
    for (label, g), rs in groups.items():
        rs = sorted(one_per_seed(rs).values(), key=lambda r: (r["seed"], str(r["run_id"])))
        name = label if len(configs_per_label[label]) == 1 else f"{label} [{g[:6]}]"
        rows.append(Row(name, g, len(rs), [r["seed"] for r in rs], {m.name: _cell(rs, m.name) for m in metrics}))
    rows = _order_and_rank(rows, metrics[0] if metrics else None)
    _mark_best(rows, metrics)
    task_cfg = (recs[-1].get("config") or {}).get("task") if recs else None
    task_cfg = task_cfg if isinstance(task_cfg, dict) else {}
    return TaskTable(
        task, newest, metrics, rows, str(task_cfg.get("description") or ""), str(task_cfg.get("arxiv") or "")
    )
