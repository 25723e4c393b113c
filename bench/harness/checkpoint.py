"""Checkpoints and interruptions of a stage: atomic saves in the run folder, a clear line for a checkpoint that
cannot be read, and Ctrl+C / SIGTERM turned into one line that says how to resume.

Lightning's own save goes through fsspec's local transaction: a temp file under ``$TMPDIR`` copied over the target,
which on another filesystem is a plain copy that a full disk leaves truncated. :class:`AtomicCheckpointIO` writes a
temp file in the checkpoint's own folder, fsyncs it and renames it over the old file (readers see the old or the
whole new checkpoint).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _load as pl_load
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bench.harness.atomic import atomic_write
from bench.harness.errors import BenchError, RunInterrupted

RESUME_HINT = "Continue it with the same command plus ckpt_path=last."


def interrupted(how: str) -> RunInterrupted:
    """The one line of an interrupted run; exit status 130 for Ctrl+C, 143 for SIGTERM (128 + signal number)."""
    err = RunInterrupted(f"the run was {how}; no result record was written. {RESUME_HINT}")
    err.exit_code = 143 if "SIGTERM" in how else 130
    return err


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` through the one atomic writer (:mod:`bench.harness.atomic`: a temp file beside ``path``, fsync,
    rename over ``path``, fsync of the folder)."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def unreadable(path: str | Path, exc: BaseException, named_by: str | None = None) -> BenchError:
    """The line for a checkpoint that cannot be read. A file of the run's own (``named_by`` None) may be deleted to
    redo its stage; a file the user named (``named_by``: the key that named it) is theirs: never advise deleting it."""
    detail = str(exc).splitlines()[0][:120] if str(exc) else ""
    if named_by is not None:
        return BenchError(
            f"{named_by}={path} cannot be read as a checkpoint ({type(exc).__name__}: {detail}); give a file "
            "written by torch.save or a stage's last.ckpt"
        )
    return BenchError(
        f"cannot read checkpoint {path} ({type(exc).__name__}: {detail}); "
        "it is damaged or not a checkpoint: delete it to redo that stage from its start (ckpt_path=last "
        "still reuses the finished stages), or run without ckpt_path to start over"
    )


def load_checkpoint_file(path: str | Path, weights_only: bool = False, named_by: str | None = None) -> Any:
    """``torch.load`` on CPU, with a clear line naming the file when it cannot be read."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise unreadable(path, e, named_by) from None


def check_checkpoint_file(path: str | Path, named_by: str | None = None) -> None:
    """A cheap check before training that ``path`` is a torch checkpoint at all (torch saves zip archives) and its
    archive directory is intact (a truncated file fails here). ``named_by``: the key the user named it with."""
    import zipfile

    if named_by is not None and not Path(path).is_file():
        raise BenchError(f"{named_by}={path}: no such file; give a file written by torch.save or a stage's last.ckpt")
    try:
        with zipfile.ZipFile(path) as zf:
            zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise unreadable(path, e, named_by) from None


def weights_mismatch(exc: BaseException, path: Any, named_by: str) -> BenchError | None:
    """One line for torch's multi-line ``load_state_dict`` error (weights of another model), or None for any
    other error."""
    text = str(exc)
    if "Error(s) in loading state_dict" not in text:
        return None
    problems = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
    first = problems[0][:200] if problems else "keys or shapes differ"
    return BenchError(
        f"{named_by}={path} holds weights of another model ({first}); give a checkpoint of the same model and data "
        "config (model=..., data=...)"
    )


def load_weights(module: torch.nn.Module, path: str | Path, named_by: str = "init_weights") -> None:
    """Load the state dict (or Lightning checkpoint) the user named into ``module``; one line for a file that is
    not a checkpoint or holds another model's weights."""
    state = load_checkpoint_file(path, named_by=named_by)
    if not isinstance(state, dict):
        raise BenchError(f"{named_by}={path} holds a {type(state).__name__}, not a state dict or checkpoint")
    try:
        module.load_state_dict(state.get("state_dict", state))
    except RuntimeError as e:
        raise (weights_mismatch(e, path, named_by) or e) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic local saves and a one-line error for unreadable files."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path)
        try:
            save_atomic(checkpoint, path)
        except OSError as e:  # a full disk or a folder gone read-only: the previous checkpoint is still whole
            raise BenchError(
                f"could not write the checkpoint {path} ({e.strerror or e}); make room in {Path(path).parent} "
                "and run the same command plus ckpt_path=last (the previous checkpoint there is kept)"
            ) from None

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        if not Path(path).is_file():
            raise BenchError(f"checkpoint {path} does not exist; give an existing file as ckpt_path, or ckpt_path=last")
        try:
            return pl_load(
                path,
                map_location=map_location or (lambda storage, loc: storage),
                weights_only=False if weights_only is None else weights_only,
            )
        except Exception as e:
            raise unreadable(path, e) from None


@contextlib.contextmanager
def lightning_signals() -> Iterator[None]:
    """Around ``trainer.fit`` / ``trainer.test``: Lightning installs its own SIGTERM handler (stop at the next step,
    kill DDP children; SLURM requeue on SIGUSR1) and sets SIGINT to "ignore" after a Ctrl+C. Give it the default
    handlers to compose with (not the run's own, which raises) and put the run's back afterwards, so that a multirun
    and the code between stages keep reacting to both signals."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    in_main = _in_main_thread()
    if in_main and saved[signal.SIGTERM] is _raise_on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        if in_main:
            for s, h in saved.items():
                if h is not None:
                    signal.signal(s, h)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class Terminated(BaseException):
    """SIGTERM outside a Lightning stage (building data, between stages)."""


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def run_signals() -> Iterator[None]:
    """Around a whole run: SIGTERM between stages raises (then reported as an interruption) instead of killing the
    process silently; inside a stage Lightning's handler is used (see :func:`lightning_signals`)."""
    if not _in_main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGTERM)
    if old in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is _raise_on_sigterm:
            signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)
