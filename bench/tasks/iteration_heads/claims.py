"""Claims of Cabannes et al. (arXiv:2406.02128) as checks over records of the ``iteration_heads`` verify plan.

Thresholds are TASKS.md section 2's.
(a) CoT parity (``pipeline=single``) reaches >= 0.95 test sequence accuracy (mean acc_L), no-CoT parity stays
    <= 0.65 (chance is 0.5), at the same lengths and epoch budget. Checked on every seed (the worst seed must
    pass, so one lucky seed cannot carry it); the mean, std (ddof=1) and number of seeds are reported.
(b) After CoT training on parity, layer-2 attention mass on x_t >= 2x what a uniform causal head puts on one key,
    on every seed. Peakiness and layer-1 mass on EoI are reported, not checked: the sharp head (peakiness ~1)
    needs width >= 128 and longer training (the GPU profile).
(c) trend: epochs to 95% test accuracy on parity, mean over seeds, after polynomial pre-training (full
    fine-tuning) < from scratch. The from-scratch reference is the transfer run's ``scratch`` stage, or, when
    the run has none (``transfer.scratch=false``), the ``pipeline=single`` CoT parity run of the same seed with
    the same data, trained at least as long. Both sides are censored at the fine-tuning budget: not reaching 95%
    within it counts as budget + 1 epochs (a lower bound).
"""

from __future__ import annotations

import numpy as np

from bench.harness.claims import Claim, Outcome, RecordSet

COT_MIN, NO_COT_MAX, MASS_RATIO_MIN = 0.95, 0.65, 2.0


def _by_seed(rs: RecordSet) -> list[dict]:
    return sorted(rs, key=lambda r: r.get("seed", 0))


def _parity(records: RecordSet, cot: bool) -> RecordSet | None:
    rs = records.where(pipeline="single", data__problem="parity", data__cot=cot)
    return rs if len(rs) and rs.has("test/acc") else None


def _summary(name: str, v: np.ndarray) -> dict:
    out = {name: float(np.mean(v))}
    if len(v) > 1:
        out[f"{name}_std"] = float(np.std(v, ddof=1))
    return out


def cot_beats_no_cot(records: RecordSet) -> Outcome | None:
    cot, plain = _parity(records, True), _parity(records, False)
    if cot is None or plain is None:
        return None
    a, b = cot.values("test/acc"), plain.values("test/acc")
    settings = {(r["config"]["data"]["n_len"], r["config"]["trainer"]["max_epochs"]) for r in list(cot) + list(plain)}
    ok = bool(a.min() >= COT_MIN and b.max() <= NO_COT_MAX and len(settings) == 1)
    detail = f"seeds: {len(a)} CoT, {len(b)} no-CoT"
    if len(settings) > 1:
        detail += f"; the runs differ in (n_len, max_epochs): {sorted(settings)}"
    return Outcome({**_summary("cot_acc", a), **_summary("no_cot_acc", b), "n": int(len(a))}, ok, detail)


def layer2_attends_to_xt(records: RecordSet) -> Outcome | None:
    cot = _parity(records, True)
    if cot is None or not cot.has("test/attn/l2_mass_ratio"):
        return None
    ratio = cot.values("test/attn/l2_mass_ratio")
    measured = {**_summary("mass/uniform", ratio), **_summary("l2_mass_xt", cot.values("test/attn/l2_mass_xt")),
                **_summary("l2_peak_xt", cot.values("test/attn/l2_peak_xt")),
                **_summary("l1_mass_eoi", cot.values("test/attn/l1_mass_eoi")), "n": int(len(ratio))}
    context = []
    transfers = records.where(pipeline="transfer")
    for stage in ("pretrain", "full"):
        if transfers.has(f"{stage}/test/attn/l2_mass_ratio"):
            v = transfers.values(f"{stage}/test/attn/l2_mass_ratio")
            context.append(f"{stage} ({transfers.records[0]['config']['transfer']['source' if stage == 'pretrain' else 'target']}) "
                           f"mass/uniform {np.nanmean(v):.2f}")
    detail = ("not checked, for context: " + "; ".join(context)) if context else ""
    return Outcome(measured, bool(np.min(ratio) >= MASS_RATIO_MIN), detail)


