"""Read the task's records as tidy rows (one per trained problem), for claims and plots.

A run that trains several problems names each one's metrics by the harness's sweep-point convention
(``m=64/c=0.5/test/robust_acc``, ``train_eps=0.1/test/acc``: :mod:`bench.harness.naming`), and every problem logs
``problem/...`` constants next to its metrics (linear part: ``problem/m``, ``problem/c``, ``problem/eps``; network
part: ``problem/train_eps``), so a row is the set of metrics of one sweep point, whatever the run's layout.
"""

from __future__ import annotations

import math
from collections import defaultdict

from bench.harness.naming import parse_point

SHORT = {"LinearPredictor": "", "DiagonalNet": "diag-net ", "GD": "GD", "CoordinateDescent": "CD", "SignGD": "sign-GD"}


def _short(target: str | None) -> str:
    name = str(target or "?").rsplit(".", 1)[-1]
    return SHORT.get(name, name)


def method_name(config: dict) -> str:
    """``GD``, ``CD``, ``sign-GD``, ``diag-net GD`` (linear part) or the optimizer (network part)."""
    opt = _short((config.get("optimizer") or {}).get("_target_"))
    if config.get("part") == "network":
        return opt
    return _short((config.get("model") or {}).get("_target_")) + opt


def rows(records, part: str) -> list[dict]:
    """One dict per trained problem: method, seed, the problem constants and its metrics (point axes removed)."""
    marker = "problem/m" if part == "linear" else "problem/train_eps"
    out = []
    for r in records:
        if r["config"].get("part") != part:
            continue
        points: dict[tuple, dict] = defaultdict(dict)
        for key, value in r["metrics"].items():
            axes, metric = parse_point(key)
            points[tuple(sorted(axes.items()))][metric] = value
        for metrics in points.values():
            if marker in metrics:
                out.append({**metrics, "method": method_name(r["config"]), "seed": r.get("seed", 0)})
    return out


def table(rows_: list[dict], keys: tuple[str, ...], metric: str) -> dict[tuple, dict[int, float]]:
    """(method, *keys) -> {seed: metric}."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in rows_:
        v = r.get(metric)
        out[(r["method"], *(r.get(k) for k in keys))][int(r["seed"])] = math.nan if v is None else float(v)
    return dict(out)


def robust_at_train_eps(row: dict, split: str = "test") -> float | None:
    """Network part: accuracy under PGD at the radius the network was trained at (clean accuracy at 0)."""
    e = row.get("problem/train_eps")
    if e is None:
        return None
    return row.get(f"{split}/acc") if e == 0 else row.get(f"{split}/robust_acc@eps={e:g}")
