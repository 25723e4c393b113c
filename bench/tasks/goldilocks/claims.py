"""Claims (a)-(d) of TASKS.md section 8 (Vysogorets, Dawid & Kempe, arXiv:2402.03579) over ``goldilocks`` records.

Curves are means over the seeds of one setting (records grouped by data set) at each alpha of the grid.

(a) exact identity: an L-layer homogeneous net has ``z(alpha w) = alpha^L z(w)``, so the loss at ``alpha w0`` is
    the loss at ``w0`` with softmax temperature ``alpha^-L`` and the two Hessians satisfy ``H_T = alpha^2 H``:
    positive curvature (scale-free) is identical. Checked per point, every seed: ``|c_alpha - c_T| <= 1e-8`` (the
    curvature is dimensionless, at most sqrt(d) ~ 7 in size, so this is a relative 1e-9 test in float64) and
    ``||alpha^2 H_alpha - H_T||_F / ||H_T||_F <= 1e-8`` for the matrices themselves. Float64 only: in float32
    the identity breaks where the softmax saturates (digits, alpha 30-100: Hessian error up to 0.36, curvature
    gap 1.4e-3), so ``goldilocks.curvature.dtype=float32`` is refused and no float32 tolerance is offered.
(b) inverted U. Thresholds (the spec gives none; fixed before any run, argued from the Gauss-Newton split):
    - "high in a middle band": the peak of the mean curve is >= 1 and lies at least one decade (4 grid points
      of 0.25) inside both ends of the grid. 1 is the smallest positive curvature of any non-zero positive
      semi-definite matrix (Tr/||.||_F >= 1 when all eigenvalues are >= 0), i.e. the loss is locally convex-like;
    - "small at small alpha" and "near 0 at large alpha": |mean curvature| at the two ends of the grid
      <= 2 sqrt(2/d). At both ends H is dominated by H - G (small alpha: H - G ~ alpha^(L-2) beats
      G ~ alpha^(2L-2); large alpha: the saturated softmax kills G), whose full-space trace is 0 for a bias-free
      ReLU net; on a random d-dim subspace a trace-free matrix has Tr/||.||_F of mean 0 and standard deviation
      about sqrt(2/d), so 2 sqrt(2/d) (0.4 at d = 50) is its 2-sigma band. d is the recorded matrix size (P in
      the exact mode).
(c) "the gradient norm is proportional to the prior mismatch across random inits (correlation > 0.9)": the
    Pearson correlation over each run's random inits, the smallest over seeds, must exceed 0.9.
(d) *trend*: in at least one setting the best final test accuracy is not at the curvature peak: the mean test
    accuracy at the curvature-peak alpha is below the best mean test accuracy over the grid by more than 0.005
    (half a point; ties within that count as "at the peak"). Both alphas and accuracies are reported per setting.
    On circles a bias-free ReLU net is positively homogeneous in its *input* too, so its prediction is constant
    along rays from the origin and radial classes cannot be learned (accuracy stays near the majority class at
    every alpha); that setting reports its numbers but cannot show (d) either way. An alpha where training diverged
    (``alpha=<a>/diverged``) has no accuracy: the mean curve there is over the seeds that did not diverge, and a
    setting whose peak alpha diverged in every seed says so (``note``) and counts neither way.
"""

from __future__ import annotations

import math

import numpy as np

from bench.harness.claims import Claim, Outcome, RecordSet
from bench.harness.naming import points
from bench.tasks.goldilocks.plots import by_setting, curve

IDENTITY_TOL = 1e-8
PEAK_MIN = 1.0
EDGE_POINTS = 4  # one decade of the 0.25-step grid
TIE = 0.005


def _sweep(records: RecordSet) -> dict[str, list[dict]]:
    groups = by_setting(r for r in records if points(r["metrics"], "curv/positive_curvature"))
    return groups or {}


def identity(records: RecordSet):
    groups = _sweep(records)
    if not groups:
        return None
    worst_c, worst_h, n = 0.0, 0.0, 0
    for recs in groups.values():
        for r in recs:
            dtype = (((r.get("config") or {}).get("goldilocks") or {}).get("curvature") or {}).get("dtype", "float64")
            if dtype != "float64":  # refused by the protocol now; a record from before says so instead of failing
                return Outcome({"curvature dtype": dtype, "note": "the 1e-8 identity needs float64 curvature"}, False)
            L = int(r["metrics"]["model/depth"])
            by_t = {
                round(-math.log10(float(a["temperature"])) / L, 6): v
                for a, v in points(r["metrics"], "curv/positive_curvature")
                if "temperature" in a
            }
            for a, v in points(r["metrics"], "curv/positive_curvature"):
                if "alpha" not in a:
                    continue
                key = round(math.log10(float(a["alpha"])), 6)
                match = min(by_t, key=lambda k: abs(k - key)) if by_t else None
                if match is None or abs(match - key) > 1e-4:
                    return Outcome({"missing temperature point for alpha": a["alpha"]}, False)
                worst_c = max(worst_c, abs(v - by_t[match]))
                n += 1
            errs = [v for _, v in points(r["metrics"], "identity/hessian_rel_err")]
            worst_h = max([worst_h, *errs])
    ok = worst_c <= IDENTITY_TOL and worst_h <= IDENTITY_TOL
    return Outcome({"max |c_alpha - c_T|": worst_c, "max rel. Hessian error": worst_h, "points": n}, ok)


def inverted_u(records: RecordSet):
    groups = _sweep(records)
    if not groups:
        return None
    measured, ok = {}, True
    for name, recs in groups.items():
        x, m, _ = curve(recs, "curv/positive_curvature")
        d = min(v for r in recs for _, v in points(r["metrics"], "curv/dim"))
        band = 2 * math.sqrt(2 / d)
        p = int(np.nanargmax(m))
        interior = EDGE_POINTS <= p <= len(x) - 1 - EDGE_POINTS
        passed = bool(m[p] >= PEAK_MIN and interior and abs(m[0]) <= band and abs(m[-1]) <= band)
        measured[name] = {
            "peak": float(m[p]),
            "peak_alpha": float(x[p]),
            f"c(alpha={x[0]:g})": float(m[0]),
            f"c(alpha={x[-1]:g})": float(m[-1]),
            "tail_band": band,
        }
        ok = ok and passed
    return Outcome(measured, ok)


def grad_tracks_mismatch(records: RecordSet):
    groups = by_setting(r for r in records if r["metrics"].get("inits/corr") is not None)
    if not groups:
        return None
    per = {name: min(r["metrics"]["inits/corr"] for r in recs) for name, recs in groups.items()}
    return Outcome({"min corr over seeds": per}, all(v > 0.9 for v in per.values()))


def best_not_at_peak(records: RecordSet):
    groups = {k: v for k, v in _sweep(records).items() if points(v[0]["metrics"], "test/acc")}
    if not groups:
        return None
    measured, any_setting = {}, False
    for name, recs in groups.items():
        xc, mc, _ = curve(recs, "curv/positive_curvature")
        xa, ma, _ = curve(recs, "test/acc")
        peak = float(xc[int(np.nanargmax(mc))])
        at_peak = float(ma[int(np.argmin(np.abs(np.log(xa / peak))))])
        # alphas where training diverged (their accuracy is None; the curve averages the seeds that did not)
        diverged = sorted({float(a["alpha"]) for r in recs for a, v in points(r["metrics"], "diverged") if v})
        if math.isnan(at_peak):
            measured[name] = {
                "curvature_peak_alpha": peak,
                "test_acc_at_peak": None,
                "best_not_at_peak": None,
                "diverged_alphas": diverged,
                "note": "training diverged at the curvature-peak alpha in every seed: no accuracy to compare",
            }
            continue
        b = int(np.nanargmax(ma))
        differs = bool(ma[b] - at_peak > TIE)
        any_setting = any_setting or differs
        measured[name] = {
            "curvature_peak_alpha": peak,
            "test_acc_at_peak": at_peak,
            "best_alpha": float(xa[b]),
            "best_test_acc": float(ma[b]),
            "best_not_at_peak": differs,
        }
        if diverged:
            measured[name]["diverged_alphas"] = diverged
    return Outcome(measured, any_setting)


CLAIMS = [
    Claim(
        "(a) scaling weights by alpha = softmax temperature alpha^-L: same curvature curve",
        "|c_alpha - c_T| <= 1e-8 and ||alpha^2 H_alpha - H_T|| / ||H_T|| <= 1e-8 at every point (float64)",
        identity,
    ),
    Claim(
        "(b) positive curvature vs alpha is an inverted U",
        "mean-curve peak >= 1, >= 1 decade inside the grid; |c| <= 2 sqrt(2/d) at both ends",
        inverted_u,
    ),
    Claim(
        "(c) gradient norm proportional to prior mismatch across random inits",
        "Pearson corr(||grad||, ||Q - mean softmax||) > 0.9 for every seed",
        grad_tracks_mismatch,
    ),
    Claim(
        "(d) best final accuracy not at the curvature peak in every setting",
        "some setting: test acc at the peak alpha < best test acc - 0.005",
        best_not_at_peak,
        trend=True,
    ),
]
