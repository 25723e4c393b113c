"""One run: config -> seed -> the task's protocol (its stages) -> claims -> one result record."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import bench
from bench.harness.claims import RecordSet, evaluate, load_claims
from bench.harness.errors import BenchError
from bench.harness.provenance import git_sha, package_versions
from bench.harness.record import SCHEMA_VERSION, config_hash, write_record


def resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def run_identity(cfg: DictConfig) -> tuple[str, str, str]:
    """(run_id, config_hash, group_hash). The run id derives from the config hash, so the same config and seed
    map to the same run folder (``ckpt_path=last`` finds it) and the same record file."""
    c = resolved(cfg)
    h = config_hash(c)
    # the group (a leaderboard row: all seeds of one config) hashes the config *before* interpolation, so every
    # value derived from ${seed} (data.seed, a stage's seed, ...) drops out with the seed itself
    g = config_hash(OmegaConf.to_container(cfg, resolve=False), exclude=("seed",))
    run_id = str(cfg.get("run_id") or f"{h[:12]}")
    return run_id, h, g


def _build_loggers(cfg: DictConfig, run_dir: Path, run_id: str, resume: bool, rank: int) -> tuple[list, Any]:
    """The ``logger`` config: a mapping of logger name -> Lightning logger config. W&B keeps its run id in the
    run folder so that a resumed run continues the same W&B run."""
    from hydra.utils import instantiate

    loggers, wandb_logger = [], None
    for name, lcfg in sorted((cfg.get("logger") or {}).items()):
        if lcfg is None or "_target_" not in lcfg:
            continue
        kwargs: dict[str, Any] = {}
        if "Wandb" in str(lcfg._target_):
            id_file = run_dir / "wandb_id"
            if (resume or rank > 0) and id_file.is_file():
                wid = id_file.read_text().strip()
            else:
                import secrets
                import string

                wid = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
                if rank == 0:
                    id_file.write_text(wid)
            kwargs = {"id": wid, "save_dir": str(run_dir), "name": f"{cfg.task.name}-{run_id}", "resume": "allow"}
            os.environ.setdefault("WANDB_SILENT", "true")
        elif "save_dir" not in lcfg:
            kwargs = {"save_dir": str(run_dir)}
        lg = instantiate(lcfg, **kwargs)
        if "Wandb" in str(lcfg._target_):
            wandb_logger = lg
        loggers.append(lg)
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


def quiet_lightning() -> None:
    """Silence Lightning's banner lines and the warnings that do not apply to in-memory loaders."""
    import logging
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for msg in (".*Skipping val loop.*", ".*does not have many workers.*", ".*isinstance\\(treespec, LeafSpec\\).*",
                ".*ambiguous collection.*", ".*The number of training batches.*", ".*litlogger.*"):
        warnings.filterwarnings("ignore", message=msg)


def run_fit(cfg: DictConfig) -> dict:
    """Run the task's protocol with ``cfg`` and write its record; returns the record (on rank 0; other ranks
    return it too but do not write)."""
    import lightning as L
    from hydra.utils import instantiate

    quiet_lightning()
    from bench.harness.context import RunContext

    t0 = time.time()
    task = str(cfg.task.name)
    run_id, h, g = run_identity(cfg)
    run_dir = Path(str(cfg.work_dir)) / task / run_id
    resume = str(cfg.get("ckpt_path") or "") == "last"
    if resume and not run_dir.is_dir():
        raise BenchError(f"ckpt_path=last: no earlier run of this config at {run_dir}; run it without ckpt_path first")
    rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    if not resume and run_dir.is_dir() and rank == 0:
        shutil.rmtree(run_dir / "stages", ignore_errors=True)  # a fresh run starts from nothing
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("num_threads"):
        import torch

        # small models on a shared machine run many times faster on one thread than on oversubscribed ones
        torch.set_num_threads(int(cfg.num_threads))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    loggers, wandb_logger = _build_loggers(cfg, run_dir, run_id, resume, rank)
    ctx = RunContext(cfg, run_dir, loggers, resume)
    try:
        protocol = instantiate(cfg.task.protocol, _partial_=True)
        protocol(ctx)
    except BaseException as e:
        if wandb_logger is not None:
            import wandb

            wandb.finish(exit_code=1)
        cause = user_error(e)
        if cause is not None:
            raise cause from None
        raise

    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "task_version": str(cfg.task.version),
        "run_id": run_id,
        "label": str(cfg.task.get("label") or task),
        "profile": str(cfg.get("profile_name") or "default"),
        "seed": int(cfg.seed),
        "config": resolved(cfg),
        "config_hash": h,
        "group_hash": g,
        "headline_metrics": list(cfg.task.get("headline_metrics") or ["test/acc"]),
        "metrics": dict(sorted(ctx.metrics.items())),
        "validity": ctx.validity,
        "claims": [],
        "artifacts": dict(sorted(ctx.artifacts.items())),
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
    record["duration_s"] = round(time.time() - t0, 3)

    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        path = write_record(record, Path(str(cfg.results_dir)) / task / f"{run_id}.json")
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
