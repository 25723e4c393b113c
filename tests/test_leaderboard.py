"""The leaderboard: golden output, ranking in each metric's direction, claim status, byte-identical rebuilds, hostile
records and folders, stale files, and W&B (reading records back, publishing tables offline)."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness.errors import BenchError
from bench.harness.record import FIELDS, load_records
from bench.leaderboard.build import MANIFEST, build_leaderboard, fmt_result

GOLDEN = Path(__file__).parent / "golden" / "leaderboard"
ROOT = Path(__file__).parents[1]
ACC = {"name": "test/acc", "display": "accuracy", "higher_is_better": True}
ROBUST = {"name": "test/robust_acc", "display": "robust accuracy", "higher_is_better": True}
LOSS = {"name": "test/loss", "display": "test loss", "higher_is_better": False}


def rec(
    task,
    label,
    seed,
    acc,
    robust=None,
    version="1.0",
    group="g1",
    unreliable=False,
    profile="default",
    headline=None,
    extra=None,
):
    r = {f: None for f in FIELDS}
    metrics = {"test/acc": acc}
    validity = {}
    if robust is not None:
        metrics["test/robust_acc"] = robust
        validity["test/robust_acc"] = {"reliable": not unreliable}
    metrics.update(extra or {})
    if headline is None:
        headline = [ROBUST, ACC] if robust is not None else [ACC]
    run_id = "".join(c if c.isalnum() else "_" for c in f"{task}-{label}-{seed}-{version}-{group}-{profile}")
    r.update(
        schema_version=2,
        task=task,
        task_version=version,
        run_id=run_id,
        label=label,
        profile=profile,
        seed=seed,
        config_hash=f"h{seed}{label}",
        group_hash=group,
        config={"seed": seed, "task": {"name": task, "arxiv": "2406.04981", "description": f"The {task} task"}},
        headline_metrics=headline,
        metrics=metrics,
        validity=validity,
        claims=[],
        artifacts={},
        package_versions={},
        created_at="2026-01-01T00:00:00+00:00",
        duration_s=1.0,
    )
    return r


def fixture_records():
    return [
        rec("alpha", "st", 0, 0.90, 0.10),
        rec("alpha", "st", 1, 0.92, 0.12),
        rec("alpha", "st", 2, 0.94, 0.08),
        rec("alpha", "at", 0, 0.80, 0.60),
        rec("alpha", "at", 1, 0.82, 0.58, unreliable=True),
        rec("alpha", "trades", 0, 0.85, 0.60),
        rec("alpha", "trades", 1, 0.86, None, headline=[ROBUST, ACC]),
        rec("alpha", "st", 0, 0.10, 0.0, version="0.9"),  # older version: not shown
        rec("alpha", "st", 0, 0.99, 0.99, profile="smoke"),  # smoke runs: not shown
        rec("beta", "<script>alert(1)</script>", 0, 0.5),  # must be escaped in HTML
        rec("beta", "erm", 0, 0.7, group="gA"),
        rec("beta", "erm", 0, 0.6, group="gB"),  # same label, two configs
    ]


VERIFY_ALPHA = {
    "task": "alpha",
    "task_version": "1.0",
    "profile": "default",
    "passed": False,
    "runs": [],
    "duration_s": 1.0,
    "claims": [
        {
            "name": "AT beats ST in robust accuracy",
            "passed": True,
            "trend": False,
            "expected": "> 0.3",
            "measured": {"gap": 0.49},
            "detail": "",
        },
        {"name": "TRADES | AT", "passed": False, "trend": False, "expected": "<= 0.01", "measured": 0.02, "detail": ""},
        {"name": "a trend", "passed": False, "trend": True, "expected": "up", "measured": None, "detail": ""},
    ],
}


def results_folder(base: Path, records=None) -> Path:
    from bench.harness.record import write_record

    for r in records if records is not None else fixture_records():
        write_record(r, base / r["task"] / f"{r['run_id']}.json")
    (base / "alpha" / "verify").mkdir(parents=True, exist_ok=True)
    (base / "alpha" / "verify" / "latest.json").write_text(json.dumps(VERIFY_ALPHA))
    return base


def build_fixture(out: Path, records=None) -> Path:
    results = results_folder(out.parent / f"{out.name}_results", records)
    build_leaderboard(records if records is not None else fixture_records(), out, results_dir=results)
    return out


GOLDEN_FILES = ("index.md", "alpha.md", "alpha.csv", "beta.md", "beta.csv", "index.html", MANIFEST)


def test_golden_output(tmp_path):
    """Regenerate with `python tests/test_leaderboard.py` after an intended format change, and read the diff."""
    build_fixture(tmp_path / "lb")
    for name in GOLDEN_FILES:
        assert (tmp_path / "lb" / name).read_text() == (GOLDEN / name).read_text(), name


def test_rows_ranked_in_the_first_metrics_direction_with_ties_and_best_marked(tmp_path):
    md = (build_fixture(tmp_path / "lb") / "alpha.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    # ranked by robust accuracy: trades 0.60 (one seed has it), at mean(0.60, 0.58) = 0.59, st 0.10
    assert [r.split(" | ")[1] for r in rows] == ["trades", "at", "st"]
    assert rows[0].startswith("| 1 | trades | 2 | **0.6000 (n=1)** |")  # one of two seeds has the metric
    assert "0.5900 ± 0.0141 (unreliable)" in rows[1] and rows[1].startswith("| 2 | at |")
    assert rows[2].startswith("| 3 | st | 3 | 0.1000 ± 0.0200 | **0.9200 ± 0.0200** |")  # std with ddof = 1
    # lower is better: the smallest loss ranks first and is the one in bold
    recs = [
        rec("gamma", "a", 0, 0.9, headline=[LOSS, ACC], extra={"test/loss": 0.5}),
        rec("gamma", "b", 0, 0.8, headline=[LOSS, ACC], extra={"test/loss": 0.2}),
        rec("gamma", "c", 0, 0.7, headline=[LOSS, ACC], extra={"test/loss": 0.2}),
        rec("gamma", "d", 0, 0.6, headline=[LOSS, ACC]),
    ]
    build_leaderboard(recs, tmp_path / "g")
    g = [ln for ln in (tmp_path / "g" / "gamma.md").read_text().splitlines() if ln.startswith("| ") and "|" in ln[2:]]
    assert g[1:] == [
        "| 1 | b | 1 | **0.2000** | 0.8000 |",
        "| 1 | c | 1 | **0.2000** | 0.7000 |",
        "| 3 | a | 1 | 0.5000 | **0.9000** |",
        "| – | d | 1 | – | 0.6000 |",
    ]
    assert "test loss ↓" in g[0]


def test_schema_1_records_keep_their_order_and_count_as_higher_is_better(tmp_path):
    old = [rec("delta", "x", 0, 0.3, headline=["test/acc"]), rec("delta", "y", 0, 0.4, headline=["test/acc"])]
    build_leaderboard(old, tmp_path)
    md = (tmp_path / "delta.md").read_text()
    assert "| 1 | y | 1 | **0.4000** |" in md and "| rank | method / config | n | test/acc ↑ |" in md


def test_claim_status_paper_link_and_plot_on_the_pages(tmp_path):
    out = build_fixture(tmp_path / "lb")
    index = (out / "index.md").read_text()
    assert "| [alpha](alpha.md) | 1.0 | [2406.04981](https://arxiv.org/abs/2406.04981) |" in index
    assert "1 PASS, 1 FAIL, 1 trend" in index and "| not verified |" in index  # beta has no verify summary
    alpha = (out / "alpha.md").read_text()
    assert "| TRADES \\| AT | FAIL | &lt;= 0.01 | 0.02 |" in alpha and "| a trend | trend |" in alpha
    assert "![alpha: robust accuracy](alpha.png)" in alpha
    page = (out / "index.html").read_text()
    assert '<img src="alpha.png"' in page and '<td class="FAIL">FAIL</td>' in page
    assert "http" not in page.replace('href="https://arxiv.org/abs/2406.04981"', "")  # no network but the paper link


def test_a_verify_summary_of_another_version_or_the_smoke_profile_says_so(tmp_path):
    results = results_folder(tmp_path / "results")
    summary = dict(VERIFY_ALPHA, task_version="0.9", profile="smoke")
    (results / "alpha" / "verify" / "latest.json").write_text(json.dumps(summary))
    build_leaderboard(fixture_records(), tmp_path / "lb", results_dir=results)
    assert (
        "verified at v0.9, table shows v1.0; smoke profile: not meaningful"
        in (tmp_path / "lb" / "index.md").read_text()
    )
    (results / "alpha" / "verify" / "latest.json").write_text("{trunc")
    build_leaderboard(fixture_records(), tmp_path / "lb", results_dir=results)
    assert "unreadable verify summary" in (tmp_path / "lb" / "alpha.md").read_text()


def test_rebuild_is_byte_identical_including_plots(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_fixture(a)
    build_fixture(b, list(reversed(fixture_records())))
    files = sorted(p.name for p in a.iterdir())
    assert "alpha.png" in files and files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_escaping_of_labels_and_metric_names(tmp_path):
    evil = {"name": "x|y</th><script>", "display": "a | b <img src=x onerror=alert(1)> *c*", "higher_is_better": True}
    recs = [
        rec("eps", "<b>l|x</b>", 0, 0.5, headline=[evil], extra={"x|y</th><script>": 1.0}),
        rec("eps", "ok", 0, 0.5, headline=[evil], extra={"x|y</th><script>": 2.0}),
    ]
    build_leaderboard(recs, tmp_path)
    md = (tmp_path / "eps.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| rank"))
    assert header == "| rank | method / config | n | a \\| b &lt;img src=x onerror=alert(1)&gt; \\*c\\* ↑ |"
    assert header.count(" | ") == 3  # the pipe in the name does not add a column
    assert "&lt;b&gt;l\\|x&lt;/b&gt;" in md
    page = (tmp_path / "index.html").read_text()
    assert "<img src=x" not in page and "<b>" not in page and "</th><script>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_no_records_is_an_error_that_leaves_the_output_alone(tmp_path):
    out = tmp_path / "lb"
    out.mkdir()
    (out / "index.md").write_text("committed\n")
    for folder in (tmp_path / "resluts", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        p = subprocess.run(
            [sys.executable, "-m", "bench", "leaderboard", "--results", str(folder), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 1 and p.stdout == "", p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and str(folder) in lines[0] and "no records" in lines[0], p.stderr
        assert sorted(x.name for x in out.iterdir()) == ["index.md"] and (out / "index.md").read_text() == "committed\n"
    with pytest.raises(BenchError, match="smoke profile"):
        build_leaderboard([rec("alpha", "st", 0, 0.9, profile="smoke")], out)


HOSTILE = {
    "top_level_42.json": "42",
    "label_null.json": None,
    "metrics_list.json": None,
    "headline_null.json": None,
    "validity_list.json": None,
    "truncated.json": '{"task": "alpha", "run',
    "empty.json": "",
    "foreign.json": '{"hello": "world"}',
    "escape.json": None,
}


def test_hostile_records_are_skipped_with_a_warning_and_never_write_outside_out(tmp_path):
    results = results_folder(tmp_path / "results")
    base = fixture_records()[0]
    broken = {
        "label_null.json": dict(base, label=None),
        "metrics_list.json": dict(base, metrics=[1, 2]),
        "headline_null.json": dict(base, headline_metrics=None),
        "validity_list.json": dict(base, validity=[1]),
        "escape.json": dict(base, task="../pwned", run_id="pwned"),
    }
    for name, text in HOSTILE.items():
        (results / "alpha" / name).write_text(text if text is not None else json.dumps(broken[name]))
    (results / "alpha" / "x.json").mkdir()  # a folder named like a record
    (results / "pwned").mkdir()
    (results / "pwned" / "r.json").write_text(json.dumps(dict(base, task="../pwned", run_id="pwned2")))
    out = tmp_path / "deep" / "lb"
    p = subprocess.run(
        [sys.executable, "-m", "bench", "leaderboard", "--results", str(results), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    for name in [*HOSTILE, "x.json", "r.json"]:
        assert name in p.stderr, (name, p.stderr)
    assert f"warning: {len(HOSTILE) + 2} record(s) skipped" in p.stderr
    outside = [x for x in tmp_path.rglob("*") if x.is_file() and results not in x.parents and out not in x.parents]
    assert outside == []
    assert (out / "alpha.md").read_text() == (GOLDEN / "alpha.md").read_text()  # the good records still build


def test_builder_refuses_a_task_name_outside_the_pattern_even_without_load_records(tmp_path):
    good = fixture_records()[0]
    result = build_leaderboard(
        [good, dict(good, task="../x", run_id="e1"), dict(good, task="A/b", run_id="e2"), 42], tmp_path / "lb"
    )
    assert len(result.skipped) == 3 and "does not match" in result.skipped[0]
    assert sorted(p.name for p in tmp_path.rglob("*.md")) == ["alpha.md", "index.md"]
    assert any("3 record(s) skipped" in ln for ln in fmt_result(result, tmp_path / "lb"))


def test_stale_files_of_an_earlier_build_are_removed_and_foreign_ones_kept(tmp_path):
    out = build_fixture(tmp_path / "lb")
    (out / "notes.txt").write_text("mine")
    (out / "gamma.md").write_text("# not written by the builder")
    result = build_leaderboard([r for r in fixture_records() if r["task"] == "alpha"], out)
    assert sorted(p.name for p in result.removed) == ["beta.csv", "beta.md", "beta.png"]
    assert [p.name for p in result.unowned] == ["gamma.md"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "gamma.md").exists()
    assert (out / MANIFEST).read_text() == "alpha.csv\nalpha.md\nalpha.png\nindex.html\nindex.md\n"


def test_a_folder_built_before_the_manifest_loses_its_stale_task_files_only(tmp_path):
    out = tmp_path / "lb"
    out.mkdir()
    for name, text in {
        "old.md": "# old (v1.0)\n",
        "old.csv": "x\n",
        "old.png": "png",
        "mine.md": "# my notes\n",
        "index.md": "# bench leaderboard\n",
    }.items():
        (out / name).write_text(text)
    result = build_leaderboard(fixture_records(), out)
    assert sorted(p.name for p in result.removed) == ["old.csv", "old.md", "old.png"]
    assert [p.name for p in result.unowned] == ["mine.md"] and (out / "mine.md").read_text() == "# my notes\n"


def test_cli_default_output_is_results_leaderboard(tmp_path):
    results_folder(tmp_path / "results")
    p = subprocess.run(
        [sys.executable, "-m", "bench", "leaderboard"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "results" / "leaderboard" / "alpha.md").read_text() == (GOLDEN / "alpha.md").read_text()
    assert p.stdout == "leaderboard: 10 records shown -> 9 files in results/leaderboard\n"  # not the old or smoke ones


def test_committed_leaderboard_matches_its_records(tmp_path):
    """leaderboard/ is generated by `bench leaderboard --results leaderboard/records --out leaderboard/`."""
    root = ROOT / "leaderboard"
    records = load_records(root / "records")
    assert records
    build_leaderboard(records, tmp_path, results_dir=root / "records")
    for f in sorted(root.glob("*.md")) + sorted(root.glob("*.csv")) + [root / "index.html", root / MANIFEST]:
        assert (tmp_path / f.name).read_text() == f.read_text(), f.name


# ---------------------------------------------------------------- W&B


def test_records_from_a_wandb_project_are_deduplicated_by_run_id(monkeypatch, tmp_path):
    import wandb

    from bench.leaderboard.wandb_io import records_from_wandb

    class Run:
        def __init__(self, rid, summary):
            self.id, self.summary = rid, summary

    good = fixture_records()[0]
    older = dict(good, created_at="2025-01-01T00:00:00+00:00", metrics={"test/acc": 0.1, "test/robust_acc": 0.1})
    runs = [
        Run("w1", {"bench_record": json.dumps(older)}),
        Run("w2", {"bench_record": json.dumps(good)}),
        Run("w3", {}),
        Run("w4", {"bench_record": json.dumps({"task": "broken"})}),
        Run("w5", {"bench_record": "{trunc"}),
    ]

    class Api:
        def runs(self, path):
            assert path == "me/bench"
            return runs

    monkeypatch.setattr(wandb, "Api", Api)
    records, warnings = records_from_wandb("me/bench")
    assert [r.get("run_id") for r in records] == [good["run_id"], None]
    assert records[0]["metrics"] == good["metrics"]  # the newer of the two runs of one record
    assert any("1 duplicate" in w for w in warnings) and any("w5" in w for w in warnings)
    result = build_leaderboard(records, tmp_path)
    assert result.records == 1 and len(result.skipped) == 1 and result.skipped[0].startswith("W&B run w4: ")


def _no_login_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / ".config"), "NETRC": str(tmp_path / "n")}


def test_wandb_without_login_says_so_in_one_line(tmp_path):
    results_folder(tmp_path / "results")
    for args in (
        ["--wandb", "me/bench"],
        ["--results", str(tmp_path / "results"), "--publish", "me/bench", "--wandb-dir", str(tmp_path / "wb")],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "bench", "leaderboard", "--out", str(tmp_path / "lb"), *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=_no_login_env(tmp_path),
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == 1, p.stderr
        err = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and "wandb login" in err[0] and "WANDB_API_KEY" in err[0], p.stderr


def _offline_run(wandb_dir: Path) -> Path:
    runs = sorted(wandb_dir.glob("wandb/offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def _wandb_file_records(path: Path) -> list[bytes]:
    """The records of a .wandb file: a ':W&B' header, then LevelDB-log framing (32 KiB blocks; each chunk has a
    crc32, a length and a type: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, out, buf = 7, [], b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            out.append(buf)
    return out


def _run_record(run_dir: Path):
    """The run record (entity, project, job type) of an offline run, parsed with W&B's own protobuf classes."""
    from wandb.proto import wandb_internal_pb2

    for data in _wandb_file_records(next(run_dir.glob("*.wandb"))):
        pb = wandb_internal_pb2.Record()
        pb.ParseFromString(data)
        if pb.WhichOneof("record_type") == "run":
            return pb.run
    return None


def test_publish_offline_logs_the_same_rows_ranks_and_claims(tmp_path):
    results_folder(tmp_path / "results")
    env = {**_no_login_env(tmp_path), "WANDB_MODE": "offline"}
    out = tmp_path / "lb"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "leaderboard",
            "--results",
            str(tmp_path / "results"),
            "--out",
            str(out),
            "--publish",
            "me/bench",
            "--wandb-dir",
            str(tmp_path / "wb"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert "published 2 tables to W&B me/bench" in p.stdout and "wandb sync" in p.stdout
    run_dir = _offline_run(tmp_path / "wb")
    assert sorted(x.name for x in out.iterdir()) == sorted(GOLDEN_FILES[:-1] + (MANIFEST, "alpha.png", "beta.png"))
    table_files = sorted((run_dir / "files" / "media" / "table").rglob("*.table.json"))
    by_name = {
        f.relative_to(run_dir / "files" / "media" / "table").as_posix().rsplit("_", 2)[0]: f for f in table_files
    }
    alpha = json.loads(by_name["leaderboard/alpha"].read_text())
    assert alpha["columns"][:4] == ["rank", "method / config", "n", "robust accuracy"]
    assert [row[:3] for row in alpha["data"]] == [[1, "trades", 2], [2, "at", 2], [3, "st", 3]]
    assert alpha["data"][0][3] == "0.6000 (n=1) (best)" and alpha["data"][1][4] == pytest.approx(0.59)
    claims = json.loads(by_name["claims/alpha"].read_text())
    assert [row[1] for row in claims["data"]] == ["PASS", "FAIL", "trend"]
    index = json.loads(by_name["index"].read_text())
    assert [row[0] for row in index["data"]] == ["alpha", "beta"] and index["data"][0][6] == "1 PASS, 1 FAIL, 1 trend"
    assert list((run_dir / "files" / "media" / "images" / "plots").glob("alpha_*.png"))
    run = _run_record(run_dir)
    assert run.job_type == "leaderboard" and run.project == "bench" and run.entity == "me"


if __name__ == "__main__":  # regenerate the golden files
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        build_fixture(Path(d) / "lb")
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.iterdir():
            old.unlink()
        for name in GOLDEN_FILES:
            (GOLDEN / name).write_bytes((Path(d) / "lb" / name).read_bytes())
    print(f"wrote {', '.join(GOLDEN_FILES)} to {GOLDEN}")
