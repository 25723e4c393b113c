"""Next-token training of a causal transformer with the loss only on the post-EoI targets."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.harness.module import BenchModule
from bench.tasks.iteration_heads.metrics import SequenceAccuracy, masked_cross_entropy

# what ``trainable=<name>`` leaves trainable (everything else is frozen)
TRAINABLE = ("all", "layer2_mlp")


class IterationHeadsModule(BenchModule):
    """The net is a :class:`bench.models.transformer.Transformer` (``forward_with_attention``).

    Test metrics (logged by the module): ``test/acc`` (mean over lengths of acc_L), ``test/acc_L<L>``,
    ``test/token_acc``, ``test/loss``. ``test_step`` returns ``logits`` and ``attention`` (one map per layer)
    for the callbacks.
    """

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return masked_cross_entropy(self.net(batch["x"]), batch["y"], batch["mask"])

    def set_trainable(self, which: str) -> None:
        """``all`` or ``layer2_mlp`` (only the MLP of the second block learns: the transfer's partial
        fine-tuning). Call before the optimizer is built."""
        if which not in TRAINABLE:
            from bench.harness.errors import BenchError

            raise BenchError(f"unknown trainable part {which!r}; known: {', '.join(TRAINABLE)}")
        for p in self.net.parameters():
            p.requires_grad_(which == "all")
        if which == "layer2_mlp":
            for p in self.net.blocks[1].mlp.parameters():
                p.requires_grad_(True)

    # -- test ----------------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self.test_accuracy = SequenceAccuracy(self.trainer.datamodule.n_len).to(self.device)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        logits, maps = self.net.forward_with_attention(batch["x"])
        self.test_accuracy.update(logits, batch["y"], batch["mask"], batch["length"])
        return {"logits": logits, "attention": maps}

    def on_test_epoch_end(self) -> None:
        r = self.test_accuracy.compute()
        metrics = {"test/acc": r["acc"], "test/token_acc": r["token_acc"], "test/loss": r["loss"]}
        metrics.update({f"test/acc_L{L}": a for L, a in r["per_length"].items()})
        self.log_dict({k: float(v) for k, v in metrics.items()}, sync_dist=False)
