"""Result records: schema, atomic write, config hash."""

import json

import pytest

from bench.harness.record import FIELDS, config_hash, load_records, validate, write_record


def make(**kw):
    rec = {f: None for f in FIELDS}
    rec.update(
        schema_version=1,
        task="t",
        task_version="1",
        run_id="r",
        label="m",
        profile="default",
        seed=0,
        config={},
        config_hash="h",
        group_hash="g",
        headline_metrics=["test/acc"],
        metrics={"test/acc": 0.5},
        validity={},
        claims=[],
        artifacts={},
        package_versions={},
        created_at="now",
        duration_s=1.0,
    )
    rec.update(kw)
    return rec


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    p = write_record(make(), tmp_path / "t" / "r.json")
    assert json.loads(p.read_text())["metrics"]["test/acc"] == 0.5
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]


def test_invalid_record_is_not_written_and_old_file_survives(tmp_path):
    p = write_record(make(), tmp_path / "t" / "r.json")
    bad = make(metrics={"test/acc": "high"})
    with pytest.raises(ValueError, match="numbers"):
        write_record(bad, p)
    assert json.loads(p.read_text())["metrics"]["test/acc"] == 0.5
    bad = make()
    del bad["claims"]
    with pytest.raises(ValueError, match="missing"):
        validate(bad)


def test_load_records_skips_broken_files(tmp_path):
    write_record(make(run_id="a"), tmp_path / "t" / "a.json")
    (tmp_path / "t" / "b.json").write_text("{ half a record")
    assert [r["run_id"] for r in load_records(tmp_path)] == ["a"]


def test_config_hash_ignores_output_locations_but_not_hyperparameters():
    a = {
        "seed": 0,
        "results_dir": "x",
        "work_dir": "y",
        "optimizer": {"lr": 0.1},
        "trainer": {"enable_progress_bar": True},
    }
    b = {
        "seed": 0,
        "results_dir": "z",
        "work_dir": "w",
        "optimizer": {"lr": 0.1},
        "trainer": {"enable_progress_bar": False},
    }
    c = {
        "seed": 0,
        "results_dir": "x",
        "work_dir": "y",
        "optimizer": {"lr": 0.2},
        "trainer": {"enable_progress_bar": True},
    }
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_the_record_keeps_the_input_statistics_the_run_used_where_its_config_said_null(run_bench):
    """neural_collapse standardises with the training split's statistics when model.mean / model.std are null: the
    record's config keeps the null (the run hash), ``filled_config`` the values the net was built with."""
    import torch
    from hydra.utils import instantiate

    from bench.data.statistics import input_statistics
    from bench.harness.config import compose

    overrides = ["task=neural_collapse", "profile=smoke", "attack=none", "trainer.max_epochs=1"]
    rec = run_bench(overrides)
    assert rec["config"]["model"]["mean"] is None and rec["config"]["model"]["std"] is None
    dm = instantiate(compose(overrides).data)
    dm.setup("fit")
    mean, std = input_statistics(dm)
    filled = rec["filled_config"]
    assert torch.allclose(torch.as_tensor(filled["model.mean"]), torch.as_tensor(mean).float())
    assert torch.allclose(torch.as_tensor(filled["model.std"]), torch.as_tensor(std).float())
    assert filled["model.num_classes"] == 10 and filled["model.input_shape"] == list(dm.input_shape)
    validate(rec)
