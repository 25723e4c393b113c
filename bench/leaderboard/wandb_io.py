"""The leaderboard and W&B: read records mirrored to a project, and publish the tables to one.

``bench fit`` mirrors each record into its W&B run's summary (key ``bench_record``); a rerun of a seed may have
left a second W&B run of the same record, so records are deduplicated by their run id (the newest one kept).
Publishing logs, in one run of job type ``leaderboard``, a ``wandb.Table`` per task with the same rows, ranks and
cells as the Markdown, the claims of each task, an index table with each task's claim status, and the figures.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from bench.harness.errors import BenchError
from bench.leaderboard.status import ClaimStatus
from bench.leaderboard.table import TaskTable
from bench.leaderboard.text import cell_text

NOT_LOGGED_IN = "W&B: not logged in; run `wandb login` (or set WANDB_API_KEY), or use WANDB_MODE=offline to publish"


def _project(path: str) -> tuple[str, str]:
    parts = path.split("/")
    if len(parts) != 2 or not all(parts):
        raise BenchError(f"W&B project {path!r} must be ENTITY/PROJECT (e.g. me/bench)")
    return parts[0], parts[1]


def _login_error(e: Exception) -> BenchError | None:
    import wandb

    if isinstance(e, (wandb.errors.UsageError, wandb.errors.AuthenticationError)) and "api key" in str(e).lower():
        return BenchError(NOT_LOGGED_IN)
    return None


def dedupe(records: list[dict]) -> tuple[list[dict], int]:
    """One record per run id: the newest (created_at, then W&B run id). Returns (records, number dropped)."""
    best: dict[str, dict] = {}
    for r in records:
        rid = str(r.get("run_id"))
        key = (str(r.get("created_at") or ""), str(r.get("wandb_run_id") or ""))
        if rid not in best or key > (str(best[rid].get("created_at") or ""), str(best[rid].get("wandb_run_id") or "")):
            best[rid] = r
    return sorted(best.values(), key=lambda r: (str(r.get("task")), str(r.get("run_id")))), len(records) - len(best)


def records_from_wandb(path: str) -> tuple[list[object], list[str]]:
    """(records, warnings) of the runs of W&B project ``ENTITY/PROJECT``. Records are not validated here (the
    builder checks and skips bad ones); unreadable summaries are reported in the warnings."""
    import wandb

    _project(path)
    raw_records: list[object] = []
    warnings: list[str] = []
    try:
        runs = list(wandb.Api().runs(path))
    except Exception as e:  # noqa: BLE001 - W&B raises many kinds; the login case gets its own line
        err = _login_error(e)
        if err is not None:
            raise err from None
        raise BenchError(f"W&B: cannot read runs of {path}: {type(e).__name__}: {e}") from None
    for run in runs:
        raw = run.summary.get("bench_record")
        if not raw:
            continue
        try:
            rec = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (ValueError, TypeError) as e:
            warnings.append(f"W&B run {getattr(run, 'id', '?')}: bench_record is not JSON ({e})")
            continue
        if isinstance(rec, dict):
            rec.setdefault("_path", f"W&B run {getattr(run, 'id', '?')}")
        raw_records.append(rec)
    dicts = [r for r in raw_records if isinstance(r, dict) and isinstance(r.get("run_id"), str)]
    others = [r for r in raw_records if not (isinstance(r, dict) and isinstance(r.get("run_id"), str))]
    kept, dropped = dedupe(dicts)
    if dropped:
        warnings.append(f"W&B: {dropped} duplicate record(s) of the same run id left out (kept the newest)")
    return [*kept, *others], warnings


def _mean(x: float) -> float | None:
    return round(x, 10) if math.isfinite(x) else None


def table_rows(t: TaskTable) -> tuple[list[str], list[list]]:
    """(columns, rows) of a task's W&B table: rank, label, n, then per metric its display name (the cell as the
    Markdown shows it), and mean, std and n as numbers so that W&B can sort them."""
    cols = ["rank", "method / config", "n"]
    for m in t.metrics:
        cols += [m.display, f"{m.display} mean", f"{m.display} std", f"{m.display} n"]
    rows = []
    for r in t.rows:
        line: list = [r.rank, r.label, r.n]
        for m in t.metrics:
            c = r.cells[m.name]
            line += [cell_text(c, r.n) + (" (best)" if c.best else ""), _mean(c.mean), _mean(c.std), c.n]
        rows.append(line)
    return cols, rows


def publish(
    path: str, tables: list[TaskTable], statuses: dict[str, ClaimStatus], files: dict[str, bytes], work_dir: str | Path
) -> tuple[str, bool]:
    """Log the leaderboard to W&B project ``path``; returns (the run's URL, or its folder when offline; offline)."""
    import tempfile

    import wandb

    entity, project = _project(path)
    os.environ.setdefault("WANDB_SILENT", "true")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            entity=entity,
            project=project,
            job_type="leaderboard",
            name="leaderboard",
            dir=str(work),
            config={"tasks": [t.task for t in tables]},
            reinit="finish_previous",
        )
    except Exception as e:  # noqa: BLE001
        err = _login_error(e)
        if err is not None:
            raise err from None
        raise BenchError(f"W&B: cannot start the leaderboard run in {path}: {type(e).__name__}: {e}") from None
    try:
        index = wandb.Table(columns=["task", "version", "arxiv", "rows", "runs", "ranked by", "claims", "claims note"])
        for t in tables:
            st = statuses[t.task]
            index.add_data(t.task, t.version, t.arxiv, len(t.rows), t.runs, t.metrics[0].display, st.counts(), st.note)
            cols, rows = table_rows(t)
            claims = wandb.Table(
                columns=["claim", "status", "expected", "measured"],
                data=[[c.name, c.status, c.expected, c.measured] for c in st.claims],
            )
            logged = {f"leaderboard/{t.task}": wandb.Table(columns=cols, data=rows), f"claims/{t.task}": claims}
            png = files.get(f"{t.task}.png")
            if png is not None:
                with tempfile.TemporaryDirectory() as tmp:  # W&B copies the image into the run at log time
                    img = Path(tmp) / f"{t.task}.png"
                    img.write_bytes(png)
                    logged[f"plots/{t.task}"] = wandb.Image(str(img), caption=f"{t.task}: {t.metrics[0].display}")
                    run.log(logged)
            else:
                run.log(logged)
            run.summary[f"claims/{t.task}"] = st.counts()
        run.log({"index": index})
        offline = bool(run.offline)
        where = str(Path(run.dir).parent) if offline else str(run.url)
    finally:
        run.finish()
    return where, offline
