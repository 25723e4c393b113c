"""The verify report of ``galaxy_distillation``: the accuracy table of every method and k (mean, std over the
evaluation networks, pooled over seeds) and the distilled images of the plan's runs side by side."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.harness.claims import RecordSet
from bench.harness.record import check_plain_name
from bench.harness.stats import summarize
from bench.tasks.galaxy_distillation.claims import net_accuracies

ORDER = ("random_real", "class_mean", "mtt", "adaptive", "full")


def accuracy_rows(records: RecordSet) -> list[dict]:
    rows = []
    ks = sorted({int(r["config"]["galaxy_distillation"]["images_per_class"]) for r in records})
    for method in ORDER:
        for k in [None] if method == "full" else ks:
            accs = net_accuracies(records, method, k)
            if not accs:
                continue
            s = summarize(accs.values())
            rs = (
                records.where(method=method)
                if k is None
                else records.where(method=method, galaxy_distillation__images_per_class=k)
            )
            t_plus = [r["metrics"].get("distill/t_plus_final") for r in rs]
            rows.append(
                {
                    "method": method,
                    "k": "all" if k is None else k,
                    "mean": s.mean,
                    "std": s.std,
                    "n": s.n,
                    "t_plus": ", ".join(f"{v:g}" for v in t_plus if v is not None),
                }
            )
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| method | images per class | test accuracy (mean) | std | nets | final T+ |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        t_plus = r["t_plus"] or "-"
        lines.append(f"| {r['method']} | {r['k']} | {r['mean']:.4f} | {r['std']:.4f} | {r['n']} | {t_plus} |")
    return "\n".join(lines) + "\n"


def report(records: RecordSet, out_dir: Path) -> dict[str, str]:
    out_dir = Path(out_dir)
    table = out_dir / "accuracy_table.md"
    table.write_text(markdown_table(accuracy_rows(records)))
    out = {"accuracy_table": str(table)}
    import matplotlib.pyplot as plt

    from bench.data.galaxies import CLASS_NAMES
    from bench.tasks.galaxy_distillation.plots import image_grid

    for r in records:
        path = (r.get("artifacts") or {}).get("distilled")
        if not path or not Path(path).is_file():
            continue
        saved = torch.load(path, map_location="cpu", weights_only=True)
        k = int(r["config"]["galaxy_distillation"]["images_per_class"])
        # a file name from record values: the same plain-name check as run ids (a record is a file anyone can edit)
        name = check_plain_name(f"distilled_{r['config']['method']}_k{k}_seed{r.get('seed', 0)}", "report figure")
        data = r["config"].get("data") or {}
        generated = str(data.get("_target_", "")).endswith("GalaxiesDataModule")
        names = (
            list(data.get("classes") or CLASS_NAMES)
            if generated
            else [str(c) for c in range(int(saved["labels"].max()) + 1)]
        )
        fig = image_grid(saved["images"], saved["labels"], names, 10, name.replace("_", " "), scale_each=True)
        png = out_dir / f"{name}.png"
        fig.savefig(png, dpi=120, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        out[name] = str(png)
    return out
