"""Claims of Feng et al. (arXiv:2404.19640), TASKS.md section 3, as checks over the ``bnn_attacks`` verify plan.

Records are grouped by posterior (the ``posterior`` key, = ``model.posterior``); a value per posterior is its mean
over seeds (:meth:`RecordSet.summary`: mean, std, n), and "every posterior" means every posterior present in the
records (after a single run, the claim is checked on that run's posterior alone).

Choices the spec leaves open (fixed before the paper profile was run):
  * radius: (b), (c), (d) are checked at eps = 0.2 (the spec's radius for (b) and (d); (c) names none, and 0.2 is
    the digits radius at which the label attack succeeds); (f) at the smallest radius of the plan, 0.1, because at
    0.2 and 0.3 both attacks drive robust accuracy to the floor (~0), where no difference can show.
  * (c) and (d) use the entropy H for the OOD score and both H and MI for detection, as the spec says; the
    deterministic net's MI is identically 0, so its MI AUROC is 0.5 (all ties) and its MI OOD drop is 0: (d) is
    judged with H, and MI is reported beside it.
  * (e) "these hold at S = 100 evaluation samples": every run evaluated with S_eval >= 100, (b)-(d) hold on those
    runs, and evaluating the same adversarial inputs with more samples does not bring robustness back:
    robust accuracy with S_eval minus with S_eval_few (10) <= 0.02 for every posterior. 0.02 is ~7 of the 360
    digits test inputs, above the sampling noise of a predictive-mean argmax between 10 and 100 samples on inputs
    the attack left near the decision boundary, and well below the 5% level of claim (b).
  * (f) *trend*: robust accuracy under each attack of earlier work the spec names, minus under the EOT attack,
    paired by seed and pooled over the stochastic posteriors (mc_dropout, mfvi, ensemble, hmc; for the
    deterministic net all attacks coincide): ``one_sample_per_step`` (PGD with 1 fresh posterior sample per step)
    and ``one_fixed_draw`` (PGD on one fixed posterior draw, a sample other than the evaluated ones). Both are
    evaluated with S_eval fresh samples and both are reported; the spec's "or" makes either one enough to pass.
"""

from __future__ import annotations

from bench.harness.claims import Claim, Outcome, RecordSet
from bench.harness.stats import paired, summarize

EPS = 0.2
TREND_EPS = 0.1
STOCHASTIC = ("mc_dropout", "mfvi", "ensemble", "hmc")
MIN_EVAL_SAMPLES = 100


def at(metric: str, eps: float) -> str:
    return f"{metric}@eps={eps:g}"


def posteriors(records: RecordSet) -> list[str]:
    return sorted({str(r["config"].get("posterior")) for r in records if r["config"].get("posterior")})


def _digits(records: RecordSet) -> RecordSet:
    return RecordSet(r for r in records if "digits" in str(r["config"].get("data", {}).get("_target_", "")).lower())


def per_posterior(records: RecordSet, metric: str) -> dict[str, float]:
    """posterior -> mean over seeds of ``metric`` (posteriors without it are left out)."""
    out = {}
    for p in posteriors(records):
        rs = records.where(posterior=p)
        if rs.has(metric):
            out[p] = rs.summary(metric).mean
    return out


def clean_accuracy(records: RecordSet):
    acc = per_posterior(_digits(records), "test/acc")
    if not acc:
        return None
    return Outcome(acc, all(v >= 0.95 for v in acc.values()), f"min {min(acc.values()):.3f}")


def robust_accuracy(records: RecordSet):
    rob = per_posterior(records, at("test/robust_acc", EPS))
    if not rob:
        return None
    return Outcome(rob, all(v <= 0.05 for v in rob.values()), f"max {max(rob.values()):.3f}")


def adaptive_detection(records: RecordSet):
    h = per_posterior(records, at("detect/adaptive_auroc_entropy", EPS))
    mi = per_posterior(records, at("detect/adaptive_auroc_mi", EPS))
    if not h or not mi:
        return None
    measured = {p: {"H": h[p], "MI": mi.get(p)} for p in h}
    ok = all(v <= 0.7 for v in h.values()) and all(v <= 0.7 for v in mi.values())
    return Outcome(measured, ok, f"max H {max(h.values()):.3f}, max MI {max(mi.values()):.3f}")


