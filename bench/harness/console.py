"""What ``bench fit`` prints around a run: one start line, where the run's files are, and a multirun's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def command_overrides() -> list[str]:
    """The overrides of this Hydra job (empty outside ``bench fit``, e.g. in ``verify`` or tests)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.startswith("task=")]


def start_line(cfg: DictConfig, overrides: list[str] | None = None) -> str:
    """``bench fit: neural_collapse · st · profile smoke · seed 0 · overrides: method=st profile=smoke``"""
    from bench.harness.spec import run_label

    overrides = command_overrides() if overrides is None else overrides
    parts = [str(cfg.task.name), run_label(cfg), f"profile {cfg.get('profile_name') or 'default'}", f"seed {cfg.seed}"]
    return "bench fit: " + " · ".join(parts) + f" · overrides: {' '.join(overrides) or '(none)'}"


def run_dir_of(record: dict) -> Path:
    return Path(str(record["config"]["work_dir"])) / record["task"] / record["run_id"]


def end_lines(record: dict) -> list[str]:
    """The run folder, and the ``wandb sync`` command when W&B logged offline."""
    from bench.harness.wandb_run import sync_hint

    run_dir = run_dir_of(record)
    lines = [f"run folder: {run_dir}  (checkpoints, logs, figures)"]
    if record.get("wandb_run_id"):
        hint = sync_hint(run_dir, str(record["wandb_run_id"]))
        if hint:
            lines.append(hint)
    return lines


def print_end(record: dict) -> None:
    for line in end_lines(record):
        print(line)


def _mean_std(values: list[float]) -> str:
    import statistics

    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def aggregate_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per (task, label, profile): the seeds' count and mean ± std of each headline metric."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["label"], str(r.get("profile") or "default")), []).append(r)
    metrics: list[tuple[str, str]] = []
    for r in records:
        for m in r["headline_metrics"]:
            if (m["name"], m["display"]) not in metrics:
                metrics.append((m["name"], m["display"]))
    header = ["task", "label", "profile", "seeds", *(d for _, d in metrics), "time (s)"]
    rows = []
    for (task, label, profile), rs in groups.items():
        cells = [task, label, profile, ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))]
        for name, _ in metrics:
            cells.append(_mean_std([r["metrics"][name] for r in rs if r["metrics"].get(name) is not None]))
        cells.append(f"{sum(float(r.get('duration_s') or 0) for r in rs):.1f}")
        rows.append(cells)
    return header, rows


def print_multirun_table(records: list[dict], failed: int = 0) -> None:
    """After a multirun: one table over its runs (mean ± std over seeds)."""
    if not records:
        return
    from rich.console import Console
    from rich.table import Table

    header, rows = aggregate_rows(records)
    t = Table(title=f"multirun: {len(records)} runs" + (f", {failed} failed" if failed else ""))
    for i, col in enumerate(header):
        t.add_column(col, justify="left" if i < 4 else "right", overflow="fold")
    for row in rows:
        t.add_row(*row)
    Console().print(t)


def is_smoke(records_or_profile: Any) -> bool:
    """Whether claims were measured in the smoke profile (shrunk to seconds: their numbers mean nothing)."""
    text = str(records_or_profile or "")
    return "smoke" in {p.strip() for p in text.split(",")}


def verify_summary(task: str, results_dir: str | Path = "results") -> tuple[dict, Path] | None:
    """The newest ``verify/latest.json`` of a task: this folder's results first, then the repository's committed
    leaderboard records."""
    import json

    from bench.harness.registry import conf_dir

    candidates = [Path(results_dir) / task / "verify" / "latest.json"]
    try:
        candidates.append(conf_dir().parent / "leaderboard" / "records" / task / "verify" / "latest.json")
    except Exception:  # no conf folder: nothing committed to read
        pass
    for path in candidates:
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):  # unreadable, not JSON, or nested past the parser's depth
            continue
        if isinstance(summary, dict):  # `[]` or a number is no summary: read as "not verified"
            return summary, path
    return None


def verify_status(task: str, version: str | None = None, results_dir: str | Path = "results") -> str:
    """``verify PASS (default, 324 s)`` / ``verify FAIL (smoke, of v1.0, 12 s)`` / ``not verified`` for
    ``bench list`` (``of v<x>``: the summary is of an older task version than ``version``)."""
    found = verify_summary(task, results_dir)
    if found is None:
        return "not verified"
    s, _ = found
    parts = [str(s["profile"])] if s.get("profile") else []
    if version is not None and s.get("task_version") not in (None, str(version)):
        parts.append(f"of v{s['task_version']}")
    if isinstance(s.get("duration_s"), (int, float)):
        parts.append(f"{float(s['duration_s']):.0f} s")
    return f"verify {'PASS' if s.get('passed') else 'FAIL'}" + (f" ({', '.join(parts)})" if parts else "")
