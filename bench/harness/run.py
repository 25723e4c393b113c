"""One run: config -> seed -> the task's protocol (its stages) -> claims -> one result record."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import bench
from bench.harness.checkpoint import run_signals
from bench.harness.claims import RecordSet, evaluate, load_claims
from bench.harness.errors import BenchError, RunInterrupted
from bench.harness.provenance import git_sha, package_versions
from bench.harness.record import SCHEMA_VERSION, check_plain_name, config_hash, write_record
from bench.harness.spec import headline, run_label
from bench.harness.validation import validate_run_config


def resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def run_identity(cfg: DictConfig) -> tuple[str, str, str]:
    """(run_id, config_hash, group_hash). The run id derives from the config hash, so the same config and seed
    map to the same run folder (``ckpt_path=last`` finds it) and the same record file."""
    from bench.harness.threads import apply_thread_default

    apply_thread_default(cfg)  # num_threads=auto -> the count that runs (part of the run hash)
    c = resolved(cfg)
    h = config_hash(c)
    # the group (a leaderboard row: all seeds of one config) hashes the config *before* interpolation, so every
    # value derived from ${seed} (data.seed, a stage's seed, ...) drops out with the seed itself; the thread count
    # changes only the last bits, so it splits configs (the run hash) but not rows
    g = config_hash(OmegaConf.to_container(cfg, resolve=False), exclude=("seed", "num_threads"))
    # the run id names the run folder (which a fresh run clears) and the record file: one plain name, checked
    # before anything is written (run_id=/abs/path or ../x would reach outside work_dir and results_dir)
    given = cfg.get("run_id")
    run_id = h[:12] if given is None or str(given) == "" else check_plain_name(str(given), "run_id")
    check_plain_name(str(cfg.task.name), "task.name")  # the folder of both (validate_run_config says more)
    return run_id, h, g


def _build_loggers(
    cfg: DictConfig, run_dir: Path, run_id: str, group_hash: str, resume: bool, rank: int
) -> tuple[list, Any]:
    """The ``logger`` config: a mapping of logger name -> Lightning logger config (W&B: bench.harness.wandb_run)."""
    from hydra.utils import instantiate

    from bench.harness.wandb_run import build_wandb_logger, is_wandb

    loggers, wandb_logger = [], None
    for _name, lcfg in sorted((cfg.get("logger") or {}).items()):
        if lcfg is None or "_target_" not in lcfg:
            continue
        if is_wandb(lcfg):
            wandb_logger = build_wandb_logger(cfg, lcfg, run_dir, run_id, group_hash, resume, rank)
            loggers.append(wandb_logger)
            continue
        loggers.append(instantiate(lcfg, **({} if "save_dir" in lcfg else {"save_dir": str(run_dir)})))
    return loggers, wandb_logger


def user_error(e: BaseException) -> BenchError | None:
    """The BenchError behind ``e``, if any (Hydra's instantiate wraps errors raised in constructors)."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, BenchError):
            return e
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
        seen += 1
    return None


def _foreign_weights(e: BaseException, cfg: DictConfig) -> BenchError | None:
    """A checkpoint the user named (``ckpt_path``, ``init_weights``) of another model: one line naming it."""
    from bench.harness.checkpoint import weights_mismatch

    for key in ("ckpt_path", "init_weights"):
        value = cfg.get(key)
        if value and str(value) != "last":
            return weights_mismatch(e, value, key)
    return None


def quiet_lightning() -> None:
    """Silence Lightning's banner lines and the warnings that do not apply to in-memory loaders."""
    import logging
    import warnings

    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    for msg in (
        ".*Skipping val loop.*",
        ".*does not have many workers.*",
        ".*isinstance\\(treespec, LeafSpec\\).*",
        ".*ambiguous collection.*",
        ".*The number of training batches.*",
        ".*litlogger.*",
        # the module's own transfer_batch_to_device is meant (in-memory loaders), not the datamodule's
        ".*overridden `transfer_batch_to_device` in `LightningModule`.*",
    ):
        warnings.filterwarnings("ignore", message=msg)
    # Evaluation metrics are torchmetrics states reduced across ranks before they are logged (the callbacks log
    # them with sync_dist=False on purpose): Lightning's advice to sync them is false there. The training loss is a
    # per-rank mean, so its warning stays.
    warnings.filterwarnings(
        "ignore",
        message=r"It is recommended to use `self\.log\('(?!train/)[^']*', \.\.\., "
        r"sync_dist=True\)`",
    )


def process_cpu_seconds() -> float:
    """CPU time (user + system, every thread) of this process and of its finished child processes."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_fit(cfg: DictConfig) -> dict:
    """Run the task's protocol with ``cfg`` and write its record; returns the record (on rank 0; other ranks
    return it too but do not write)."""
    quiet_lightning()
    from bench.harness.threads import apply_thread_default

    apply_thread_default(cfg)
    validate_run_config(cfg)  # one line per bad value, before anything is built
    t0, cpu0 = time.time(), process_cpu_seconds()
    task = str(cfg.task.name)
    run_id, h, g = run_identity(cfg)
    run_dir = Path(str(cfg.work_dir)) / task / run_id
    rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    resume, user_checkpoint = resume_plan(cfg, run_dir)
    if rank == 0:
        check_writable(Path(str(cfg.results_dir)) / task, "results_dir")
        check_writable(run_dir.parent, "work_dir")  # a file or a read-only folder: one line, before training
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(run_dir, rank), run_signals():
            if not resume and rank == 0:
                shutil.rmtree(run_dir / "stages", ignore_errors=True)  # a fresh run starts from nothing
            return _run_in(cfg, (t0, cpu0), task, run_id, h, g, run_dir, rank, resume, user_checkpoint)
    except Exception as e:
        # an interrupted run keeps its folder: its resume line says ckpt_path=last, which needs it
        if created and rank == 0 and not isinstance(e, RunInterrupted):
            remove_if_empty(run_dir)
        raise


def remove_if_empty(run_dir: Path) -> None:
    """Remove a run folder this invocation created when the run failed before writing anything into it (its lock
    file and empty stage folders aside): a failed first try leaves no empty folder behind. A folder holding any
    file (a checkpoint to resume, logs to read) is kept."""
    files = [p for p in run_dir.rglob("*") if not p.is_dir() and p != run_dir / ".lock"]
    if not files:
        shutil.rmtree(run_dir, ignore_errors=True)


def resume_plan(cfg: DictConfig, run_dir: Path) -> tuple[bool, tuple[str, Path] | None]:
    """(resume, (stage, file) the user named). ``ckpt_path=last`` continues this config's run folder;
    ``ckpt_path=<file>`` inside it continues that stage from that file (and the run as under ``last``); a file
    elsewhere starts the ``main`` stage from it in a fresh run. A named file is never deleted. A SLURM job requeued
    by Lightning (``SLURM_RESTART_COUNT`` > 0) continues like ``last``."""
    from bench.harness.checkpoint import check_checkpoint_file

    ckpt = "" if cfg.get("ckpt_path") is None else str(cfg.ckpt_path).strip()
    if ckpt == "last":
        if not run_dir.is_dir():
            raise BenchError(
                f"ckpt_path=last: no earlier run of this config at {run_dir}; run it without ckpt_path first"
            )
        return True, None
    if not ckpt:
        requeued = os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")
        return requeued and run_dir.is_dir(), None
    path = Path(ckpt).expanduser().resolve()
    if not path.is_file():
        raise BenchError(
            f"ckpt_path={ckpt}: no such file; give a checkpoint file (e.g. a stage's last.ckpt) "
            "or ckpt_path=last to continue this config's run"
        )
    check_checkpoint_file(path, named_by="ckpt_path")
    stages = (run_dir / "stages").resolve()
    if stages in path.parents:
        return True, (path.relative_to(stages).parts[0], path)
    return False, ("main", path)


def check_writable(folder: Path, key: str) -> None:
    """Create ``folder`` and a file in it now, so an unwritable output folder is found before training."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise BenchError(
            f"{key}={folder.parent} is not writable ({e.strerror or e}): give a folder you can write, "
            f"e.g. {key}=$HOME/bench-{key.split('_')[0]}"
        ) from None


