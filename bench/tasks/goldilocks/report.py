"""``bench verify`` report hook: the figures of :mod:`bench.tasks.goldilocks.plots` over every run of the plan
(seeds averaged, one column per data set)."""

from __future__ import annotations

from pathlib import Path

from bench.tasks.goldilocks import plots


def report(records, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in plots.figures(list(records)).items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
        plots.plt.close(fig)
        paths[name] = path
    return paths
