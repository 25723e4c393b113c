"""The W&B side of a run: one W&B run per bench run, carrying its config, group, tags, job type and a readable name.

- id: derived from the bench run id (``<task>-<run_id>`` hashed), so the same config and seed always map to the same
  W&B run: a resumed run continues it, and a fresh rerun replaces its offline folder instead of adding a second one
  that ``wandb sync`` would upload as a duplicate.
- config: the resolved config, flattened to ``a/b/c`` keys (W&B's runs table filters and groups on them).
- group: the record's ``group_hash`` (the config without seed and thread count: one leaderboard row).
- tags: task, label, profile; job_type: the task's protocol (a multi-stage run is one W&B run: its stages log under
  ``<stage>/`` prefixes); name: ``<task>/<label>/seed<k>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.harness.errors import BenchError

ID_FILE = "wandb_id"


def is_wandb(lcfg: Any) -> bool:
    return "Wandb" in str(lcfg.get("_target_", ""))


def wandb_run_id(task: str, run_id: str) -> str:
    """A stable W&B run id for a bench run (W&B ids: letters and digits, at most 64 characters)."""
    return hashlib.sha256(f"{task}-{run_id}".encode()).hexdigest()[:16]


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [1, 2]} -> {"a/b": 1, "l": [1, 2]}`` (lists stay values)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    return out


def _protocol_name(cfg: DictConfig) -> str:
    target = str(OmegaConf.select(cfg, "task.protocol._target_", default="") or "fit")
    return target.rsplit(".", 1)[-1]


def check_login(lcfg: Any) -> None:
    """Online W&B needs an API key: refuse before training, in one line, when none is configured."""
    offline = bool(lcfg.get("offline", False)) or os.environ.get("WANDB_MODE", "") in ("offline", "disabled", "dryrun")
    if offline:
        return
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth

        if read_netrc_auth(host=host):  # where `wandb login` saves the key
            return
    except ImportError:  # another wandb layout: read the netrc file ourselves
        import netrc

        try:
            if netrc.netrc().authenticators(host.split("//")[-1].split("/")[0]):
                return
        except (OSError, netrc.NetrcParseError):
            pass
    except Exception as e:  # a malformed key in the netrc file
        raise BenchError(f"W&B login is not usable ({e}): run `wandb login` again or set WANDB_API_KEY") from None
    raise BenchError(
        "logger.wandb.offline=false needs a W&B login: run `wandb login` or set WANDB_API_KEY "
        "(or keep the default offline logging and upload later with `wandb sync`)"
    )


def wandb_kwargs(
    cfg: DictConfig, run_dir: Path, run_id: str, group_hash: str, label: str, resume: bool, rank: int
) -> dict[str, Any]:
    """Arguments for Lightning's ``WandbLogger`` (passed on to ``wandb.init``)."""
    task = str(cfg.task.name)
    # under `wandb agent` the sweep owns its runs: the agent's run id (WANDB_RUN_ID) is the one to log to
    wid = os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None
    wid = wid or wandb_run_id(task, run_id)
    wandb_dir = run_dir / "wandb"
    if rank == 0:
        if not resume and wandb_dir.is_dir():
            # a fresh rerun of the same config and seed replaces the earlier W&B run: drop its offline folder(s)
            for old in wandb_dir.glob(f"offline-run-*-{wid}"):
                shutil.rmtree(old, ignore_errors=True)
        (run_dir / ID_FILE).write_text(wid)
    profile = str(cfg.get("profile_name") or "default")
    config = flatten(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    config.update({"bench/label": label, "bench/run_id": run_id, "bench/group_hash": group_hash})
    os.environ.setdefault("WANDB_SILENT", "true")
    return {
        "id": wid,
        "resume": "allow",
        "save_dir": str(run_dir),
        "name": f"{task}/{label}/seed{int(cfg.seed)}",
        "group": group_hash[:12],
        "tags": [t[:64] for t in (task, label, profile)],  # W&B limits a tag to 64 characters
        "job_type": _protocol_name(cfg),
        "config": config,
    }


def offline_dirs(run_dir: Path, wid: str | None = None) -> list[Path]:
    """This run's offline W&B folders (newest last)."""
    pattern = f"offline-run-*-{wid}" if wid else "offline-run-*"
    return sorted((run_dir / "wandb").glob(pattern))


def sync_hint(run_dir: Path, wid: str) -> str | None:
    """The ``wandb sync`` command that uploads this run's offline logs, or None when it logged online."""
    dirs = offline_dirs(run_dir, wid)
    return f"W&B logged offline; upload with: wandb sync {dirs[-1]}" if dirs else None


# --- reading an offline run back (tests, debugging): W&B's .wandb file is a LevelDB-style log of protobuf records
_BLOCK = 32768
_FILE_HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
_RECORD_HEADER = struct.Struct("<IHB")  # crc32, length, type (1 full, 2 first, 3 middle, 4 last)


def _chunks(data: bytes) -> Iterator[bytes]:
    ident, magic, _ = _FILE_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError("not a W&B transaction log")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _RECORD_HEADER.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD_HEADER.size:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        payload, pos = data[pos : pos + length], pos + length
        if kind == 0 and length == 0:
            continue
        if kind == 1:
            yield payload
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            yield pending + payload
            pending = b""


def read_offline_run(folder: Path) -> dict[str, Any]:
    """``{"id", "name", "group", "job_type", "tags", "config", "summary"}`` of an offline run folder, read from its
    ``run-<id>.wandb`` file with W&B's own protobuf schema."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(folder).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {folder}")
    out: dict[str, Any] = {"config": {}, "summary": {}}
    for chunk in _chunks(files[0].read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(chunk)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(id=r.run_id, name=r.display_name, group=r.run_group, job_type=r.job_type, tags=list(r.tags))
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                out["summary"][key] = json.loads(item.value_json)
    return out


def build_wandb_logger(
    cfg: DictConfig, lcfg: Any, run_dir: Path, run_id: str, group_hash: str, resume: bool, rank: int
) -> Any:
    """Lightning's ``WandbLogger`` for this run (the ``logger.<name>`` config ``lcfg``), after the login check."""
    from hydra.utils import instantiate

    from bench.harness.spec import run_label

    check_login(lcfg)
    kwargs = wandb_kwargs(cfg, run_dir, run_id, group_hash, run_label(cfg), resume, rank)
    for key in ("name", "group", "tags", "job_type"):  # the user's own values win
        if lcfg.get(key) is not None:
            kwargs.pop(key)
    logger = instantiate(lcfg, _partial_=True)(**kwargs)  # `config` would clash with instantiate's own argument
    # Lightning passes ``anonymous=None`` on, and W&B warns that the setting has no effect: it is not ours to set
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger
