"""Procedurally generated galaxy images (3 bands, g r z), rendered in batches with torch: the embedded default
data of ``galaxy_distillation`` (no download).

Seven morphology classes, loosely following the Galaxy Zoo / Galaxy10 DECaLS decision tree:

  0 smooth_round      de Vaucouleurs-like Sersic profile (n 2.5-5), axis ratio 0.75-1, red
  1 smooth_elliptical Sersic n 1.5-4, axis ratio 0.3-0.7 ("in-between" / cigar-shaped smooth), red
  2 edge_on_disc      thin exponential disc (axis ratio 0.08-0.2) + small bulge, dust lane on half of them
  3 spiral            bulge + exponential disc seen at inclination 0.5-1 with 2-4 logarithmic arms of pitch
                      10-35 degrees, either winding, bluer arms with star-forming knots
  4 barred_spiral     bulge + bar + two arms starting at the bar ends, pitch 10-30 degrees
  5 merger            two (sometimes three) nuclei 0.15-0.45 of the field apart with tidal tails
  6 irregular         faint asymmetric disc with 3-8 bright blue clumps, no bulge

Every image also varies in position (a few pixels), rotation, size, brightness, PSF width (a Gaussian of
0.5-1.2 px) and noise (sky Gaussian plus photon noise); a few field stars are added. Fluxes are mapped to [0, 1]
by an asinh stretch as survey cut-outs are (Lupton et al. 2004). Deterministic by seed: one ``torch.Generator``
per (seed, split) draws every random number in a fixed order.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.data.base import TensorDataModule
from bench.harness.errors import BenchError
from bench.harness.seeding import generator as seeded_generator

CLASS_NAMES = ("smooth_round", "smooth_elliptical", "edge_on_disc", "spiral", "barred_spiral", "merger", "irregular")

# band weights (g, r, z) of an old (red) and a young (blue) stellar population
RED = (0.45, 0.8, 1.0)
BLUE = (1.0, 0.8, 0.55)


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _col(v: Tensor) -> Tensor:
    """A per-image value [n] broadcast against images [n, H, W]."""
    return v.view(-1, 1, 1)


class Frame:
    """Pixel coordinates of a batch of n images of size s, field of view [-1, 1]^2."""

    def __init__(self, n: int, s: int) -> None:
        c = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
        self.y, self.x = torch.meshgrid(c, c, indexing="ij")
        self.n, self.s = n, s

    def project(self, cx: Tensor, cy: Tensor, angle: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """Coordinates in the plane of a disc centred at (cx, cy), major axis at ``angle``, axis ratio ``q``
        (the minor axis is stretched back by 1/q: a circle in the disc plane is an ellipse on the sky)."""
        dx, dy = self.x - _col(cx), self.y - _col(cy)
        ca, sa = _col(torch.cos(angle)), _col(torch.sin(angle))
        u = ca * dx + sa * dy
        v = (-sa * dx + ca * dy) / _col(q)
        return u, v


def sersic(r: Tensor, r_e: Tensor, n: Tensor) -> Tensor:
    """Sersic profile exp(-b_n ((r / r_e)^(1/n) - 1)): 1 at the effective (half-light) radius r_e."""
    b = _col(2 * n - 1 / 3)
    return torch.exp(-b * ((r / _col(r_e)).clamp_min(1e-6) ** (1 / _col(n)) - 1))


def _bands(light: Tensor, colour: tuple[float, float, float], jitter: Tensor) -> Tensor:
    """[n, H, W] light -> [n, 3, H, W] with the population's band weights (``jitter`` [n, 3] varies them)."""
    w = torch.tensor(colour).view(1, 3) * jitter
    return light.unsqueeze(1) * w.view(-1, 3, 1, 1)


def _jitter(g: torch.Generator, n: int) -> Tensor:
    return 1 + 0.12 * (2 * torch.rand(n, 3, generator=g) - 1)


