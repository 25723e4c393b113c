"""``bench verify`` report: robust accuracy vs eps per posterior, mean and std over seeds (a figure over runs)."""

from __future__ import annotations

from pathlib import Path

from bench.harness.claims import RecordSet
from bench.tasks.bnn_attacks.claims import posteriors

Curve = list[tuple[float, float, float, int]]


def robust_curves(records: RecordSet, metric: str = "test/robust_acc") -> dict[str, Curve]:
    """posterior -> [(eps, mean, std, n)] of ``<metric>@eps=<e>`` over seeds, eps = 0 being the clean accuracy."""
    curves = {}
    for p in posteriors(records):
        rs = records.where(posterior=p)
        radii = sorted({float(k.split("@eps=")[1]) for r in rs for k in r["metrics"] if k.startswith(f"{metric}@eps=")})
        pts = []
        if rs.has("test/acc"):
            s = rs.summary("test/acc")
            pts.append((0.0, s.mean, s.std, s.n))
        for e in radii:
            s = rs.summary(f"{metric}@eps={e:g}")
            pts.append((e, s.mean, s.std, s.n))
        if pts:
            curves[p] = pts
    return curves


def report(records: RecordSet, out_dir: Path) -> dict[str, str]:
    from bench.tasks.bnn_attacks.plots import robust_accuracy_vs_eps

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    figures = (
        ("test/robust_acc", "robust_acc_vs_eps", "PGD with EOT (S_attack samples per step)"),
        ("test/robust_acc_no_eot", "robust_acc_no_eot_vs_eps", "PGD without EOT (1 sample per step)"),
        ("test/robust_acc_one_draw", "robust_acc_one_draw_vs_eps", "PGD on one fixed posterior draw"),
    )
    for metric, name, title in figures:
        curves = robust_curves(records, metric)
        if not curves:
            continue
        fig = robust_accuracy_vs_eps(curves, f"bnn_attacks: {title}")
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
        import matplotlib.pyplot as plt

        plt.close(fig)
        out[name] = str(path)
    return out
