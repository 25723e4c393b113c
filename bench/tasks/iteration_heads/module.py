"""Next-token training of a causal transformer with the loss only on the post-EoI targets."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bench.harness.module import BenchModule
from bench.harness.naming import point_name
from bench.tasks.iteration_heads.metrics import SequenceAccuracy, grouped_masked_cross_entropy

# what ``trainable=<name>`` leaves trainable (everything else is frozen)
TRAINABLE = ("all", "layer2_mlp")


class IterationHeadsModule(BenchModule):
    """The net is a :class:`bench.models.transformer.Transformer` (``forward_with_attention``).

    ``length_groups``: the training loss runs the minibatch in up to this many groups of rows cut to their own
    length (:func:`~bench.tasks.iteration_heads.metrics.length_groups`); 1 runs the padded batch as one.

    Test metrics (logged by the module): ``test/acc`` (mean of acc_L over the datamodule's ``eval_lengths``, the
    lengths with enough distinct test sequences), ``length=<L>/test/acc`` (acc_L of every length, named by
    :func:`bench.harness.naming.point_name`), ``test/token_acc``, ``test/loss``. ``test_step`` returns ``logits`` and
    ``attention`` (one map per layer)
    for the callbacks.
    """

    def __init__(self, *args: Any, length_groups: int = 6, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.length_groups = int(length_groups)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        # rows cut to their own length, in up to ``length_groups`` groups: the padded batch's loss and gradient
        # at ~60% of its tokens (1 = one padded batch)
        return grouped_masked_cross_entropy(self.net, batch, self.length_groups)

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
        dm = self.trainer.datamodule
        self.test_accuracy = SequenceAccuracy(dm.n_len, getattr(dm, "eval_lengths", None)).to(self.device)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        logits, maps = self.net.forward_with_attention(batch["x"])
        self.test_accuracy.update(logits, batch["y"], batch["mask"], batch["length"])
        return {"logits": logits, "attention": maps}

    def on_test_epoch_end(self) -> None:
        r = self.test_accuracy.compute()
        metrics = {"test/acc": r["acc"], "test/token_acc": r["token_acc"], "test/loss": r["loss"]}
        metrics.update({point_name("test/acc", length=L): a for L, a in r["per_length"].items()})
        self.log_dict({k: float(v) for k, v in metrics.items()}, sync_dist=False)
