"""Claims (a)-(e) of TASKS.md section 1 (Tsilivis et al., arXiv:2406.04981) as checks over the verify plan.

Linear claims use the rows of the paper runs (d = 256, dense teacher, m <= d, c in {0, 0.5}), compared per seed
(every method sees the same data and test set for a seed) and averaged over seeds; "se" is the standard error
(ddof = 1) of the paired difference over seeds. Tolerances, fixed from the claims' wording:
  (a) "similar" = |GD - CD| <= 0.10 at every m; "GD slightly better" = mean paired difference over m and seeds > 0.
  (b) CD - GD > 0 at every m <= d (mean over seeds) and > 2 se pooled over m; "shrinking" = the advantage at the
      smallest m exceeds the one at the largest m, and from each m to the next it rises by at most 0.01 (seed noise).
  (c) "a few points" = |diag net - CD| <= 0.05 (mean over seeds) at every (m, c).
  (d) "well below" = CD's ||w||_1/||w||_2 below GD's at every (m, c) and at most 0.8x GD's on average.
  (e) trend: spread (max - min over optimizers, means over seeds) of robust test accuracy at each training radius
      eps > 0, averaged over those radii, exceeds the spread of clean test accuracy at eps = 0.
"""

from __future__ import annotations

import math

import numpy as np

from bench.harness.claims import Claim, Outcome, RecordSet
from bench.harness.stats import paired, summarize
from bench.tasks.robust_erm.results import robust_at_train_eps, rows, table

ROBUST_C = 0.5
SHRINK_TOL = 0.01  # one point of accuracy: the paired s.e. of one m's advantage over 3 seeds is ~0.005-0.01


def _mean(by_seed: dict[int, float]) -> float:
    """Mean over seeds; NaN when any seed's value is missing or non-finite (a diverged run fails a claim, it is not
    dropped from it)."""
    values = list(by_seed.values())
    return summarize(values).mean if all(math.isfinite(v) for v in values) else math.nan


def _finite(t: dict) -> bool:
    return all(math.isfinite(v) for by_seed in t.values() for v in by_seed.values())


def _linear(records: RecordSet, metric: str, methods: tuple[str, ...]):
    """{(method, m, c): {seed: value}} restricted to m <= d, or None when a method is missing."""
    rs = [
        r
        for r in rows(records, "linear")
        if r.get("problem/c") is not None and r["problem/m"] <= r.get("problem/d", math.inf)
    ]
    t = table(rs, ("problem/m", "problem/c"), metric)
    if not all(any(k[0] == meth for k in t) for meth in methods):
        return None
    return t


def _ms(t: dict, method: str, c: float) -> list:
    return sorted(k[1] for k in t if k[0] == method and k[2] == c)


def eps0_similar(records: RecordSet):
    t = _linear(records, "test/robust_acc", ("GD", "CD"))
    if t is None:
        return None
    ms = [m for m in _ms(t, "GD", 0.0) if ("CD", m, 0.0) in t]
    if not ms:
        return None
    diffs = {m: paired(t[("GD", m, 0.0)], t[("CD", m, 0.0)]) for m in ms}
    mean = float(np.mean([d.mean for d in diffs.values()]))
    ok = _finite(t) and mean > 0 and all(abs(d.mean) <= 0.10 for d in diffs.values())
    return Outcome(
        {
            "GD-CD by m": [f"{m}:{d.mean:+.4f}" for m, d in diffs.items()],
            "mean": mean,
            "seeds": min(d.n for d in diffs.values()),
        },
        ok,
    )


def robust_cd_beats_gd(records: RecordSet):
    t = _linear(records, "test/robust_acc", ("GD", "CD"))
    if t is None:
        return None
    ms = [m for m in _ms(t, "GD", ROBUST_C) if ("CD", m, ROBUST_C) in t]
    if len(ms) < 2:
        return None
    diffs = {m: paired(t[("CD", m, ROBUST_C)], t[("GD", m, ROBUST_C)]) for m in ms}
    pooled = [
        t[("CD", m, ROBUST_C)][s] - t[("GD", m, ROBUST_C)][s]
        for m in ms
        for s in set(t[("CD", m, ROBUST_C)]) & set(t[("GD", m, ROBUST_C)])
    ]
    pooled_summary = summarize(pooled)
    se = pooled_summary.sem
    # every consecutive m, not only the ends; a rise of up to SHRINK_TOL between neighbours is seed noise
    steps = [diffs[b].mean - diffs[a].mean for a, b in zip(ms, ms[1:])]
    shrinking = diffs[ms[0]].mean > diffs[ms[-1]].mean and all(step <= SHRINK_TOL for step in steps)
    ok = _finite(t) and all(d.mean > 0 for d in diffs.values()) and pooled_summary.mean > 2 * se and shrinking
    return Outcome(
        {
            "CD-GD by m": [f"{m}:{d.mean:+.4f}±{d.sem:.4f}" for m, d in diffs.items()],
            "pooled": f"{pooled_summary.mean:+.4f}±{se:.4f}",
            "seeds": min(d.n for d in diffs.values()),
        },
        ok,
    )


