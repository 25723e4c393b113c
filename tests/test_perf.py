"""bench perf's judgement on given numbers, in-memory loaders' device placement, ``bench verify --all`` on the
fixture task. No test here times anything: performance is measured by ``bench perf`` and benchmarks/."""

from __future__ import annotations

import json

import pytest
import torch

from bench.harness.errors import BenchError
from bench.harness.loaders import InMemoryLoader, trainer_device
from bench.perf import TARGETS, Row, Times, format_table, judge, ratio, spread, verdict


# -- perf table ------------------------------------------------------------------------------------------------
def test_verdict_is_pass_at_and_below_the_target_and_miss_above():
    assert verdict(1.10, 1.10) == "PASS" and verdict(1.0, 1.10) == "PASS" and verdict(1.1001, 1.10) == "MISS"
    assert judge({"train_in_epoch": 1.05, "train_fit": 1.30, "robust_eval": 1.05}) == {
        "train_in_epoch": "PASS",
        "train_fit": "MISS",
        "robust_eval": "PASS",
    }
    assert judge({"train_fit": 1.2}) == {"train_fit": "PASS"}  # unmeasured targets are not judged


def test_ratio_is_the_median_of_the_paired_per_repeat_ratios():
    # a slow burst hits both runs of the third pair: its ratio is 1.0 (the ratio of medians would be 1.6)
    med, lo, hi = ratio([1.5, 1.6, 3.0], [1.0, 1.0, 3.0])
    assert med == pytest.approx(1.5) and lo == pytest.approx(1.0) and hi == pytest.approx(1.6)
    med, _, _ = ratio([1.2, 1.0, 3.0, 9.0], [1.0, 1.0, 2.0, 9.0])  # ratios 1.2, 1.0, 1.5, 1.0
    assert med == pytest.approx(1.1)
    with pytest.raises(ValueError):
        ratio([1.0], [1.0, 2.0])  # unpaired repeats are a bug, not a number
    assert spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


def test_table_judges_on_the_chosen_clock():
    # the harness is slower on the wall clock (another process stole the cores) but not in CPU time
    hand = Times(wall=[1.0, 1.0, 1.0], cpu=[1.0, 1.0, 1.0])
    harness = Times(wall=[1.5, 1.6, 1.4], cpu=[1.08, 1.05, 1.09])
    rows = [Row("hand", hand), Row("harness in-epoch", harness, hand, "train_in_epoch")]
    lines, on_cpu = format_table(rows, "cpu")
    assert on_cpu == {"train_in_epoch": "PASS"}
    assert any("<= 1.10 on cpu: PASS" in line for line in lines)
    _, on_wall = format_table(rows, "wall")
    assert on_wall == {"train_in_epoch": "MISS"}
    assert set(TARGETS) == {"train_in_epoch", "train_fit", "robust_eval"}


# -- loaders on the module's device ----------------------------------------------------------------------------
def _tensors(n=37):
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(n, 3, generator=g), "y": torch.randint(0, 4, (n,), generator=g)}


@pytest.mark.parametrize("chunk", [None, 0, 2])
def test_loader_on_a_device_draws_the_same_batches(chunk):
    t = _tensors()
    plain = InMemoryLoader(t, batch_size=8, shuffle=True, seed=3, chunk=chunk)
    placed = InMemoryLoader(t, batch_size=8, shuffle=True, seed=3, chunk=chunk, device="cpu")
    for loader in (plain, placed):
        loader.sampler.set_epoch(2)
    a, b = list(plain), list(placed)
    assert len(a) == len(b) == len(plain)
    flat = lambda batches: [m for x in batches for m in (x if isinstance(x, list) else [x])]  # noqa: E731
    for ba, bb in zip(flat(a), flat(b)):
        assert ba.keys() == bb.keys() == {"x", "y", "index"}
        for k in ba:
            assert torch.equal(ba[k], bb[k])


def test_loader_moves_its_data_once_and_draws_minibatches_there():
    # the meta device stands in for a GPU here: every tensor a batch holds must live there, none on the CPU
    loader = InMemoryLoader(_tensors(), batch_size=8, shuffle=True, seed=1, chunk=0, device="meta")
    assert all(v.device.type == "meta" for v in loader.tensors.values())
    (chunk,) = list(loader)
    assert len(chunk) == 5 and all(v.device.type == "meta" for b in chunk for v in b.values())
    assert [b["x"].shape[0] for b in chunk] == [8, 8, 8, 8, 5]


