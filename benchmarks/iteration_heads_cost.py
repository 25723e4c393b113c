"""Where the CPU time of iteration_heads' paper profile goes, and what its verify plan must cost on this machine.

    python benchmarks/iteration_heads_cost.py [--steps 40] [--cores 2] [overrides ...]

Builds the paper profile's datamodule and module (``experiment=iteration_heads_paper``, through the harness), times
the training step (length-grouped loss, backward, Adam) on real minibatches of each stage the plan trains (CoT
parity, no-CoT parity, CoT polynomial), prints torch.profiler's top operators of the CoT step, and multiplies the
step times by the optimizer steps of the verify plan (every stage at its full epoch budget; fine-tuning may stop
earlier). Two bounds on the plan's wall time on ``--cores`` cores: the measured steps, and the matrix products
alone (the step's ``aten::mm`` / ``addmm`` / ``bmm`` share), which is what remains if every other operator cost
nothing. Evaluation, setup and process start come on top.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


def build(overrides: list[str], tmp: str):
    from bench.harness.config import compose
    from bench.harness.context import RunContext
    from bench.harness.threads import apply_thread_default

    cfg = compose(["task=iteration_heads", "experiment=iteration_heads_paper", "logger=none", *overrides])
    apply_thread_default(cfg)
    torch.set_num_threads(int(cfg.num_threads))
    return RunContext(cfg, Path(tmp) / "cost", loggers=[], resume=False), cfg


def step_fn(ctx, problem: str, cot: bool):
    dm = ctx.build_datamodule(problem=problem, cot=cot)
    dm.setup()
    module = ctx.build_module(dm)
    opt = module.optimizer_factory(params=[p for p in module.parameters() if p.requires_grad])  # the config's Adam
    batches = [b for chunk in dm.train_dataloader() for b in (chunk if isinstance(chunk, list) else [chunk])]

    def step(i: int) -> None:
        loss = module.training_loss(batches[i % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, len(batches)


@contextlib.contextmanager
def quiet_stderr():
    """The profiler's C++ side prints start / stop lines on file descriptor 2, past Python's sys.stderr."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def timed(step, n: int) -> float:
    for i in range(3):
        step(i)
    c = time.process_time()
    for i in range(n):
        step(i)
    return (time.process_time() - c) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="timed steps per stage")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    from torch.profiler import ProfilerActivity, profile

    from bench.harness.run import quiet_lightning

    quiet_lightning()
    with tempfile.TemporaryDirectory() as tmp:
        ctx, cfg = build(a.overrides, tmp)
        tr = cfg.transfer
        epochs = int(cfg.trainer.max_epochs)
        seeds = len(cfg.task.verify.seeds)
        # (stage, problem, cot, epochs per seed): the plan's runs (pipeline=single CoT / no-CoT, pipeline=transfer)
        stages = [
            ("single CoT parity", "parity", True, epochs),
            ("single no-CoT parity", "parity", False, epochs),
            ("transfer pre-training (polynomial)", "polynomial", True, int(tr.pretrain_epochs)),
            ("transfer fine-tuning (parity, each mode)", "parity", True, int(tr.finetune_epochs) * len(tr.modes)),
        ]
        total_cpu, total_gemm = 0.0, 0.0
        print(f"threads {torch.get_num_threads()}; {a.steps} timed steps per stage; {seeds} seeds in the plan")
        print(f"  {'stage':<42} {'ms/step':>8} {'steps/epoch':>11} {'plan steps':>10} {'plan CPU s':>10}")
        for name, problem, cot, n_epochs in stages:
            step, per_epoch = step_fn(ctx, problem, cot)
            runs = [timed(step, a.steps) for _ in range(3)]
            ms = statistics.median(runs)
            with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
                for i in range(10):
                    step(i)
            events = prof.key_averages()
            self_total = sum(e.self_cpu_time_total for e in events)
            gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / self_total
            steps = per_epoch * n_epochs * seeds
            total_cpu += steps * ms
            total_gemm += steps * ms * gemm
            print(f"  {name:<42} {ms * 1e3:8.1f} {per_epoch:11d} {steps:10d} {steps * ms:10.0f}   GEMM {gemm:.0%}")
            if name.startswith("single CoT"):
                top = events.table(sort_by="self_cpu_time_total", row_limit=10)
        print(
            f"plan training steps: {total_cpu:.0f} CPU s -> at least {total_cpu / a.cores:.0f} s wall on {a.cores} "
            f"cores; the matrix products alone: {total_gemm:.0f} CPU s -> {total_gemm / a.cores:.0f} s"
        )
        print("top operators of the CoT parity step (10 steps):")
        print(top)


if __name__ == "__main__":
    main()
