"""DDP: two CPU processes give the same test metrics as one process on the same checkpoint, with no
duplicated padding samples (the digits test split has an odd size)."""

import json

import pytest
from conftest import fit_in_subprocess


def fit(tmp_path, *overrides):
    nc = ["task=neural_collapse", "profile=smoke", "attack=none", "data.eval_batch_size=50"]
    fit_in_subprocess(tmp_path, *nc, "callbacks.neural_collapse.max_train_samples=null", *overrides)


def test_ddp_cpu_matches_single_process_on_the_same_checkpoint(tmp_path):
    fit(tmp_path, "trainer.max_epochs=1")
    (single,) = [json.loads(p.read_text()) for p in (tmp_path / "results" / "neural_collapse").glob("*.json")]
    weights = tmp_path / "runs" / "neural_collapse" / single["run_id"] / "stages" / "main" / "final.pt"
    fit(tmp_path, "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=0", f"init_weights={weights}")
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "neural_collapse").glob("*.json")]
    (ddp,) = [r for r in records if r["config"]["trainer"]["devices"] == 2]
    assert ddp["config"]["trainer"]["strategy"] == "ddp"
    a, b = single["metrics"], ddp["metrics"]
    counts = [v for k, v in b.items() if k.startswith("test/class_count/")]
    assert sum(counts) == 359  # every test example once: no DistributedSampler padding
    keys = [k for k in a if k.startswith("test/") or k.startswith("nc/clean/") or k.startswith("nc/layer1/clean/")]
    assert len(keys) > 20
    for k in keys:
        assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k
