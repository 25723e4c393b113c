"""``bench perf``: the harness's overhead measured side by side with hand-written PyTorch, as ratios.

1. Training: digits MLP 64-256-256-10, batch 128, SGD with momentum, N epochs. The reference is the fastest
   plain loop: each batch drawn by indexing the in-memory tensors with a random permutation (no DataLoader).
   The harness runs the same model and data through the Trainer every task gets (``RunContext.trainer`` over the
   composed config, ``trainer=cpu`` or ``trainer=gpu``; in-memory loader, one Lightning step per epoch's chunk of
   minibatches). Reported: the time inside the epochs (target <= 1.10x) and the whole ``trainer.fit`` (setup and
   the config's ``checkpoint_every_n_epochs`` last.ckpt writes included; target <= 1.25x); also one Lightning step
   per minibatch, to show why chunks exist.
2. Robust evaluation: the RobustAccuracyCallback's PGD-10 evaluation over the test split (validity checks off,
   their cost reported separately) against a raw torchattacks loop over the same batches (target <= 1.05x, judged
   on the 359-example test split). Also at 10x the examples (the split repeated): the callback's fixed cost per
   evaluation (building attacks and metrics, computing and logging them) is then amortised, which separates it
   from a per-example cost.
3. ``--accelerator gpu`` only (or ``--cnn`` on the CPU, tiny): a case where the harness's overhead should vanish,
   a small CNN on CIFAR-sized random inputs (3x32x32, batch 512, ``bf16-mixed``), in examples/s of the harness
   against a raw autocast loop.

Every variant is timed on two clocks at once: wall time and this process's CPU time (``time.process_time``).
On a shared machine other processes inflate wall time but not our CPU time, so the targets are judged on CPU time
there (``--judge cpu``, the default on the CPU); on a GPU the host's CPU time does not count the device's work, so
they are judged on wall time (the default with ``--accelerator gpu``). Variants run interleaved, ``--repeats``
times each (the cheap robust-evaluation variants ``--attack-repeats`` times), the reference and its variants
in alternating order; the table shows medians and the min-max spread of the times, and the median and min-max
of the per-repeat (paired) ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from bench.callbacks.robust import RobustAccuracyCallback
from bench.data.base import TensorDataModule
from bench.data.digits import DigitsDataModule
from bench.harness.module import BenchModule
from bench.models.mlp import MLP

# ratio of harness time to hand-written time each target allows
TARGETS = {"train_in_epoch": 1.10, "train_fit": 1.25, "robust_eval": 1.05}


# -- measurement -----------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Times:
    """Repeated measurements of one variant on both clocks (seconds)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    def on(self, clock: str) -> list[float]:
        return self.wall if clock == "wall" else self.cpu


class Stopwatch:
    """Both clocks at once: ``with Stopwatch(device) as sw: ...`` then ``sw.wall``, ``sw.cpu``."""

    def __init__(self, device: torch.device = torch.device("cpu")) -> None:
        self.device = device
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Stopwatch:
        _sync(self.device)
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter() - self._w, time.process_time() - self._c


class EpochTimer(L.Callback):
    """Sums the time inside training epochs (first batch fetch to last optimizer step), on both clocks."""

    def __init__(self, device: torch.device = torch.device("cpu")) -> None:
        self.device, self.wall, self.cpu = device, 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _sync(self.device)
        self._w, self._c = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        _sync(self.device)
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


