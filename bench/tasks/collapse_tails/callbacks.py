"""Test accuracy per gcd-frequency bucket (the bucket is the batch's ``group``)."""

from __future__ import annotations

from typing import Any

import lightning as L

from bench.callbacks.classification import group_metrics
from bench.metrics.classification import PerGroupAccuracy


class BucketAccuracyCallback(L.Callback):
    """Logs ``test/acc`` and, per bucket b, ``test/bucket_acc/<b>`` and ``test/bucket_count/<b>`` (plus
    ``test/worst_bucket_acc`` and ``test/adjusted_bucket_acc``). Used instead of the per-class callback: the
    GCD task has max_int classes, most of them with a handful of test examples."""

    def __init__(self, prefix: str = "test") -> None:
        self.prefix = prefix

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.buckets = PerGroupAccuracy(trainer.datamodule.num_groups).to(pl_module.device)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.buckets.update(outputs["logits"].detach(), batch["y"], batch["group"])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        res = self.buckets.compute()
        pl_module.log_dict(
            {f"{self.prefix}/acc": res["acc"], **group_metrics(self.prefix, "bucket", res)}, sync_dist=False
        )