def semantic_shift(records: RecordSet):
    drop = per_posterior(records, at("ood/auroc_drop_entropy", EPS))
    if not drop:
        return None
    clean = per_posterior(records, "ood/auroc_entropy")
    attacked = per_posterior(records, at("ood/attacked_auroc_entropy", EPS))
    drop_mi = per_posterior(records, at("ood/auroc_drop_mi", EPS))
    measured = {
        p: {"drop_H": drop[p], "clean_H": clean.get(p), "attacked_H": attacked.get(p), "drop_MI": drop_mi.get(p)}
        for p in drop
    }
    return Outcome(measured, all(v >= 0.5 for v in drop.values()), f"min drop (H) {min(drop.values()):.3f}")


def many_eval_samples(records: RecordSet):
    if not len(records):
        return None
    eval_samples = [int(r["config"]["bnn_attacks"]["S_eval"]) for r in records]
    gap = {}
    for p in posteriors(records):
        rs = records.where(posterior=p)
        many, few = at("test/robust_acc", EPS), at("test/robust_acc_few_samples", EPS)
        if rs.has(many) and rs.has(few):
            gap[p] = rs.paired_diff(rs, many, few).mean
    parts = [c.check(records) for c in CLAIMS[1:4]]
    if not gap or any(o is None for o in parts):
        return None
    ok = min(eval_samples) >= MIN_EVAL_SAMPLES and all(o.passed for o in parts) and all(g <= 0.02 for g in gap.values())
    measured = {
        "min_S_eval": min(eval_samples),
        "robust_S_eval_minus_S_few": gap,
        "b_c_d_pass": [bool(o.passed) for o in parts],
    }
    return Outcome(measured, ok)


VARIANTS = {"one_sample_per_step": "test/robust_acc_no_eot", "one_fixed_draw": "test/robust_acc_one_draw"}


def eot_matters(records: RecordSet):
    measured: dict = {}
    passed = []
    for variant, metric in VARIANTS.items():
        diffs, per = [], {}
        for p in posteriors(records):
            if p not in STOCHASTIC:
                continue
            rs = records.where(posterior=p)
            weak, eot = rs.by_seed(at(metric, TREND_EPS)), rs.by_seed(at("test/robust_acc", TREND_EPS))
            common = sorted(set(weak) & set(eot))
            if not common:
                continue
            per[p] = {
                "attack": summarize(weak[k] for k in common).mean,
                "eot": summarize(eot[k] for k in common).mean,
                "diff": paired(weak, eot).mean,
            }
            diffs += [weak[k] - eot[k] for k in common]
        if diffs:
            pooled = summarize(diffs)
            per["pooled_diff"] = {"mean": pooled.mean, "std": pooled.std, "n": pooled.n}
            measured[variant] = per
            passed.append(pooled.mean > 0)
    if not measured:
        return None
    return Outcome(measured, any(passed), "passes when either attack of earlier work overstates robustness")


CLAIMS = [
    Claim("(a) clean accuracy of every posterior on digits", "predictive-mean test accuracy >= 0.95", clean_accuracy),
    Claim("(b) PGD-EOT breaks every posterior, HMC included", "robust accuracy <= 0.05 at eps = 0.2", robust_accuracy),
    Claim(
        "(c) adaptive attack evades uncertainty-based detection",
        "detection AUROC <= 0.7 with H and with MI at eps = 0.2",
        adaptive_detection,
    ),
    Claim(
        "(d) entropy attack breaks semantic-shift detection",
        "OOD AUROC (H) drops by >= 0.5 at eps = 0.2",
        semantic_shift,
    ),
    Claim(
        "(e) not an artefact of few evaluation samples",
        "S_eval >= 100, (b)-(d) hold, robust acc(S_eval) - robust acc(S=10) <= 0.02",
        many_eval_samples,
    ),
    Claim(
        "(f) attacking without EOT overstates robustness",
        "robust acc without EOT (1 sample per step, or 1 fixed draw) > with EOT at eps = 0.1, pooled",
        eot_matters,
        trend=True,
    ),
]
