"""Task iteration_heads: recurrences, sequence layout and loss mask, attention metrics, config errors, smoke runs."""

from __future__ import annotations

import math

import pytest
import torch

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.harness.naming import points
from bench.models.transformer import Transformer
from bench.tasks.iteration_heads import claims as C
from bench.tasks.iteration_heads.data import (
    IterationDataModule,
    balanced_rows,
    draw_inputs,
    encode,
    recurrence,
    resolve_tokens,
)
from bench.tasks.iteration_heads.metrics import (
    IterationHeadStats,
    SequenceAccuracy,
    grouped_masked_cross_entropy,
    iteration_head_queries,
    length_groups,
    masked_cross_entropy,
    sequence_correct,
)

TOKENS = resolve_tokens(11, None)  # bos_copy 11, bos_parity 12, bos_polynomial 13, eoi 14, eos 15


# -- recurrences on hand-written cases ---------------------------------------------------------------------
def test_copy_recurrence():
    x = torch.tensor([[3, 0, 7, 7]])
    assert recurrence("copy", x).tolist() == [[3, 0, 7, 7]]


def test_parity_recurrence():
    x = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 1, 1]])
    # running xor: 1, 1^0=1, 1^1=0, 0^1=1, 1^0=1 ; 0, 0, 0, 1, 0
    assert recurrence("parity", x).tolist() == [[1, 1, 0, 1, 1], [0, 0, 0, 1, 0]]


def test_polynomial_recurrence():
    # p = 5: s1 = 2, s2 = 2*3+1 = 7 = 2, s3 = 2*4+1 = 9 = 4, s4 = 4*0+1 = 1
    assert recurrence("polynomial", torch.tensor([[2, 3, 4, 0]]), modulus=5).tolist() == [[2, 2, 4, 1]]
    # p = 11: s1 = 10, s2 = 10*10+1 = 101 = 2, s3 = 2*5+1 = 11 = 0
    assert recurrence("polynomial", torch.tensor([[10, 10, 5]]), modulus=11).tolist() == [[10, 2, 0]]


# -- sequence layout and the loss mask ---------------------------------------------------------------------
def test_cot_layout_and_mask_cover_exactly_post_eoi_targets():
    x = torch.tensor([[1, 0, 1]])
    enc = encode("parity", x, recurrence("parity", x), cot=True, n_len=5, tokens=TOKENS)
    # seq = BoS 1 0 1 EoI 1 1 0 EoS EoS EoS EoS (2*5+3 = 13 positions); x = seq[:-1], y = seq[1:]
    seq = [12, 1, 0, 1, 14, 1, 1, 0, 15, 15, 15, 15, 15]
    assert enc["x"][0].tolist() == seq[:-1]
    assert enc["y"][0].tolist() == seq[1:]
    eoi = seq.index(14)
    want = [eoi < j + 1 <= eoi + 3 + 1 for j in range(12)]  # targets s_1..s_3 and the closing EoS
    assert enc["mask"][0].tolist() == want
    assert [enc["y"][0, j].item() for j in range(12) if want[j]] == [1, 1, 0, 15]
    assert enc["length"].tolist() == [3]


def test_no_cot_layout_and_mask():
    x = torch.tensor([[1, 1, 0, 1]])
    enc = encode("parity", x, recurrence("parity", x), cot=False, n_len=4, tokens=TOKENS)
    assert enc["x"][0].tolist() == [12, 1, 1, 0, 1, 14, 1]  # n_len + 3 inputs: no room kept for a chain
    masked = enc["y"][0][enc["mask"][0]].tolist()
    assert masked == [1, 15]  # the answer s_L = 1 and the closing EoS, nothing else
    assert enc["mask"][0].nonzero().flatten().tolist() == [5, 6]
    short = encode("parity", x[:, :2], recurrence("parity", x[:, :2]), cot=False, n_len=4, tokens=TOKENS)
    assert short["x"][0].tolist() == [12, 1, 1, 14, 0, 15, 15] and short["mask"][0].nonzero().flatten().tolist() == [
        3,
        4,
    ]


