"""``bench perf``: the harness's overhead measured side by side with hand-written PyTorch, as ratios.

1. Training: digits MLP 64-256-256-10, batch 128, SGD with momentum, N epochs. The reference is the fastest
   plain loop: each batch drawn by indexing the in-memory tensors with a random permutation (no DataLoader).
   The harness runs the same model and data through the Trainer it builds for every task (config
   ``trainer=cpu``, in-memory loader with one Lightning step per epoch's chunk of minibatches). Reported: time per
   optimizer step inside the epochs (target <= 1.10x) and the whole ``trainer.fit`` wall time (setup,
   per-epoch checkpoint included); also one Lightning step per minibatch, to show why chunks exist.
2. Robust evaluation: the RobustAccuracyCallback's PGD-10 evaluation over the test split (validity checks off,
   their cost reported separately) against a raw torchattacks loop over the same batches (target <= 1.05x).

Variants run interleaved, ``--repeats`` times each; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F

from bench.callbacks.robust import RobustAccuracyCallback
from bench.data.digits import DigitsDataModule
from bench.harness.module import BenchModule
from bench.models.mlp import MLP


class EpochTimer(L.Callback):
    """Sums the time inside training epochs (first batch fetch to last optimizer step) on ``clock``
    (wall time by default; ``time.process_time`` for CPU time on a shared machine)."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock, self.total = clock, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.t = self.clock()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.total += self.clock() - self.t