def _blobs(frame: Frame, cx: Tensor, cy: Tensor, sigma: Tensor, amp: Tensor) -> Tensor:
    """Sum of Gaussian blobs: cx, cy, sigma, amp are [n, k] -> [n, H, W]."""
    dx = frame.x.view(1, 1, frame.s, frame.s) - cx[..., None, None]
    dy = frame.y.view(1, 1, frame.s, frame.s) - cy[..., None, None]
    return (amp[..., None, None] * torch.exp(-(dx**2 + dy**2) / (2 * sigma[..., None, None] ** 2))).sum(1)


# -- the classes: each returns fluxes [n, 3, H, W] ---------------------------------------------------------------
def _smooth(g: torch.Generator, f: Frame, q_range: tuple[float, float], n_range: tuple[float, float]) -> Tensor:
    n = f.n
    cx, cy, ang = _u(g, n, -0.08, 0.08), _u(g, n, -0.08, 0.08), _u(g, n, 0, math.pi)
    q, sn, re = _u(g, n, *q_range), _u(g, n, *n_range), _u(g, n, 0.1, 0.25)
    u, v = f.project(cx, cy, ang, q)
    light = sersic(torch.sqrt(u**2 + v**2), re, sn) * _col(_u(g, n, 0.12, 0.3))
    return _bands(light, RED, _jitter(g, n))


def smooth_round(g: torch.Generator, f: Frame) -> Tensor:
    return _smooth(g, f, (0.75, 1.0), (2.5, 5.0))


def smooth_elliptical(g: torch.Generator, f: Frame) -> Tensor:
    return _smooth(g, f, (0.3, 0.7), (1.5, 4.0))


def edge_on_disc(g: torch.Generator, f: Frame) -> Tensor:
    n = f.n
    cx, cy, ang = _u(g, n, -0.06, 0.06), _u(g, n, -0.06, 0.06), _u(g, n, 0, math.pi)
    length, thick = _u(g, n, 0.25, 0.45), _u(g, n, 0.025, 0.06)
    u, v = f.project(cx, cy, ang, torch.ones(n))
    disc = torch.exp(-u.abs() / _col(length * 0.45)) / torch.cosh(v / _col(thick)) ** 2
    bulge = sersic(torch.sqrt(u**2 + (v / 0.7) ** 2), _u(g, n, 0.04, 0.09), _u(g, n, 1.5, 3.0))
    bulge = bulge * _col(_u(g, n, 0.05, 0.2))
    lane = 1 - _col(_u(g, n, 0.4, 0.8) * (torch.rand(n, generator=g) < 0.5)) * torch.exp(
        -((v / _col(thick * 0.35)) ** 2)
    )
    return _bands(disc * lane * 1.6, BLUE, _jitter(g, n)) + _bands(bulge * lane * 2.5, RED, _jitter(g, n))


def _disc_with_arms(
    g: torch.Generator,
    f: Frame,
    arms: Tensor,
    pitch: Tensor,
    r0: Tensor,
    phase: Tensor,
    cx: Tensor,
    cy: Tensor,
    ang: Tensor,
    q: Tensor,
    scale: Tensor,
) -> tuple[Tensor, Tensor]:
    """Disc light (arms on an exponential disc) and arm light in the disc plane; arms start at radius ``r0``."""
    u, v = f.project(cx, cy, ang, q)
    r = torch.sqrt(u**2 + v**2).clamp_min(1e-3)
    phi = torch.atan2(v, u)
    chirality = torch.where(torch.rand(f.n, generator=g) < 0.5, -1.0, 1.0)
    wind = _col(chirality / torch.tan(pitch)) * torch.log(r / _col(r0))
    pattern = (0.5 * (1 + torch.cos(_col(arms) * (phi - wind) - _col(phase)))) ** 4
    start = torch.sigmoid((r - _col(r0)) / 0.03)
    disc = torch.exp(-r / _col(scale))
    arm_light = disc * pattern * start * _col(_u(g, f.n, 1.2, 2.2))
    return disc * 0.35, arm_light