def test_datamodule_mask_matches_eoi_positions_for_every_sequence():
    dm = IterationDataModule(problem="polynomial", cot=True, n_len=5, n_per_length=40, seed=3)
    dm.setup()
    for split in ("train", "test"):
        s = dm.split(split)
        for x, y, m, L in zip(s["x"], s["y"], s["mask"], s["length"]):
            seq = torch.cat([x, y[-1:]])
            eoi = int((seq == dm.eoi_token).nonzero())
            assert eoi == L + 1
            positions = (m.nonzero().flatten() + 1).tolist()  # seq positions of the masked targets
            assert positions == list(range(eoi + 1, eoi + L + 2))
            assert seq[positions[-1]] == dm.tokens["eos"]
            assert (
                recurrence("polynomial", x[1 : L + 1][None], dm.modulus)[0].tolist()
                == seq[eoi + 1 : eoi + 1 + L].tolist()
            )


def test_train_and_test_share_no_sequence():
    dm = IterationDataModule(problem="parity", n_len=6, n_per_length=1024, seed=0)
    dm.setup()
    train = {tuple(r.tolist()) for r in dm.split("train")["x"]}
    test = {tuple(r.tolist()) for r in dm.split("test")["x"]}
    assert not train & test
    assert len(train) + len(test) == sum(2**L for L in range(1, 7))  # every binary sequence, once


def test_draw_inputs_distinct_when_sampling():
    x = draw_inputs(11, 6, 300, torch.Generator().manual_seed(0))
    assert x.shape == (300, 6) and len(torch.unique(x, dim=0)) == 300 and x.max() < 11


# -- metrics -------------------------------------------------------------------------------------------------
def test_sequence_accuracy_counts_only_fully_correct_sequences():
    y = torch.tensor([[1, 2, 3], [1, 2, 3]])
    mask = torch.tensor([[False, True, True], [False, True, True]])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 2, 3], [1, 2, 0]]), 4).float()
    assert sequence_correct(logits, y, mask).tolist() == [True, False]  # a wrong unmasked token does not count
    acc = SequenceAccuracy(n_len=3)
    acc.update(logits, y, mask, torch.tensor([1, 3]))
    r = acc.compute()
    assert r["per_length"] == {1: 1.0, 3: 0.0} and float(r["acc"]) == 0.5 and float(r["token_acc"]) == 0.75