def test_trainer_device_is_the_strategys_root_device_and_the_module_skips_the_copy():
    import lightning as L

    from bench.harness.module import _on_device

    assert trainer_device(None) is None
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    assert trainer_device(trainer) == torch.device("cpu")
    batch = [{"x": torch.zeros(2, device="meta"), "y": torch.zeros(2, device="meta")}]
    assert _on_device(batch, torch.device("meta"))
    assert not _on_device([{"x": torch.zeros(2)}], torch.device("meta"))


def test_datamodule_loaders_follow_the_trainer_device():
    from bench.data.digits import DigitsDataModule

    dm = DigitsDataModule(batch_size=64)
    dm.setup()

    class FakeTrainer:  # what a fit attaches: a strategy with a root device, a rank layout
        global_rank, world_size = 0, 1

        class strategy:
            root_device = torch.device("meta")

    dm.trainer = FakeTrainer()
    loader = dm.train_dataloader()
    assert loader.device == torch.device("meta") and loader.tensors["x"].device.type == "meta"


# -- verify --all ----------------------------------------------------------------------------------------------
def test_verify_all_runs_each_selected_task_and_prints_one_table(tmp_path, capsys):
    from bench.harness.verify_all import count_claims, run_verify_all, select_tasks

    over = [
        "--tasks",
        "fixture",
        "logger=none",
        f"results_dir={tmp_path / 'r'}",
        f"work_dir={tmp_path / 'w'}",
        "trainer.max_epochs=1",
        "task.verify.seeds=[0]",
    ]
    assert run_verify_all(over) == 0
    out = capsys.readouterr().out
    table = out[out.index("verify --all:") :].splitlines()
    assert table[1].split()[:4] == ["task", "profile", "pass", "fail"]
    row = table[2].split()
    assert row[0] == "fixture" and row[2:6] == ["1", "0", "0", "PASS"]
    assert table[3].split()[0] == "overall" and "PASS" in table[3]
    # the runs' own CPU time, summed from their records, also when a second call reuses them
    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "fixture").glob("*.json")]
    assert len(records) == 2 and all(r["cpu_s"] > 0 for r in records)
    assert float(row[8]) == pytest.approx(sum(r["cpu_s"] for r in records), abs=0.11)
    assert run_verify_all(over) == 0
    again = capsys.readouterr().out
    assert again[again.index("verify --all:") :].splitlines()[2].split()[8] == row[8]
    # a failing gating claim fails the whole table (two one-epoch runs again: the claims are part of the run hash)
    assert run_verify_all(over + ["task.claims=fixture_task.claims:FAILING"]) == 1
    out = capsys.readouterr().out
    assert out[out.index("verify --all:") :].splitlines()[2].split()[2:6] == ["1", "1", "0", "FAIL"]
    assert count_claims({"claims": [{"passed": True}, {"passed": False, "trend": True}]}) == (1, 0, 1)
    with pytest.raises(BenchError, match="unknown task"):
        select_tasks(["fixture"], "fixture,nope")
    with pytest.raises(BenchError, match="--tasks"):
        run_verify_all(["task=fixture"])


def test_module_compile_option_keeps_parameter_names():
    # compiling in place (nn.Module.compile) must not rename weights: checkpoints load either way
    from bench.harness.module import BenchModule
    from bench.models.mlp import MLP

    torch.manual_seed(0)
    plain = BenchModule(MLP([4], 3, hidden=[5]))
    torch.manual_seed(0)
    compiled = BenchModule(MLP([4], 3, hidden=[5]), compile=True)
    assert compiled.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    assert plain.state_dict().keys() == compiled.state_dict().keys()
    compiled.load_state_dict(plain.state_dict())


def test_interleaved_alternates_the_order_of_the_variants():
    from bench.perf import interleaved

    calls = []
    interleaved([lambda r: calls.append(("a", r)), lambda r: calls.append(("b", r))], 3)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