def _knots(g: torch.Generator, f: Frame, arm_light: Tensor, k: int = 12) -> Tensor:
    """Star-forming knots: bright points where the arm light is strong (sampled from it)."""
    n, s = f.n, f.s
    p = arm_light.reshape(n, -1) + 1e-8
    idx = torch.multinomial(p / p.sum(1, keepdim=True), k, replacement=True, generator=g)
    cy, cx = f.y.flatten()[idx], f.x.flatten()[idx]
    return _blobs(f, cx, cy, torch.full((n, k), 0.6 / s), _u(g, n * k, 0.0, 0.5).view(n, k))


def _spiral_like(g: torch.Generator, f: Frame, barred: bool) -> Tensor:
    n = f.n
    cx, cy, ang = _u(g, n, -0.06, 0.06), _u(g, n, -0.06, 0.06), _u(g, n, 0, 2 * math.pi)
    q, scale = _u(g, n, 0.5, 1.0), _u(g, n, 0.16, 0.28)
    if barred:
        arms = torch.full((n,), 2.0)
        pitch = _u(g, n, 10, 30) * math.pi / 180
        r0 = _u(g, n, 0.12, 0.22)
    else:
        arms = torch.randint(2, 5, (n,), generator=g).float()
        pitch = _u(g, n, 10, 35) * math.pi / 180
        r0 = _u(g, n, 0.05, 0.1)
    bar_angle = _u(g, n, 0, math.pi)
    disc, arm_light = _disc_with_arms(g, f, arms, pitch, r0, 2 * bar_angle, cx, cy, ang, q, scale)
    u, v = f.project(cx, cy, ang, q)
    bulge = sersic(torch.sqrt(u**2 + v**2), _u(g, n, 0.03, 0.07), _u(g, n, 1.0, 2.5)) * _col(_u(g, n, 0.1, 0.3))
    young = disc + arm_light + _knots(g, f, arm_light)
    old = bulge + 0.3 * disc
    if barred:
        # the bar lies in the disc plane along bar_angle (so the arms, which start at phase 2 * bar_angle for
        # two arms, leave from its ends); its length is the arms' starting radius
        cb, sb = _col(torch.cos(bar_angle)), _col(torch.sin(bar_angle))
        bu, bv = cb * u + sb * v, -sb * u + cb * v
        bar = sersic(torch.sqrt(bu**2 + (bv / 0.22) ** 2), r0 * 0.6, torch.full((n,), 0.5)) * _col(_u(g, n, 0.5, 0.8))
        old = old + bar
    return _bands(young, BLUE, _jitter(g, n)) + _bands(old * 1.5, RED, _jitter(g, n))


def spiral(g: torch.Generator, f: Frame) -> Tensor:
    return _spiral_like(g, f, barred=False)


def barred_spiral(g: torch.Generator, f: Frame) -> Tensor:
    return _spiral_like(g, f, barred=True)


