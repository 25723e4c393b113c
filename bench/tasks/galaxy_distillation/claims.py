"""Claims of Guan et al. (arXiv:2311.17967; TASKS.md section 9) as checks over the ``galaxy_distillation`` verify
plan: every method evaluated by the same ``eval.num_nets`` fresh networks, net i starting from the same
initialisation in every run of a seed. Each network's test accuracy is a record metric (``net=<i>/test/acc``), so
methods are compared *paired by network* (and seed): the spread is the spread of the evaluation the paper reports
(mean, std over 5 networks), pooled over seeds when the plan has several.

Thresholds not in the spec, and why:
  (a) "ordering" = the means over networks are strictly ordered, random < class mean < distilled < full, for each
      distilled method (MTT and self-adaptive), at k = 1 image per class. k = 1 because the class-mean baseline is
      one image per class in the paper (the average of each class); at k = 10 there is no single class mean.
  (b) "well above" = the mean paired gain of distilled over random real at k = 1 is at least 10 points of accuracy
      and its two-sided 95% t-interval lies above 0. The paper's Galaxy Zoo logs show +28 points (22.9% -> 51-55%,
      chance 11.1%); 10 points is about a third of that on our 7 classes (chance 14.3%), a margin that networks
      trained on real single images do not reach by noise (their std over nets is a few points).
  (c) "T+ rises" = the final T+ of every self-adaptive run is above its start, 1. "Matches or beats" = for each k
      with both, the upper end of the 95% interval of the paired difference (adaptive - MTT) is >= 0: the
      self-adaptive set is not significantly worse than MTT with the hand-set T+ (``distill.max_start_epoch``).
      With one network the point difference must be >= 0.
"""

from __future__ import annotations

import math

from bench.harness.claims import Claim, Outcome, RecordSet
from bench.harness.naming import points
from bench.harness.stats import Summary, paired, summarize

K = "galaxy_distillation__images_per_class"
DISTILLED = ("mtt", "adaptive")
WELL_ABOVE = 0.10


def net_accuracies(records: RecordSet, method: str, k: int | None = None) -> dict[int, float]:
    """``seed * 1000 + net -> test accuracy`` of every evaluation network of ``method`` (at ``k`` per class)."""
    rs = records.where(method=method) if k is None else records.where(method=method, **{K: k})
    out: dict[int, float] = {}
    for r in rs:
        for axes, value in points(r["metrics"], "test/acc"):
            if "net" in axes and value is not None:
                out[int(r.get("seed", 0)) * 1000 + int(axes["net"])] = float(value)
    return out


def _mean(d: dict[int, float]) -> float:
    return summarize(d.values()).mean


def _upper(s: Summary) -> float:
    return s.mean if s.n == 1 else s.upper95


def _lower(s: Summary) -> float:
    return s.mean if s.n == 1 else s.lower95


def ordering(records: RecordSet):
    accs = {m: net_accuracies(records, m, 1) for m in ("random_real", "class_mean", *DISTILLED)}
    accs["full"] = net_accuracies(records, "full")
    present = [m for m in DISTILLED if accs[m]]
    if not (accs["random_real"] and accs["class_mean"] and accs["full"] and present):
        return None
    means = {m: _mean(v) for m, v in accs.items() if v}
    ok = all(means["random_real"] < means["class_mean"] < means[m] < means["full"] for m in present)
    detail = "; ".join(
        f"{a} - {b}: lower95 {_lower(paired(accs[a], accs[b])):.3f}"
        for a, b in [
            ("class_mean", "random_real"),
            *[(m, "class_mean") for m in present],
            *[("full", m) for m in present],
        ]
    )
    return Outcome({m: round(v, 4) for m, v in means.items()}, ok, detail)


def distilled_vs_random(records: RecordSet):
    rand = net_accuracies(records, "random_real", 1)
    if not rand:
        return None
    measured, ok = {}, True
    for m in DISTILLED:
        d = net_accuracies(records, m, 1)
        if not d:
            continue
        s = paired(d, rand)
        measured[f"{m} - random"] = s.mean
        measured[f"{m} lower95"] = _lower(s)
        ok = ok and s.mean >= WELL_ABOVE and _lower(s) > 0
    if not measured:
        return None
    measured["random_real"] = _mean(rand)
    measured["n"] = len(rand)
    return Outcome(measured, ok)


def adaptive_t_plus(records: RecordSet):
    runs = list(records.where(method="adaptive"))
    finals = [r["metrics"].get("distill/t_plus_final") for r in runs]
    if not runs or any(v is None for v in finals):
        return None
    measured: dict = {"final T+": [float(v) for v in finals]}
    ok = all(float(v) > 1 for v in finals)
    for k in sorted({int(r["config"]["galaxy_distillation"]["images_per_class"]) for r in runs}):
        a, m = net_accuracies(records, "adaptive", k), net_accuracies(records, "mtt", k)
        if not (a and m):
            continue
        s = paired(a, m)
        measured[f"k={k}: adaptive - mtt"] = s.mean
        measured[f"k={k}: upper95"] = _upper(s)
        ok = ok and math.isfinite(_upper(s)) and _upper(s) >= 0
    return Outcome(measured, ok)


CLAIMS = [
    Claim(
        "(a) accuracy ordering at 1 image per class: random real < class mean < distilled < full data",
        "means over eval nets strictly ordered, for MTT and self-adaptive MTT",
        ordering,
    ),
    Claim(
        "(b) distilled at 1 image per class is well above random real images",
        "paired gain over eval nets >= 0.10 and its 95% interval above 0, for MTT and self-adaptive MTT",
        distilled_vs_random,
    ),
    Claim(
        "(c) self-adaptive T+ rises over training and self-adaptive matches or beats MTT with a hand-set T+",
        "final T+ > 1 in every self-adaptive run; per k, upper 95% bound of paired (adaptive - MTT) >= 0",
        adaptive_t_plus,
    ),
]
