"""Clean accuracy, worst-class accuracy and, when the data have groups, per-group / worst-group accuracy."""

from __future__ import annotations

from typing import Any

import lightning as L

from bench.metrics.classification import PerGroupAccuracy


def group_metrics(prefix: str, name: str, result: dict) -> dict[str, float]:
    """Flatten a :class:`PerGroupAccuracy` result into record metric names."""
    out = {
        f"{prefix}/worst_{name}_acc": result["worst"],
        f"{prefix}/adjusted_{name}_acc": result["adjusted"],
    }
    for g, (acc, n) in enumerate(zip(result["per_group"].tolist(), result["count"].tolist())):
        out[f"{prefix}/{name}_acc/{g}"] = acc
        out[f"{prefix}/{name}_count/{g}"] = float(n)
    return out


class ClassificationEvalCallback(L.Callback):
    """Logs ``test/acc``, ``test/worst_class_acc``, per-class recall and, when the datamodule defines
    ``num_groups`` and batches carry ``group``, ``test/worst_group_acc``, ``test/adjusted_group_acc`` and
    per-group accuracy and count."""

    def __init__(self, prefix: str = "test") -> None:
        self.prefix = prefix

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        self.classes = PerGroupAccuracy(dm.num_classes).to(pl_module.device)
        ng = getattr(dm, "num_groups", 0)
        self.groups = PerGroupAccuracy(ng).to(pl_module.device) if ng else None

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        logits = outputs["logits"].detach()
        self.classes.update(logits, batch["y"])
        if self.groups is not None and "group" in batch:
            self.groups.update(logits, batch["y"], batch["group"])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        res = self.classes.compute()
        metrics = {f"{self.prefix}/acc": res["acc"], **group_metrics(self.prefix, "class", res)}
        if self.groups is not None:
            metrics.update(group_metrics(self.prefix, "group", self.groups.compute()))
        pl_module.log_dict(metrics, sync_dist=False)
