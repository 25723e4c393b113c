"""Random state that travels with checkpoints, so a resumed stage draws the same numbers as an uninterrupted one.

Adversarial training's random start, TRADES' noise and GAP's context batches draw from the global generators
(torch, numpy, python, CUDA). The harness adds :class:`RNGStateCallback` to every fitted stage: Lightning stores its
``state_dict()`` in each checkpoint and hands it back on resume, after the stage was seeded, so the restored state
wins. The state is put back at the start of the first epoch after the restore (not when the checkpoint is read), so
that nothing Lightning or a callback draws while setting up the resumed stage shifts it. Generators a module or
datamodule holds as attributes (``torch.Generator``, ``numpy.random.Generator``, ``random.Random``) are saved too.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def collect_rng_state() -> dict[str, Any]:
    """The global generators' states, as tensors and plain numbers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _generator_state(gen: Any) -> Any:
    if isinstance(gen, torch.Generator):
        return gen.get_state()
    if isinstance(gen, np.random.Generator):
        return gen.bit_generator.state
    return gen.getstate()


def _set_generator_state(gen: Any, state: Any) -> None:
    if isinstance(gen, torch.Generator):
        gen.set_state(state)
    elif isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state
    else:
        gen.setstate(state)


def held_generators(*owners: Any) -> dict[str, Any]:
    """``{"<owner>.<attribute>": generator}`` for every generator an owner holds as a direct attribute."""
    kinds = (torch.Generator, np.random.Generator, random.Random)
    out = {}
    for label, owner in zip(("module", "datamodule"), owners):
        for name, value in sorted(vars(owner).items()) if owner is not None else ():
            if isinstance(value, kinds):
                out[f"{label}.{name}"] = value
    return out


class RNGStateCallback(L.Callback):
    """Saves the global generators and the generators the module / datamodule hold with each checkpoint and
    restores them when the stage resumes."""

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _owners(self) -> tuple[Any, Any]:
        t = self._trainer
        return (t.lightning_module, t.datamodule) if t is not None else (None, None)

    def state_dict(self) -> dict[str, Any]:
        held = {k: _generator_state(g) for k, g in held_generators(*self._owners()).items()}
        return {"global": collect_rng_state(), "held": held}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def _restore(self) -> None:
        if self._pending is None:
            return
        restore_rng_state(self._pending["global"])
        gens = held_generators(*self._owners())
        for name, state in (self._pending.get("held") or {}).items():
            if name in gens:
                _set_generator_state(gens[name], state)
        self._pending = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()  # resumed from the final epoch's checkpoint: no epoch left to start, the test still draws
