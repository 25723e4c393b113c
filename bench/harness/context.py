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
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from bench.callbacks.rng_state import RNGStateCallback, collect_rng_state, restore_rng_state
from bench.harness.atomic import atomic_write_text
from bench.harness.checkpoint import (
    AtomicCheckpointIO,
    interrupted,
    lightning_signals,
    load_checkpoint_file,
    load_weights,
    save_atomic,
)
from bench.harness.errors import BenchError
from bench.harness.record import clean_number, config_hash
from bench.harness.seeding import stage_seed

_MISSING = object()
CALLBACK_STATES = "callbacks.pt"  # a finished stage's callback states, beside its done marker


def _holds_state(callback: L.Callback) -> bool:
    """Whether a callback keeps state across a checkpoint (overrides ``state_dict``, as Lightning checks it)."""
    return type(callback).state_dict is not L.Callback.state_dict


def plain_config(node: Any) -> Any:
    """``node`` with every OmegaConf container inside it resolved to plain dicts and lists (hashable as JSON)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return {str(k): plain_config(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain_config(v) for v in node]
    return node


atomic_torch_save = save_atomic  # one atomic torch.save (bench.harness.checkpoint, through bench.harness.atomic)


def _plain_value(value: Any) -> Any:
    """A JSON-able copy of a value passed to a component (tensors and arrays as lists, numbers as numbers)."""
    if isinstance(value, torch.Tensor) or hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def _slurm_requeue_checkpoints(stage_dir: Path) -> list[Path]:
    """The checkpoints Lightning's SLURM plugin saved in a stage folder on its requeue signal (SLURM only)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return sorted(stage_dir.glob("hpc_ckpt_*.ckpt")) if SLURMEnvironment.detect() else []


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
        self._seed_scope: int | None = None  # set inside cached_stage: the seed its stages derive from
        self.user_checkpoint: tuple[str, Path] | None = None  # (stage, file) of ckpt_path=<file>
        self.user_checkpoint_used = False
        self.replayed_stages: list[str] = []  # stages reloaded from their done marker instead of trained
        self.filled_config: dict[str, Any] = {}  # "model.mean" -> the value used where the config said null

    # -- building components from config -------------------------------------------------------------------
    def build_datamodule(self, cfg: Any = None, **kwargs: Any):
        dm = instantiate(cfg if cfg is not None else self.cfg.data, **kwargs)
        dm.setup("fit")
        return dm

    def build_net(self, datamodule=None, cfg: Any = None, **kwargs: Any) -> torch.nn.Module:
        """The ``model`` config, given ``input_shape`` and ``num_classes`` from the datamodule. Values passed in for
        keys the ``model`` config leaves null or unset (the data's shape, its input statistics) are what the run
        used: the record keeps them under ``filled_config`` (its ``config`` keeps the null the run was hashed on)."""
        if datamodule is not None:
            kwargs.setdefault("input_shape", list(datamodule.input_shape))
            kwargs.setdefault("num_classes", datamodule.num_classes)
        if cfg is None:
            for key, value in kwargs.items():
                if self.cfg.model.get(key) is None:
                    self.filled_config.setdefault(f"model.{key}", _plain_value(value))
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

    def trainer(
        self, stage: str, callbacks: Iterable[L.Callback] = (), checkpoint: bool = True, **overrides: Any
    ) -> L.Trainer:
        """A Trainer from the ``trainer`` config (plus ``overrides``), with the run's loggers and, when
        ``checkpoint``, a last-checkpoint every ``checkpoint_every_n_epochs`` for resuming (skipped while less than
        ``checkpoint_min_interval_s`` has passed since the previous one)."""
        from lightning.pytorch.callbacks import ProgressBar
        from lightning.pytorch.plugins.io import CheckpointIO

        from bench.callbacks.progress import EpochProgressBar

        every = int(self.cfg.get("checkpoint_every_n_epochs", 1) or 0) if checkpoint else 0
        cbs = list(callbacks)
        if every > 0:
            # one rolling file, last.ckpt, rewritten every `every` epochs (save_last alone only links to top-k saves)
            # saved at the end of the training epoch, after validation, callbacks and the scheduler step: the state
            # an uninterrupted run starts the next epoch from
            cbs.append(
                LastCheckpoint(
                    min_interval_s=float(self.cfg.get("checkpoint_min_interval_s", 0) or 0),
                    dirpath=self.stage_dir(stage),
                    filename="last",
                    save_top_k=1,
                    save_last=False,
                    every_n_epochs=every,
                    enable_version_counter=False,
                    save_on_train_epoch_end=True,
                )
            )
        tcfg = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        tcfg.update(overrides)
        if tcfg.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in cbs):
            cbs.append(EpochProgressBar())  # epochs, optimizer steps/s, the epoch's loss (Lightning's counts chunks)
        plugins = tcfg.pop("plugins", None) or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) or "CheckpointIO" in str(p) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # temp file in the stage folder, fsync, rename
        self._prefix_loggers(stage)
        return instantiate(
            tcfg,
            callbacks=cbs,
            logger=self.loggers or False,
            plugins=plugins,
            default_root_dir=str(self.stage_dir(stage)),
            enable_checkpointing=every > 0,
        )

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
            raise interrupted("interrupted")

    def _run_trainer(self, trainer: L.Trainer, fn: Callable, *args: Any, **kwargs: Any) -> None:
        """``trainer.fit`` / ``trainer.test``, with Ctrl+C and SIGTERM (Lightning turns both into a ``SystemExit``,
        status 1 or 0) reported as one line that says how to resume, with exit status 130 / 143."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        try:
            with lightning_signals():
                fn(*args, **kwargs)
        except SIGTERMException:
            raise interrupted("stopped by SIGTERM") from None
        except SystemExit:
            if trainer.interrupted:
                raise interrupted("interrupted (Ctrl+C)") from None
            raise
        self._check(trainer)

    def _resume_checkpoint(self, stage: str, sdir: Path) -> str | None:
        """The checkpoint a stage continues from: the one the user named for it (``ckpt_path=<file>``), else under
        ``ckpt_path=last`` its ``last.ckpt``."""
        named = self.user_checkpoint
        if named is not None and named[0] == stage:
            return str(named[1])
        if _slurm_requeue_checkpoints(sdir):
            return None  # a requeued SLURM job: Lightning resumes from its own (newer) hpc checkpoint
        last = sdir / "last.ckpt"
        if self.resume and not last.is_file() and int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) == 0:
            # say so: a user who asked to continue would otherwise not know the stage's work is done again
            print(
                f"warning: ckpt_path=last: stage {stage!r} has no checkpoint to continue from (it had not started, "
                "was stopped before its first checkpoint, or checkpoint_min_interval_s had not passed): it starts "
                "from its beginning",
                file=sys.stderr,
            )
        return str(last) if self.resume and last.is_file() else None

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
        cbs = (self.config_callbacks() if callbacks is None else list(callbacks)) + list(extra_callbacks)
        named = self.user_checkpoint is not None and self.user_checkpoint[0] == stage
        redo = False
        if self.resume and done.is_file() and not named:  # a checkpoint the user names is trained on, not skipped
            replayed = self._replay_stage(stage, sdir, module, cbs)
            if replayed is not None:
                return replayed
            # trained again from its start: its last.ckpt holds the end of training, from which the last epoch's
            # training metrics would be missing
            redo = True
        self._claim_user_checkpoint(stage)
        init = self.cfg.get("init_weights")
        if init and stage == "main":
            # start from given weights (fine-tuning; with trainer.max_epochs=0, evaluating a checkpoint)
            load_weights(module, str(init), named_by="init_weights")  # one line for a file of another model
        # first, so the random state is back before any other callback draws from it
        logged = LoggedMetricsState()
        trainer = self.trainer(stage, [RNGStateCallback(), logged, *cbs], **trainer_overrides)
        ckpt = None if redo else self._resume_checkpoint(stage, sdir)
        self.seed_stage(stage)  # a resumed stage is seeded alike; the checkpoint's random state then replaces it
        self._run_trainer(trainer, trainer.fit, module, datamodule=datamodule, ckpt_path=ckpt)
        for hpc in _slurm_requeue_checkpoints(sdir) if trainer.is_global_zero else []:
            hpc.unlink(missing_ok=True)  # used up; on SLURM, Lightning's test would otherwise load its older weights
        metrics = {**logged.restored, **trainer.callback_metrics}
        if test:
            self._run_trainer(trainer, trainer.test, module, datamodule=datamodule, verbose=False)
            metrics.update(trainer.callback_metrics)
        out = self._collect(stage, metrics, cbs)
        if trainer.is_global_zero:
            save_atomic(module.state_dict(), sdir / "final.pt")
            save_atomic(collect_rng_state(), sdir / "rng.pt")
            # what the stage's callbacks collected (snapshots, selected epoch, curves): a replay hands it back
            save_atomic({cb.state_key: cb.state_dict() for cb in cbs if _holds_state(cb)}, sdir / CALLBACK_STATES)
            validity = (
                {k: v for k, v in self.validity.items() if k.startswith(self._name(stage, ""))}
                if stage != "main"
                else self.validity
            )
            # written last: the marker vouches for every file above
            atomic_write_text(done, json.dumps({"metrics": out, "validity": validity}, default=str))
        return out

    def _replay_stage(
        self, stage: str, sdir: Path, module: L.LightningModule, callbacks: list[L.Callback]
    ) -> dict[str, float | None] | None:
        """A stage finished before the interruption: its weights, the random state it ended with (so that what
        follows draws what it drew in the uninterrupted run), its callbacks' states and its metrics, instead of
        training it again. ``None`` when a callback's state was not kept with it (a marker from an older version):
        the stage is then trained again, which gives the same result."""
        done = sdir / "done.json"
        try:
            saved = json.loads(done.read_text())
            metrics, validity = dict(saved["metrics"]), dict(saved["validity"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BenchError(
                f"cannot read {done} ({type(e).__name__}): the marker of the finished stage {stage!r} is damaged; "
                "delete it to redo that stage (ckpt_path=last still reuses the other finished stages)"
            ) from None
        stateful = [cb for cb in callbacks if _holds_state(cb)]
        states = load_checkpoint_file(sdir / CALLBACK_STATES) if (sdir / CALLBACK_STATES).is_file() else {}
        if any(cb.state_key not in states for cb in stateful):
            return None
        module.load_state_dict(load_checkpoint_file(sdir / "final.pt", weights_only=True))
        for cb in stateful:
            cb.load_state_dict(states[cb.state_key])
        if (sdir / "rng.pt").is_file():
            restore_rng_state(load_checkpoint_file(sdir / "rng.pt", weights_only=True))
        self.replayed_stages.append(stage)
        self.metrics.update(metrics)
        self.validity.update(validity)
        return metrics

    def _claim_user_checkpoint(self, stage: str) -> None:
        """Before ``stage`` trains: the checkpoint the user named (``ckpt_path=<file>``) is for this stage, or was
        used already; a run that would train another stage first is refused now, not after training with the
        file ignored."""
        if self.user_checkpoint is None or self.user_checkpoint_used:
            return
        named, path = self.user_checkpoint
        if named == stage:
            self.user_checkpoint_used = True
            return
        raise BenchError(
            f"ckpt_path={path} continues stage {named!r}, but this {self.cfg.task.name} run trains stage {stage!r} "
            f"first ({named!r} trains later, comes from a shared stage cache, or does not exist); give a checkpoint "
            f"of the stage that trains first (here {stage!r}: stages/{stage}/last.ckpt of a run folder), "
            "ckpt_path=last to continue this config's run, or no ckpt_path"
        )

    def check_user_checkpoint_used(self) -> None:
        """After the protocol: a named checkpoint that no stage trained from (the task has no such stage, or its
        stages came from a shared cache) is refused rather than silently ignored."""
        if self.user_checkpoint is None or self.user_checkpoint_used:
            return
        named, path = self.user_checkpoint
        raise BenchError(
            f"ckpt_path={path} continues stage {named!r}, but this {self.cfg.task.name} run trained no such stage "
            "(none by that name, or it came from a shared stage cache); give a checkpoint of a stage this run "
            "trains, ckpt_path=last to continue this config's run, or no ckpt_path"
        )

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
        self._run_trainer(trainer, trainer.test, module, datamodule=datamodule, verbose=False)
        return self._collect(stage, dict(trainer.callback_metrics), cbs)

    def seed_stage(self, stage: str, seed: int | None = None) -> None:
        """Seed every generator from ``seed`` (default: the run seed) and the stage name, so a stage's numbers do
        not depend on which stages ran before it in this process. Any integer seed works: the pair is hashed
        into the 32-bit range the generators accept."""
        if seed is None:
            seed = self.seed if self._seed_scope is None else self._seed_scope
        L.seed_everything(stage_seed(int(seed), stage), workers=True, verbose=False)

    def cached_stage(self, name: str, key: Any, train_fn: Callable[[], Any], seed: int | None = None) -> Any:
        """Run ``train_fn()`` once per distinct ``key`` and return its result; a later run with the same key (another
        method, density or second-stage seed) gets the saved result back, and the stage's metrics, validity flags
        and artifacts are replayed into its record as if it had trained.

        Args:
            name: the stage's name (its metrics are recorded as ``<name>/...`` when ``train_fn`` fits with
                ``stage=name``).
            key: a mapping of the config parts that define the stage (``{"data": cfg.data, "model": cfg.model,
                ...}``). The harness adds the run-wide settings that change numbers (``trainer``, ``num_threads``,
                the task's name and version) and hashes it with the run hash's exclusions.
            train_fn: computes the stage; returns anything ``torch.save`` stores with ``weights_only=True``
                (tensors, numbers, strings, containers of them, state dicts).
            seed: seeds the stage (default: the run seed); part of the key.
        """
        seed = self.seed if seed is None else int(seed)
        folder = self.cache_dir(name, {"stage": key, "seed": seed, **self._run_wide_settings()})
        with _stage_lock(folder):  # parallel runs (bench verify --jobs) that share the stage compute it once
            return self._cached_stage_in(folder, name, train_fn, seed)

    def _cached_stage_in(self, folder: Path, name: str, train_fn: Callable[[], Any], seed: int) -> Any:
        result_file, replay_file = folder / "result.pt", folder / "replay.json"
        if result_file.is_file() and replay_file.is_file():
            replay = json.loads(replay_file.read_text())
            self.metrics.update(replay["metrics"])
            self.validity.update(replay["validity"])
            self.artifacts.update(replay["artifacts"])
            for k, v in replay.get("filled_config", {}).items():  # caches written before it lack it
                self.filled_config.setdefault(k, v)
            for lg in self.loggers:
                lg.log_metrics({k: v for k, v in replay["metrics"].items() if v is not None})
            return torch.load(result_file, map_location="cpu", weights_only=True)
        before = (dict(self.metrics), dict(self.validity), dict(self.artifacts), dict(self.filled_config))
        replays_before = len(self.replayed_stages)
        # every stage fitted inside derives its seed from the cached stage's seed, not the run's: the result
        # depends on the key alone, whichever run computes it first
        outer, self._seed_scope = self._seed_scope, seed
        try:
            self.seed_stage(name)
            result = train_fn()
        finally:
            self._seed_scope = outer
        if len(self.replayed_stages) > replays_before:
            # part of it was reloaded from a resumed run's done markers: right for this run, but anything a stage
            # held outside its callbacks' states would be missing, and other runs would inherit that. Only a result
            # computed in one go is shared; the next run that needs it computes it once.
            return result
        replay = {
            "metrics": {k: v for k, v in self.metrics.items() if before[0].get(k, _MISSING) != v},
            "validity": {k: v for k, v in self.validity.items() if k not in before[1]},
            "artifacts": {k: v for k, v in self.artifacts.items() if k not in before[2]},
            "filled_config": {k: v for k, v in self.filled_config.items() if k not in before[3]},
        }
        if int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) == 0:
            atomic_torch_save(result, result_file)
            atomic_write_text(replay_file, json.dumps(replay, sort_keys=True, default=str))
        return result

    def _run_wide_settings(self) -> dict:
        """Settings outside a stage's own config that still change its numbers."""
        return {
            "trainer": plain_config(self.cfg.get("trainer")),
            "num_threads": self.cfg.get("num_threads"),
            "task": {"name": str(self.cfg.task.name), "version": str(self.cfg.task.version)},
        }

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
        h = config_hash({"key": plain_config(key)})[:16]
        d = Path(self.cfg.work_dir) / "cache" / str(self.cfg.task.name) / f"{name}-{h}"
        d.mkdir(parents=True, exist_ok=True)
        return d


@contextmanager
def _stage_lock(folder: Path):
    """An exclusive lock on a cached stage's folder while one process computes or reads it. Not under DDP: every
    rank enters the stage and trains it together, so a rank waiting on another's lock would stall the group."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LoggedMetricsState(L.Callback):
    """What a stage has logged so far (``trainer.callback_metrics``) travels with its checkpoints. A stage resumed
    from the checkpoint of its last epoch trains no further epoch, and one resumed mid-way does not log again what
    only earlier epochs logged: ``restored`` hands back what the uninterrupted stage would still hold."""

    def __init__(self) -> None:
        self.restored: dict[str, torch.Tensor] = {}
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        logged = self._trainer.callback_metrics if self._trainer is not None else {}
        return {"metrics": {k: torch.as_tensor(v).detach().cpu().clone() for k, v in logged.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = dict(state_dict.get("metrics") or {})


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` at the end of every ``every_n_epochs``-th training epoch, unless the previous write (or the
    start of the stage) was less than ``min_interval_s`` seconds ago: a short run spends nothing on checkpoints
    it will not need, a long one loses at most that much work to an interruption. The skip depends on time
    only, never on the numbers, so a resumed run still equals the uninterrupted one."""

    def __init__(self, *args: Any, min_interval_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_interval_s = float(min_interval_s)
        self._last_write = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_write = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.min_interval_s > 0 and self._last_write is not None:
            if time.monotonic() - self._last_write < self.min_interval_s:
                return
        super().on_train_epoch_end(trainer, pl_module)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._last_write = time.monotonic()
