"""Make a verify run's records the committed reference records of its tasks.

    python tools/import_records.py RESULTS_DIR TASK [TASK ...]

For each task: the records in ``RESULTS_DIR/<task>/`` replace those in ``leaderboard/records/<task>/`` (a record's
``artifacts`` point into its run folder, which is not committed, so they are emptied), and the verify summary
``RESULTS_DIR/<task>/verify/latest.json`` is copied with the report files it names (figures, tables), its paths
rewritten to the committed copies. Afterwards regenerate the leaderboard and the task pages:
``python -m bench leaderboard --results leaderboard/records --out leaderboard/`` and ``python tools/task_docs.py``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_task(results: Path, task: str) -> str:
    from bench.harness.record import read_record

    src, dest = results / task, ROOT / "leaderboard" / "records" / task
    summary_file = src / "verify" / "latest.json"
    if not summary_file.is_file():
        raise SystemExit(f"{summary_file} is missing: run bench verify task={task} results_dir={results} first")
    summary = json.loads(summary_file.read_text())
    records = {}
    for run_id in summary["runs"]:
        rec = read_record(src / f"{run_id}.json")
        rec.pop("_path", None)
        rec["artifacts"] = {}
        records[run_id] = rec
    (dest / "verify").mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.json"):
        old.unlink()
    for old in (dest / "verify").iterdir():
        old.unlink()
    for run_id, rec in records.items():
        (dest / f"{run_id}.json").write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    artifacts = {}
    for name, path in sorted((summary.get("artifacts") or {}).items()):
        target = dest / "verify" / Path(path).name
        shutil.copyfile(path, target)
        artifacts[name] = str(target.relative_to(ROOT))
    if artifacts:
        summary["artifacts"] = artifacts
    (dest / "verify" / "latest.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return f"{task}: {len(records)} records, {len(artifacts)} report files"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(argv[0]).resolve()
    for task in argv[1:]:
        print(import_task(results, task))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
