"""Build the leaderboard from result records.

Rows are (task version, label, config without the seed); columns are the task's headline metrics as
mean ± std (ddof = 1) over seeds with the number of seeds n. A robust number whose validity checks failed in any
of its runs is marked ``unreliable``. The output depends only on the records: same records, same bytes.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from bench.harness.record import validate


def _version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in str(v).replace("-", ".").split("."))


def _stats(values: list[float]) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def fmt_mean_std(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.4f}" + (f" ± {std:.4f}" if math.isfinite(std) else "")


def _unreliable(records: list[dict], metric: str) -> bool:
    return any((r.get("validity", {}).get(metric) or {}).get("reliable") is False for r in records)


def task_rows(records: list[dict]) -> tuple[list[str], list[dict]]:
    """(headline metrics, rows) of one task, for its newest version."""
    newest = max((r["task_version"] for r in records), key=_version_key)
    recs = [r for r in records if r["task_version"] == newest]
    headline: list[str] = []
    for r in recs:
        for m in r["headline_metrics"]:
            if m not in headline:
                headline.append(m)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in recs:
        groups[(r["label"], r["group_hash"])].append(r)
    labels = defaultdict(set)
    for label, g in groups:
        labels[label].add(g)
    rows = []
    for (label, g), rs in sorted(groups.items()):
        name = label if len(labels[label]) == 1 else f"{label} [{g[:6]}]"
        row = {"label": name, "task_version": newest, "group_hash": g, "n": len(rs), "seeds": sorted(r["seed"] for r in rs), "cells": {}}
        for m in headline:
            mean, std, n = _stats([r["metrics"].get(m) for r in rs])
            row["cells"][m] = {"mean": mean, "std": std, "n": n, "unreliable": _unreliable(rs, m)}
        rows.append(row)
    return headline, rows


def _cell(c: dict) -> str:
    s = fmt_mean_std(c["mean"], c["std"])
    return s + (" (unreliable)" if c["unreliable"] else "")


def render_markdown(task: str, headline: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    version = rows[0]["task_version"] if rows else "?"
    out.write(f"# {task} (v{version})\n\n")
    out.write("Mean ± std over seeds (ddof = 1); n = number of seeds. `unreliable`: a robust-accuracy validity check failed.\n\n")
    cols = ["method / config", "n", *headline]
    out.write("| " + " | ".join(cols) + " |\n")
    out.write("|" + "|".join(["---"] * len(cols)) + "|\n")
    for r in rows:
        label = html.escape(r["label"], quote=False).replace("|", "\\|")  # labels are user strings
        cells = [label, str(r["n"]), *(_cell(r["cells"][m]) for m in headline)]
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()


def render_csv(task: str, headline: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    header = ["task", "task_version", "label", "group_hash", "n", "seeds"]
    for m in headline:
        header += [f"{m} mean", f"{m} std", f"{m} unreliable"]
    w.writerow(header)
    for r in rows:
        line = [task, r["task_version"], r["label"], r["group_hash"], r["n"], " ".join(map(str, r["seeds"]))]
        for m in headline:
            c = r["cells"][m]
            line += [_num(c["mean"]), _num(c["std"]), int(c["unreliable"])]
        w.writerow(line)
    return out.getvalue()


def _num(x: float) -> str:
    return "" if not math.isfinite(x) else repr(round(x, 10))


def render_html(tables: dict[str, tuple[list[str], list[dict]]]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\"><title>bench leaderboard</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             ".bad{color:#b00}</style></head><body>", "<h1>bench leaderboard</h1>"]
    for task, (headline, rows) in tables.items():
        version = rows[0]["task_version"] if rows else "?"
        parts.append(f"<h2 id=\"{e(task)}\">{e(task)} (v{e(str(version))})</h2>")
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in ["method / config", "n", *headline]) + "</tr>")
        for r in rows:
            cells = [f"<td>{e(r['label'])}</td>", f"<td>{r['n']}</td>"]
            for m in headline:
                c = r["cells"][m]
                cls = " class=\"bad\"" if c["unreliable"] else ""
                cells.append(f"<td{cls}>{e(_cell(c))}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render_plot(task: str, headline: list[str], rows: list[dict], path: Path) -> bool:
    """Bar chart of the first headline metric with std error bars."""
    if not rows or not headline:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = headline[0]
    means = [r["cells"][m]["mean"] for r in rows]
    stds = [r["cells"][m]["std"] if math.isfinite(r["cells"][m]["std"]) else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 1.0 + 0.8 * len(rows)), 3.2))
    ax.bar(range(len(rows)), means, yerr=stds, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(m)
    ax.set_title(task)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def build_leaderboard(records: Iterable[dict], out_dir: str | Path, include_smoke: bool = False) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("profile") == "smoke" and not include_smoke:
            continue
        by_task[r["task"]].append(r)
    tables = {t: task_rows(rs) for t, rs in sorted(by_task.items())}
    written = []
    index = ["# bench leaderboard\n", "Generated by `python -m bench leaderboard` from result records.\n",
             "| task | version | rows | runs |", "|---|---|---|---|"]
    for task, (headline, rows) in tables.items():
        for name, text in ((f"{task}.md", render_markdown(task, headline, rows)), (f"{task}.csv", render_csv(task, headline, rows))):
            (out / name).write_text(text)
            written.append(out / name)
        if render_plot(task, headline, rows, out / f"{task}.png"):
            written.append(out / f"{task}.png")
        version = rows[0]["task_version"] if rows else "?"
        index.append(f"| [{task}]({task}.md) | {version} | {len(rows)} | {sum(r['n'] for r in rows)} |")
    (out / "index.md").write_text("\n".join(index) + "\n")
    (out / "index.html").write_text(render_html(tables))
    written += [out / "index.md", out / "index.html"]
    return written


def records_from_wandb(path: str) -> list[dict]:
    """Records mirrored to a W&B project (``ENTITY/PROJECT``) by ``bench fit`` (summary key ``bench_record``)."""
    import wandb

    out = []
    for run in wandb.Api().runs(path):
        raw = run.summary.get("bench_record")
        if not raw:
            continue
        rec = json.loads(raw) if isinstance(raw, str) else dict(raw)
        try:
            validate(rec)
        except ValueError:
            continue
        out.append(rec)
    return sorted(out, key=lambda r: (r["task"], r["run_id"]))
