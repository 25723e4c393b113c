"""RunContext: what a task's protocol uses to run its stages.

A protocol is a function ``protocol(ctx)``. Each stage is an ordinary Lightning ``fit``/``test`` (so callbacks,
loggers, checkpointing and DDP work in every stage); artifacts pass between stages as plain Python objects
(modules, tensors, datasets) in the protocol's own code. The context builds components from config, runs
stages, resumes them, collects metrics / validity flags / artifacts for the record, and caches stage outputs
that other runs can reuse (``ctx.cache_dir(...)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench.harness.errors import RunInterrupted
from bench.harness.record import clean_number, config_hash


class RunContext:
    def __init__(self, cfg: DictConfig, run_dir: Path, loggers: list, resume: bool) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.loggers = loggers
        self.resume = resume
        self.metrics: dict[str, float | None] = {}
        self.validity: dict[str, dict] = {}
        self.artifacts: dict[str, str] = {}
        self.seed = int(cfg.seed)

    # -- building components from config -------------------------------------------------------------------
    def build_datamodule(self, cfg: Any = None, **kwargs: Any):
        dm = instantiate(cfg if cfg is not None else self.cfg.data, **kwargs)
        dm.setup("fit")
        return dm

    def build_net(self, datamodule=None, cfg: Any = None, **kwargs: Any) -> torch.nn.Module:
        """The ``model`` config, given ``input_shape`` and ``num_classes`` from the datamodule."""
        if datamodule is not None:
            kwargs.setdefault("input_shape", list(datamodule.input_shape))
            kwargs.setdefault("num_classes", datamodule.num_classes)
        return instantiate(cfg if cfg is not None else self.cfg.model, **kwargs)

    def optimizer_factory(self, cfg: Any = None):
        cfg = cfg if cfg is not None else self.cfg.get("optimizer")
        return None if cfg is None else instantiate(cfg, _partial_=True)

    def build_module(self, datamodule=None, cfg: Any = None, **kwargs: Any) -> L.LightningModule:
        """The ``module`` config, given ``net`` (from ``model``) and ``optimizer`` unless passed in."""
        cfg = cfg if cfg is not None else self.cfg.module
        if "net" not in kwargs and self.cfg.get("model") is not None:
            kwargs["net"] = self.build_net(datamodule)
        if "optimizer" not in kwargs and self.cfg.get("optimizer") is not None:
            kwargs["optimizer"] = self.optimizer_factory()
        return instantiate(cfg, **kwargs)

    def config_callbacks(self) -> list[L.Callback]:
        """Fresh instances of the ``callbacks`` config (evaluation, NaN guard, robust, task callbacks)."""
        cbs = self.cfg.get("callbacks") or {}
        return [instantiate(c) for _, c in sorted(cbs.items()) if c is not None and "_target_" in c]

    # -- stages --------------------------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        d = self.run_dir / "stages" / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def trainer(self, stage: str, callbacks: Iterable[L.Callback] = (), checkpoint: bool = True, **overrides: Any) -> L.Trainer:
        """A Trainer from the ``trainer`` config (plus ``overrides``), with the run's loggers and, when
        ``checkpoint``, a last-checkpoint every ``checkpoint_every_n_epochs`` for resuming."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        every = int(self.cfg.get("checkpoint_every_n_epochs", 1) or 0) if checkpoint else 0
        cbs = list(callbacks)
        if every > 0:
            # one rolling file, last.ckpt, rewritten every `every` epochs (save_last alone only links to top-k saves)
            cbs.append(ModelCheckpoint(dirpath=self.stage_dir(stage), filename="last", save_top_k=1, save_last=False,
                                       every_n_epochs=every, enable_version_counter=False))
        tcfg = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        tcfg.update(overrides)
        self._prefix_loggers(stage)
        return instantiate(tcfg, callbacks=cbs, logger=self.loggers or False,
                           default_root_dir=str(self.stage_dir(stage)), enable_checkpointing=every > 0)

    def _prefix_loggers(self, stage: str) -> None:
        """Loggers name a stage's metrics as the record does (``<stage>/<name>`` except for ``main``), so stages
        that log the same names do not collide in W&B / CSV. Uses the loggers' own ``prefix`` mechanism."""
        for lg in self.loggers:
            if hasattr(lg, "_prefix"):
                lg._prefix = "" if stage == "main" else stage
                lg.LOGGER_JOIN_CHAR = "/"

    def _name(self, stage: str, key: str) -> str:
        return key if stage == "main" else f"{stage}/{key}"

    def _collect(self, stage: str, metrics: dict, callbacks: Iterable[L.Callback]) -> dict[str, float | None]:
        out = {self._name(stage, k): clean_number(v) for k, v in metrics.items()}
        self.metrics.update(out)
        for cb in callbacks:
            for k, v in (getattr(cb, "validity", None) or {}).items():
                self.validity[self._name(stage, k)] = v
        return out

    def _check(self, trainer: L.Trainer) -> None:
        if trainer.interrupted:
            raise RunInterrupted("the run was interrupted; no result record was written. "
                                 "Continue it with the same command plus ckpt_path=last.")

    def fit(
        self,
        module: L.LightningModule,
        datamodule: L.LightningDataModule,
        stage: str = "main",
        test: bool = True,
        callbacks: Iterable[L.Callback] | None = None,
        extra_callbacks: Iterable[L.Callback] = (),
        **trainer_overrides: Any,
    ) -> dict[str, float | None]:
        """Fit ``module`` (resuming the stage from its last checkpoint under ``ckpt_path=last``), then test it.
        Metrics go into the record as they are for stage ``main`` and as ``<stage>/<name>`` otherwise.
        ``callbacks=None`` means the config's callbacks; pass ``[]`` for none."""
        sdir = self.stage_dir(stage)
        done = sdir / "done.json"
        if self.resume and done.is_file():
            # finished before the interruption: reload its result instead of training again
            module.load_state_dict(torch.load(sdir / "final.pt", map_location="cpu", weights_only=True))
            saved = json.loads(done.read_text())
            self.metrics.update(saved["metrics"])
            self.validity.update(saved["validity"])
            return saved["metrics"]
        init = self.cfg.get("init_weights")
        if init and stage == "main":
            # start from given weights (fine-tuning; with trainer.max_epochs=0, evaluating a checkpoint)
            state = torch.load(str(init), map_location="cpu", weights_only=False)
            module.load_state_dict(state.get("state_dict", state))
        cbs = (self.config_callbacks() if callbacks is None else list(callbacks)) + list(extra_callbacks)
        trainer = self.trainer(stage, cbs, **trainer_overrides)
        last = sdir / "last.ckpt"
        ckpt = str(last) if self.resume and last.is_file() else None
        self.seed_stage(stage)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
        self._check(trainer)
        metrics = {k: v for k, v in trainer.callback_metrics.items()}
        if test:
            trainer.test(module, datamodule=datamodule, verbose=False)
            self._check(trainer)
            metrics.update(trainer.callback_metrics)
        out = self._collect(stage, metrics, cbs)
        if trainer.is_global_zero:
            torch.save(module.state_dict(), sdir / "final.pt")
            validity = {k: v for k, v in self.validity.items() if k.startswith(self._name(stage, ""))} if stage != "main" else self.validity
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps({"metrics": out, "validity": validity}, default=str))
            os.replace(tmp, done)
        return out

    def test(
        self,
        module: L.LightningModule,
        datamodule: L.LightningDataModule,
        stage: str = "main",
        callbacks: Iterable[L.Callback] | None = None,
        extra_callbacks: Iterable[L.Callback] = (),
        **trainer_overrides: Any,
    ) -> dict[str, float | None]:
        """Test only (no training): for modules fitted in closed form or loaded from an earlier stage."""
        cbs = (self.config_callbacks() if callbacks is None else list(callbacks)) + list(extra_callbacks)
        trainer = self.trainer(stage, cbs, checkpoint=False, **trainer_overrides)
        trainer.test(module, datamodule=datamodule, verbose=False)
        self._check(trainer)
        return self._collect(stage, dict(trainer.callback_metrics), cbs)

    def seed_stage(self, stage: str) -> None:
        """Seed every generator from the run seed and the stage name, so a stage's numbers do not depend on
        which stages ran before it in this process."""
        offset = int(config_hash({"stage": stage})[:6], 16) % 10_000
        L.seed_everything(self.seed * 10_000 + offset, workers=True, verbose=False)

    # -- outputs -------------------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, Any], stage: str = "main") -> None:
        """Metrics computed outside a Lightning stage (closed-form results, cross-stage summaries)."""
        out = {self._name(stage, k): clean_number(v) for k, v in metrics.items()}
        self.metrics.update(out)
        self._prefix_loggers("main")  # the names above are already the record's names
        for lg in self.loggers:
            lg.log_metrics({k: v for k, v in out.items() if v is not None})

    def artifact_path(self, name: str) -> Path:
        d = self.run_dir / "artifacts"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def save_figure(self, fig, name: str) -> Path:
        """Save a matplotlib figure as PNG under the run's artifacts, record its path and log it to W&B."""
        path = self.artifact_path(name if name.endswith(".png") else f"{name}.png")
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
        import matplotlib.pyplot as plt

        plt.close(fig)  # pyplot keeps every figure alive until closed
        self.artifacts[path.stem] = str(path)
        for lg in self.loggers:
            if hasattr(lg, "log_image"):
                try:
                    lg.log_image(key=f"figures/{path.stem}", images=[str(path)])
                except Exception:  # a logger that cannot take images must not fail the run
                    pass
        return path

    def add_artifact(self, name: str, path: str | Path) -> None:
        self.artifacts[name] = str(path)

    def cache_dir(self, name: str, key: Any) -> Path:
        """A folder shared by every run whose ``key`` (any JSON-able value, e.g. the config of an ERM stage)
        is the same: stages whose output other runs reuse (an ERM model reused by every second-stage method
        and seed, expert trajectories) save there and check for it first."""
        h = config_hash({"key": OmegaConf.to_container(key, resolve=True) if isinstance(key, DictConfig) else key})[:16]
        d = Path(self.cfg.work_dir) / "cache" / str(self.cfg.task.name) / f"{name}-{h}"
        d.mkdir(parents=True, exist_ok=True)
        return d
