"""Evaluation over training and at test: sequence accuracy, epochs to an accuracy threshold, the iteration-head
attention metrics and attention-map figures."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from torch import Tensor

from bench.tasks.iteration_heads.metrics import (
    IterationHeadStats,
    SequenceAccuracy,
    iteration_head_queries,
    length_grouped,
)

ATTENTION_KEYS = ("l2_mass_xt", "l1_mass_eoi", "l2_peak_xt", "l1_peak_eoi", "uniform_mass", "l2_mass_ratio")


@torch.no_grad()
def evaluate_split(
    net: torch.nn.Module,
    loader: Any,
    n_len: int,
    device: torch.device,
    attention: bool,
    averaged: list[int] | None = None,
) -> dict[str, Any]:
    """Sequence accuracy (mean of acc_L over ``averaged`` lengths) and, when ``attention``, the iteration-head
    metrics of ``net`` on a loader."""
    was_training = net.training
    net.eval()
    acc = SequenceAccuracy(n_len, averaged).to(device)
    heads = net.blocks[0].attn.n_heads
    stats = IterationHeadStats(n_len, heads).to(device) if attention else None
    try:
        for full in loader:
            # rows cut to their own length (outputs at the kept positions are those of the padded batch)
            for batch in length_grouped({k: v.to(device) for k, v in full.items()}):
                logits, maps = net.forward_with_attention(batch["x"])
                acc.update(logits, batch["y"], batch["mask"], batch["length"])
                if stats is not None:
                    stats.update(maps[0], maps[1], batch["length"])
    finally:
        net.train(was_training)
    out = {"acc": acc.compute()}
    if stats is not None:
        out["attention"] = stats.compute()
    return out


class IterationHeadCallback(L.Callback):
    """Every ``every_n_epochs`` epochs: test-split sequence accuracy and (with chain of thought) the attention
    metrics, logged as ``curve/acc`` and ``curve/attn/<name>``; the first epoch at which the accuracy reaches
    ``threshold`` (optionally stopping training there). At test: ``test/attn/<name>`` (see metrics.py),
    ``epochs_to_<pct>`` (NaN when never reached within the budget; the resolution is ``every_n_epochs``),
    ``reached_<pct>`` (0/1), ``train/acc`` (sequence accuracy on the training split), and, for the protocol to
    save: ``figures`` (attention maps of ``n_examples`` test sequences of the longest length; curves over
    training) and ``attention_record`` (those maps, per-step metric curves, the training history).
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        threshold: float = 0.95,
        stop_when_reached: bool = False,
        n_examples: int = 3,
        figures: bool = True,
    ) -> None:
        self.every_n_epochs, self.threshold = int(every_n_epochs), float(threshold)
        self.stop_when_reached, self.n_examples, self.make_figures = (
            bool(stop_when_reached),
            int(n_examples),
            bool(figures),
        )
        self.history: list[dict[str, float]] = []
        self.reached_epoch: int | None = None
        self.figures: dict[str, Any] = {}
        self.attention_record: dict[str, Any] = {}
        self.figure_data: dict[str, Any] = {}
        self.pct = round(100 * self.threshold)

    # -- over training ---------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if not self.every_n_epochs or epoch % self.every_n_epochs:
            return
        dm = trainer.datamodule
        r = evaluate_split(
            pl_module.net,
            dm.test_dataloader(),
            dm.n_len,
            pl_module.device,
            attention=dm.cot,
            averaged=getattr(dm, "eval_lengths", None),
        )
        point = {"epoch": float(epoch), "acc": float(r["acc"]["acc"])}
        if "attention" in r:
            point.update({k: float(r["attention"][k]) for k in ATTENTION_KEYS})
        self.history.append(point)
        pl_module.log_dict(
            {("curve/" if k == "acc" else "curve/attn/") + k: v for k, v in point.items() if k != "epoch"},
            on_step=False,
            on_epoch=True,
            sync_dist=False,
        )
        if self.reached_epoch is None and point["acc"] >= self.threshold:
            self.reached_epoch = epoch
        if self.stop_when_reached and self.reached_epoch is not None:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        # the test's attention record too: a finished stage replayed on resume gives the protocol its figures back
        return {
            "history": self.history,
            "reached_epoch": self.reached_epoch,
            "attention_record": self.attention_record,
            "figure_data": self.figure_data,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.reached_epoch = list(state["history"]), state["reached_epoch"]
        self.attention_record = dict(state.get("attention_record") or {})
        self.figure_data = dict(state.get("figure_data") or {})
        if self.attention_record:
            self._draw_figures()

    # -- test --------------------------------------------------------------------------------------------------
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        self.stats = (
            IterationHeadStats(dm.n_len, pl_module.net.blocks[0].attn.n_heads).to(pl_module.device) if dm.cot else None
        )

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.stats is not None:
            maps = outputs["attention"]
            self.stats.update(maps[0], maps[1], batch["length"])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        metrics = {
            f"epochs_to_{self.pct}": float(self.reached_epoch) if self.reached_epoch is not None else math.nan,
            f"reached_{self.pct}": float(self.reached_epoch is not None),
            "train/acc": float(
                evaluate_split(
                    pl_module.net,
                    dm.train_eval_dataloader(),
                    dm.n_len,
                    pl_module.device,
                    False,
                    getattr(dm, "eval_lengths", None),
                )["acc"]["acc"]
            ),
        }
        per_step = {}
        if self.stats is not None:
            r = self.stats.compute()
            metrics.update({f"test/attn/{k}": float(r[k]) for k in ATTENTION_KEYS})
            per_step = {k.split("/", 1)[1]: v.cpu() for k, v in r.items() if k.startswith("per_step/")}
        pl_module.log_dict(metrics, sync_dist=False)
        examples = self._examples(dm)
        with torch.no_grad():
            was_training = pl_module.net.training
            pl_module.net.eval()
            _, maps = pl_module.net.forward_with_attention(examples["x"].to(pl_module.device))
            pl_module.net.train(was_training)
        self.attention_record = {
            "tokens": examples["x"],
            "lengths": examples["length"],
            "maps": [m.cpu() for m in maps],
            "per_step": per_step,
            "history": list(self.history),
            "token_ids": dict(dm.tokens),
        }
        self.figure_data = {"cot": bool(dm.cot), "problem": dm.problem}  # what the figures read of the data
        self._draw_figures()

    def _draw_figures(self) -> None:
        """``figures`` from the attention record and ``figure_data`` (so a replayed stage draws the same ones)."""
        if not self.make_figures:
            return
        r = self.attention_record
        dm = SimpleNamespace(tokens=r["token_ids"], **self.figure_data)
        self.figures = {"attention_maps": attention_figure(r["tokens"], r["lengths"], r["maps"], dm)}
        if self.history:
            self.figures["training_curves"] = curves_figure(self.history, self.threshold)

    def _examples(self, dm: Any) -> dict[str, Tensor]:
        test = dm.split("test")
        longest = torch.nonzero(test["length"] == test["length"].max()).flatten()[: self.n_examples]
        return {"x": test["x"][longest], "length": test["length"][longest]}


def token_names(tokens: Tensor, ids: dict[str, int]) -> list[str]:
    names = {
        v: ("BoS" if k.startswith("bos") else k.upper().replace("EOI", "EoI").replace("EOS", "EoS"))
        for k, v in ids.items()
    }
    return [names.get(int(t), str(int(t))) for t in tokens]


def attention_figure(x: Tensor, lengths: Tensor, maps: list[Tensor], dm: Any):
    """One row per example, one column per layer (first head); the cells an iteration head would light up are
    circled: layer 1 -> EoI, layer 2 -> x_t, at the position q_t that predicts s_t."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, layers = len(x), min(len(maps), 2)
    fig, axes = plt.subplots(n, layers, figsize=(4.2 * layers, 4.0 * n), squeeze=False)
    for i in range(n):
        L_i = int(lengths[i])
        end = (2 * L_i + 2) if dm.cot else (L_i + 3)  # up to the position that predicts the closing EoS
        names = token_names(x[i, :end], dm.tokens)
        q = iteration_head_queries(lengths[i : i + 1])
        for layer in range(layers):
            ax = axes[i, layer]
            ax.imshow(maps[layer][i, 0, :end, :end].numpy(), cmap="viridis", vmin=0, vmax=1)
            if dm.cot:
                keys = q["eoi_key"] if layer == 0 else q["x_key"]
                ax.scatter(keys.numpy(), q["query"].numpy(), s=30, facecolors="none", edgecolors="red", linewidths=0.8)
            ax.set_xticks(range(end), names, fontsize=6, rotation=90)
            ax.set_yticks(range(end), names, fontsize=6)
            ax.set_title(f"layer {layer + 1}, L={L_i}", fontsize=9)
            ax.set_xlabel("key", fontsize=8)
            ax.set_ylabel("query", fontsize=8)
    fig.suptitle(f"{dm.problem}, {'CoT' if dm.cot else 'no CoT'}: attention (red: iteration-head targets)", fontsize=10)
    fig.tight_layout()
    return fig


def curves_figure(history: list[dict[str, float]], threshold: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    for key, label in (
        ("acc", "test sequence acc"),
        ("l2_mass_xt", "layer-2 mass on x_t"),
        ("l1_mass_eoi", "layer-1 mass on EoI"),
        ("l2_peak_xt", "layer-2 peakiness"),
    ):
        if key in history[0]:
            ax.plot(epochs, [h[key] for h in history], label=label)
    ax.axhline(threshold, color="gray", ls=":", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