class HookTimer(L.Callback):
    """Wraps another callback's test hooks and sums the time spent in them."""

    def __init__(self, inner: L.Callback) -> None:
        self.inner, self.total = inner, 0.0

    def _timed(self, name, *args):
        t = time.perf_counter()
        getattr(self.inner, name)(*args)
        self.total += time.perf_counter() - t

    def on_test_epoch_start(self, trainer, pl_module):
        self._timed("on_test_epoch_start", trainer, pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._timed("on_test_batch_end", trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self, trainer, pl_module):
        self._timed("on_test_epoch_end", trainer, pl_module)


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MLP([64], 10, hidden=[256, 256])


def _opt(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def hand_loop(dm: DigitsDataModule, epochs: int, seed: int) -> tuple[float, int]:
    x, y = dm.split("train")["x"], dm.split("train")["y"]
    net = _net(seed)
    opt = _opt(net.parameters())
    g = torch.Generator().manual_seed(seed)
    steps = 0
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return time.perf_counter() - t, steps


def task_context(tmp: str, epochs: int):
    """A RunContext over the config every task composes (``trainer=cpu``, no loggers, no config callbacks), so the
    trainer measured here is the one ``ctx.fit`` builds: a change to the task trainer shows in ``bench perf``."""
    from pathlib import Path

    from bench.harness.config import compose
    from bench.harness.context import RunContext

    cfg = compose(["task=neural_collapse", "logger=none", "callbacks=none", "attack=none", f"work_dir={tmp}",
                   f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=true"])
    return RunContext(cfg, Path(tmp) / "perf", loggers=[], resume=False)


def harness_fit(dm: DigitsDataModule, epochs: int, seed: int, tmp: str, checkpoint: bool) -> tuple[float, float, int]:
    module = BenchModule(_net(seed), optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    timer = EpochTimer()
    trainer = task_context(tmp, epochs).trainer("main", callbacks=[timer], checkpoint=checkpoint)
    t = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return timer.total, time.perf_counter() - t, trainer.global_step


ATTACK = {"name": "pgd_linf", "eps": [0.1], "steps": 10, "step_size": 0.25, "random_start": True, "validity": {"enabled": False}}


def raw_attack_loop(net: torch.nn.Module, dm: DigitsDataModule) -> float:
    import torchattacks

    t = time.perf_counter()
    net.eval()
    atk = torchattacks.PGD(net, eps=0.1, alpha=0.025, steps=10, random_start=True)
    correct = 0
    for batch in dm.test_dataloader():
        adv = atk(batch["x"], batch["y"])
        with torch.no_grad():
            correct += int((net(adv).argmax(1) == batch["y"]).sum())
    return time.perf_counter() - t


def callback_attack(net: torch.nn.Module, dm: DigitsDataModule, validity: bool) -> tuple[float, float]:
    cfg = dict(ATTACK, validity={"enabled": validity, "steps_multiplier": 2, "tolerance": 0.01})
    import tempfile

    timed = HookTimer(RobustAccuracyCallback(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = task_context(tmp, 0).trainer("test", callbacks=[timed], checkpoint=False, enable_progress_bar=False)
    module = BenchModule(net)
    t = time.perf_counter()
    trainer.test(module, datamodule=dm, verbose=False)
    return timed.total, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(prog="bench perf")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dm_chunk = DigitsDataModule(batch_size=128, steps_per_call=0, seed=0)  # default eval batch (1024)
    dm_plain = DigitsDataModule(batch_size=128, eval_batch_size=128, steps_per_call=None, seed=0)
    dm_chunk.setup(), dm_plain.setup()
    res: dict[str, list[float]] = {k: [] for k in ("hand", "harness_steps", "harness_fit", "plain_steps", "raw_pgd", "cb_pgd", "cb_pgd_test", "cb_pgd_validity")}
    steps = 0
    # warm-up (imports, allocator)
    hand_loop(dm_chunk, 1, 0)
    with tempfile.TemporaryDirectory() as tmp:
        harness_fit(dm_chunk, 1, 0, tmp, checkpoint=False)
        for r in range(a.repeats):
            h, steps = hand_loop(dm_chunk, a.epochs, r)
            res["hand"].append(h)
            inner, wall, gsteps = harness_fit(dm_chunk, a.epochs, r, tmp, checkpoint=True)
            assert gsteps == steps, f"harness ran {gsteps} optimizer steps, hand loop {steps}"
            res["harness_steps"].append(inner)
            res["harness_fit"].append(wall)
            inner_p, _, _ = harness_fit(dm_plain, a.epochs, r, tmp, checkpoint=False)
            res["plain_steps"].append(inner_p)
        net = _net(0)
        raw_attack_loop(net, dm_chunk)
        for r in range(a.repeats):
            res["raw_pgd"].append(raw_attack_loop(net, dm_chunk))
            cb, wall = callback_attack(net, dm_chunk, validity=False)
            res["cb_pgd"].append(cb)
            res["cb_pgd_test"].append(wall)
            res["cb_pgd_validity"].append(callback_attack(net, dm_chunk, validity=True)[0])
    med = {k: statistics.median(v) for k, v in res.items()}
    n_test = len(dm_chunk.split("test")["y"])
    print(f"bench perf: digits MLP 64-256-256-10, batch 128, SGD momentum, {a.epochs} epochs = {steps} steps; "
          f"{a.repeats} interleaved repeats, medians; torch threads {torch.get_num_threads()}")
    rows = [
        ("hand-written loop (tensor indexing)", med["hand"], 1.0, ""),
        ("harness, in-epoch time (chunked steps)", med["harness_steps"], med["harness_steps"] / med["hand"], "target <= 1.10"),
        ("harness, whole trainer.fit (+setup, ckpt/epoch)", med["harness_fit"], med["harness_fit"] / med["hand"], ""),
        ("Lightning step per minibatch (no chunks)", med["plain_steps"], med["plain_steps"] / med["hand"], "for comparison"),
        (f"raw torchattacks PGD-10 loop ({n_test} test ex.)", med["raw_pgd"], 1.0, ""),
        ("RobustAccuracyCallback PGD-10 (validity off)", med["cb_pgd"], med["cb_pgd"] / med["raw_pgd"], "target <= 1.05"),
        ("  same, whole trainer.test", med["cb_pgd_test"], med["cb_pgd_test"] / med["raw_pgd"], ""),
        ("  same, validity checks on", med["cb_pgd_validity"], med["cb_pgd_validity"] / med["raw_pgd"], "4 extra attack passes"),
    ]
    for name, t, ratio, note in rows:
        print(f"  {name:<50} {t * 1000:9.1f} ms  {ratio:6.3f}x  {note}")
    print(f"  per optimizer step: hand {med['hand'] / steps * 1e6:.0f} us, harness {med['harness_steps'] / steps * 1e6:.0f} us")
    return 0
