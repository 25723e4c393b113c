"""The two pipelines of the task.

``single``: train on ``data.problem`` and test (stage ``main``).
``transfer``: pre-train on ``transfer.source`` (stage ``pretrain``), then on ``transfer.target`` fine-tune the
pre-trained model once per entry of ``transfer.modes`` (stage named after the mode: ``full`` trains every
weight, ``layer2_mlp`` only the MLP of the second block) and train a fresh model (stage ``scratch``, unless
``transfer.scratch=false``), each with the same epoch budget, stopping at the callback's ``threshold`` test
accuracy; ``<stage>/epochs_to_95`` is what the claims compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import OmegaConf

from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.tasks.iteration_heads.callbacks import IterationHeadCallback
from bench.tasks.iteration_heads.data import PROBLEMS, sequence_length

PIPELINES = ("single", "transfer")
MODES = {"full": "all", "layer2_mlp": "layer2_mlp"}  # transfer mode -> IterationHeadsModule.set_trainable


def check_config(ctx: RunContext) -> None:
    """Config-time checks with task-specific messages (the datamodule checks the modulus and the tokens)."""
    cfg = ctx.cfg
    need = sequence_length(int(cfg.data.n_len), bool(cfg.data.cot)) - 1
    context = cfg.model.get("context")
    if context is not None and need > int(context):
        most = (int(context) - 2) // 2 if cfg.data.cot else int(context) - 3
        raise BenchError(
            f"data.n_len={cfg.data.n_len} needs {need} positions (data.cot={cfg.data.cot}) "
            f"but model.context={context}; "
            f"raise model.context to >= {need} or lower data.n_len to <= {most}"
        )
    if int(cfg.model.get("n_layers", 2)) < 2:
        raise BenchError("the iteration-head metrics read the first two attention layers; set model.n_layers >= 2")


def run(ctx: RunContext, pipeline: str = "single", transfer: Any = None) -> None:
    if pipeline not in PIPELINES:
        raise BenchError(f"unknown pipeline {pipeline!r}; set pipeline= one of {', '.join(PIPELINES)}")
    check_config(ctx)
    if pipeline == "single":
        dm = ctx.build_datamodule()
        train_stage(ctx, ctx.build_module(dm), dm, "main")
    else:
        options = (
            OmegaConf.to_container(transfer, resolve=True) if OmegaConf.is_config(transfer) else dict(transfer or {})
        )
        run_transfer(ctx, **options)


def train_stage(
    ctx: RunContext,
    module: Any,
    dm: Any,
    stage: str,
    stop_when_reached: bool | None = None,
    every_n_epochs: int | None = None,
    **trainer_overrides: Any,
) -> dict:
    """Fit and test one stage with the config's callbacks (``stop_when_reached`` / ``every_n_epochs`` override
    the iteration-head callback's); save its figures and attention maps."""
    callbacks = ctx.config_callbacks()
    heads = [cb for cb in callbacks if isinstance(cb, IterationHeadCallback)]
    for cb in heads:
        if stop_when_reached is not None:
            cb.stop_when_reached = stop_when_reached
        if every_n_epochs is not None:
            cb.every_n_epochs = every_n_epochs
    out = ctx.fit(module, dm, stage=stage, callbacks=callbacks, **trainer_overrides)
    prefix = "" if stage == "main" else f"{stage}_"
    import matplotlib.pyplot as plt

    for cb in heads:
        for name, fig in cb.figures.items():
            ctx.save_figure(fig, prefix + name)
            plt.close(fig)
        if cb.attention_record:
            path = ctx.artifact_path(f"{prefix}attention_record.pt")
            torch.save(cb.attention_record, path)
            ctx.add_artifact(f"{prefix}attention_record", path)
    return out


def run_transfer(
    ctx: RunContext,
    source: str = "polynomial",
    target: str = "parity",
    modes: Sequence[str] = ("full",),
    pretrain_epochs: int = 100,
    finetune_epochs: int = 100,
    finetune_lr: float | None = None,
    scratch: bool = True,
    eval_every_n_epochs: int = 1,
) -> None:
    """See the module docstring. ``finetune_lr``: the optimizer's lr for the fine-tuning stages (``None`` = the
    config's); the scratch stage always uses the config's optimizer. ``scratch=False`` leaves the scratch stage
    out (the claims then take the ``pipeline=single`` run of the same seed as the from-scratch reference).
    ``eval_every_n_epochs``: resolution of epochs-to-threshold in the fine-tuning and scratch stages."""
    for name, problem in (("source", source), ("target", target)):
        if problem not in PROBLEMS:
            raise BenchError(f"unknown transfer.{name} problem {problem!r}; known problems: {', '.join(PROBLEMS)}")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise BenchError(f"unknown transfer mode(s) {unknown}; known modes: {', '.join(MODES)}")

    source_dm = ctx.build_datamodule(problem=source)
    pretrained = ctx.build_module(source_dm)
    train_stage(ctx, pretrained, source_dm, "pretrain", stop_when_reached=False, max_epochs=int(pretrain_epochs))
    weights = {k: v.detach().clone() for k, v in pretrained.net.state_dict().items()}

    target_dm = ctx.build_datamodule(problem=target)
    if target_dm.num_classes != source_dm.num_classes:
        raise BenchError("source and target vocabularies differ; keep data.n_symbols and data.special_tokens fixed")
    budget = {"stop_when_reached": True, "every_n_epochs": int(eval_every_n_epochs), "max_epochs": int(finetune_epochs)}
    optimizer = None
    if finetune_lr is not None:
        optimizer = ctx.optimizer_factory(OmegaConf.merge(ctx.cfg.optimizer, {"lr": float(finetune_lr)}))
    for mode in modes:
        module = ctx.build_module(target_dm, **({"optimizer": optimizer} if optimizer is not None else {}))
        module.net.load_state_dict(weights)
        module.set_trainable(MODES[mode])
        train_stage(ctx, module, target_dm, mode, **budget)
    if scratch:
        train_stage(ctx, ctx.build_module(target_dm), target_dm, "scratch", **budget)
