"""Curvature of the full-data cross-entropy at one point in parameter space, with ``torch.func``.

Everything is a function of the flat parameter vector ``theta`` of a network (``functional_call``), so the same
code gives the exact Hessian of a small net, the Hessian on a random subspace ``R'HR``, Hutchinson estimates
from Hessian-vector products, and the Gauss-Newton split ``H = G + (H - G)`` with
``G = mean_s J_s' M_s J_s``, ``M_s = diag(p_s) - p_s p_s'`` (``J_s`` the Jacobian of sample s's logits).

Quantities (keys of :func:`loss_curvature`'s result):
  ``loss``, ``grad_norm``          cross-entropy of the whole set and ``||dL/dtheta||``
  ``prior_mismatch``               ``||Q - mean_s softmax(z_s)||_2``, Q the label frequencies of the set
  ``positive_curvature``           ``Tr(H) / ||H||_F`` of the Hessian in the chosen basis (0 when H = 0)
  ``frac_positive``                fraction of positive eigenvalues
  ``trace``, ``fro``, ``top_eig``  of the same matrix; ``dim`` its size (P, or d on a subspace)
  ``ggn/...``, ``rest/...``        the same for G and for H - G
  ``hutch/trace``, ``hutch/fro``   Hutchinson estimates on the full parameter space (Rademacher probes):
                                   ``Tr H ~ mean v'Hv``, ``||H||_F^2 ~ mean ||Hv||^2``; ``..._se`` their standard
                                   errors from the probes' spread; ``hutch/positive_curvature`` their ratio
Modes: ``exact`` (the full P x P Hessian), ``subspace`` (``R'HR`` with ``R`` a random sparse projection of ``dim``
columns, as in Fort & Scherlis and the paper's code), ``hutchinson`` (estimates only). These are not torchmetrics
``Metric``s: they need the whole training set at once and have no state to accumulate over batches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian, jvp, vjp, vmap

from bench.harness.errors import BenchError

MODES = ("exact", "subspace", "hutchinson")


class FlatLoss:
    """The network's logits and cross-entropy on fixed data as functions of one flat parameter vector.

    Args:
        net: the network (its buffers are kept fixed).
        x, y: the whole data set (inputs are cast to ``dtype``).
        temperature: logits are divided by it (softmax temperature).
        dtype: compute dtype (float64 for curvature at extreme scales).
    """

    def __init__(
        self, net: nn.Module, x: Tensor, y: Tensor, temperature: float = 1.0, dtype: torch.dtype = torch.float64
    ) -> None:
        self.net = net
        self.names = [n for n, _ in net.named_parameters()]
        self.shapes = [p.shape for _, p in net.named_parameters()]
        self.sizes = [p.numel() for _, p in net.named_parameters()]
        self.buffers = {n: b.to(dtype) if b.is_floating_point() else b for n, b in net.named_buffers()}
        self.x, self.y = x.to(dtype), y
        self.temperature = float(temperature)
        self.dtype = dtype
        self.theta = torch.cat([p.detach().reshape(-1).to(dtype) for p in net.parameters()])

    @property
    def num_params(self) -> int:
        return int(self.theta.numel())

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes)}

    def logits(self, theta: Tensor) -> Tensor:
        z = functional_call(self.net, {**self.unflatten(theta), **self.buffers}, (self.x,))
        return z / self.temperature

    def loss(self, theta: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(theta), self.y)

    # -- products with H and G -----------------------------------------------------------------------------
    def hvp(self, theta: Tensor, vectors: Tensor, chunk: int = 64) -> Tensor:
        """``H v`` for each row v of ``vectors`` (forward-over-reverse: jvp of the gradient)."""
        g = grad(self.loss)

        def one(v: Tensor) -> Tensor:
            return jvp(g, (theta,), (v,))[1]

        return torch.cat([vmap(one)(c) for c in vectors.split(chunk)]) if len(vectors) else vectors.clone()

    def ggn_vp(self, theta: Tensor, vectors: Tensor, chunk: int = 64) -> Tensor:
        """``G v`` for each row v: ``J' M (J v) / N`` with a jvp (J v) and a vjp (J' .), never forming J."""
        z, pullback = vjp(self.logits, theta)
        p = torch.softmax(z, dim=1)
        n = z.shape[0]

        def one(v: Tensor) -> Tensor:
            jv = jvp(self.logits, (theta,), (v,))[1]
            mjv = p * jv - p * (p * jv).sum(dim=1, keepdim=True)
            return pullback(mjv)[0] / n

        return torch.cat([vmap(one)(c) for c in vectors.split(chunk)]) if len(vectors) else vectors.clone()


# -- projections and bounds ------------------------------------------------------------------------------------
def sparse_projection(
    num_params: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """A (P, dim) random sparse projection: each column keeps each coordinate with probability 1/sqrt(P) with a
    random sign and is normalised to unit length (the construction of Fort & Scherlis 2019 and the paper's code;
    columns are nearly, not exactly, orthogonal)."""
    keep = torch.rand(num_params, dim, generator=generator) < 1.0 / math.sqrt(num_params)
    empty = ~keep.any(dim=0)  # a column with no entry would be zero: give it one coordinate
    if empty.any():
        rows = torch.randint(num_params, (int(empty.sum()),), generator=generator)
        keep[rows, torch.nonzero(empty).flatten()] = True
    signs = torch.where(torch.rand(num_params, dim, generator=generator) < 0.5, -1.0, 1.0)
    r = (keep * signs).to(dtype)
    return r / r.norm(dim=0, keepdim=True)


def hessian_bytes(num_params: int, dtype: torch.dtype = torch.float64) -> int:
    """Memory of the exact mode: H, G, H - G and the eigendecomposition workspace, four P x P matrices."""
    return 4 * num_params * num_params * torch.empty((), dtype=dtype).element_size()


def check_hessian_fits(num_params: int, max_bytes: float, dtype: torch.dtype = torch.float64) -> None:
    """One clear error (before any training) when the exact Hessian would not fit in ``max_bytes``."""
    need = hessian_bytes(num_params, dtype)
    if need > max_bytes:
        raise BenchError(
            f"the exact Hessian of this net's {num_params:,} parameters needs {need / 2**30:.1f} GiB "
            f"(limit {max_bytes / 2**30:.1f} GiB): use curvature.mode=subspace (R'HR on a random 50-dim subspace) "
            "or curvature.mode=hutchinson (trace and Frobenius estimates from Hessian-vector products)"
        )


# -- summaries ---------------------------------------------------------------------------------------------------
def spectrum_summary(matrix: Tensor) -> dict[str, float]:
    """Trace, Frobenius norm, top eigenvalue, positive curvature Tr/||.||_F and the fraction of positive
    eigenvalues of a symmetric matrix (symmetrised first: autodiff Hessians are symmetric up to rounding).
    Eigenvalues within rounding of zero (``|l| <= n eps max|l|``, the usual numerical-rank cut) count as zero, not
    positive: ReLU nets have exactly flat directions (dead units) whose computed eigenvalues are signed noise."""
    sym = (matrix + matrix.T) / 2
    eig = torch.linalg.eigvalsh(sym)
    tol = len(eig) * torch.finfo(eig.dtype).eps * float(eig.abs().max()) if len(eig) else 0.0
    trace, fro = float(torch.trace(sym)), float(torch.linalg.matrix_norm(sym))
    return {
        "trace": trace,
        "fro": fro,
        "top_eig": float(eig[-1]),
        "positive_curvature": trace / fro if fro > 0 else 0.0,  # H = 0 (saturated softmax): no curvature
        "frac_positive": float((eig > tol).double().mean()),
    }


def hutchinson(flat: FlatLoss, theta: Tensor, probes: int, generator: torch.Generator) -> dict[str, float]:
    """Hutchinson estimates of Tr H and ||H||_F from ``probes`` Rademacher vectors, with standard errors.

    Error (stated): for Rademacher v, ``Var(v'Hv) = 2 (||H||_F^2 - sum_i H_ii^2)`` and
    ``Var(||Hv||^2) = 2 (||H^2||_F^2 - sum_i (H^2)_ii^2)``; the estimates are means over ``probes`` draws, so
    their standard errors are those variances over ``probes`` (``..._se`` below estimates them from the draws)."""
    if probes < 2:
        raise BenchError(f"curvature.probes must be >= 2 (standard errors need repetitions), got {probes}")
    v = torch.where(torch.rand(probes, flat.num_params, generator=generator) < 0.5, -1.0, 1.0).to(flat.dtype)
    hv = flat.hvp(theta, v)
    quad, sq = (v * hv).sum(dim=1), (hv * hv).sum(dim=1)
    trace, fro2 = float(quad.mean()), float(sq.mean())
    fro = math.sqrt(max(fro2, 0.0))
    fro2_se = float(sq.std() / math.sqrt(probes))
    return {
        "hutch/trace": trace,
        "hutch/trace_se": float(quad.std() / math.sqrt(probes)),
        "hutch/fro": fro,
        "hutch/fro_se": fro2_se / (2 * fro) if fro > 0 else 0.0,  # delta method: d sqrt(s) = ds / (2 sqrt(s))
        "hutch/positive_curvature": trace / fro if fro > 0 else 0.0,
    }


def gradient_stats(flat: FlatLoss, theta: Tensor, num_classes: int) -> dict[str, float]:
    """Loss, gradient norm and prior mismatch ``||Q - mean softmax||``."""
    loss, g = torch.func.grad_and_value(flat.loss)(theta)[::-1]
    with torch.no_grad():
        p_mean = torch.softmax(flat.logits(theta), dim=1).mean(dim=0)
        prior = torch.bincount(flat.y, minlength=num_classes).to(p_mean.dtype) / len(flat.y)
    return {"loss": float(loss), "grad_norm": float(g.norm()), "prior_mismatch": float((prior - p_mean).norm())}


def loss_curvature(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    num_classes: int,
    mode: str = "subspace",
    dim: int = 50,
    probes: int = 0,
    temperature: float = 1.0,
    scale: float = 1.0,
    projection: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    max_hessian_bytes: float = 2 * 2**30,
    ggn: bool = True,
    return_matrices: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, Tensor]]:
    """Curvature of the cross-entropy of ``net`` (weights multiplied by ``scale``, logits divided by
    ``temperature``) on the whole set ``(x, y)``.

    ``mode``: ``exact`` (P x P Hessian, refused with a clear error above ``max_hessian_bytes``), ``subspace``
    (``R'HR`` and ``R'GR`` with ``R = projection`` or a fresh :func:`sparse_projection` of ``dim`` columns) or
    ``hutchinson`` (no matrix). ``probes > 0`` adds Hutchinson estimates in any mode; ``ggn=False`` skips the
    Gauss-Newton split. With ``return_matrices`` the matrices (``H``, ``G``, ``R``) come back too."""
    if mode not in MODES:
        raise BenchError(f"unknown curvature.mode {mode!r}; known modes: {', '.join(MODES)}")
    if not (temperature > 0 and scale > 0):
        raise BenchError(f"temperature and scale must be > 0, got {temperature} and {scale}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    flat = FlatLoss(net, x, y, temperature=temperature, dtype=dtype)
    theta = flat.theta * scale
    out = gradient_stats(flat, theta, num_classes)
    mats: dict[str, Tensor] = {}
    if mode == "exact":
        check_hessian_fits(flat.num_params, max_hessian_bytes, dtype)
        eye = torch.eye(flat.num_params, dtype=dtype)
        mats["H"] = flat.hvp(theta, eye)
        if ggn:
            mats["G"] = flat.ggn_vp(theta, eye)
    elif mode == "subspace":
        r = projection if projection is not None else sparse_projection(flat.num_params, dim, generator, dtype)
        if r.shape[0] != flat.num_params:
            raise BenchError(f"the projection has {r.shape[0]} rows but the net has {flat.num_params} parameters")
        r = r.to(dtype)

        def restricted(u: Tensor) -> Tensor:
            return flat.loss(theta + r @ u)

        mats["H"] = hessian(restricted)(torch.zeros(r.shape[1], dtype=dtype))
        if ggn:
            mats["G"] = r.T @ flat.ggn_vp(theta, r.T.contiguous()).T
        mats["R"] = r
    if "H" in mats:
        out.update(spectrum_summary(mats["H"]))
        out["dim"] = float(mats["H"].shape[0])
    if "G" in mats:
        for prefix, m in (("ggn/", mats["G"]), ("rest/", mats["H"] - mats["G"])):
            out.update({prefix + k: v for k, v in spectrum_summary(m).items()})
    if probes > 0 or mode == "hutchinson":
        out.update(hutchinson(flat, theta, probes if probes else 100, generator))
        if mode == "hutchinson":
            out["positive_curvature"], out["dim"] = out["hutch/positive_curvature"], float(flat.num_params)
    return (out, mats) if return_matrices else out
