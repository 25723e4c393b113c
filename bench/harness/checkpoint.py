"""Checkpoints and interruptions of a stage: atomic saves in the run folder, a clear line for a checkpoint that
cannot be read, and Ctrl+C / SIGTERM turned into one line that says how to resume.

Lightning's own save goes through fsspec's local transaction: a temp file under ``$TMPDIR`` copied over the target,
which on another filesystem is a plain copy that a full disk leaves truncated. :class:`AtomicCheckpointIO` writes a
temp file in the checkpoint's own folder, fsyncs it and renames it over the old file (readers see the old or the
whole new checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _load as pl_load
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bench.harness.errors import BenchError, RunInterrupted
from bench.harness.record import readable_mode

RESUME_HINT = "Continue it with the same command plus ckpt_path=last."


def interrupted(how: str) -> RunInterrupted:
    """The one line of an interrupted run; exit status 130 for Ctrl+C, 143 for SIGTERM (128 + signal number)."""
    err = RunInterrupted(f"the run was {how}; no result record was written. {RESUME_HINT}")
    err.exit_code = 143 if "SIGTERM" in how else 130
    return err


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync, rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, readable_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def unreadable(path: str | Path, exc: BaseException) -> BenchError:
    detail = str(exc).splitlines()[0][:120] if str(exc) else ""
    return BenchError(
        f"cannot read checkpoint {path} ({type(exc).__name__}: {detail}); "
        "it is damaged or not a checkpoint: delete it to redo that stage from its start (ckpt_path=last "
        "still reuses the finished stages), or run without ckpt_path to start over"
    )


def load_checkpoint_file(path: str | Path, weights_only: bool = False) -> Any:
    """``torch.load`` on CPU, with a clear line naming the file when it cannot be read."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise unreadable(path, e) from None


def check_checkpoint_file(path: str | Path) -> None:
    """A cheap check before training that ``path`` is a torch checkpoint at all (torch saves zip archives) and its
    archive directory is intact (a truncated file fails here)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise unreadable(path, e) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic local saves and a one-line error for unreadable files."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path)
        save_atomic(checkpoint, path)

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