class HookTimer(L.Callback):
    """Wraps another callback's test hooks and sums the time spent in them, on both clocks."""

    def __init__(self, inner: L.Callback) -> None:
        self.inner, self.wall, self.cpu = inner, 0.0, 0.0

    def _timed(self, name, *args):
        w, c = time.perf_counter(), time.process_time()
        getattr(self.inner, name)(*args)
        self.wall += time.perf_counter() - w
        self.cpu += time.process_time() - c

    def on_test_epoch_start(self, trainer, pl_module):
        self._timed("on_test_epoch_start", trainer, pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._timed("on_test_batch_end", trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self, trainer, pl_module):
        self._timed("on_test_epoch_end", trainer, pl_module)


def interleaved(variants: list[Callable[[int], None]], repeats: int) -> None:
    """Each variant once per repeat (called with the repeat's index), back to back: in the listed order on even
    repeats and reversed on odd ones, so no variant always runs first (warm caches) or last."""
    for r in range(repeats):
        for run in variants if r % 2 == 0 else variants[::-1]:
            run(r)


# -- the judgement (pure: tested on given numbers) -------------------------------------------------------------
def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def ratio(variant: list[float], base: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the per-repeat ratios; repeats are paired by position (each pair runs back to back).

    The median of paired ratios, not the ratio of medians: on this shared machine a repeat's time swings by
    +-25% with what the neighbours do, and the two runs of a pair see the same neighbours."""
    paired = [v / b for v, b in zip(variant, base, strict=True) if b > 0]
    if not paired:
        raise ValueError("no paired repeats to take a ratio of")
    return statistics.median(paired), min(paired), max(paired)


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def judge(ratios: dict[str, float], targets: dict[str, float] = TARGETS) -> dict[str, str]:
    """PASS / MISS per target present in ``ratios`` (a missing measurement is not judged)."""
    return {k: verdict(ratios[k], t) for k, t in targets.items() if k in ratios}


@dataclass
class Row:
    name: str
    times: Times
    base: Times | None = None  # None: this row is a reference
    target: str | None = None  # a key of TARGETS
    note: str = ""


def format_table(rows: list[Row], judge_on: str) -> tuple[list[str], dict[str, str]]:
    """The printed lines and the verdicts (judged on ``judge_on``: ``cpu`` or ``wall``)."""
    lines = [
        f"  {'variant':<46} {'wall ms (min-max)':>24} {'cpu ms (min-max)':>24} {'wall x':>7} {'cpu x':>7}  "
        f"{'cpu x range':<13} target"
    ]
    ratios: dict[str, float] = {}
    for r in rows:
        w, c = spread(r.times.wall), spread(r.times.cpu)
        cells = " ".join(f"{m * 1e3:9.1f} ({lo * 1e3:6.0f}-{hi * 1e3:6.0f})" for m, lo, hi in (w, c))
        if r.base is None:
            lines.append(f"  {r.name:<46} {cells}   1.000   1.000  {'':<13} {r.note}")
            continue
        rw, rc = ratio(r.times.wall, r.base.wall), ratio(r.times.cpu, r.base.cpu)
        judged = rc if judge_on == "cpu" else rw
        tail = r.note
        if r.target is not None:
            ratios[r.target] = judged[0]
            tail = f"<= {TARGETS[r.target]:.2f} on {judge_on}: {verdict(judged[0], TARGETS[r.target])}" + (
                f"  {r.note}" if r.note else ""
            )
        lines.append(f"  {r.name:<46} {cells} {rw[0]:7.3f} {rc[0]:7.3f}  {rc[1]:5.2f}-{rc[2]:5.2f}   {tail}")
    return lines, judge(ratios)


# -- the variants ----------------------------------------------------------------------------------------------
def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MLP([64], 10, hidden=[256, 256])


def hand_loop(
    dm: TensorDataModule, epochs: int, seed: int, device: torch.device, net_fn=_net, precision: str = "32-true"
) -> tuple[Stopwatch, int]:
    train = dm.split("train")
    x, y = train["x"].to(device), train["y"].to(device)
    net = net_fn(seed).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    bs, steps = int(dm.batch_size), 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    with Stopwatch(device) as sw:
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g).to(device)
            for i in range(0, len(y), bs):
                idx = perm[i : i + bs]
                with autocast:
                    loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
    return sw, steps


def task_context(tmp: str, epochs: int, accelerator: str, extra: tuple[str, ...] = ()):
    """A RunContext over the config every task composes (``trainer=cpu|gpu``, no loggers, no config callbacks), so
    the trainer measured here is the one ``ctx.fit`` builds: a change to the task trainer shows in ``bench perf``."""
    from bench.harness.config import compose
    from bench.harness.context import RunContext

    cfg = compose(
        [
            "task=neural_collapse",
            f"trainer={accelerator}",
            "logger=none",
            "callbacks=none",
            "attack=none",
            f"work_dir={tmp}",
            f"trainer.max_epochs={epochs}",
            "trainer.enable_progress_bar=true",
            *extra,
        ]
    )
    return RunContext(cfg, Path(tmp) / "perf", loggers=[], resume=False), cfg


def harness_fit(
    dm: TensorDataModule,
    epochs: int,
    seed: int,
    tmp: str,
    checkpoint: bool,
    accelerator: str,
    net_fn=_net,
    **trainer_overrides,
) -> tuple[EpochTimer, Stopwatch, int]:
    module = BenchModule(net_fn(seed), optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    timer = EpochTimer(device)
    ctx, _ = task_context(tmp, epochs, accelerator, CONFIG_OVERRIDES)
    with Stopwatch(device) as sw:  # trainer construction is part of the whole fit (setup)
        trainer = ctx.trainer("main", callbacks=[timer], checkpoint=checkpoint, **trainer_overrides)
        trainer.fit(module, datamodule=dm)
    return timer, sw, trainer.global_step


CONFIG_OVERRIDES: tuple[str, ...] = ()  # --checkpoint-every N sets checkpoint_every_n_epochs here

# conf/attack/pgd_linf.yaml as tasks compose it (the ``_target_`` form: no attack-group lookup per build)
ATTACK = {
    "_target_": "bench.attacks.standard.pgd_linf",
    "_partial_": True,
    "name": "pgd_linf",
    "eps": [0.1],
    "steps": 10,
    "step_size": 0.25,
    "random_start": True,
    "validity": {"enabled": False},
}


def raw_attack_loop(net: torch.nn.Module, dm: TensorDataModule, device: torch.device) -> Stopwatch:
    import torchattacks

    test = dm.split("test")
    x, y = test["x"].to(device), test["y"].to(device)
    bs = int(dm.eval_batch_size or len(y))
    with Stopwatch(device) as sw:
        net.eval()
        atk = torchattacks.PGD(net, eps=0.1, alpha=0.025, steps=10, random_start=True)
        correct = 0
        for i in range(0, len(y), bs):
            adv = atk(x[i : i + bs], y[i : i + bs])
            with torch.no_grad():
                correct += int((net(adv).argmax(1) == y[i : i + bs]).sum())
    return sw


def callback_attack(net: torch.nn.Module, dm: TensorDataModule, validity: bool, accelerator: str):
    cfg = dict(ATTACK, validity={"enabled": validity, "steps_multiplier": 2, "tolerance": 0.01})
    timed = HookTimer(RobustAccuracyCallback(cfg))
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        ctx, _ = task_context(tmp, 0, accelerator)
        with Stopwatch(device) as sw:
            trainer = ctx.trainer("test", callbacks=[timed], checkpoint=False, enable_progress_bar=False)
            trainer.test(BenchModule(net), datamodule=dm, verbose=False)
    return timed, sw


class TiledDigits(DigitsDataModule):
    """Digits whose test split is repeated ``tiles`` times: the robust evaluation at a size where its fixed
    per-evaluation cost (building the attacks and metrics, computing and logging them) is amortised."""

    def __init__(self, tiles: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tiles = int(tiles)

    def build(self):
        splits = super().build()
        splits["test"] = {k: v.repeat(self.tiles, *([1] * (v.dim() - 1))) for k, v in splits["test"].items()}
        return splits


class RandomImages(TensorDataModule):
    """CIFAR-sized random inputs (3x32x32, 10 classes): a compute-bound case with no download."""

    num_classes = 10

    def __init__(self, n: int, batch_size: int = 512, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=batch_size, steps_per_call=0, seed=seed)
        self.n = n

    def build(self):
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.n, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (self.n,), generator=g)
        return {"train": {"x": x, "y": y}, "test": {"x": x[:512], "y": y[:512]}}


def _cnn(seed: int) -> torch.nn.Module:
    from bench.models.cnn import SmallCNN

    torch.manual_seed(seed)
    return SmallCNN([3, 32, 32], 10)


# -- the command -----------------------------------------------------------------------------------------------
def load_average() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument as the CLI's one line (no usage block)."""

    def error(self, message: str):
        from bench.harness.errors import BenchError

        raise BenchError(f"bench perf: {message} (bench perf --help lists the options)")


def _at_least(low: int):
    """An argparse type: an integer >= ``low`` (``--epochs -1`` would never end, ``--repeats 0`` has no median)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give an integer >= {low}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="bench perf")
    p.add_argument("--epochs", type=_at_least(1), default=30)
    p.add_argument("--repeats", type=_at_least(1), default=5)
    p.add_argument(
        "--attack-repeats",
        type=_at_least(1),
        default=None,
        help="repeats of the robust-evaluation variants, each 30x cheaper than a training run (default 5x --repeats)",
    )
    p.add_argument("--threads", type=_at_least(1), default=None, help="torch threads (default: torch's own)")
    p.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--judge",
        choices=("cpu", "wall"),
        default=None,
        help="clock the targets are judged on (default: cpu time on the CPU, wall time on a GPU)",
    )
    p.add_argument("--cnn", action="store_true", help="also the CNN case (always on with --accelerator gpu)")
    p.add_argument(
        "--cnn-examples",
        type=_at_least(1),
        default=None,
        help="CNN case training examples (default 51200 on a GPU, 1024 on the CPU)",
    )
    p.add_argument(
        "--cnn-epochs", type=_at_least(1), default=None, help="CNN case epochs (default 3 on a GPU, 1 on the CPU)"
    )
    p.add_argument(
        "--checkpoint-every",
        type=_at_least(0),
        default=None,
        help="checkpoint_every_n_epochs for the whole-fit variant (default: the config's; paper profiles use 0-200)",
    )
    a = p.parse_args(argv)
    attack_repeats = a.attack_repeats or 5 * a.repeats
    global CONFIG_OVERRIDES
    CONFIG_OVERRIDES = () if a.checkpoint_every is None else (f"checkpoint_every_n_epochs={a.checkpoint_every}",)
    from bench.harness.errors import BenchError
    from bench.harness.run import quiet_lightning

    if a.accelerator == "gpu" and not torch.cuda.is_available():
        raise BenchError("--accelerator gpu: torch sees no CUDA device here; run with --accelerator cpu")
    quiet_lightning()  # Lightning's banners (GPU available, tips) are noise between the timings
    if a.threads:
        torch.set_num_threads(a.threads)
    gpu = a.accelerator == "gpu"
    device = torch.device("cuda" if gpu else "cpu")
    judge_on = a.judge or ("wall" if gpu else "cpu")
    print(f"bench perf --accelerator {a.accelerator}: start, {load_average()}", flush=True)
    dm_chunk = DigitsDataModule(batch_size=128, steps_per_call=0, seed=0)  # default eval batch (1024)
    dm_plain = DigitsDataModule(batch_size=128, eval_batch_size=128, steps_per_call=None, seed=0)
    dm_big = TiledDigits(tiles=10, batch_size=128, steps_per_call=0, seed=0)
    dm_chunk.setup(), dm_plain.setup(), dm_big.setup()
    res = {
        k: Times()
        for k in (
            "hand",
            "harness_steps",
            "harness_fit",
            "plain_steps",
            "raw_pgd",
            "cb_pgd",
            "cb_pgd_test",
            "cb_pgd_validity",
            "raw_pgd_big",
            "cb_pgd_big",
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, cfg = task_context(tmp, a.epochs, a.accelerator, CONFIG_OVERRIDES)
        every = int(cfg.get("checkpoint_every_n_epochs", 1) or 0)
        interval = float(cfg.get("checkpoint_min_interval_s", 0) or 0)
        hand_loop(dm_chunk, 1, 0, device)  # warm-up (imports, allocator, kernels)
        harness_fit(dm_chunk, 1, 0, tmp, False, a.accelerator)
        counted: dict[str, int] = {}

        def hand(r: int) -> None:
            sw, counted["hand"] = hand_loop(dm_chunk, a.epochs, r, device)
            res["hand"].add(sw.wall, sw.cpu)

        def harness(r: int) -> None:
            timer, sw, counted["harness"] = harness_fit(dm_chunk, a.epochs, r, tmp, True, a.accelerator)
            res["harness_steps"].add(timer.wall, timer.cpu)
            res["harness_fit"].add(sw.wall, sw.cpu)

        def plain(r: int) -> None:
            timer, _, _ = harness_fit(dm_plain, a.epochs, r, tmp, False, a.accelerator)
            res["plain_steps"].add(timer.wall, timer.cpu)

        interleaved([hand, harness, plain], a.repeats)
        steps = counted["hand"]
        if counted["harness"] != steps:
            raise BenchError(f"harness ran {counted['harness']} optimizer steps, hand loop {steps}: not the same work")
        net = _net(0).to(device)
        raw_attack_loop(net, dm_chunk, device)
        callback_attack(net, dm_chunk, False, a.accelerator)

        def raw_on(dm: TensorDataModule, key: str) -> Callable[[int], None]:
            def run(_: int) -> None:
                sw = raw_attack_loop(net, dm, device)
                res[key].add(sw.wall, sw.cpu)

            return run

        def callback_on(
            dm: TensorDataModule, key: str, validity: bool = False, whole_test: str | None = None
        ) -> Callable[[int], None]:
            def run(_: int) -> None:
                timed, sw = callback_attack(net, dm, validity, a.accelerator)
                res[key].add(timed.wall, timed.cpu)
                if whole_test is not None:
                    res[whole_test].add(sw.wall, sw.cpu)

            return run

        small = [
            raw_on(dm_chunk, "raw_pgd"),
            callback_on(dm_chunk, "cb_pgd", whole_test="cb_pgd_test"),
            callback_on(dm_chunk, "cb_pgd_validity", validity=True),
        ]
        interleaved(small, attack_repeats)
        interleaved([raw_on(dm_big, "raw_pgd_big"), callback_on(dm_big, "cb_pgd_big")], attack_repeats)
        cnn = None
        if gpu or a.cnn:
            cnn = cnn_case(a, device, tmp)
    n_test = len(dm_chunk.split("test")["y"])
    print(
        f"digits MLP 64-256-256-10, batch 128, SGD momentum, {a.epochs} epochs = {steps} steps; last.ckpt every "
        f"{every} epochs, at least {interval:g} s apart (config); {a.repeats} interleaved repeats "
        f"({attack_repeats} of the robust evaluations); torch threads "
        f"{torch.get_num_threads()}; "
        f"device {device}"
    )
    rows = [
        Row("hand-written loop (tensor indexing)", res["hand"]),
        Row("harness, in-epoch time (chunked steps)", res["harness_steps"], res["hand"], "train_in_epoch"),
        Row("harness, whole trainer.fit (setup, ckpt)", res["harness_fit"], res["hand"], "train_fit"),
        Row("Lightning step per minibatch (no chunks)", res["plain_steps"], res["hand"], None, "for comparison"),
        Row(f"raw torchattacks PGD-10 loop ({n_test} ex.)", res["raw_pgd"]),
        Row("RobustAccuracyCallback PGD-10 (validity off)", res["cb_pgd"], res["raw_pgd"], "robust_eval"),
        Row("  same, whole trainer.test", res["cb_pgd_test"], res["raw_pgd"], None, ""),
        Row("  same, validity checks on", res["cb_pgd_validity"], res["raw_pgd"], None, "4 extra attack passes"),
        Row(f"raw torchattacks PGD-10 loop ({10 * n_test} ex.)", res["raw_pgd_big"]),
        Row(
            "RobustAccuracyCallback PGD-10, 10x the examples",
            res["cb_pgd_big"],
            res["raw_pgd_big"],
            None,
            "fixed per-evaluation cost amortised",
        ),
    ]
    lines, verdicts = format_table(rows, judge_on)
    print("\n".join(lines))
    med_hand = statistics.median(res["hand"].cpu)
    print(
        f"  per optimizer step (cpu): hand {med_hand / steps * 1e6:.0f} us, harness "
        f"{statistics.median(res['harness_steps'].cpu) / steps * 1e6:.0f} us"
    )
    if cnn is not None:
        print(cnn)
    print(f"targets on {judge_on} time: " + ", ".join(f"{k} {v}" for k, v in verdicts.items()))
    print(f"bench perf: end, {load_average()}")
    return 0


def cnn_case(a, device: torch.device, tmp: str) -> str:
    """Examples/s of the harness against a raw autocast loop on the CNN case (one repeat each, after a warm-up)."""
    gpu = device.type == "cuda"
    n = a.cnn_examples or (51200 if gpu else 1024)
    epochs = a.cnn_epochs or (3 if gpu else 1)
    precision = "bf16-mixed"
    dm = RandomImages(n)
    dm.setup()
    hand_loop(dm, 1, 0, device, net_fn=_cnn, precision=precision)
    harness_fit(dm, 1, 0, tmp, False, a.accelerator, net_fn=_cnn, precision=precision)
    raw, _ = hand_loop(dm, epochs, 0, device, net_fn=_cnn, precision=precision)
    timer, _, _ = harness_fit(dm, epochs, 0, tmp, False, a.accelerator, net_fn=_cnn, precision=precision)
    ex = n * epochs
    return (
        f"CNN case: SmallCNN 32-64-128 on {n} random 3x32x32 inputs, batch 512, {precision}, {epochs} epochs: "
        f"raw loop {ex / raw.wall:,.0f} ex/s, harness {ex / timer.wall:,.0f} ex/s (wall, in-epoch); "
        f"harness/raw time {timer.wall / raw.wall:.3f}x wall, {timer.cpu / raw.cpu:.3f}x cpu"
    )
