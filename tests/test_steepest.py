"""Steepest descent (bench/optim/steepest.py): the fixed-step coordinate descent that diverges on the robust
exponential loss, and the backtracking line search that is stable for any dimension and seed."""

from __future__ import annotations

import pytest
import torch

from bench.optim.steepest import GD, CoordinateDescent, SignGD


def robust_exp_problem(d: int, seed: int, eps_fraction: float = 0.5):
    """Robust exponential loss of a linear model under l_inf radius eps (TASKS.md section 1):
    sum_i exp(-(y_i <w, x_i> - eps ||w||_1)), X ~ N(0, I_d), m = d / 2, dense teacher."""
    g = torch.Generator().manual_seed(seed)
    m = d // 2
    x = torch.randn(m, d, generator=g, dtype=torch.float64)
    y = torch.sign(x @ torch.randn(d, generator=g, dtype=torch.float64))
    z = y[:, None] * x
    eps = eps_fraction * float((z @ torch.sign(z.sum(0))).min().clamp_min(0) / d)  # a small radius of the data's scale
    return lambda w: torch.exp(-(z @ w - eps * w.abs().sum())).sum() / m


def train(opt_cls, d: int, seed: int, steps: int, **kw):
    loss_fn = robust_exp_problem(d, seed)
    w = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    opt = opt_cls([w], **kw)

    def closure():
        opt.zero_grad()
        loss = loss_fn(w)
        loss.backward()
        return loss

    history = []
    for _ in range(steps):
        if kw.get("line_search"):
            history.append(float(opt.step(closure)))
        else:
            history.append(float(closure()))
            opt.step()
    history.append(float(loss_fn(w.detach())))
    return history, w.detach()


def test_fixed_step_coordinate_descent_diverges_on_some_problem():
    # the failure the line search removes: a fixed step (here 4) blows up at d = 128 on some seed
    finals = [train(CoordinateDescent, 128, seed, 60, lr=4.0)[0][-1] for seed in range(4)]
    assert any(not torch.isfinite(torch.tensor(v)) or v > 1e3 for v in finals), finals


@pytest.mark.parametrize("d", [128, 256])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_line_search_coordinate_descent_is_stable_and_descends(d, seed):
    history, w = train(CoordinateDescent, d, seed, 150, lr=4.0, line_search=True)
    h = torch.tensor(history)
    assert torch.isfinite(h).all() and torch.isfinite(w).all()
    assert (h[1:] <= h[:-1] + 1e-12).all()  # Armijo: the loss never goes up
    assert h[-1] < 0.5 * h[0]
    assert int((w != 0).sum()) <= 150  # still coordinate descent: at most one new coordinate per step


@pytest.mark.parametrize("cls, kw", [(GD, {}), (SignGD, {"scale": "unit"})])
def test_line_search_other_norms_descend(cls, kw):
    history, _ = train(cls, 128, 0, 50, lr=10.0, line_search=True, **kw)
    h = torch.tensor(history)
    assert torch.isfinite(h).all() and (h[1:] <= h[:-1] + 1e-12).all() and h[-1] < h[0]


def test_batched_line_search_takes_a_step_per_problem():
    # two independent 1-d quadratics of curvature 1 and 100: lr 1 suits the first only; each row backtracks alone
    w = torch.tensor([[3.0], [3.0]], dtype=torch.float64, requires_grad=True)
    curv = torch.tensor([[1.0], [100.0]], dtype=torch.float64)
    opt = GD([w], lr=1.0, batched=True, line_search=True)

    def closure():
        opt.zero_grad()
        loss = (0.5 * curv * w**2).sum(1)
        loss.sum().backward()
        return loss

    opt.step(closure)
    assert float(w[0]) == pytest.approx(0.0)  # t = 1 accepted: the exact minimiser
    assert abs(float(w[1])) < 3.0  # t halved until the loss went down
    with pytest.raises(ValueError, match="closure"):
        opt.step()
