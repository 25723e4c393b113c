"""Build the leaderboard folder from result records: per task ``<task>.md``, ``<task>.csv`` and ``<task>.png``, and
``index.md`` and ``index.html`` over all tasks. The output depends only on the records and verify summaries: same
inputs, same bytes.

Safety: records are checked before anything is written (a bad one is skipped with a warning naming it; none left
is an error that leaves the output folder as it was); task names must match the registry's name pattern, so a
record cannot name a file outside the output folder. The builder lists the files it wrote in ``MANIFEST`` and on
the next build removes those it no longer writes (in a folder built before the manifest existed: the per-task files
with its heading); look-alike files it did not write are reported, never deleted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.atomic import atomic_write_bytes
from bench.harness.errors import BenchError
from bench.harness.record import validate
from bench.harness.spec import NAME_PATTERN
from bench.leaderboard.page import render_html
from bench.leaderboard.plots import render_plot
from bench.leaderboard.status import ClaimStatus, claim_status
from bench.leaderboard.table import TaskTable, headline, task_table
from bench.leaderboard.text import render_csv, render_index_markdown, render_task_markdown

MANIFEST = "MANIFEST"


@dataclass
class BuildResult:
    written: list[Path]
    removed: list[Path] = field(default_factory=list)  # stale files of an earlier build, deleted
    unowned: list[Path] = field(default_factory=list)  # look-alike files this builder never wrote, kept
    skipped: list[str] = field(default_factory=list)  # "<record>: <why>" for each record left out
    records: int = 0  # records on the tables (older task versions and smoke runs are not)


def record_name(r: object) -> str:
    if isinstance(r, dict):
        return str(r.get("_path") or r.get("run_id") or "a record without run_id")
    return f"a record of type {type(r).__name__}"


def check_record(r: object) -> str | None:
    """Why ``r`` cannot be on the leaderboard, or None: the record schema (``record.validate``: field types, a task
    name matching the registry's pattern), then a headline metric to rank by."""
    try:
        validate(r)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return str(e)
    assert isinstance(r, dict)
    if not NAME_PATTERN.match(r["task"]):  # validate checks it too; the output file names depend on it
        return f"task {r['task']!r} does not match {NAME_PATTERN.pattern}"
    if not headline(r):
        return "headline_metrics is empty"
    return None


def _owned_look_alike(name: str) -> bool:
    stem, _, ext = name.rpartition(".")
    return ext in ("md", "csv", "png") and (bool(NAME_PATTERN.match(stem)) or stem == "index")


def _legacy_outputs(out: Path) -> set[str]:
    """The files of a build made before the MANIFEST existed: each ``<task>.md`` that starts with this builder's
    heading ``# <task> (v``, with its ``.csv`` and ``.png``."""
    found = set()
    for md in out.glob("*.md"):
        try:
            head = md.read_text(errors="replace")[: len(md.stem) + 5]
        except OSError:
            continue
        if NAME_PATTERN.match(md.stem) and head == f"# {md.stem} (v":
            found |= {f"{md.stem}.{ext}" for ext in ("md", "csv", "png") if (out / f"{md.stem}.{ext}").is_file()}
    return found


def render(tables: list[TaskTable], statuses: dict[str, ClaimStatus]) -> dict[str, bytes]:
    """File name -> contents of the whole leaderboard."""
    files: dict[str, bytes] = {}
    plots: dict[str, tuple[str, bytes]] = {}
    for t in tables:
        png = render_plot(t)
        if png is not None:
            plots[t.task] = (f"{t.task}.png", png)
            files[f"{t.task}.png"] = png
        files[f"{t.task}.md"] = render_task_markdown(t, statuses[t.task], plots.get(t.task, ("",))[0] or None).encode()
        files[f"{t.task}.csv"] = render_csv(t).encode()
    files["index.md"] = render_index_markdown(tables, statuses).encode()
    files["index.html"] = render_html(tables, statuses, plots).encode()
    return files


def collect(records: Iterable[object], include_smoke: bool = False) -> tuple[dict[str, list[dict]], list[str], int]:
    """(task -> records, skipped "<record>: <why>", number of smoke records left out)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    skipped, smoke = [], 0
    for r in records:
        why = check_record(r)
        if why is not None:
            skipped.append(f"{record_name(r)}: {why}")
            continue
        if r.get("profile") == "smoke" and not include_smoke:
            smoke += 1
            continue
        by_task[r["task"]].append(r)
    return dict(by_task), skipped, smoke


def tables_of(by_task: dict[str, list[dict]]) -> list[TaskTable]:
    return [task_table(task, rs) for task, rs in sorted(by_task.items())]


@dataclass
class Leaderboard:
    tables: list[TaskTable]
    statuses: dict[str, ClaimStatus]
    files: dict[str, bytes]  # file name -> contents
    skipped: list[str]
    records: int


def prepare(
    records: Iterable[object],
    include_smoke: bool = False,
    results_dir: str | Path | None = None,
    source: str = "the given records",
    out_dir: str | Path = "the output folder",
    skipped: Iterable[str] = (),
) -> Leaderboard:
    """Check the records and render every file in memory. ``skipped``: files the caller could not read as records
    (reported with the records skipped here). Raises :class:`BenchError` when no record can be shown."""
    records = list(records)
    by_task, bad, smoke = collect(records, include_smoke)
    skipped = [*skipped, *bad]
    if not by_task:
        why = f"{len(records)} records, {len(skipped)} unreadable" + (
            f", {smoke} of the smoke profile (add --include-smoke to show them)" if smoke else ""
        )
        raise BenchError(
            f"no records to show in {source} ({why}); nothing written to {out_dir}. Point --results at "
            "the folder that bench fit wrote (results_dir, default results/)"
        )
    tables = tables_of(by_task)
    statuses = {t.task: claim_status(results_dir, t.task, t.version) for t in tables}
    return Leaderboard(tables, statuses, render(tables, statuses), skipped, sum(t.runs for t in tables))


def write(lb: Leaderboard, out_dir: str | Path) -> BuildResult:
    """Write the rendered files (each atomically), then remove the files of an earlier build that are not written
    now."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # --out names a file, or a folder that cannot be made
        raise BenchError(
            f"--out {out} is not a folder that can be written ({e.strerror or e}); give a folder, e.g. "
            "--out results/leaderboard"
        ) from None
    if (out / MANIFEST).is_file():
        previous = {ln.strip() for ln in (out / MANIFEST).read_text().splitlines() if ln.strip()}
    else:
        previous = _legacy_outputs(out)
    for name, data in lb.files.items():
        atomic_write_bytes(out / name, data)
    atomic_write_bytes(out / MANIFEST, ("".join(f"{n}\n" for n in sorted(lb.files))).encode())
    result = BuildResult([out / n for n in sorted(lb.files)] + [out / MANIFEST], skipped=lb.skipped, records=lb.records)
    for name in sorted(previous - set(lb.files)):
        p = out / name
        if "/" not in name and _owned_look_alike(name) and p.is_file():
            p.unlink()
            result.removed.append(p)
    for p in sorted(out.iterdir()):
        if p.is_file() and p.name not in lb.files and p.name not in previous and _owned_look_alike(p.name):
            result.unowned.append(p)
    return result


def build_leaderboard(
    records: Iterable[object],
    out_dir: str | Path,
    include_smoke: bool = False,
    results_dir: str | Path | None = None,
    source: str = "the given records",
) -> BuildResult:
    """Write the leaderboard of ``records`` into ``out_dir``; claim status from ``results_dir``'s verify summaries.
    Raises :class:`BenchError` (and writes nothing) when no record can be shown."""
    return write(prepare(records, include_smoke, results_dir, source, out_dir), out_dir)


def fmt_result(r: BuildResult, out_dir: str | Path) -> list[str]:
    """The console lines of a build: warnings first, then one summary line."""
    lines = [f"warning: skipped {s}" for s in r.skipped]
    if r.skipped:
        lines.append(f"warning: {len(r.skipped)} record(s) skipped")
    lines += [f"removed stale {p}" for p in r.removed]
    if r.unowned:
        lines.append(
            f"warning: not written by this build and left in place (delete them if stale): "
            f"{', '.join(str(p) for p in r.unowned)}"
        )
    lines.append(f"leaderboard: {r.records} records shown -> {len(r.written)} files in {out_dir}")
    return lines
