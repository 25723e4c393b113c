"""The report hook of ``bench verify``: figures that compare the runs of the plan, plus the theory figure."""

from __future__ import annotations

from pathlib import Path

from bench.harness.claims import RecordSet
from bench.tasks.robust_pruning import plots

CLASS_DENSITY_AT = 0.3


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return str(path)


def report(records: RecordSet, out_dir: Path) -> dict[str, str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    if not len(records):
        return out
    out["accuracy_vs_density"] = _save(plots.accuracy_vs_density(records), out_dir / "accuracy_vs_density.png")
    if any(len(plots.at(records, m, CLASS_DENSITY_AT)) for m in plots.methods_of(records)):
        fig = plots.class_densities(records, CLASS_DENSITY_AT)
        out["class_densities"] = _save(fig, out_dir / "class_densities.png")
    theory = records.records[0]["config"]["robust_pruning"]["theory"]
    fig = plots.theory_errors(theory["mu"], theory["sigma"])
    out["theory_class_errors"] = _save(fig, out_dir / "theory_class_errors.png")
    return out