def merger(g: torch.Generator, f: Frame) -> Tensor:
    n, k = f.n, 3
    sep, ang = _u(g, n, 0.15, 0.45), _u(g, n, 0, 2 * math.pi)
    third = (torch.rand(n, generator=g) < 0.3).float()
    # nuclei: two on opposite sides of a centre, an optional third off the axis
    off = torch.stack([torch.full((n,), 0.5), torch.full((n,), -0.5), _u(g, n, -0.3, 0.3)], 1)
    side = torch.stack([torch.zeros(n), torch.zeros(n), _u(g, n, 0.25, 0.45)], 1)
    ca, sa = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
    cx = (off * ca - side * sa) * sep[:, None] + _u(g, n, -0.05, 0.05)[:, None]
    cy = (off * sa + side * ca) * sep[:, None] + _u(g, n, -0.05, 0.05)[:, None]
    amp = torch.stack([torch.ones(n), _u(g, n, 0.4, 1.0), third * _u(g, n, 0.3, 0.7)], 1) * 0.25
    light = torch.zeros(n, f.s, f.s)
    for j in range(k):
        r = torch.sqrt((f.x - _col(cx[:, j])) ** 2 + (f.y - _col(cy[:, j])) ** 2)
        light = light + _col(amp[:, j]) * sersic(r, _u(g, n, 0.04, 0.09), _u(g, n, 1.0, 3.0))
    # tidal tails: chains of faint blobs curving away from each of the two main nuclei, plus a diffuse envelope
    t = torch.linspace(0.15, 1.0, 14)
    tails = torch.zeros(n, f.s, f.s)
    for j, sign in ((0, 1.0), (1, -1.0)):
        base = ang + (0.0 if j == 0 else math.pi)
        curl = sign * _u(g, n, 0.6, 1.4)
        length = _u(g, n, 0.4, 0.8)
        theta = base[:, None] + curl[:, None] * t[None]
        tx = cx[:, j : j + 1] + length[:, None] * t[None] * torch.cos(theta)
        ty = cy[:, j : j + 1] + length[:, None] * t[None] * torch.sin(theta)
        tails = tails + _blobs(f, tx, ty, torch.full_like(tx, 0.035), 0.2 * (1.1 - t[None]).expand_as(tx))
    mx, my = cx[:, :2].mean(1), cy[:, :2].mean(1)
    envelope = 0.3 * torch.exp(-torch.sqrt((f.x - _col(mx)) ** 2 + (f.y - _col(my)) ** 2) / _col(sep * 0.8))
    return _bands(light + envelope, RED, _jitter(g, n)) + _bands(tails * _col(_u(g, n, 0.6, 1.4)), BLUE, _jitter(g, n))


def irregular(g: torch.Generator, f: Frame) -> Tensor:
    n, k = f.n, 8
    cx, cy, ang = _u(g, n, -0.08, 0.08), _u(g, n, -0.08, 0.08), _u(g, n, 0, math.pi)
    u, v = f.project(cx, cy, ang, _u(g, n, 0.4, 0.9))
    # a lopsided faint disc: the exponential scale differs on the two sides of a random direction
    lop = _col(_u(g, n, 0.0, 0.6)) * torch.tanh(u / 0.1)
    disc = 0.5 * torch.exp(-torch.sqrt(u**2 + v**2) / (_col(_u(g, n, 0.12, 0.22)) * (1 + lop)))
    present = (torch.arange(k)[None] < torch.randint(3, k + 1, (n, 1), generator=g)).float()
    rad, th = _u(g, n * k, 0.0, 0.3).view(n, k), _u(g, n * k, 0, 2 * math.pi).view(n, k)
    bx, by = cx[:, None] + rad * torch.cos(th), cy[:, None] + rad * torch.sin(th)
    clumps = _blobs(f, bx, by, _u(g, n * k, 0.02, 0.05).view(n, k), present * _u(g, n * k, 0.4, 1.5).view(n, k))
    return _bands(disc + clumps, BLUE, _jitter(g, n))


RENDERERS = (smooth_round, smooth_elliptical, edge_on_disc, spiral, barred_spiral, merger, irregular)


# -- the observation: size, brightness, PSF, stars, noise, stretch ------------------------------------------------
def _zoom(flux: Tensor, factor: Tensor) -> Tensor:
    """Rescale each image about its centre by ``factor`` [n] (>1 = bigger galaxy), bilinear."""
    n, _, s, _ = flux.shape
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / factor
    grid = torch.nn.functional.affine_grid(theta, (n, 3, s, s), align_corners=False)
    return torch.nn.functional.grid_sample(flux, grid, align_corners=False, padding_mode="zeros")


