"""Claims of Cabannes et al. (arXiv:2406.02128) as checks over records of the ``iteration_heads`` verify plan.

Thresholds are TASKS.md section 2's; seed statistics come from :mod:`bench.harness.stats` (mean, std with
ddof=1, n). ``test/acc`` is the mean of acc_L over the lengths with at least ``data.min_test_sequences`` (8)
distinct test sequences (parity: L >= 4): shorter lengths hold 1-4 test sequences, whose accuracy is close to a
coin flip; their acc_L is still in every record (``length=<L>/test/acc``).
(a) CoT parity (``pipeline=single``) reaches >= 0.95 test sequence accuracy, no-CoT parity stays <= 0.65 (chance
    is 0.5), at the same lengths and epoch budget. Checked on every seed (the worst seed must pass, so one lucky
    seed cannot carry it).
(b) After CoT training on parity, layer-2 attention mass on x_t >= 2x what a uniform causal head puts on one key,
    on every seed. 2x is the spec's number; peakiness and layer-1 mass on EoI are reported, not checked (the
    sharp head, peakiness ~1, needs width >= 128 and longer training: the GPU profile).
(c) trend: polynomial pre-training (full fine-tuning) reaches 95% test accuracy on parity in fewer epochs than
    training from scratch. Both curves must be sampled the same way: the same evaluation interval (the scratch
    reference is the transfer run's ``scratch`` stage, or the ``pipeline=single`` CoT parity run of the same
    seed and data, whose ``every_n_epochs`` must then equal ``transfer.eval_every_n_epochs``), both censored at
    the fine-tuning budget (not reaching 95% within it counts as budget + 1 epochs, a lower bound). The speed-up
    (scratch - fine-tuned epochs) is computed per seed; the claim holds when it is positive on every seed (so one
    seed cannot carry the mean); the mean, its 95% interval and the per-seed values are reported.

Where the paper profile stands (v2.0, 2 seeds, `leaderboard/records/iteration_heads/`): (a) fails on the CoT side
(0.944 and 0.761; no-CoT 0.38-0.40 holds), (b) fails by a hair (mass/uniform 1.99 and 2.17), (c) fails (speed-up
13 epochs on one seed, 0 on the other). Two measured causes. First the step budget: at epoch 100 the CoT test
accuracy is still rising (0.93 at epoch 96 on seed 0, 0.79 on seed 1; train/acc 0.98 and 0.89), and the polynomial
pre-training reaches only 0.51 test accuracy in its 60 epochs (the profile gives 2400 Adam steps, the official code
~64k). Second, with the budget raised (seed 1, 250 epochs, train/acc 1.00): every length from 6 to 12 reaches
1.00 but L = 4 stays at 0.25 and L = 5 at 0.88 (test/acc 0.903, flat from epoch 125): their disjoint training
pools hold only 8 and 16 distinct sequences, repeated 64 and 32 times in the balanced mix, and the model memorises
them instead of generalising. The official code draws train and test sequences independently, so at short lengths
it tests on sequences it trained on. The next protocol should average lengths with enough distinct *training*
sequences too (L >= 6 here), and train longer; experiment=iteration_heads_gpu is the full-scale protocol.
"""

from __future__ import annotations

from bench.harness.claims import Claim, Outcome, RecordSet
from bench.harness.stats import Summary, summarize

COT_MIN, NO_COT_MAX, MASS_RATIO_MIN = 0.95, 0.65, 2.0
DATA_KEYS = (
    "n_len",
    "min_len",
    "n_per_length",
    "train_fraction",
    "train_rows_per_length",
    "min_test_sequences",
    "seed",
)


def _parity(records: RecordSet, cot: bool) -> RecordSet | None:
    rs = records.where(pipeline="single", data__problem="parity", data__cot=cot)
    return rs if len(rs) and rs.has("test/acc") else None


def _stat(name: str, s: Summary) -> dict:
    out = {name: s.mean}
    if s.n > 1:
        out[f"{name}_std"] = s.std
    return out


def cot_beats_no_cot(records: RecordSet) -> Outcome | None:
    cot, plain = _parity(records, True), _parity(records, False)
    if cot is None or plain is None:
        return None
    a, b = cot.by_seed("test/acc"), plain.by_seed("test/acc")
    settings = {(r["config"]["data"]["n_len"], r["config"]["trainer"]["max_epochs"]) for r in list(cot) + list(plain)}
    ok = bool(min(a.values()) >= COT_MIN and max(b.values()) <= NO_COT_MAX and len(settings) == 1)
    detail = f"seeds: {len(a)} CoT, {len(b)} no-CoT; worst CoT {min(a.values()):.3f}, best no-CoT {max(b.values()):.3f}"
    if len(settings) > 1:
        detail += f"; the runs differ in (n_len, max_epochs): {sorted(settings)}"
    return Outcome(
        {**_stat("cot_acc", summarize(a.values())), **_stat("no_cot_acc", summarize(b.values())), "n": len(a)},
        ok,
        detail,
    )


