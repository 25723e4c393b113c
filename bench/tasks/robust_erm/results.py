"""Read the task's records as tidy rows (one per trained problem), for claims and plots.

Every trained problem logs ``<prefix>problem/...`` constants next to its metrics (linear part: ``problem/m``,
``problem/c``, ``problem/eps``; network part: ``problem/train_eps``), so a row is found by its prefix whatever the
sweep layout of the run (one problem per run, or many).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

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
    """One dict per trained problem: method, seed, the problem constants and its metrics (prefix removed)."""
    marker = "problem/m" if part == "linear" else "problem/train_eps"
    out = []
    for r in records:
        if r["config"].get("part") != part:
            continue
        metrics = r["metrics"]
        for key in metrics:
            if not key.endswith(marker):
                continue
            prefix = key[: -len(marker)]
            row = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix) and "/" in k[len(prefix):]}
            row.update(method=method_name(r["config"]), seed=r.get("seed", 0))
            out.append(row)
    return out


def table(rows_: list[dict], keys: tuple[str, ...], metric: str) -> dict[tuple, dict[int, float]]:
    """(method, *keys) -> {seed: metric}."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in rows_:
        v = r.get(metric)
        out[(r["method"], *(r.get(k) for k in keys))][int(r["seed"])] = math.nan if v is None else float(v)
    return dict(out)


def mean_std(by_seed: dict[int, float] | None) -> tuple[float, float, int]:
    """Mean, std (ddof = 1) and number of seeds."""
    v = np.array(list((by_seed or {}).values()), dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def paired(a: dict[int, float] | None, b: dict[int, float] | None) -> tuple[float, float, int]:
    """Mean and standard error (ddof = 1) of a - b over the seeds both have."""
    seeds = sorted(set(a or {}) & set(b or {}))
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    if len(d) == 0:
        return math.nan, math.nan, 0
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return float(d.mean()), se, len(d)


def robust_at_train_eps(row: dict, split: str = "test") -> float | None:
    """Network part: accuracy under PGD at the radius the network was trained at (clean accuracy at 0)."""
    e = row.get("problem/train_eps")
    if e is None:
        return None
    return row.get(f"{split}/acc") if e == 0 else row.get(f"{split}/robust_acc@eps={e:g}")
