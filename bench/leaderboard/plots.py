"""The leaderboard's figure of a task: its first headline metric per row (the metric that ranks them), mean with
the seed spread (± std) as error bars and every seed as a dot. Horizontal bars, so long labels stay readable.
A task draws figures comparing its runs in its own report hook; this one only shows what the table ranks."""

from __future__ import annotations

import io
import math

from bench.leaderboard.table import TaskTable


def render_plot(t: TaskTable) -> bytes | None:
    """PNG bytes (deterministic: no timestamps or software tag), or None when fewer than two rows have a value."""
    if not t.metrics:
        return None
    m = t.metrics[0]
    rows = [r for r in t.rows if math.isfinite(r.cells[m.name].mean)]
    if len(rows) < 2:  # one bar compares nothing; the table says it all
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.label if len(r.label) <= 48 else r.label[:18] + "..." + r.label[-27:] for r in rows]  # ends differ
    means = [r.cells[m.name].mean for r in rows]
    stds = [r.cells[m.name].std if math.isfinite(r.cells[m.name].std) else 0.0 for r in rows]
    width = 7.0 + min(max(len(s) for s in labels), 48) * 0.06
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.42 * len(rows)))
    y = list(range(len(rows)))
    ax.barh(y, means, xerr=stds, capsize=3, color="#4c72b0", alpha=0.85, error_kw={"ecolor": "#222"})
    for i, r in enumerate(rows):
        vals = r.cells[m.name].values
        if len(vals) > 1:
            ax.plot(vals, [i] * len(vals), "o", color="#dd8452", markersize=3.5, zorder=3)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # rank 1 on top, as in the table
    arrow = "higher is better" if m.higher_is_better else "lower is better"
    ax.set_xlabel(f"{m.display} ({arrow}); bars: mean ± std over seeds, dots: seeds")
    ax.set_title(f"{t.task} v{t.version}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
