"""Claims of Su et al. (arXiv:2311.07444) as checks over records of the ``neural_collapse`` verify plan.

Thresholds: the ratios and the >10x gap come from the paper's statements as restated in TASKS.md section 10;
"small" NC1 is NC1 <= 0.5 (ST reaches ~1e-2 at the terminal phase in the paper, an untrained net is >> 1).
"""

from __future__ import annotations

from bench.harness.claims import Claim, Outcome, RecordSet

SMALL_NC1 = 0.5


def _one(records: RecordSet, method: str):
    rs = records.where(method=method)
    return rs if len(rs) and rs.has("nc/clean/nc1") else None


def st_collapse_fragile(records: RecordSet):
    rs = _one(records, "st")
    if rs is None:
        return None
    clean, pgd, noise = rs.mean("nc/clean/nc1"), rs.mean("nc/pgd/nc1"), rs.mean("nc/noise/nc1")
    ratio, noise_ratio = pgd / clean, noise / clean
    ok = clean <= SMALL_NC1 and ratio > 10 and noise_ratio < 2
    return Outcome({"clean_nc1": clean, "pgd/clean": ratio, "noise/clean": noise_ratio}, ok)


def at_collapse_robust(records: RecordSet):
    rs = _one(records, "at")
    if rs is None:
        return None
    clean, pgd, cos = rs.mean("nc/clean/nc1"), rs.mean("nc/pgd/nc1"), rs.mean("nc/pgd/align_cos")
    ok = clean <= SMALL_NC1 and pgd <= SMALL_NC1 and cos >= 0.9
    return Outcome({"clean_nc1": clean, "pgd_nc1": pgd, "align_cos": cos}, ok)


def at_ncc_matches_network(records: RecordSet):
    rs = _one(records, "at")
    if rs is None:
        return None
    ncc, net = rs.mean("nc/test_pgd/ncc_acc"), rs.mean("nc/test_pgd/net_acc")
    return Outcome({"ncc_robust_acc": ncc, "net_robust_acc": net, "gap": abs(ncc - net)}, abs(ncc - net) <= 0.05)


def trades_less_collapsed(records: RecordSet):
    at, tr = _one(records, "at"), _one(records, "trades")
    if at is None or tr is None:
        return None
    a, t = at.mean("nc/clean/nc1"), tr.mean("nc/clean/nc1")
    return Outcome({"trades_nc1": t, "at_nc1": a}, t > a)


def earlier_layers_keep_collapse(records: RecordSet):
    rs = _one(records, "st")
    if rs is None or not rs.has("nc/layer1/pgd/nc1"):
        return None
    first = rs.mean("nc/layer1/pgd/nc1") / rs.mean("nc/layer1/clean/nc1")
    last = rs.mean("nc/pgd/nc1") / rs.mean("nc/clean/nc1")
    return Outcome({"layer1 pgd/clean": first, "last pgd/clean": last}, first < last)


CLAIMS = [
    Claim("(a) ST: collapse on clean features, not on PGD features; noise leaves it",
          "clean NC1 <= 0.5, PGD/clean NC1 > 10, noise/clean < 2", st_collapse_fragile),
    Claim("(b) AT: collapse on clean and PGD features, aligned simplices",
          "clean and PGD NC1 <= 0.5, mean cos(clean, PGD class means) >= 0.9", at_collapse_robust),
    Claim("(c) AT: NCC robust accuracy ~ network robust accuracy", "|NCC - net| <= 0.05 on PGD test inputs",
          at_ncc_matches_network),
    Claim("(d) TRADES: robust but less collapsed than AT", "TRADES clean NC1 > AT clean NC1", trades_less_collapsed, trend=True),
    Claim("(e) ST: earlier layers keep more collapse under attack", "layer-1 PGD/clean NC1 ratio < last-layer ratio",
          earlier_layers_keep_collapse, trend=True),
]
