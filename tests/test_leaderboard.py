"""The leaderboard: golden output from fixture records, byte-identical rebuilds, escaping, W&B source."""

import json
from pathlib import Path

import pytest

from bench.harness.record import FIELDS
from bench.leaderboard.build import build_leaderboard, records_from_wandb

GOLDEN = Path(__file__).parent / "golden" / "leaderboard"


def rec(task, label, seed, acc, robust=None, version="1.0", group="g1", unreliable=False, profile="default"):
    r = {f: None for f in FIELDS}
    metrics = {"test/acc": acc}
    headline = ["test/acc"]
    validity = {}
    if robust is not None:
        metrics["test/robust_acc"] = robust
        headline.append("test/robust_acc")
        validity["test/robust_acc"] = {"reliable": not unreliable}
    r.update(schema_version=1, task=task, task_version=version, run_id=f"{task}-{label}-{seed}-{version}-{group}-{profile}", label=label,
             profile=profile, seed=seed, config={"seed": seed}, config_hash=f"h{seed}{label}", group_hash=group,
             headline_metrics=headline, metrics=metrics, validity=validity, claims=[], artifacts={},
             package_versions={}, created_at="2026-01-01T00:00:00+00:00", duration_s=1.0)
    return r


def fixture_records():
    return [
        rec("alpha", "st", 0, 0.90, 0.10), rec("alpha", "st", 1, 0.92, 0.12), rec("alpha", "st", 2, 0.94, 0.08),
        rec("alpha", "at", 0, 0.80, 0.60), rec("alpha", "at", 1, 0.82, 0.58, unreliable=True),
        rec("alpha", "st", 0, 0.10, 0.0, version="0.9"),                    # older version: not shown
        rec("alpha", "st", 0, 0.99, 0.99, profile="smoke"),                 # smoke runs: not shown
        rec("beta", "<script>alert(1)</script>", 0, 0.5),                   # must be escaped in HTML
        rec("beta", "erm", 0, 0.7, group="gA"), rec("beta", "erm", 0, 0.6, group="gB"),  # same label, two configs
    ]


def test_golden_output(tmp_path):
    build_leaderboard(fixture_records(), tmp_path)
    for name in ("index.md", "alpha.md", "alpha.csv", "beta.md", "beta.csv", "index.html"):
        assert (tmp_path / name).read_text() == (GOLDEN / name).read_text(), name


def test_mean_std_and_validity_flags(tmp_path):
    build_leaderboard(fixture_records(), tmp_path)
    md = (tmp_path / "alpha.md").read_text()
    assert "| st | 3 | 0.9200 ± 0.0200 | 0.1000 ± 0.0200 |" in md  # std with ddof = 1
    assert "0.5900 ± 0.0141 (unreliable)" in md
    assert "0.1000 |" not in md.split("| st |")[0]
    html = (tmp_path / "index.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    beta = (tmp_path / "beta.md").read_text()
    assert "erm [gA]" in beta and "erm [gB]" in beta


def test_rebuild_is_byte_identical_including_plots(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_leaderboard(fixture_records(), a)
    build_leaderboard(list(reversed(fixture_records())), b)
    files = sorted(p.name for p in a.iterdir())
    assert "alpha.png" in files and files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_records_from_a_wandb_project(monkeypatch):
    import wandb

    class Run:
        def __init__(self, summary):
            self.summary = summary

    good = fixture_records()[0]
    runs = [Run({"bench_record": json.dumps(good)}), Run({}), Run({"bench_record": json.dumps({"task": "broken"})})]

    class Api:
        def runs(self, path):
            assert path == "me/bench"
            return runs

    monkeypatch.setattr(wandb, "Api", Api)
    assert records_from_wandb("me/bench") == [good]


def test_cli_writes_the_tables(tmp_path):
    import subprocess
    import sys

    from bench.harness.record import write_record

    for r in fixture_records():
        write_record(r, tmp_path / "results" / r["task"] / f"{r['run_id']}.json")
    out = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--results", str(tmp_path / "results"),
                          "--out", str(tmp_path / "lb")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "lb" / "alpha.md").read_text() == (GOLDEN / "alpha.md").read_text()


def test_committed_leaderboard_matches_its_records(tmp_path):
    """leaderboard/ is generated from leaderboard/records by `bench leaderboard --results leaderboard/records`."""
    from bench.harness.record import load_records

    root = Path(__file__).parents[1] / "leaderboard"
    records = load_records(root / "records")
    assert records
    build_leaderboard(records, tmp_path)
    for f in sorted(root.glob("*.md")) + sorted(root.glob("*.csv")) + [root / "index.html"]:
        assert (tmp_path / f.name).read_text() == f.read_text(), f.name