def perfect_iteration_head(lengths: list[int], T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention maps (B, 1, T, T) of an ideal iteration head: at q_t = L + t, layer 1 -> EoI, layer 2 -> x_t;
    every other query attends uniformly (causally)."""
    B = len(lengths)
    uniform = torch.tril(torch.ones(T, T))
    uniform = (uniform / uniform.sum(1, keepdim=True)).expand(B, 1, T, T).clone()
    l1, l2 = uniform.clone(), uniform.clone()
    for b, L in enumerate(lengths):
        for t in range(1, L + 1):
            q = L + t
            l1[b, 0, q] = 0
            l1[b, 0, q, L + 1] = 1
            l2[b, 0, q] = 0
            l2[b, 0, q, t] = 1
    return l1, l2


def test_perfect_iteration_head_gives_mass_one():
    lengths = [1, 3, 5]
    l1, l2 = perfect_iteration_head(lengths, T=12)
    stats = IterationHeadStats(n_len=5)
    stats.update(l1, l2, torch.tensor(lengths))
    r = stats.compute()
    for k in ("l2_mass_xt", "l1_mass_eoi", "l2_peak_xt", "l1_peak_eoi"):
        assert float(r[k]) == pytest.approx(1.0)
    # uniform baseline: mean of 1/(q_t + 1) over the 9 queries
    qs = [L + t for L in lengths for t in range(1, L + 1)]
    assert float(r["uniform_mass"]) == pytest.approx(sum(1 / (q + 1) for q in qs) / len(qs))
    assert torch.allclose(r["per_step/l2_mass_xt"], torch.ones(5, dtype=torch.float64))


def test_uniform_attention_gives_uniform_mass_and_no_peaks():
    T, lengths = 12, torch.tensor([4, 5])
    uniform = torch.tril(torch.ones(T, T))
    uniform = (uniform / uniform.sum(1, keepdim=True)).expand(2, 1, T, T)
    stats = IterationHeadStats(n_len=5)
    stats.update(uniform, uniform, lengths)
    r = stats.compute()
    assert float(r["l2_mass_ratio"]) == pytest.approx(1.0)
    assert float(r["l2_peak_xt"]) == 0.0 and float(r["l1_peak_eoi"]) == 0.0


def test_iteration_head_metric_reads_the_right_cells():
    # one sequence of length 2: queries q = 3 (predicts s_1) and 4 (s_2); x_1 at 1, x_2 at 2, EoI at 3
    q = iteration_head_queries(torch.tensor([2]))
    assert q["query"].tolist() == [3, 4] and q["x_key"].tolist() == [1, 2] and q["eoi_key"].tolist() == [3, 3]
    l2 = torch.zeros(1, 1, 6, 6)
    l2[0, 0, 3, 1], l2[0, 0, 3, 0] = 0.6, 0.4  # t = 1: 0.6 on x_1
    l2[0, 0, 4, 2], l2[0, 0, 4, 1] = 0.3, 0.7  # t = 2: only 0.3 on x_2
    stats = IterationHeadStats(n_len=2)
    stats.update(l2, l2, torch.tensor([2]))
    r = stats.compute()
    assert float(r["l2_mass_xt"]) == pytest.approx(0.45) and float(r["l2_peak_xt"]) == pytest.approx(0.5)


def test_transformer_exposes_causal_attention_maps():
    net = Transformer([10], num_classes=7, width=16, context=12)
    logits, maps = net.forward_with_attention(torch.randint(0, 7, (3, 10)))
    assert logits.shape == (3, 10, 7) and len(maps) == 2 and maps[0].shape == (3, 1, 10, 10)
    assert torch.allclose(maps[1].sum(-1), torch.ones(3, 1, 10))
    assert float(maps[0].triu(1).abs().max()) == 0.0  # no attention to the future


# -- bad input at config time --------------------------------------------------------------------------------
def test_non_prime_modulus_is_rejected():
    with pytest.raises(BenchError, match="not prime"):
        IterationDataModule(problem="polynomial", modulus=12)


def test_token_collisions_are_rejected():
    with pytest.raises(BenchError, match="collision"):
        IterationDataModule(special_tokens={"eoi": 20, "eos": 20})
    with pytest.raises(BenchError, match="collides with the data symbols"):
        IterationDataModule(special_tokens={"eoi": 3})


def test_n_len_beyond_context_is_rejected(run_bench):
    with pytest.raises(BenchError, match="model.context"):
        run_bench(["task=iteration_heads", "profile=smoke", "data.n_len=8", "model.context=16"])


# -- smoke runs ------------------------------------------------------------------------------------------------
def test_smoke_single(run_bench):
    rec = run_bench(["task=iteration_heads", "profile=smoke"])
    m = rec["metrics"]
    assert 0.0 <= m["test/acc"] <= 1.0
    per_length = {int(axes["length"]): v for axes, v in points(m, "test/acc")}
    assert sorted(per_length) == [1, 2, 3, 4]
    # smoke: min_test_sequences=2 -> lengths 2..4 (parity L=1 has one test sequence) enter the mean
    assert m["test/acc"] == pytest.approx(sum(per_length[L] for L in (2, 3, 4)) / 3)
    for k in ("l2_mass_xt", "l1_mass_eoi", "l2_peak_xt", "uniform_mass"):
        assert 0.0 <= m[f"test/attn/{k}"] <= 1.0
    assert math.isfinite(m["test/loss"]) and m["reached_95"] in (0, 1)
    assert rec["artifacts"]["attention_maps"].endswith(".png")
    assert {c["name"][:3] for c in rec["claims"]} == {"(b)"}  # checkable from a CoT run alone


def test_smoke_transfer(run_bench):
    rec = run_bench(["task=iteration_heads", "profile=smoke", "pipeline=transfer"])
    m = rec["metrics"]
    for stage in ("pretrain", "full", "layer2_mlp", "scratch"):
        assert 0.0 <= m[f"{stage}/test/acc"] <= 1.0
    assert rec["config"]["transfer"]["finetune_epochs"] == 2
    assert [c["name"][:3] for c in rec["claims"]] == ["(c)"]


def test_smoke_no_cot(run_bench):
    rec = run_bench(["task=iteration_heads", "profile=smoke", "data.cot=false", "data.problem=copy"])
    m = rec["metrics"]
    assert 0.0 <= m["test/acc"] <= 1.0 and math.isfinite(m["test/loss"])
    assert not any(k.startswith("test/attn/") for k in m)  # the iteration-head metrics need a chain
    assert rec["claims"] == []  # (a) needs the CoT run as well


# -- the length-balanced training mix and the evaluated lengths --------------------------------------------------
def test_balanced_mix_gives_every_length_the_same_rows_from_its_own_pool_only():
    plain = IterationDataModule(problem="parity", n_len=8, n_per_length=64, seed=1)
    mixed = IterationDataModule(problem="parity", n_len=8, n_per_length=64, seed=1, train_rows_per_length=40)
    plain.setup()
    mixed.setup()
    pool, rows = plain.split("train"), mixed.split("train")
    assert torch.equal(plain.split("test")["x"], mixed.split("test")["x"])  # the test split does not move
    test = {tuple(r.tolist()) for r in mixed.split("test")["x"]}
    for L in range(1, 9):
        own = {tuple(r.tolist()) for r in pool["x"][pool["length"] == L]}
        got = [tuple(r.tolist()) for r in rows["x"][rows["length"] == L]]
        assert len(got) == 40 and set(got) <= own and not set(got) & test
        assert set(got) == own  # every sequence of a pool of <= 40 is in the mix (40 // pool copies or more)
    counts = torch.bincount(balanced_rows(7, 40, torch.Generator().manual_seed(0)), minlength=7)
    assert counts.sum() == 40 and counts.min() >= 5 and counts.max() <= 6


@pytest.mark.parametrize("cot", [True, False])
def test_length_grouped_loss_equals_the_padded_batch_in_value_and_gradient(cot):
    dm = IterationDataModule(problem="parity", cot=cot, n_len=9, n_per_length=64, train_rows_per_length=16, seed=0)
    dm.setup()
    batch = dm.split("train")
    torch.manual_seed(0)
    net = Transformer((dm.seq_len,), dm.num_classes, context=24, width=16)
    padded = masked_cross_entropy(net(batch["x"]), batch["y"], batch["mask"])
    reference = torch.autograd.grad(padded, list(net.parameters()))
    for groups in (1, 2, 6, 20):
        parts = length_groups(batch["mask"], groups)
        assert 1 <= len(parts) <= groups and sum(len(r) for r, _ in parts) == len(batch["x"])
        assert sorted(torch.cat([r for r, _ in parts]).tolist()) == list(range(len(batch["x"])))
        assert max(p for _, p in parts) == batch["mask"].shape[1]  # the longest row keeps every position
        loss = grouped_masked_cross_entropy(net, batch, groups)
        grads = torch.autograd.grad(loss, list(net.parameters()))
        assert torch.allclose(loss, padded, atol=1e-6)
        for a, b in zip(grads, reference):
            assert torch.allclose(a, b, atol=1e-6)
    # cut one position short of what the longest rows need: the loss changes, so the check above can fail
    short = {k: v[:, :-1] if v.dim() > 1 else v for k, v in batch.items()}
    cut = masked_cross_entropy(net(short["x"]), short["y"], short["mask"])
    assert not torch.allclose(cut, padded, atol=1e-6)


def test_length_groups_cut_rows_to_their_last_target():
    mask = torch.zeros(5, 10, dtype=torch.bool)
    for row, last in enumerate([2, 2, 5, 9, 6]):
        mask[row, last] = True
    assert [(r.tolist(), p) for r, p in length_groups(mask, 1)] == [([0, 1, 2, 3, 4], 10)]
    assert [(r.tolist(), p) for r, p in length_groups(mask, 10)] == [([0, 1], 3), ([2], 6), ([4], 7), ([3], 10)]
    # two groups: the split that removes the most padding (rows needing 3 alone saves 2 * 7 positions)
    assert [(r.tolist(), p) for r, p in length_groups(mask, 2)] == [([0, 1], 3), ([2, 3, 4], 10)]


def test_grouped_evaluation_equals_the_padded_batch():
    from bench.tasks.iteration_heads.callbacks import evaluate_split

    dm = IterationDataModule(problem="parity", n_len=9, n_per_length=64, seed=0, eval_batch_size=1000)
    dm.setup()
    torch.manual_seed(1)
    net = Transformer((dm.seq_len,), dm.num_classes, context=24, width=16)
    got = evaluate_split(net, dm.test_dataloader(), dm.n_len, torch.device("cpu"), attention=True)
    acc, stats = SequenceAccuracy(dm.n_len), IterationHeadStats(dm.n_len)
    batch = dm.split("test")
    logits, maps = net.forward_with_attention(batch["x"])
    acc.update(logits, batch["y"], batch["mask"], batch["length"])
    stats.update(maps[0], maps[1], batch["length"])
    want_acc, want_attn = acc.compute(), stats.compute()
    assert got["acc"]["per_length"] == want_acc["per_length"]
    assert torch.allclose(got["acc"]["loss"], want_acc["loss"], atol=1e-6)
    for key in ("l2_mass_xt", "l1_mass_eoi", "uniform_mass"):
        assert torch.allclose(got["attention"][key], want_attn[key], atol=1e-6)


def test_eval_lengths_need_enough_distinct_test_sequences():
    dm = IterationDataModule(problem="parity", n_len=12, n_per_length=1024, seed=0)
    dm.setup()
    assert dm.eval_lengths == list(range(4, 13))  # parity L = 4 has 2^4 / 2 = 8 test sequences
    acc = SequenceAccuracy(n_len=3, averaged=[2, 3])
    y = torch.tensor([[1], [1], [1]])
    mask = torch.ones(3, 1, dtype=torch.bool)
    acc.update(torch.nn.functional.one_hot(torch.tensor([[1], [0], [1]]), 2).float(), y, mask, torch.tensor([1, 2, 3]))
    r = acc.compute()
    assert r["per_length"] == {1: 1.0, 2: 0.0, 3: 1.0} and float(r["acc"]) == 0.5  # L = 1 is left out of the mean
    with pytest.raises(BenchError, match="train_rows_per_length"):
        IterationDataModule(train_rows_per_length=0)


# -- claims on synthetic records ------------------------------------------------------------------------------
def _single(
    cot: bool, seed: int, acc: float, ratio: float = 3.0, epochs_to_95: float | None = 30.0, every: int = 1
) -> dict:
    cfg = {
        "pipeline": "single",
        "data": {"problem": "parity", "cot": cot, "n_len": 12, "seed": seed},
        "trainer": {"max_epochs": 100},
        "model": {"width": 64},
        "callbacks": {"iteration_head": {"every_n_epochs": every}},
    }
    m = {"test/acc": acc}
    if cot:
        m.update(
            {
                "test/attn/l2_mass_ratio": ratio,
                "test/attn/l2_mass_xt": 0.3,
                "test/attn/l2_peak_xt": 0.1,
                "test/attn/l1_mass_eoi": 0.5,
                "epochs_to_95": epochs_to_95,
            }
        )
    return {"config": cfg, "seed": seed, "metrics": m}


def _transfer(seed: int, full: float | None, every: int = 1) -> dict:
    cfg = {
        "pipeline": "transfer",
        "data": {"problem": "parity", "cot": True, "n_len": 12, "seed": seed},
        "trainer": {"max_epochs": 100},
        "model": {"width": 64},
        "transfer": {"source": "polynomial", "target": "parity", "finetune_epochs": 40, "eval_every_n_epochs": every},
    }
    metrics = {"full/reached_95": float(full is not None), "full/epochs_to_95": full}
    return {"config": cfg, "seed": seed, "metrics": metrics}


def _plan(
    cot=(0.97, 0.98, 0.99),
    plain=(0.45, 0.5, 0.55),
    ratio=(3.0, 3.0, 3.0),
    scratch=(30.0, 35.0, None),
    full=(5.0, 8.0, 12.0),
    every_single=1,
) -> RecordSet:
    recs = [_single(True, s, cot[s], ratio[s], scratch[s], every_single) for s in range(3)]
    recs += [_single(False, s, plain[s]) for s in range(3)]
    recs += [_transfer(s, full[s]) for s in range(3)]
    return RecordSet(recs)


def test_iteration_heads_claims_pass_on_the_papers_findings():
    for claim in C.CLAIMS:
        out = claim.check(_plan())
        assert out is not None and out.passed, (claim.name, out)
    out = C.pretraining_speeds_up_parity(_plan())
    assert out.measured["n"] == 3 and out.measured["speedup"] == pytest.approx((25 + 27 + 29) / 3)  # 41 - 12 = 29


@pytest.mark.parametrize(
    "check, plan",
    [
        (C.cot_beats_no_cot, dict(cot=(0.99, 0.99, 0.90))),  # one CoT seed below 0.95
        (C.cot_beats_no_cot, dict(plain=(0.45, 0.5, 0.70))),  # one no-CoT seed above 0.65
        (C.layer2_attends_to_xt, dict(ratio=(3.0, 1.5, 3.0))),  # one seed below 2x uniform
        (C.pretraining_speeds_up_parity, dict(full=(5.0, 40.0, 12.0))),  # one seed slower than scratch (35)
        (C.pretraining_speeds_up_parity, dict(full=(5.0, 8.0, None))),  # censored both: no speed-up on seed 2
        (C.pretraining_speeds_up_parity, dict(every_single=5)),  # scratch curve sampled every 5 epochs
    ],
)
def test_iteration_heads_claims_fail_when_the_finding_is_absent(check, plan):
    out = check(_plan(**plan))
    assert out is not None and not out.passed, out
