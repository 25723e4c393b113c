"""Task iteration_heads: recurrences, sequence layout and loss mask, attention metrics, config errors, smoke runs."""

from __future__ import annotations

import math

import pytest
import torch

from bench.harness.errors import BenchError
from bench.models.transformer import Transformer
from bench.tasks.iteration_heads.data import IterationDataModule, draw_inputs, encode, recurrence, resolve_tokens
from bench.tasks.iteration_heads.metrics import IterationHeadStats, SequenceAccuracy, iteration_head_queries, sequence_correct

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
    assert short["x"][0].tolist() == [12, 1, 1, 14, 0, 15, 15] and short["mask"][0].nonzero().flatten().tolist() == [3, 4]


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
            assert recurrence("polynomial", x[1 : L + 1][None], dm.modulus)[0].tolist() == seq[eoi + 1 : eoi + 1 + L].tolist()


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
    assert m["test/acc"] == pytest.approx(sum(m[f"test/acc_L{L}"] for L in range(1, 5)) / 4)
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