def _epochs(record: dict, key: str, cap: int) -> tuple[float, bool]:
    """Epochs to 95%, or ``cap + 1`` when not reached within ``cap`` epochs (censored)."""
    v = record["metrics"].get(key)
    return (float(cap + 1), True) if v is None or v > cap else (float(v), False)


def _scratch_reference(record: dict, singles: list[dict]) -> dict | None:
    """The pipeline=single CoT parity run with the record's seed, data and model, trained for at least the
    fine-tuning budget."""
    data = record["config"]["data"]
    for r in singles:
        d = r["config"]["data"]
        if (r.get("seed") == record.get("seed") and r["config"]["trainer"]["max_epochs"] >= record["config"]["transfer"]["finetune_epochs"]
                and all(d.get(k) == data.get(k) for k in ("n_len", "min_len", "n_per_length", "train_fraction", "seed"))
                and r["config"]["model"] == record["config"]["model"]):
            return r
    return None


def pretraining_speeds_up_parity(records: RecordSet) -> Outcome | None:
    transfers = records.where(pipeline="transfer", transfer__target="parity", transfer__source="polynomial")
    if not len(transfers) or not transfers.has("full/reached_95"):
        return None
    singles = list(records.where(pipeline="single", data__problem="parity", data__cot=True))
    epochs: dict[str, list[float]] = {"full": [], "layer2_mlp": [], "scratch": []}
    never: dict[str, int] = {k: 0 for k in epochs}
    sources = set()
    for rec in _by_seed(transfers):
        # both sides are censored at the fine-tuning budget (a longer pipeline=single reference is cut there)
        budget = int(rec["config"]["transfer"]["finetune_epochs"])
        for stage in ("full", "layer2_mlp"):
            if f"{stage}/reached_95" in rec["metrics"]:
                e, censored = _epochs(rec, f"{stage}/epochs_to_95", budget)
                epochs[stage].append(e)
                never[stage] += censored
        if "scratch/reached_95" in rec["metrics"]:
            e, censored = _epochs(rec, "scratch/epochs_to_95", budget)
            sources.add("scratch stage")
        else:
            ref = _scratch_reference(rec, singles)
            if ref is None:
                return None
            e, censored = _epochs(ref, "epochs_to_95", budget)
            sources.add("pipeline=single CoT run")
        epochs["scratch"].append(e)
        never["scratch"] += censored
    measured: dict = {}
    for stage, v in epochs.items():
        if v:
            measured.update(_summary(f"{stage}_epochs", np.array(v)))
    measured["n"] = len(epochs["full"])
    notes = [f"{stage}: {k} of {len(epochs[stage])} seeds never reached 95%" for stage, k in never.items() if k]
    detail = "; ".join(notes + [f"scratch from the {', '.join(sorted(sources))}", "never-reached counts as budget + 1"])
    return Outcome(measured, bool(np.mean(epochs["full"]) < np.mean(epochs["scratch"])), detail)


CLAIMS = [
    Claim("(a) parity: CoT learns it, no CoT does not",
          f"CoT test acc >= {COT_MIN} and no-CoT <= {NO_COT_MAX} on every seed, same n_len and budget", cot_beats_no_cot),
    Claim("(b) CoT parity: layer-2 attention concentrates on x_t",
          f"layer-2 mass on x_t >= {MASS_RATIO_MIN:g}x uniform on every seed; peakiness reported", layer2_attends_to_xt),
    Claim("(c) polynomial pre-training speeds up parity", "mean epochs to 95%: fine-tuned (full) < from scratch",
          pretraining_speeds_up_parity, trend=True),
]
