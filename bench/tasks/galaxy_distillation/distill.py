"""Matching Training Trajectories (MTT; Cazenavette et al. 2022) and its self-adaptive start-epoch rule (Guan et
al. 2023, arXiv:2311.17967).

One distillation iteration: pick an expert trajectory theta*_0..theta*_T and a start epoch t < T+; a student starts
at theta*_t and takes N SGD steps of size alpha on (minibatches of) the synthetic images, through
``torch.func.functional_call`` with the graph kept; the loss

    ||theta_{t+N} - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2

is back-propagated through the whole unroll into the synthetic images and into log(alpha), which are updated by
SGD with momentum 0.5 (MTT's optimisers).

Self-adaptive T+: T+ starts at 1. Every iteration also measures the matching loss at the next, unused start epoch
t = T+ (a probe: no gradient reaches the images from it). Every ``check_every`` iterations the Pearson correlation r
between those probe losses and their iteration numbers (since T+ last moved) is compared with sigma =
sqrt(1 / (n - 2)) (n probes): r < -5 sigma (training on earlier epochs already lowers the loss at epoch T+) or
r > 3 sigma (it raises it: the images drift away from that epoch) moves T+ up one epoch, to at most the largest
start epoch the trajectories allow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bench.harness.errors import BenchError

Params = dict[str, Tensor]


def parameter_names(net: nn.Module) -> list[str]:
    return [name for name, _ in net.named_parameters()]


def trajectory_params(
    states: Mapping[int, Mapping[str, Tensor]], names: Sequence[str], prefix: str = ""
) -> list[Params]:
    """Epoch-ordered parameter dicts (``names`` only: buffers such as input statistics stay the network's) of an
    expert's per-epoch state dicts {epoch: state_dict}; ``prefix`` is stripped from the keys (``net.``)."""
    epochs = sorted(int(e) for e in states)
    if epochs != list(range(len(epochs))):
        raise BenchError(f"an expert trajectory must hold every epoch from 0; it holds {epochs}")
    return [{n: states[e][prefix + n].detach().float() for n in names} for e in epochs]


def squared_distance(a: Params, b: Params) -> Tensor:
    return sum(((a[k] - b[k]) ** 2).sum() for k in a)


def matching_loss(student: Params, start: Params, target: Params) -> Tensor:
    """||student - target||^2 / ||start - target||^2 over all parameters (MTT's normalised parameter loss)."""
    return squared_distance(student, target) / squared_distance(start, target).clamp_min(1e-12)


def unroll(
    net: nn.Module,
    start: Params,
    images: Tensor,
    labels: Tensor,
    lr: Tensor,
    steps: int,
    batch_size: int | None = None,
    create_graph: bool = True,
    generator: torch.Generator | None = None,
) -> Params:
    """The student after ``steps`` SGD steps of size ``lr`` from ``start`` on (minibatches of) the synthetic set;
    with ``create_graph`` the result is differentiable in ``images`` and ``lr``. Minibatches run through
    random permutations of the set (the whole set when ``batch_size`` is None or larger)."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
    n = len(labels)
    bs = n if batch_size is None else min(int(batch_size), n)
    order: list[Tensor] = []
    for _ in range(int(steps)):
        if not order:
            perm = torch.randperm(n, generator=generator) if bs < n else torch.arange(n)
            order = list(torch.split(perm, bs))
        idx = order.pop(0)
        logits = functional_call(net, params, (images[idx],))
        loss = F.cross_entropy(logits, labels[idx])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
        if not create_graph:
            params = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    return params


def check_segment(num_epochs: int, max_start_epoch: int, expert_epochs: int, syn_steps: int) -> None:
    """One clear line when N (syn_steps), M (expert_epochs) or T+ do not fit the saved trajectories."""
    if int(syn_steps) < 1:
        raise BenchError(f"galaxy_distillation.distill.syn_steps={syn_steps}: the student needs N >= 1 SGD steps")
    if int(expert_epochs) < 1 or int(expert_epochs) > num_epochs:
        raise BenchError(
            f"galaxy_distillation.distill.expert_epochs={expert_epochs}: M must be 1..{num_epochs} "
            f"(the experts are trained for {num_epochs} epochs)"
        )
    if int(max_start_epoch) < 1 or int(max_start_epoch) - 1 + int(expert_epochs) > num_epochs:
        raise BenchError(
            f"galaxy_distillation.distill.max_start_epoch={max_start_epoch} with expert_epochs="
            f"{expert_epochs}: start epochs t < T+ need t + M <= {num_epochs}, the trajectories' length; "
            f"use max_start_epoch <= {num_epochs - int(expert_epochs) + 1} or train the experts longer"
        )


class AdaptiveStartEpoch:
    """T+ of self-adaptive MTT: starts at ``start``, moves up one epoch (to at most ``cap``) when the probe losses
    at epoch T+ correlate with the iteration number beyond ``-lower_sigmas`` / ``upper_sigmas`` sigma."""

    def __init__(
        self, cap: int, start: int = 1, check_every: int = 10, lower_sigmas: float = 5.0, upper_sigmas: float = 3.0
    ) -> None:
        self.t_plus, self.cap = int(start), int(cap)
        self.check_every, self.lower, self.upper = int(check_every), float(lower_sigmas), float(upper_sigmas)
        self.iterations: list[float] = []
        self.losses: list[float] = []
        self.moves: list[tuple[int, int, float]] = []  # (iteration, new T+, r)

    @property
    def probe_epoch(self) -> int | None:
        """The next, unused start epoch (None once T+ is at its cap)."""
        return self.t_plus if self.t_plus < self.cap else None

    def update(self, iteration: int, probe_loss: float) -> bool:
        """Add the probe loss of ``iteration`` (0-based); on every ``check_every``-th call test the correlation.
        Returns True when T+ moved."""
        if self.probe_epoch is None:
            return False
        self.iterations.append(float(iteration))
        self.losses.append(float(probe_loss))
        if (iteration + 1) % self.check_every != 0:
            return False
        n = len(self.losses)
        if n < 3:
            return False
        r = pearson(self.iterations, self.losses)
        sigma = math.sqrt(1.0 / (n - 2))
        if r < -self.lower * sigma or r > self.upper * sigma:
            self.t_plus += 1
            self.moves.append((iteration, self.t_plus, r))
            self.iterations, self.losses = [], []
            return True
        return False


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r (0 when either sequence is constant)."""
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    xc, yc = xt - xt.mean(), yt - yt.mean()
    den = float(torch.sqrt((xc**2).sum() * (yc**2).sum()))
    return float((xc * yc).sum()) / den if den > 0 else 0.0


@dataclass
class DistillResult:
    images: Tensor
    labels: Tensor
    lr: float
    losses: list[float] = field(default_factory=list)
    t_plus: list[int] = field(default_factory=list)  # T+ at each iteration
    probe_losses: list[float] = field(default_factory=list)


def distill(
    net: nn.Module,
    trajectories: Sequence[Sequence[Params]],
    init_images: Tensor,
    labels: Tensor,
    *,
    iterations: int,
    syn_steps: int,
    expert_epochs: int,
    max_start_epoch: int,
    lr_init: float,
    lr_img: float,
    lr_lr: float,
    batch_syn: int | None = None,
    adaptive: bool = False,
    check_every: int = 10,
    lower_sigmas: float = 5.0,
    upper_sigmas: float = 3.0,
    generator: torch.Generator | None = None,
    log_every: int = 0,
) -> DistillResult:
    """Distil ``init_images`` (with fixed ``labels``) by trajectory matching against ``trajectories``
    (each a list of per-epoch parameter dicts). ``adaptive`` grows T+ from 1 (``max_start_epoch`` is then its cap)."""
    num_epochs = min(len(t) for t in trajectories) - 1
    check_segment(num_epochs, max_start_epoch, expert_epochs, syn_steps)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    images = init_images.detach().clone().requires_grad_(True)
    log_lr = torch.tensor(math.log(lr_init)).requires_grad_(True)
    opt_img = torch.optim.SGD([images], lr=lr_img, momentum=0.5)
    opt_lr = torch.optim.SGD([log_lr], lr=lr_lr, momentum=0.5)
    rule = AdaptiveStartEpoch(max_start_epoch, 1, check_every, lower_sigmas, upper_sigmas) if adaptive else None
    out = DistillResult(images, labels, lr_init)
    order: list[int] = []
    for it in range(int(iterations)):
        if not order:  # every expert once per round, in random order (MTT cycles through a shuffled buffer)
            order = torch.randperm(len(trajectories), generator=g).tolist()
        traj = trajectories[order.pop()]
        t_plus = rule.t_plus if rule is not None else int(max_start_epoch)
        t = int(torch.randint(0, t_plus, (1,), generator=g))
        lr = torch.exp(log_lr)
        student = unroll(net, traj[t], images, labels, lr, syn_steps, batch_syn, generator=g)
        loss = matching_loss(student, traj[t], traj[t + expert_epochs])
        opt_img.zero_grad(set_to_none=True)
        opt_lr.zero_grad(set_to_none=True)
        loss.backward()
        opt_img.step()
        opt_lr.step()
        out.losses.append(float(loss.detach()))
        out.t_plus.append(t_plus)
        if rule is not None and (p := rule.probe_epoch) is not None:
            probe = unroll(
                net,
                traj[p],
                images.detach(),
                labels,
                lr.detach(),
                syn_steps,
                batch_syn,
                create_graph=False,
                generator=g,
            )
            probe_loss = float(matching_loss(probe, traj[p], traj[p + expert_epochs]).detach())
            out.probe_losses.append(probe_loss)
            rule.update(it, probe_loss)
        if log_every and (it + 1) % log_every == 0:
            print(f"distill it {it + 1}: loss {out.losses[-1]:.4f}  T+ {t_plus}  lr {float(lr):.4g}", flush=True)
    out.images = images.detach()
    out.lr = float(torch.exp(log_lr).detach())
    return out


# -- evaluation: fresh networks trained on a (synthetic) set only ---------------------------------------------------
def train_fresh(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    lr: float,
    epochs: int,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """MTT's ``evaluate_synset`` recipe: SGD with momentum and weight decay, step size ``lr`` (the learned alpha
    for distilled sets), decayed 10x at half of ``epochs``, minibatches of ``batch_size``."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = len(labels)
    net.train()
    for epoch in range(int(epochs)):
        if epoch == int(epochs) // 2:
            for group in opt.param_groups:
                group["lr"] = lr * 0.1
        perm = torch.randperm(n, generator=generator)
        for idx in torch.split(perm, int(batch_size)):
            loss = F.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net


@torch.no_grad()
def accuracy(net: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1024) -> float:
    net.eval()
    correct = sum(
        int((net(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
        for i in range(0, len(labels), batch_size)
    )
    return correct / max(1, len(labels))


# -- the synthetic-set initialisations and baselines ---------------------------------------------------------------
def per_class_indices(labels: Tensor, num_classes: int) -> list[Tensor]:
    return [torch.nonzero(labels == c).flatten() for c in range(num_classes)]


def check_images_per_class(labels: Tensor, num_classes: int, k: int) -> None:
    sizes = [len(i) for i in per_class_indices(labels, num_classes)]
    if int(k) < 1 or int(k) > min(sizes):
        small = min(range(num_classes), key=lambda c: sizes[c])
        raise BenchError(
            f"galaxy_distillation.images_per_class={k}: must be 1..{min(sizes)} (class {small} has "
            f"{sizes[small]} training images); lower it or use more training data"
        )


def random_real(x: Tensor, y: Tensor, num_classes: int, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """k random training images of each class (MTT's ``pix_init=real`` and the random-real baseline)."""
    check_images_per_class(y, num_classes, k)
    idx = torch.cat([i[torch.randperm(len(i), generator=generator)[:k]] for i in per_class_indices(y, num_classes)])
    return x[idx].clone(), y[idx].clone()


def class_means(x: Tensor, y: Tensor, num_classes: int, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The mean image of each class (k = 1); for k > 1 the means of k disjoint random parts of the class."""
    check_images_per_class(y, num_classes, k)
    xs, ys = [], []
    for c, idx in enumerate(per_class_indices(y, num_classes)):
        idx = idx[torch.randperm(len(idx), generator=generator)]
        for part in torch.tensor_split(idx, int(k)):
            xs.append(x[part].mean(0))
            ys.append(c)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)
