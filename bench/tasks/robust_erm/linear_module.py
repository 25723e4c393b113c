"""Robust ERM of linear models with the exact worst-case loss, many full-batch steps per Lightning step.

A batch of problems trains at once (one row of the model's weight per problem): problem b uses the first m_b
examples of the training pool and the radius eps_b. Its objective is the robust risk
    L_b(w) = (1/m_b) sum_{i < m_b} loss(y_i <w, x_i> - eps_b ||w||_q),   loss(r) = exp(-r) or log(1 + exp(-r)),
and the problems' objectives are summed (their gradients are independent). The gradient w.r.t. the effective
weight w is computed in closed form (four batched tensor ops, ~4x faster than autograd at this size; a test
checks it against autograd) and pushed through the model's parametrisation (w = u*u - v*v) by autograd.

Speed: one Lightning step runs ``steps_per_call`` optimizer steps on the raw torch optimizer; Lightning's
per-step hooks (LightningOptimizer, manual_backward) are not used inside the loop (only its step counter, which
checkpointing reads), so this module is single-device (there is nothing to distribute in a full-batch problem of
this size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.harness.errors import BenchError
from bench.harness.module import BenchModule
from bench.tasks.robust_erm.threat import dual_exponent, dual_norm

LOSSES = ("exp", "logistic")


def subgradient_dual_norm(w: Tensor, q: float) -> Tensor:
    """A subgradient of ||w||_q for each row of w (the one autograd gives where ||.||_q is differentiable)."""
    if q == 1.0:
        return torch.sign(w)
    if q == 2.0:
        return w / torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    j = w.abs().argmax(dim=1, keepdim=True)
    return torch.zeros_like(w).scatter_(1, j, torch.sign(w.gather(1, j)))


def robust_risk_and_grad(
    w: Tensor, z: Tensor, weights: Tensor, eps: Tensor, p: float, loss: str
) -> tuple[Tensor, Tensor]:
    """Per-problem robust risks (B,) and their gradients (B, d), in few batched ops (this is the inner loop).

    Args:
        w: weights (B, d); z: signed inputs y_i x_i (n, d); weights: (B, n) with 1/m_b on problem b's examples and
        0 elsewhere; eps: radii (B,); p: threat exponent; loss: ``exp`` or ``logistic``.
    """
    # -margins (B, n) = eps_b ||w_b||_q - y_i <w_b, x_i>
    neg_margins = torch.addmm((eps * dual_norm(w, p))[:, None], w, z.T, alpha=-1)
    if loss == "exp":
        a = torch.exp(neg_margins).mul_(weights)  # -loss'(r) = loss(r): a holds both, weighted
        risk = a.sum(dim=1)
    else:
        risk = (F.softplus(neg_margins) * weights).sum(dim=1)
        a = torch.sigmoid(neg_margins).mul_(weights)
    # grad_b = sum_i a_bi (eps_b d||w_b||_q - z_i)
    edge = subgradient_dual_norm(w, dual_exponent(p)).mul_((eps * a.sum(dim=1))[:, None])
    return risk, torch.addmm(edge, a, z, alpha=-1)


class RobustLinearModule(BenchModule):
    """Args:
    net: a model with ``weight()`` -> (problems, d) (bench.models.linear).
    optimizer: factory ``params -> Optimizer`` (steepest descent: batched=True).
    p: threat exponent (1, 2 or inf).
    eps: one radius per problem.
    train_sizes: one train size per problem (the first m examples of the pool).
    names: one metric prefix per problem ("" for a single problem, e.g. "m=64/c=0.5/").
    loss: ``exp`` (the paper's) or ``logistic``.
    steps_per_call: optimizer steps per Lightning step.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable | None,
        p: float,
        eps: Sequence[float],
        train_sizes: Sequence[int],
        names: Sequence[str] | None = None,
        loss: str = "exp",
        steps_per_call: int = 1000,
    ) -> None:
        super().__init__(net, optimizer)
        if loss not in LOSSES:
            raise BenchError(f"unknown robust_erm loss {loss!r}; known: {', '.join(LOSSES)}")
        if len(eps) != net.problems or len(train_sizes) != net.problems:
            raise BenchError(f"{net.problems} problems but {len(eps)} radii and {len(train_sizes)} train sizes")
        if min(eps) < 0:
            raise BenchError(f"the radius eps must be >= 0, got {min(eps)}")
        if int(steps_per_call) < 1:
            raise BenchError(f"steps_per_call must be >= 1, got {steps_per_call}")
        self.p, self.loss, self.steps_per_call = p, loss, int(steps_per_call)
        self.names = list(names) if names is not None else [""] * net.problems
        self.register_buffer("eps", torch.tensor([float(e) for e in eps]))
        self.register_buffer("train_sizes", torch.tensor([int(m) for m in train_sizes]))

    def _problem_weights(self, index: Tensor) -> Tensor:
        """(B, n): 1/m_b where example ``index`` belongs to problem b's training set (index < m_b), else 0."""
        member = (index[None, :] < self.train_sizes[:, None]).to(self.eps.dtype)
        return member / member.sum(dim=1, keepdim=True)

    def _signed(self, batch: dict[str, Tensor]) -> Tensor:
        return (2 * batch["y"].to(batch["x"].dtype) - 1)[:, None] * batch["x"].flatten(1)

    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:
            raise BenchError("the robust_erm linear part is a single-device full-batch problem; run it with devices=1")

    def training_step(self, batch, batch_idx: int) -> Tensor:
        batch = batch[0] if isinstance(batch, list) else batch
        if len(batch["index"]) < int(self.train_sizes.max()):
            raise BenchError("the robust_erm linear part trains full-batch; set data.batch_size=null")
        z, weights = self._signed(batch), self._problem_weights(batch["index"])
        lightning_opt = self.optimizers()
        opt = lightning_opt.optimizer  # the raw torch optimizer (see the module docstring)
        params = list(self.net.parameters())
        leaf = self.net.weight().is_leaf  # w is the parameter itself (no parametrisation to differentiate)

        def risk_and_grads() -> Tensor:
            """Per-problem robust risk at the current parameters, gradients set (the line search's closure)."""
            if leaf:
                w = self.net.weight()
                risk, w.grad = robust_risk_and_grad(w, z, weights, self.eps, self.p, self.loss)
                return risk
            with torch.enable_grad():
                w = self.net.weight()
            risk, grad = robust_risk_and_grad(w.detach(), z, weights, self.eps, self.p, self.loss)
            for p in params:
                p.grad = None
            w.backward(grad)  # chain rule through the parametrisation (u*u - v*v)
            return risk

        searches = any(g.get("line_search") for g in opt.param_groups)
        with torch.no_grad():
            for _ in range(self.steps_per_call):
                # Lightning's step counter counts every step, as BenchModule's: without it global_step stays 0 and
                # no last.ckpt is ever written (a killed run would restart from zero)
                lightning_opt._on_before_step()
                if searches:  # backtracking from lr: the closure gives the risk of each trial step
                    risk = opt.step(risk_and_grads)
                else:
                    risk = risk_and_grads()
                    opt.step()
                lightning_opt._on_after_step()
        mean = risk.mean()
        self.log("train/loss", mean, on_step=False, on_epoch=True, prog_bar=True)
        return mean

    # -- exact evaluation ----------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        b = self.net.problems
        self._counts = {k: torch.zeros(b, device=self.device) for k in ("robust", "clean", "clean_ties", "robust_ties")}
        self._n = 0

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        w = self.net.weight().detach()
        z = self._signed(batch)
        signed_scores = z @ w.T  # (n, B): y <w, x>
        robust = signed_scores - (self.eps * dual_norm(w, self.p))[None, :]
        # a score of exactly 0 is an error (no side of the boundary is right); its count is recorded, and the
        # accuracies that count such ties as half right are a reported variant
        self._counts["robust"] += (robust > 0).sum(dim=0)
        self._counts["clean"] += (signed_scores > 0).sum(dim=0)
        self._counts["robust_ties"] += (robust == 0).sum(dim=0)
        self._counts["clean_ties"] += (signed_scores == 0).sum(dim=0)
        self._n += len(z)
        return {"scores": signed_scores}

    def train_metrics(self, split: dict[str, Tensor]) -> dict[str, Tensor]:
        """Exact robust / clean accuracy, risk and margins of each problem on its own training set."""
        w = self.net.weight().detach()
        batch = {k: v.to(self.device) for k, v in split.items()}
        batch["index"] = torch.arange(len(batch["y"]), device=self.device)
        z, weights = self._signed(batch), self._problem_weights(batch["index"])
        risk, _ = robust_risk_and_grad(w, z, weights, self.eps, self.p, self.loss)
        member = weights > 0
        signed_scores = (z @ w.T).T  # (B, n)
        norm_q = dual_norm(w, self.p).clamp_min(torch.finfo(w.dtype).tiny)
        robust = signed_scores - (self.eps * norm_q)[:, None]
        inf = torch.tensor(float("inf"), device=self.device)
        return {
            "train/loss": risk,
            "train/robust_acc": ((robust > 0) & member).sum(1) / member.sum(1),
            "train/acc": ((signed_scores > 0) & member).sum(1) / member.sum(1),
            # min_i y_i <w, x_i> / ||w||_q: the largest radius w withstands on every training point
            "train/normalized_margin": torch.where(member, signed_scores, inf).amin(1) / norm_q,
        }

    def on_test_epoch_end(self) -> None:
        w = self.net.weight().detach()
        per_problem = {
            "test/robust_acc": self._counts["robust"] / self._n,
            "test/acc": self._counts["clean"] / self._n,
            "test/tie_frac": self._counts["clean_ties"] / self._n,
            "test/acc_ties_half": (self._counts["clean"] + 0.5 * self._counts["clean_ties"]) / self._n,
            "test/robust_acc_ties_half": (self._counts["robust"] + 0.5 * self._counts["robust_ties"]) / self._n,
            "w/l1_over_l2": torch.linalg.vector_norm(w, 1, dim=1)
            / torch.linalg.vector_norm(w, 2, dim=1).clamp_min(1e-30),
        }
        per_problem.update(self.train_metrics(self.trainer.datamodule.split("train")))
        per_problem["robust_gap"] = per_problem["train/robust_acc"] - per_problem["test/robust_acc"]
        teacher = getattr(self.trainer.datamodule, "teacher", None)
        if teacher is not None:
            t = teacher.to(w)
            per_problem["w/teacher_cos"] = (w @ t) / (torch.linalg.vector_norm(w, dim=1) * t.norm()).clamp_min(1e-30)
        metrics = {
            f"{name}{key}": values[b] for key, values in per_problem.items() for b, name in enumerate(self.names)
        }
        self.log_dict(metrics, sync_dist=False)
