"""Per-step cost of the linear part: the harness (Trainer + RobustLinearModule, as ``bench fit`` builds them)
against plain torch loops on the same problem batch.

    python -m bench.tasks.robust_erm.perf [--steps 20000] [--steps-per-call 2000] [--optimizer gd|cd]

Reported, in CPU microseconds per optimizer step (process time, so that other jobs on a shared machine do not
count; median of ``--repeats``):
  plain closed-form : a hand-written loop with the module's closed-form gradient and an inline update;
  plain + optimizer : the same loop, stepping the optimizer class (bench.optim.steepest) instead of inline;
  plain autograd    : a hand-written loop with autograd and the optimizer class (what a naive port would run);
  harness in-epoch  : the time inside Lightning's training epochs (the module's loop + Lightning's per-step work);
  harness fit       : the whole ``trainer.fit`` (setup, per-epoch checkpoint, teardown) divided by the steps.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from hydra.utils import instantiate

from bench.harness.config import compose
from bench.harness.context import RunContext
from bench.perf import EpochTimer
from bench.tasks.robust_erm.linear_module import RobustLinearModule, robust_risk_and_grad
from bench.tasks.robust_erm.protocol import linear_problems
from bench.tasks.robust_erm.threat import robust_margin


def _setup(optimizer: str, workdir: str):
    cfg = compose(
        [
            "task=robust_erm",
            "experiment=robust_erm_paper",
            f"optimizer={optimizer}",
            "logger=none",
            f"work_dir={workdir}",
            f"results_dir={workdir}",
            "trainer.enable_progress_bar=false",
        ]
    )
    ctx = RunContext(cfg, workdir, [], resume=False)
    dm = ctx.build_datamodule()
    problems, p = linear_problems(ctx, dm)
    return cfg, ctx, dm, problems, p


def _module(cfg, ctx, dm, problems, p, per_call: int) -> RobustLinearModule:
    net = ctx.build_net(dm, problems=len(problems))
    return RobustLinearModule(
        net,
        instantiate(cfg.optimizer, _partial_=True, batched=True),
        p=p,
        eps=[q["eps"] for q in problems],
        train_sizes=[q["m"] for q in problems],
        names=[q["name"] for q in problems],
        steps_per_call=per_call,
    )


def plain_closed_form(cfg, dm, problems, p, optimizer: str, lr: float, steps: int, use_class: bool = False) -> float:
    train = dm.split("train")
    z = (2 * train["y"].float() - 1)[:, None] * train["x"]
    sizes = torch.tensor([q["m"] for q in problems])
    member = (torch.arange(len(z))[None, :] < sizes[:, None]).float()
    weights = member / member.sum(1, keepdim=True)
    eps = torch.tensor([q["eps"] for q in problems])
    w = torch.nn.Parameter(torch.zeros(len(problems), z.shape[1]))
    opt = instantiate(cfg.optimizer, params=[w], batched=True)
    t = time.process_time()
    with torch.no_grad():
        for _ in range(steps):
            _, grad = robust_risk_and_grad(w, z, weights, eps, p, "exp")
            if use_class:
                w.grad = grad
                opt.step()
            elif optimizer == "gd":
                w.add_(grad, alpha=-lr)
            else:
                j = grad.abs().argmax(1, keepdim=True)
                w.scatter_add_(1, j, grad.gather(1, j).mul_(-lr))
    return time.process_time() - t


def plain_autograd(cfg, dm, problems, p, steps: int) -> float:
    train = dm.split("train")
    x, y = train["x"], 2 * train["y"].float() - 1
    sizes = torch.tensor([q["m"] for q in problems])
    member = (torch.arange(len(y))[None, :] < sizes[:, None]).float()
    weights = member / member.sum(1, keepdim=True)
    eps = torch.tensor([q["eps"] for q in problems])
    w = torch.nn.Parameter(torch.zeros(len(problems), x.shape[1]))
    opt = instantiate(cfg.optimizer, params=[w], batched=True)
    t = time.process_time()
    for _ in range(steps):
        risk = (weights * torch.exp(-robust_margin(w, x, y, eps, p)).T).sum()
        opt.zero_grad(set_to_none=True)
        risk.backward()
        opt.step()
    return time.process_time() - t


def harness(cfg, ctx, dm, problems, p, steps: int, per_call: int) -> tuple[float, float]:
    module = _module(cfg, ctx, dm, problems, p, per_call)
    timer = EpochTimer(clock=time.process_time)
    trainer = ctx.trainer("perf", [timer], max_epochs=steps // per_call)
    t = time.process_time()
    trainer.fit(module, datamodule=dm)
    return timer.total, time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tasks.robust_erm.perf")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--steps-per-call", type=int, default=2000)
    ap.add_argument("--optimizer", choices=("gd", "cd"), default="gd")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, ctx, dm, problems, p = _setup(a.optimizer, tmp)
        if cfg.get("num_threads") is not None:
            torch.set_num_threads(int(cfg.num_threads))  # as the protocol runs
        lr = float(cfg.optimizer.lr)
        variants = ("plain closed-form", "plain + optimizer", "plain autograd", "harness in-epoch", "harness fit")
        results: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(a.repeats):  # interleaved, so load changes hit every variant alike
            results["plain closed-form"].append(plain_closed_form(cfg, dm, problems, p, a.optimizer, lr, a.steps))
            results["plain + optimizer"].append(
                plain_closed_form(cfg, dm, problems, p, a.optimizer, lr, a.steps, use_class=True)
            )
            results["plain autograd"].append(plain_autograd(cfg, dm, problems, p, a.steps))
            inside, total = harness(cfg, ctx, dm, problems, p, a.steps, a.steps_per_call)
            results["harness in-epoch"].append(inside)
            results["harness fit"].append(total)
    base = statistics.median(results["plain closed-form"])
    print(
        f"robust_erm linear part: {len(problems)} problems (d = {dm.d}, m up to {max(q['m'] for q in problems)}), "
        f"optimizer {a.optimizer}, {a.steps} steps, {a.steps_per_call} per Lightning step, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, ts in results.items():
        med = statistics.median(ts)
        print(f"  {name:<18} {1e6 * med / a.steps:8.1f} us/step   {med / base:5.2f}x plain closed-form")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