def layer2_attends_to_xt(records: RecordSet) -> Outcome | None:
    cot = _parity(records, True)
    if cot is None or not cot.has("test/attn/l2_mass_ratio"):
        return None
    ratio = cot.by_seed("test/attn/l2_mass_ratio")
    measured = {**_stat("mass/uniform", summarize(ratio.values())), "worst": min(ratio.values())}
    for key in ("l2_mass_xt", "l2_peak_xt", "l1_mass_eoi"):
        measured.update(_stat(key, cot.summary(f"test/attn/{key}")))
    measured["n"] = len(ratio)
    widths = sorted({r["config"]["model"].get("width") for r in cot})
    context = [f"width {', '.join(map(str, widths))}"]
    transfers = records.where(pipeline="transfer")
    for stage in ("pretrain", "full"):
        if transfers.has(f"{stage}/test/attn/l2_mass_ratio"):
            problem = transfers.records[0]["config"]["transfer"]["source" if stage == "pretrain" else "target"]
            context.append(
                f"not checked: {stage} ({problem}) mass/uniform "
                f"{transfers.summary(f'{stage}/test/attn/l2_mass_ratio').mean:.2f}"
            )
    return Outcome(measured, bool(min(ratio.values()) >= MASS_RATIO_MIN), "; ".join(context))


def _epochs(metrics: dict, key: str, cap: int) -> tuple[float, bool]:
    """Epochs to 95%, or ``cap + 1`` when not reached within ``cap`` epochs (censored)."""
    v = metrics.get(key)
    return (float(cap + 1), True) if v is None or v > cap else (float(v), False)


def _scratch_reference(record: dict, singles: list[dict]) -> dict | None:
    """The pipeline=single CoT parity run with the record's seed, data and model, trained for at least the
    fine-tuning budget."""
    data = record["config"]["data"]
    for r in singles:
        d = r["config"]["data"]
        if (
            r.get("seed") == record.get("seed")
            and r["config"]["trainer"]["max_epochs"] >= record["config"]["transfer"]["finetune_epochs"]
            and all(d.get(k) == data.get(k) for k in DATA_KEYS)
            and r["config"]["model"] == record["config"]["model"]
        ):
            return r
    return None


def pretraining_speeds_up_parity(records: RecordSet) -> Outcome | None:
    transfers = records.where(pipeline="transfer", transfer__target="parity", transfer__source="polynomial")
    if not len(transfers) or not transfers.has("full/reached_95"):
        return None
    singles = list(records.where(pipeline="single", data__problem="parity", data__cot=True))
    full: dict[int, float] = {}
    scratch: dict[int, float] = {}
    censored = {"full": 0, "scratch": 0}
    sources, mismatched = set(), []
    for rec in sorted(transfers, key=lambda r: r.get("seed", 0)):
        seed = int(rec.get("seed", 0))
        budget = int(rec["config"]["transfer"]["finetune_epochs"])
        every = int(rec["config"]["transfer"]["eval_every_n_epochs"])
        full[seed], c = _epochs(rec["metrics"], "full/epochs_to_95", budget)
        censored["full"] += c
        if "scratch/reached_95" in rec["metrics"]:
            scratch[seed], c = _epochs(rec["metrics"], "scratch/epochs_to_95", budget)
            sources.add("scratch stage")
        else:
            ref = _scratch_reference(rec, singles)
            if ref is None:
                return None
            ref_every = int(ref["config"]["callbacks"]["iteration_head"]["every_n_epochs"])
            if ref_every != every:
                mismatched.append(f"seed {seed}: scratch sampled every {ref_every}, fine-tuning every {every}")
            scratch[seed], c = _epochs(ref["metrics"], "epochs_to_95", budget)
            sources.add("pipeline=single CoT run")
        censored["scratch"] += c
    speedup = {s: scratch[s] - full[s] for s in full}
    diff = summarize(speedup.values())
    measured = {
        **_stat("full_epochs", summarize(full.values())),
        **_stat("scratch_epochs", summarize(scratch.values())),
        **_stat("speedup", diff),
        "speedup_lower95": diff.lower95,
        "n": len(speedup),
    }
    notes = [f"per seed scratch - full: {', '.join(f'{s}: {v:g}' for s, v in speedup.items())}"]
    notes += [
        f"{k}: {v} of {len(full)} seeds never reached 95% (counted as budget + 1)" for k, v in censored.items() if v
    ]
    notes.append(f"scratch from the {', '.join(sorted(sources))}")
    if mismatched:
        notes.append("curves sampled differently: " + "; ".join(mismatched))
    ok = not mismatched and all(v > 0 for v in speedup.values())
    return Outcome(measured, bool(ok), "; ".join(notes))


CLAIMS = [
    Claim(
        "(a) parity: CoT learns it, no CoT does not",
        f"CoT test acc (L >= 4) >= {COT_MIN} and no-CoT <= {NO_COT_MAX} on every seed, same n_len and budget",
        cot_beats_no_cot,
    ),
    Claim(
        "(b) CoT parity: layer-2 attention concentrates on x_t",
        f"layer-2 mass on x_t >= {MASS_RATIO_MIN:g}x uniform on every seed; peakiness reported",
        layer2_attends_to_xt,
    ),
    Claim(
        "(c) polynomial pre-training speeds up parity",
        "epochs to 95%: fine-tuned (full) < from scratch on every seed, both sampled every epoch alike",
        pretraining_speeds_up_parity,
        trend=True,
    ),
]
