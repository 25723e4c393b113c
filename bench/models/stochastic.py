"""Stochastic models (posteriors) and the predictive-mean wrapper that attacks and evaluation use.

The protocol a stochastic model implements (stable: posteriors in ``bench/models/posteriors.py`` are built
against it, and the robust-evaluation callback relies on it):

* ``stochastic = True`` (a class or instance attribute);
* ``sample_logits(x, num_samples) -> Tensor`` of shape ``(num_samples, N, C)``: the logits of ``x`` under
  ``num_samples`` posterior draws, *whatever* ``self.training`` says (attacks and evaluation put models in eval
  mode; a posterior keeps sampling anyway: MC dropout keeps its dropout on, mean-field VI draws fresh weights,
  an ensemble or a set of HMC samples returns member ``k % M`` as draw ``k``, so any multiple of ``M`` gives the
  exact ensemble mean). It must be differentiable with respect to ``x`` (attacks take gradients through it).
  Random draws come from torch's global generator (``torch.rand*``, ``F.dropout``, ``Tensor.normal_``): the
  harness fixes the evaluation samples by seeding it inside ``torch.random.fork_rng``, which also keeps the
  training stream untouched. Inside :func:`draws_keyed_by_example` a posterior may instead draw each example's
  randomness from its index (:func:`example_keyed_noise`; MC dropout and VI do), the same on any DDP rank.
* ``forward(x)`` is what training uses (e.g. one draw, or the ELBO's sample); evaluation never relies on it.

The harness finds the stochastic model on the LightningModule itself or on its ``net`` attribute
(:func:`find_stochastic`). A model without the attribute is deterministic and keeps the exact checks.

:class:`PredictiveMean` turns such a model into an ordinary classifier whose logits are
``log mean_s softmax(f_s(x))`` over ``S`` fresh draws per call: what torchattacks (or any attack) differentiates
for EOT (``S = S_attack``) and what evaluation scores (``S = S_eval``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor, nn

from bench.attacks.noise import per_example_uniform
from bench.harness.errors import BenchError

# (example indices of the batch being evaluated, seed) while draws_keyed_by_example is active
_EXAMPLE_KEYS: ContextVar[tuple[Tensor, int] | None] = ContextVar("example_keys", default=None)


def is_stochastic(model: object) -> bool:
    """Whether ``model`` follows the stochastic-model protocol above."""
    return bool(getattr(model, "stochastic", False)) and callable(getattr(model, "sample_logits", None))


def find_stochastic(module: nn.Module) -> nn.Module | None:
    """The stochastic model behind a LightningModule: the module itself or its ``net``; ``None`` if neither."""
    for candidate in (module, getattr(module, "net", None)):
        if candidate is not None and is_stochastic(candidate):
            return candidate
    return None


def check_num_samples(value: object, key: str) -> int:
    """``value`` as a positive sample count, or one BenchError line naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or int(value) < 1:
        raise BenchError(
            f"{key}={value!r} is not a valid number of posterior samples: use a positive integer (e.g. {key}=10)"
        )
    return int(value)


def sample_logits(model: nn.Module, x: Tensor, num_samples: int) -> Tensor:
    """``model.sample_logits(x, num_samples)``, checked to have shape ``(num_samples, N, C)``."""
    logits = model.sample_logits(x, num_samples)
    if logits.ndim != 3 or logits.shape[0] != num_samples or logits.shape[1] != x.shape[0]:
        raise BenchError(
            f"{type(model).__name__}.sample_logits(x, {num_samples}) returned shape {tuple(logits.shape)};"
            f" the stochastic-model protocol needs ({num_samples}, {x.shape[0]}, num_classes)"
        )
    return logits


def log_predictive_mean(logits: Tensor) -> Tensor:
    """``log mean_s softmax(logits[s])`` over the first dimension, computed stably (log-sum-exp)."""
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(logits.shape[0])


class PredictiveMean(nn.Module):
    """A stochastic model seen as a deterministic-looking classifier: ``forward(x)`` returns the log of the mean of
    ``num_samples`` softmax outputs, drawing fresh posterior samples on every call (so a gradient step of an attack
    is an EOT step). torchattacks and every other attack call it like any model; its ``eval()`` / ``train()``
    do not stop the sampling (see the protocol in the module docstring).

    Args:
        model: a stochastic model (``stochastic = True``, ``sample_logits``).
        num_samples: posterior draws per call (``S_attack`` for attacks, ``S_eval`` for evaluation).
    """

    def __init__(self, model: nn.Module, num_samples: int) -> None:
        super().__init__()
        if not is_stochastic(model):
            raise BenchError(
                f"PredictiveMean needs a stochastic model (stochastic = True and sample_logits(x, S)); "
                f"got {type(model).__name__}"
            )
        self.model = model
        self.num_samples = check_num_samples(num_samples, "num_samples")
        # torchattacks reads the device from the first parameter; sample-set posteriors may hold only buffers
        self.device_anchor = nn.Parameter(torch.empty(0, device=_device_of(model)), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return log_predictive_mean(sample_logits(self.model, x, self.num_samples))


def _device_of(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@contextmanager
def dropout_active(module: nn.Module) -> Iterator[None]:
    """Dropout layers of ``module`` in training mode (sampling) for the duration, everything else untouched
    (batch norm keeps its running statistics): how an MC-dropout ``sample_logits`` samples in eval mode."""
    drops = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    before = [m.training for m in drops]
    for m in drops:
        m.train(True)
    try:
        yield
    finally:
        for m, was in zip(drops, before, strict=True):
            m.train(was)


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Torch's global generator (CPU and ``device``) seeded with ``seed`` inside, restored after: fixed posterior
    draws for evaluation without disturbing the training stream."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # only the generators fork_rng restores: torch.manual_seed would also queue seeds for every other backend
        # (recording a stack trace for each, ~0.3 ms) and leave them seeded after the block
        torch.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


@contextmanager
def draws_keyed_by_example(index: Tensor, seed: int) -> Iterator[None]:
    """Inside, posteriors that support it (MC dropout, mean-field VI) draw each example's randomness from (``seed``,
    its index in ``index``) instead of torch's generator, as the robust callback keys its random starts: an example
    gets the same posterior draws whatever batch or DDP rank it is in, so N processes give the numbers of one."""
    token = _EXAMPLE_KEYS.set((index, int(seed)))
    try:
        yield
    finally:
        _EXAMPLE_KEYS.reset(token)


def example_keyed_noise(
    num_samples: int, batch: int, shape: tuple[int, ...], stream: str, normal: bool, device: torch.device
) -> Tensor | None:
    """Noise of ``shape`` per draw and example, ``[num_samples * batch, *shape]`` in the row order of
    ``h.repeat(num_samples, 1)`` (draw-major), uniform in [0, 1) or standard normal (Box-Muller); ``None`` outside
    :func:`draws_keyed_by_example` (then the caller draws from torch's generator as usual)."""
    keys = _EXAMPLE_KEYS.get()
    if keys is None:
        return None
    index, seed = keys
    if len(index) != batch:
        raise ValueError(f"draws keyed by {len(index)} example indices, but the batch has {batch} examples")
    u = per_example_uniform(index, (num_samples, 2 if normal else 1, *shape), seed, stream, device)
    if normal:
        radius = torch.sqrt(-2 * torch.log1p(-u[:, :, 0].clamp(max=1 - 2**-24)))  # float32 may round u up to 1
        noise = radius * torch.cos(2 * math.pi * u[:, :, 1])
    else:
        noise = u[:, :, 0]
    return noise.transpose(0, 1).reshape(num_samples * batch, *shape)
