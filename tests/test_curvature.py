"""bench.metrics.curvature against independent constructions on small nets: torch.func.hessian of the flat loss,
J'MJ from an explicit Jacobian, Hutchinson estimates within their stated error, the alpha / temperature identity,
and the memory guard of the exact mode."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev

from bench.harness.errors import BenchError
from bench.metrics.curvature import FlatLoss, check_hessian_fits, hutchinson, loss_curvature, sparse_projection
from bench.models.mlp import MLP

D = torch.float64


def small_net(bias: bool = False, activation: str = "relu", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = MLP([3], 3, hidden=[6, 5], bias=bias, activation=activation).to(D)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.5)
    return net


def data(n: int = 60, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=D), torch.randint(0, 3, (n,), generator=g)


def direct_hessian(net: nn.Module, x, y, scale: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """torch.func.hessian of the flat loss, written independently of FlatLoss."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()]) * scale

    def loss(t):
        ps, i = {}, 0
        for n, s in zip(names, shapes):
            ps[n] = t[i : i + s.numel()].view(s)
            i += s.numel()
        return F.cross_entropy(functional_call(net, {**ps, **dict(net.named_buffers())}, (x,)) / temperature, y)

    return torch.func.hessian(loss)(theta)


def test_exact_hessian_matches_torch_func_hessian():
    net, (x, y) = small_net(), data()
    out, mats = loss_curvature(net, x, y, 3, mode="exact", return_matrices=True)
    h = direct_hessian(net, x, y)
    assert torch.allclose(mats["H"], h, atol=1e-12, rtol=1e-10)
    eig = torch.linalg.eigvalsh(h)
    assert out["positive_curvature"] == pytest.approx(float(eig.sum() / eig.norm()), rel=1e-10)
    tol = len(eig) * torch.finfo(D).eps * float(eig.abs().max())
    assert out["frac_positive"] == pytest.approx(float((eig > tol).double().mean()))
    assert 0 < out["frac_positive"] < 1
    assert out["dim"] == h.shape[0]


def test_gauss_newton_part_equals_j_m_j_built_directly():
    net, (x, y) = small_net(), data()
    _, mats = loss_curvature(net, x, y, 3, mode="exact", return_matrices=True)
    flat = FlatLoss(net, x, y)
    jac = jacrev(flat.logits)(flat.theta)  # (N, K, P)
    p = torch.softmax(flat.logits(flat.theta), dim=1)  # (N, K)
    m = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, K, K)
    g = torch.einsum("nkp,nkl,nlq->pq", jac, m, jac) / len(y)
    assert torch.allclose(mats["G"], g, atol=1e-12, rtol=1e-10)
    assert torch.linalg.eigvalsh(g).min() > -1e-12  # G is positive semi-definite


def test_hessian_minus_gauss_newton_is_trace_free_for_bias_free_relu_but_not_for_tanh():
    x, y = data()
    out = loss_curvature(small_net(), x, y, 3, mode="exact")
    assert abs(out["rest/trace"]) <= 1e-10 * out["fro"]
    assert abs(out["trace"] - out["ggn/trace"]) <= 1e-10 * out["fro"]
    # a smooth activation has second derivatives inside a layer: the diagonal of H - G is no longer zero
    smooth = loss_curvature(small_net(activation="tanh"), x, y, 3, mode="exact")
    assert abs(smooth["rest/trace"]) > 1e-3 * smooth["fro"]


def test_subspace_hessian_is_r_transpose_h_r():
    net, (x, y) = small_net(), data()
    _, exact = loss_curvature(net, x, y, 3, mode="exact", return_matrices=True)
    r = sparse_projection(exact["H"].shape[0], 8, torch.Generator().manual_seed(3))
    assert torch.allclose(r.norm(dim=0), torch.ones(8, dtype=D))
    _, sub = loss_curvature(net, x, y, 3, mode="subspace", projection=r, return_matrices=True)
    assert torch.allclose(sub["H"], r.T @ exact["H"] @ r, atol=1e-12)
    assert torch.allclose(sub["G"], r.T @ exact["G"] @ r, atol=1e-12)