@contextlib.contextmanager
def run_lock(run_dir: Path, rank: int):
    """An exclusive lock on the run folder (rank 0): a second run of the same config and seed refuses at once
    instead of sharing its checkpoints and logs."""
    if rank != 0:
        yield
        return
    import fcntl

    fh = open(run_dir / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            who = fh.read().strip() or "another process"
            raise BenchError(
                f"{run_dir} is in use by a run of the same config and seed ({who}); wait for it to "
                "finish, then rerun (ckpt_path=last reuses its stages), or set run_id=<name> for a "
                "separate copy"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def _run_in(
    cfg: DictConfig,
    started: tuple[float, float],
    task: str,
    run_id: str,
    h: str,
    g: str,
    run_dir: Path,
    rank: int,
    resume: bool,
    user_checkpoint: tuple[str, Path] | None,
) -> dict:
    import lightning as L
    from hydra.utils import instantiate

    from bench.harness.checkpoint import Terminated, interrupted
    from bench.harness.context import RunContext
    from bench.harness.seeding import bounded_seed

    if cfg.get("num_threads"):
        import torch

        # small models on a shared machine run many times faster on one thread than on oversubscribed ones
        torch.set_num_threads(int(cfg.num_threads))
    seed = int(cfg.seed)
    L.seed_everything(bounded_seed(seed, "run"), workers=True, verbose=False)

    loggers, wandb_logger = _build_loggers(cfg, run_dir, run_id, g, resume, rank)
    ctx = RunContext(cfg, run_dir, loggers, resume)
    ctx.user_checkpoint = user_checkpoint
    try:
        protocol = instantiate(cfg.task.protocol, _partial_=True)
        protocol(ctx)
        ctx.check_user_checkpoint_used()  # a named ckpt_path no stage trained from is refused, not ignored
    except BaseException as e:
        if wandb_logger is not None:
            import wandb

            wandb.finish(exit_code=1)
        if isinstance(e, Terminated):
            raise interrupted("stopped by SIGTERM") from None
        if isinstance(e, KeyboardInterrupt):
            raise interrupted("interrupted (Ctrl+C)") from None
        cause = user_error(e) or _foreign_weights(e, cfg)
        if cause is not None:
            raise cause from None
        raise

    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "task_version": str(cfg.task.version),
        "run_id": run_id,
        "label": run_label(cfg),
        "profile": str(cfg.get("profile_name") or "default"),
        "seed": int(cfg.seed),
        "config": resolved(cfg),
        "config_hash": h,
        "group_hash": g,
        "headline_metrics": headline(cfg),
        "metrics": dict(sorted(ctx.metrics.items())),
        "validity": ctx.validity,
        "claims": [],
        "artifacts": dict(sorted(ctx.artifacts.items())),
        "filled_config": dict(sorted(ctx.filled_config.items())),
        "git_sha": git_sha(),
        "bench_version": bench.__version__,
        "package_versions": package_versions(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": 0.0,
        "wandb_run_id": getattr(wandb_logger, "version", None) if wandb_logger is not None else None,
    }
    if cfg.task.get("claims"):
        claims = load_claims(str(cfg.task.claims))
        record["claims"] = [c.to_dict() for c in evaluate(claims, RecordSet([record]))]
    record["duration_s"] = round(time.time() - started[0], 3)
    record["cpu_s"] = round(process_cpu_seconds() - started[1], 3)

    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        target = Path(str(cfg.results_dir)) / task / f"{run_id}.json"
        try:
            path = write_record(record, target)
        except OSError as e:
            raise BenchError(
                f"could not write the record {target} ({e.strerror or e}); the trained stages are kept: "
                "run the same command with ckpt_path=last and a writable results_dir=... to reuse "
                "them and write the record"
            ) from None
        record["_path"] = str(path)
        if wandb_logger is not None:
            _mirror_to_wandb(wandb_logger, record)
    return record


def _mirror_to_wandb(wandb_logger: Any, record: dict) -> None:
    """W&B mirrors the record: headline numbers in the summary, the whole record as a JSON string (the
    leaderboard can rebuild from a W&B project)."""
    import json

    import wandb

    exp = wandb_logger.experiment
    exp.summary.update({k: v for k, v in record["metrics"].items() if v is not None})
    exp.summary["bench_record"] = json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, sort_keys=True)
    wandb.finish()
