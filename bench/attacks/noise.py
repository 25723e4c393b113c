"""Random draws keyed by the example, not by the rank or the batch: the same example gets the same random start
and the same noise whatever batch or DDP rank it lands in, so N processes give the numbers of one."""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor


def example_seed(seed: int, stream: str, index: int) -> int:
    """A 63-bit seed from (run-level seed, stream name, example index); any int seed works."""
    digest = hashlib.blake2b(f"{int(seed)}/{stream}/{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN, _M1, _M2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _splitmix64(z: Tensor) -> Tensor:
    """SplitMix64's output function on int64 tensors (multiplication wraps modulo 2^64)."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def per_example_uniform(
    index: Tensor, shape: tuple[int, ...], seed: int, stream: str, device: torch.device | None = None
) -> Tensor:
    """Uniform [0, 1) numbers of ``shape`` per example, a counter-based hash of (seed, stream, example index,
    position): vectorised, on ``device``, and the same for an example whatever batch, rank or device it is on."""
    key = _signed(example_seed(seed, stream, 0) | 1)
    idx = index.to(device=device, dtype=torch.int64).view(-1, *([1] * len(shape)))
    pos = torch.arange(math.prod(shape), device=device, dtype=torch.int64).view(1, *shape)
    z = _splitmix64(_splitmix64(idx * key) + pos * _GOLDEN)
    return _shr(z, 11).to(torch.float64).mul_(2.0**-53).to(torch.float32)


def unit_linf(
    index: Tensor, shape: tuple[int, ...], seed: int, stream: str, device: torch.device | None = None
) -> Tensor:
    """Uniform noise in [-1, 1]^shape per example."""
    return per_example_uniform(index, shape, seed, stream, device) * 2 - 1


def unit_l2(
    index: Tensor,
    shape: tuple[int, ...],
    seed: int,
    stream: str,
    radius: str = "sphere",
    device: torch.device | None = None,
) -> Tensor:
    """A uniformly random direction of l2 norm 1 per example (``radius="sphere"``: Gaussian directions by
    Box-Muller), or a point of the unit ball with a uniform radius, as torchattacks' PGD-L2 start draws it
    (``radius="uniform"``)."""
    n = math.prod(shape)
    u = per_example_uniform(index, (2 * n + 1,), seed, stream, device).double()
    g = torch.sqrt(-2 * torch.log1p(-u[:, :n])) * torch.cos(2 * math.pi * u[:, n : 2 * n])
    d = g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)
    if radius == "uniform":
        d = d * u[:, 2 * n :]
    return d.to(torch.float32).view(len(index), *shape)


def random_noise(
    x: Tensor,
    eps: float,
    norm: str,
    generator: torch.Generator | None = None,
    index: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """``x`` plus random noise of the attack's radius, clipped to [0, 1]: uniform in the l_inf ball, or a random
    direction of l2 norm ``eps``. With ``index`` (the batch's example indices) each example's noise is keyed by
    (``seed``, index) and independent of the batch and rank; otherwise it comes from ``generator``."""
    shape = tuple(x.shape[1:])
    if index is not None:
        draw = unit_linf if norm == "linf" else unit_l2
        unit = draw(index, shape, seed, "noise", device=x.device)
        return (x + eps * unit.to(x)).clamp(0, 1)
    if norm == "linf":
        noise = (torch.rand(x.shape, generator=generator, device="cpu").to(x) * 2 - 1) * eps
    else:
        d = torch.randn(x.shape, generator=generator, device="cpu").to(x)
        flat = d.flatten(1).norm(dim=1).clamp(min=1e-12)
        noise = eps * d / flat.view(-1, *([1] * (x.ndim - 1)))
    return (x + noise).clamp(0, 1)
