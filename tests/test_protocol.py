"""Multi-stage protocols: stage-prefixed metrics in the record and the loggers, cached stages reused across runs."""

import csv


def test_two_stage_protocol_prefixes_and_caches(run_bench, tmp_path):
    args = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null", "logger=csv",
            "task.protocol._target_=stage_helper.two_stages"]
    rec = run_bench(args + ["seed=0"])
    m = rec["metrics"]
    assert m["first_from_cache"] == 0
    assert "first/test/acc" in m and "test/acc" in m and "first/train/loss" in m
    run_dir = tmp_path / "runs" / "neural_collapse" / rec["run_id"]
    columns = set()
    for f in (run_dir / "csv").rglob("metrics.csv"):
        with open(f) as fh:
            columns |= set(next(csv.reader(fh)))
    assert "first/test/acc" in columns and "test/acc" in columns
    # another seed of the same first stage reuses it from the cache
    again = run_bench(args + ["seed=1"])
    assert again["metrics"]["first_from_cache"] == 1 and "first/test/acc" not in again["metrics"]
