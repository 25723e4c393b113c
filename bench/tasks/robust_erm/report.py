"""The verify report of ``robust_erm``: the figures that compare methods and seeds, from the plan's records."""

from __future__ import annotations

from pathlib import Path

from bench.harness.claims import RecordSet
from bench.tasks.robust_erm import plots, results


def report(records: RecordSet, out_dir: Path) -> dict[str, str]:
    """Robust test accuracy and ||w||_1/||w||_2 vs train size per method (linear part), robust accuracy vs the
    training radius per optimizer (network part); returns ``{name: png path}``."""
    figures = {}
    linear, network = results.rows(records, "linear"), results.rows(records, "network")
    if linear:
        figures["robust_acc_vs_m"] = plots.plot_linear_curves(linear, "test/robust_acc", "robust test accuracy (exact)")
        figures["l1_over_l2_vs_m"] = plots.plot_linear_curves(linear, "w/l1_over_l2", "||w||_1 / ||w||_2")
    if network:
        figures["robust_acc_vs_train_eps"] = plots.plot_network(network)
    import matplotlib.pyplot as plt

    out = {}
    for name, fig in figures.items():
        path = Path(out_dir) / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        out[name] = str(path)
    return out