def test_hutchinson_estimates_are_within_their_stated_error():
    net, (x, y) = small_net(), data()
    _, mats = loss_curvature(net, x, y, 3, mode="exact", return_matrices=True)
    h = (mats["H"] + mats["H"].T) / 2
    probes = 400
    est = hutchinson(FlatLoss(net, x, y), FlatLoss(net, x, y).theta, probes, torch.Generator().manual_seed(0))
    fro2 = float((h * h).sum())
    sd_trace = math.sqrt(2 * (fro2 - float((h.diagonal() ** 2).sum())) / probes)
    h2 = h @ h
    sd_fro2 = math.sqrt(2 * (float((h2 * h2).sum()) - float((h2.diagonal() ** 2).sum())) / probes)
    assert abs(est["hutch/trace"] - float(torch.trace(h))) <= 4 * sd_trace
    assert abs(est["hutch/fro"] ** 2 - fro2) <= 4 * sd_fro2
    # the reported standard errors estimate the same spread
    assert 0.5 * sd_trace <= est["hutch/trace_se"] <= 2 * sd_trace
    assert 0.5 * sd_fro2 / (2 * math.sqrt(fro2)) <= est["hutch/fro_se"] <= 2 * sd_fro2 / (2 * math.sqrt(fro2))


@pytest.mark.parametrize("alpha", [1e-3, 0.05, 3.0, 1e3])
def test_scaling_weights_equals_softmax_temperature_to_1e_8(alpha):
    net, (x, y) = small_net(), data()
    L = 3
    r = sparse_projection(sum(p.numel() for p in net.parameters()), 10, torch.Generator().manual_seed(5))
    for mode in ("exact", "subspace"):
        cw, mw = loss_curvature(net, x, y, 3, mode=mode, scale=alpha, projection=r, return_matrices=True)
        ct, mt = loss_curvature(net, x, y, 3, mode=mode, temperature=alpha**-L, projection=r, return_matrices=True)
        assert abs(cw["positive_curvature"] - ct["positive_curvature"]) <= 1e-8
        ref = torch.linalg.matrix_norm(mt["H"])
        if ref > 0:
            assert torch.linalg.matrix_norm(alpha**2 * mw["H"] - mt["H"]) <= 1e-8 * ref
    # and against the independent Hessian: H_T(w0) = alpha^2 H(alpha w0)
    h_alpha, h_temp = direct_hessian(net, x, y, scale=alpha), direct_hessian(net, x, y, temperature=alpha**-L)
    if torch.linalg.matrix_norm(h_temp) > 0:
        assert torch.linalg.matrix_norm(alpha**2 * h_alpha - h_temp) <= 1e-8 * torch.linalg.matrix_norm(h_temp)


def test_identity_fails_for_a_net_with_biases():
    """A negative control: with biases the logits are not homogeneous and the two sweeps differ."""
    net, (x, y) = small_net(bias=True), data()
    cw, mw = loss_curvature(net, x, y, 3, mode="exact", scale=3.0, return_matrices=True)
    ct, mt = loss_curvature(net, x, y, 3, mode="exact", temperature=3.0**-3, return_matrices=True)
    assert torch.linalg.matrix_norm(9 * mw["H"] - mt["H"]) > 1e-3 * torch.linalg.matrix_norm(mt["H"])


def test_gradient_norm_and_prior_mismatch():
    net, (x, y) = small_net(), data()
    out = loss_curvature(net, x, y, 3, mode="hutchinson", probes=4)
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    assert out["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-10)
    q = torch.bincount(y, minlength=3).to(D) / len(y)
    assert out["prior_mismatch"] == pytest.approx(float((q - torch.softmax(net(x), 1).mean(0)).norm()), rel=1e-10)
    assert out["positive_curvature"] == out["hutch/positive_curvature"]


def test_too_large_exact_hessian_is_one_clear_error():
    with pytest.raises(BenchError, match=r"1,000,000 parameters.*curvature.mode=subspace.*hutchinson"):
        check_hessian_fits(1_000_000, max_bytes=2 * 2**30)
    net, (x, y) = small_net(), data()
    with pytest.raises(BenchError, match="63 parameters"):
        loss_curvature(net, x, y, 3, mode="exact", max_hessian_bytes=1000)
    with pytest.raises(BenchError, match="unknown curvature.mode"):
        loss_curvature(net, x, y, 3, mode="lanczos")
    with pytest.raises(BenchError, match="probes"):
        loss_curvature(net, x, y, 3, mode="hutchinson", probes=1)