def _psf_blur(flux: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-image width ``sigma`` [n] (pixels)."""
    n, c, s, _ = flux.shape
    half = 3
    t = torch.arange(-half, half + 1, dtype=torch.float32)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n*c, K]
    x = flux.reshape(1, n * c, s, s)
    x = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (half, half, 0, 0), mode="reflect"), k.view(n * c, 1, 1, -1), groups=n * c
    )
    x = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (0, 0, half, half), mode="reflect"), k.view(n * c, 1, -1, 1), groups=n * c
    )
    return x.view(n, c, s, s)


def _stars(g: torch.Generator, n: int, s: int) -> Tensor:
    """Up to two field stars per image (white-ish point sources, blurred later with the PSF)."""
    out = torch.zeros(n, 3, s, s)
    for _ in range(2):
        on = torch.rand(n, generator=g) < 0.35
        px, py = torch.randint(0, s, (n,), generator=g), torch.randint(0, s, (n,), generator=g)
        amp = _u(g, n, 0.5, 4.0) * on
        out[torch.arange(n), :, py, px] += amp[:, None] * torch.tensor([0.8, 0.9, 1.0])
    return out


def render(
    labels: Tensor,
    image_size: int = 32,
    generator: torch.Generator | None = None,
    noise: float = 0.04,
    psf: tuple[float, float] = (0.5, 1.2),
    stretch: float = 0.25,
) -> Tensor:
    """Images [n, 3, image_size, image_size] in [0, 1] of galaxies of the given classes (``labels`` [n])."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n, s = len(labels), int(image_size)
    flux = torch.zeros(n, 3, s, s)
    for c, renderer in enumerate(RENDERERS):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx):
            flux[idx] = renderer(g, Frame(len(idx), s))
    flux = _zoom(flux, _u(g, n, 0.8, 1.35))
    flux = flux * _u(g, n, 0.5, 1.6).view(n, 1, 1, 1) + _stars(g, n, s)
    flux = _psf_blur(flux, _u(g, n, *psf))
    # photon noise (~sqrt(flux)) and sky noise, then the survey-style asinh stretch
    flux = flux + noise * (torch.sqrt(flux.clamp_min(0) * 0.5) + 1.0) * torch.randn(flux.shape, generator=g)
    return (torch.asinh(flux / stretch) / math.asinh(2.5 / stretch)).clamp(0, 1)


class GalaxiesDataModule(TensorDataModule):
    """Class-balanced generated galaxies: ``n_train`` / ``n_val`` / ``n_test`` images per class, each split drawn
    from its own generator (seed, split), so the splits are independent and a larger split extends none other.

    Args:
        classes: class names to keep (relabelled 0..k-1 in the given order); ``None`` = all of ``CLASS_NAMES``.
        image_size: side in pixels (32-64).
        noise: sky noise level (flux units; the stretch maps flux 2.5 to 1).
        psf: range of the Gaussian PSF width in pixels.
    """

    def __init__(
        self,
        n_train: int = 300,
        n_val: int = 0,
        n_test: int = 100,
        image_size: int = 32,
        classes: list[str] | None = None,
        noise: float = 0.04,
        psf: tuple[float, float] = (0.5, 1.2),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        names = list(classes) if classes is not None else list(CLASS_NAMES)
        unknown = [c for c in names if c not in CLASS_NAMES]
        if unknown:
            raise BenchError(f"data.classes: unknown galaxy class(es) {unknown}; choose from {list(CLASS_NAMES)}")
        if not 32 <= int(image_size) <= 64:
            raise BenchError(f"data.image_size={image_size}: the galaxy generator renders 32 to 64 pixels")
        self.class_names = names
        self.num_classes = len(names)
        self.n = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.image_size, self.noise, self.psf = int(image_size), float(noise), tuple(psf)

    def build(self):
        codes = torch.tensor([CLASS_NAMES.index(c) for c in self.class_names])
        splits = {}
        for i, (name, per_class) in enumerate(self.n.items()):
            if per_class <= 0:
                continue
            g = seeded_generator(int(self.seed) * 1000 + i, "galaxies", i)
            y = torch.arange(self.num_classes).repeat_interleave(per_class)
            x = render(codes[y], self.image_size, g, noise=self.noise, psf=self.psf)
            splits[name] = {"x": x, "y": y}
        return splits