def diag_net_like_cd(records: RecordSet):
    t = _linear(records, "test/robust_acc", ("CD", "diag-net GD"))
    if t is None:
        return None
    keys = sorted((k[1], k[2]) for k in t if k[0] == "CD" and ("diag-net GD", k[1], k[2]) in t)
    if not keys:
        return None
    gaps = {f"{m}/{c:g}": _mean(t[("diag-net GD", m, c)]) - _mean(t[("CD", m, c)]) for m, c in keys}
    return Outcome(
        {"diag-CD by m/c": [f"{k}:{v:+.4f}" for k, v in gaps.items()]}, all(abs(v) <= 0.05 for v in gaps.values())
    )


def cd_sparser_than_gd(records: RecordSet):
    t = _linear(records, "w/l1_over_l2", ("GD", "CD"))
    if t is None:
        return None
    keys = sorted((k[1], k[2]) for k in t if k[0] == "CD" and ("GD", k[1], k[2]) in t)
    if not keys:
        return None
    cd = {(m, c): _mean(t[("CD", m, c)]) for m, c in keys}
    gd = {(m, c): _mean(t[("GD", m, c)]) for m, c in keys}
    ratio = {k: cd[k] / gd[k] for k in keys}
    mean_ratio = float(np.mean(list(ratio.values())))
    return Outcome(
        {
            "CD vs GD by m/c": [
                f"{m}/{c:g}:{cd[(m, c)]:.2f}<{gd[(m, c)]:.2f}"
                if cd[(m, c)] < gd[(m, c)]
                else f"{m}/{c:g}:{cd[(m, c)]:.2f}>={gd[(m, c)]:.2f}"
                for m, c in keys
            ],
            "mean CD/GD": mean_ratio,
        },
        all(v < 1 for v in ratio.values()) and mean_ratio <= 0.8,
    )


def networks_optimizer_matters_more_robust(records: RecordSet):
    rs = rows(records, "network")
    by = {}
    for r in rs:
        v = robust_at_train_eps(r)
        if v is not None:
            by.setdefault(r["problem/train_eps"], {}).setdefault(r["method"], {})[r["seed"]] = v
    if 0.0 not in by or not any(e > 0 for e in by):
        return None
    spread = {}
    for e, methods in sorted(by.items()):
        if len(methods) < 2:
            return None
        means = [_mean(v) for v in methods.values()]
        spread[e] = max(means) - min(means)
    robust = float(np.mean([s for e, s in spread.items() if e > 0]))
    return Outcome(
        {"spread by train eps": [f"{e:g}:{s:.4f}" for e, s in spread.items()], "eps>0 mean": robust},
        robust > spread[0.0],
    )


CLAIMS = [
    Claim(
        "(a) eps = 0: GD and CD generalise similarly, GD slightly better",
        "|GD - CD| <= 0.10 at every m; mean GD - CD > 0",
        eps0_similar,
    ),
    Claim(
        "(b) eps = 0.5 gamma_inf: robust test accuracy CD > GD at every m <= d, advantage shrinking with m",
        "CD - GD > 0 at every m, pooled > 2 se; advantage at smallest m > at largest, "
        "rising <= 0.01 between neighbours",
        robust_cd_beats_gd,
    ),
    Claim(
        "(c) small-init diagonal net within a few points of CD", "|diag - CD| <= 0.05 at every (m, c)", diag_net_like_cd
    ),
    Claim(
        "(d) ||w||_1/||w||_2 of CD well below GD's", "CD < GD at every (m, c); mean CD/GD <= 0.8", cd_sparser_than_gd
    ),
    Claim(
        "(e) networks: the optimizer changes robust accuracy at eps > 0 more than accuracy at eps = 0",
        "spread over GD / sign-GD / Adam at eps > 0 > spread at eps = 0",
        networks_optimizer_matters_more_robust,
        trend=True,
    ),
]
