"""Multi-stage protocols on the fixture task: stage-prefixed metrics in the record and the loggers, and cached stages
(``ctx.cached_stage``): reused across runs, missed by every setting that changes their numbers, equal to a fresh run."""

import csv

import pytest

TWO_STAGES = ["task=fixture", "task.protocol._target_=fixture_task.protocol.two_stages"]


def _cache_entries(tmp_path):
    return sorted((tmp_path / "runs" / "cache" / "fixture").glob("first-*"))


def test_two_stage_protocol_prefixes_metrics_in_record_and_loggers(run_bench, tmp_path):
    rec = run_bench(TWO_STAGES + ["logger=csv"])
    m = rec["metrics"]
    assert "first/test/acc" in m and "test/acc" in m and "first/train/loss" in m
    columns = set()
    for f in (tmp_path / "runs" / "fixture" / rec["run_id"] / "csv").rglob("metrics.csv"):
        with open(f) as fh:
            columns |= set(next(csv.reader(fh)))
    assert "first/test/acc" in columns and "test/acc" in columns


def test_cached_stage_is_reused_and_a_hit_equals_a_fresh_run(run_bench, tmp_path):
    first = run_bench(TWO_STAGES + ["seed=0"])
    assert len(_cache_entries(tmp_path)) == 1
    # another run seed, same first stage: reused (not retrained), its metrics replayed into the record
    second = run_bench(TWO_STAGES + ["seed=1"])
    assert len(_cache_entries(tmp_path)) == 1
    assert not (tmp_path / "runs" / "fixture" / second["run_id"] / "stages" / "first").exists()
    assert {k: v for k, v in second["metrics"].items() if k.startswith("first/")} == {
        k: v for k, v in first["metrics"].items() if k.startswith("first/")
    }
    # a run that trains the stage afresh (empty cache) gets exactly the numbers of the run that reused it
    fresh = run_bench(TWO_STAGES + ["seed=1", f"work_dir={tmp_path / 'fresh'}"])
    assert fresh["metrics"] == second["metrics"]


@pytest.mark.parametrize(
    "changed",
    [
        ["num_threads=2"],
        ["trainer.precision=64-true"],
        ["trainer.max_epochs=2"],
        ["data.n_train=200"],
        ["optimizer.lr=0.01"],
        ["fixture.first_seed=1"],
    ],
)
def test_every_setting_that_changes_the_stage_misses_the_cache(run_bench, tmp_path, changed):
    run_bench(TWO_STAGES)
    run_bench(TWO_STAGES + changed)
    assert len(_cache_entries(tmp_path)) == 2, f"{changed} must not reuse the cached stage"


def test_settings_that_do_not_change_numbers_hit_the_cache(run_bench, tmp_path):
    run_bench(TWO_STAGES)
    run_bench(TWO_STAGES + ["fixture.variant=b", f"results_dir={tmp_path / 'elsewhere'}"])
    assert len(_cache_entries(tmp_path)) == 1
