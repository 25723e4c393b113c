"""Posterior approximations of an MLP classifier, as interchangeable models (conf/model/bnn_*.yaml).

Every posterior is a :class:`Posterior`: ``sample_logits(x, S)`` returns the logits of S posterior samples
``[S, B, C]`` (fresh samples on every call; the protocol of :mod:`bench.models.stochastic`), ``forward(x)`` the
logits of one sample, and the posterior predictive is ``p(y|x) = (1/S) sum_s softmax(f(x; theta_s))`` (see
:func:`bench.metrics.uncertainty.predictive_probs`). Sampling stays on in ``eval()`` mode: MC dropout keeps its
dropout, VI draws fresh weights, so attacking or evaluating the module never silently measures a deterministic net.

Posteriors with a finite set of members (a deterministic net: one member; a deep ensemble: M members; HMC: the K
kept samples of the chain) return member ``k % M`` as draw ``k`` when ``S >= M`` (a multiple of M is the exact
predictive mean) and a fresh random subset of S members when ``S < M`` (EOT over the member set).

Kinds (``posterior:`` in the model config, :data:`POSTERIORS`): ``deterministic``, ``mc_dropout``, ``mfvi``
(mean-field Gaussian VI, Bayes by backprop with the local reparameterisation trick), ``ensemble``, ``hmc``
(samples drawn by :func:`bench.tasks.bnn_attacks.hmc.sample_posterior` into this model's buffers).

Training (the losses, the HMC chain) lives in the task, :mod:`bench.tasks.bnn_attacks`; a posterior exposes
``training_logits(x) -> [K, B, C]`` (one sample per member) and ``penalty()`` (KL to the prior for VI, the
negative log prior of HMC's MAP start, else 0).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.harness.errors import BenchError
from bench.models.mlp import Normalize
from bench.models.stochastic import example_keyed_noise


def _sizes(input_shape: Sequence[int], hidden: Sequence[int], num_classes: int) -> list[int]:
    return [int(math.prod(input_shape)), *[int(h) for h in hidden], int(num_classes)]


def mlp_num_params(input_shape: Sequence[int], hidden: Sequence[int], num_classes: int) -> int:
    s = _sizes(input_shape, hidden, num_classes)
    return sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1))


class Posterior(nn.Module):
    """Base class. Subclasses implement :meth:`sample_logits` and :meth:`training_logits`."""

    kind: str = ""
    stochastic: bool = True  # False: every sample is the same network (MI is exactly 0)
    num_members: int | None = None  # a finite member set (ensemble, HMC samples), else None

    def __init__(
        self, input_shape: Sequence[int], mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0
    ) -> None:
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        self.normalize = Normalize(mean, std)
        if self.normalize.mean.ndim == 1 and len(self.input_shape) == 3:  # per-channel statistics of images
            self.normalize.mean = self.normalize.mean.view(-1, 1, 1)
            self.normalize.std = self.normalize.std.view(-1, 1, 1)

    def _inputs(self, x: Tensor) -> Tensor:
        return self.normalize(x).flatten(1)

    def sample_logits(self, x: Tensor, num_samples: int) -> Tensor:
        raise NotImplementedError

    def training_logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def one_draw(self) -> Callable[[Tensor], Tensor]:
        """``x -> logits`` of ONE posterior draw theta_s, drawn now and fixed (the same dropout mask / weight sample
        / member for every input and call): the "attack a sample other than the evaluated ones" of earlier work."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.sample_logits(x, 1)[0]

    def penalty(self) -> Tensor:
        """The dataset-level term of the training objective (divided by N_train in the loss): KL(q || prior) for
        VI, the negative log prior of the HMC chain's MAP start point, 0 otherwise."""
        return torch.zeros((), device=self.normalize.mean.device)

    def _member_subset(self, num_members: int, num_samples: int, device) -> Tensor:
        """Member indices of ``num_samples`` draws: member ``k % M`` as draw ``k`` when ``S >= M`` (any multiple of M
        is the exact mean), a fresh random subset of S distinct members when ``S < M`` (EOT over the member set,
        e.g. S_attack = 10 of K = 100 HMC samples; a fixed first-S subset would attack a different model than the
        S_eval = 100 evaluation)."""
        if num_samples >= num_members:
            return torch.arange(num_samples, device=device) % num_members
        return torch.randperm(num_members, device="cpu")[:num_samples].to(device)


class StackedMLP(nn.Module):
    """M independent MLPs with their weights stacked (``weight<l>: [M, out, in]``), evaluated in one batched
    matmul per layer. Each member is initialised like ``nn.Linear`` (Kaiming-uniform)."""

    def __init__(self, sizes: Sequence[int], members: int) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(fan_in)
            # kaiming_uniform(a=sqrt(5)) of nn.Linear has the same bound 1/sqrt(fan_in) for the weight
            self.weights.append(nn.Parameter(torch.empty(members, fan_out, fan_in).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, fan_out).uniform_(-bound, bound)))

    @staticmethod
    def batched(h: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
        """``h``: [B, in] (shared by all members) or [M, B, in]; returns [M, B, out]."""
        for i, (w, b) in enumerate(zip(weights, biases)):
            if h.dim() == 2:
                h = torch.einsum("bi,moi->mbo", h, w) + b[:, None, :]
            else:
                h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
            if i < len(weights) - 1:
                h = F.relu(h)
        return h

    def forward(self, h: Tensor, members: Tensor | None = None) -> Tensor:
        ws, bs = list(self.weights), list(self.biases)
        if members is not None:
            ws, bs = [w[members] for w in ws], [b[members] for b in bs]
        return self.batched(h, ws, bs)


class EnsembleMLP(Posterior):
    """A deep ensemble of ``members`` independently initialised MLPs trained side by side (Lakshminarayanan et
    al. 2017); ``members=1`` is the deterministic baseline."""

    kind = "ensemble"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        members: int = 5,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__(input_shape, mean, std)
        if int(members) < 1:
            raise BenchError(f"model.members={members}: an ensemble needs at least one member")
        self.num_members = int(members)
        self.stochastic = self.num_members > 1  # one member: deterministic, the harness keeps its exact checks
        self.net = StackedMLP(_sizes(input_shape, hidden, num_classes), self.num_members)

    def sample_logits(self, x: Tensor, num_samples: int) -> Tensor:
        if self.num_members == 1:  # every draw is the same net: compute it once
            return self.net(self._inputs(x)).expand(num_samples, -1, -1)
        return self.net(self._inputs(x), self._member_subset(self.num_members, num_samples, x.device))

    def training_logits(self, x: Tensor) -> Tensor:
        return self.net(self._inputs(x))

    def one_draw(self) -> Callable[[Tensor], Tensor]:
        k = torch.randint(self.num_members, (1,), device="cpu").to(self.normalize.mean.device)
        return lambda x: self.net(self._inputs(x), k)[0]


class DeterministicMLP(EnsembleMLP):
    """The non-Bayesian baseline: one MLP (a one-member ensemble: every 'sample' is the same net)."""

    kind = "deterministic"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__(input_shape, num_classes, hidden, members=1, mean=mean, std=std)


class MCDropoutMLP(Posterior):
    """MC dropout (Gal & Ghahramani 2016): dropout with rate ``p`` after every hidden layer, kept on at test
    time; each forward pass is one posterior sample."""

    kind = "mc_dropout"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        p: float = 0.1,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__(input_shape, mean, std)
        if not 0.0 < float(p) < 1.0:
            raise BenchError(f"model.p={p}: the MC dropout rate must lie strictly between 0 and 1")
        self.p = float(p)
        sizes = _sizes(input_shape, hidden, num_classes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))

    def _sample(self, h: Tensor, num_samples: int = 1) -> Tensor:
        batch = h.shape[0] // num_samples
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                u = example_keyed_noise(num_samples, batch, (h.shape[1],), f"mc_dropout/{i}", False, h.device)
                if u is None:
                    h = F.dropout(F.relu(h), self.p, training=True)  # on in eval() too: this is the posterior
                else:
                    h = F.relu(h) * (u >= self.p).to(h.dtype) / (1.0 - self.p)
        return h

    def sample_logits(self, x: Tensor, num_samples: int) -> Tensor:
        h = self._inputs(x)
        return self._sample(h.repeat(num_samples, 1), num_samples).view(num_samples, h.shape[0], -1)

    def training_logits(self, x: Tensor) -> Tensor:
        return self._sample(self._inputs(x))[None]

    def one_draw(self) -> Callable[[Tensor], Tensor]:
        keep = 1.0 - self.p
        masks = [
            torch.bernoulli(torch.full((layer.out_features,), keep, device=layer.weight.device)) / keep
            for layer in self.layers[:-1]
        ]

        def logits(x: Tensor) -> Tensor:
            h = self._inputs(x)
            for i, layer in enumerate(self.layers):
                h = layer(h)
                if i < len(self.layers) - 1:
                    h = F.relu(h) * masks[i]
            return h

        return logits


class BayesLinear(nn.Module):
    """A mean-field Gaussian linear layer, ``w ~ N(mu, softplus(rho)^2)`` elementwise, prior ``N(0, prior_std^2)``;
    sampled with the local reparameterisation trick (Kingma et al. 2015): the pre-activations of each example
    are drawn from their exact Gaussian, so every example sees an independent weight sample."""

    def __init__(self, fan_in: int, fan_out: int, prior_std: float, init_std: float) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)
        self.weight_mu = nn.Parameter(torch.empty(fan_out, fan_in).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound))
        rho0 = math.log(math.expm1(init_std))  # softplus^-1
        self.weight_rho = nn.Parameter(torch.full((fan_out, fan_in), rho0))
        self.bias_rho = nn.Parameter(torch.full((fan_out,), rho0))
        self.prior_std = float(prior_std)

    def forward(self, h: Tensor, noise: Tensor | None = None) -> Tensor:
        """``noise``: the standard normal draws of the pre-activations (default: fresh from torch's generator)."""
        w_var, b_var = F.softplus(self.weight_rho) ** 2, F.softplus(self.bias_rho) ** 2
        mean = F.linear(h, self.weight_mu, self.bias_mu)
        var = F.linear(h * h, w_var, b_var)
        return mean + var.clamp_min(1e-16).sqrt() * (torch.randn_like(mean) if noise is None else noise.to(mean))

    def draw(self) -> tuple[Tensor, Tensor]:
        """One weight sample (w, b) of the layer."""
        return (
            self.weight_mu + F.softplus(self.weight_rho) * torch.randn_like(self.weight_mu),
            self.bias_mu + F.softplus(self.bias_rho) * torch.randn_like(self.bias_mu),
        )

    def kl(self) -> Tensor:
        out = torch.zeros((), device=self.weight_mu.device)
        for mu, rho in ((self.weight_mu, self.weight_rho), (self.bias_mu, self.bias_rho)):
            s = F.softplus(rho)
            out = out + (torch.log(self.prior_std / s) + (s * s + mu * mu) / (2 * self.prior_std**2) - 0.5).sum()
        return out


class MeanFieldVIMLP(Posterior):
    """Mean-field Gaussian variational inference (Bayes by backprop, Blundell et al. 2015)."""

    kind = "mfvi"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        prior_std: float = 1.0,
        init_std: float = 1e-3,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__(input_shape, mean, std)
        sizes = _sizes(input_shape, hidden, num_classes)
        self.layers = nn.ModuleList(BayesLinear(a, b, prior_std, init_std) for a, b in itertools.pairwise(sizes))

    def _sample(self, h: Tensor, num_samples: int = 1) -> Tensor:
        batch = h.shape[0] // num_samples
        for i, layer in enumerate(self.layers):
            noise = example_keyed_noise(num_samples, batch, (layer.bias_mu.shape[0],), f"mfvi/{i}", True, h.device)
            h = layer(h, noise)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h

    def sample_logits(self, x: Tensor, num_samples: int) -> Tensor:
        h = self._inputs(x)
        return self._sample(h.repeat(num_samples, 1), num_samples).view(num_samples, h.shape[0], -1)

    def training_logits(self, x: Tensor) -> Tensor:
        return self._sample(self._inputs(x))[None]

    def penalty(self) -> Tensor:
        return sum((layer.kl() for layer in self.layers), torch.zeros((), device=self.normalize.mean.device))

    def one_draw(self) -> Callable[[Tensor], Tensor]:
        weights = [layer.draw() for layer in self.layers]

        def logits(x: Tensor) -> Tensor:
            h = self._inputs(x)
            for i, (w, b) in enumerate(weights):
                h = F.linear(h, w, b)
                if i < len(weights) - 1:
                    h = F.relu(h)
            return h

        return logits


class HMCMLP(Posterior):
    """An MLP whose posterior is represented by ``num_samples`` HMC samples of all its weights (kept as buffers
    ``sample_weight<l>``, ``sample_bias<l>``). ``start`` is the chain's starting point (the task trains it to a
    MAP estimate first); until samples are drawn the model is that single point.

    ``max_params`` is the budget of the sampler: full-batch HMC costs (leapfrog steps x kept+warmup samples)
    gradient evaluations of the whole network, so a larger MLP is refused with one clear line before training.
    """

    kind = "hmc"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64,),
        num_samples: int = 100,
        prior_std: float = 1.0,
        max_params: int = 20_000,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__(input_shape, mean, std)
        self.prior_std = float(prior_std)
        sizes = _sizes(input_shape, hidden, num_classes)
        n = mlp_num_params(input_shape, hidden, num_classes)
        if n > int(max_params):
            raise BenchError(
                f"HMC on an MLP {'-'.join(map(str, sizes))} ({n:,} parameters) exceeds its budget "
                f"model.max_params={int(max_params):,}; use a smaller model.hidden (e.g. [64]) or raise "
                "model.max_params"
            )
        if int(num_samples) < 1:
            raise BenchError(f"model.num_samples={num_samples}: HMC must keep at least one sample")
        self.start = StackedMLP(sizes, 1)
        self.num_members = int(num_samples)
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            self.register_buffer(f"sample_weight{i}", torch.zeros(self.num_members, b, a))
            self.register_buffer(f"sample_bias{i}", torch.zeros(self.num_members, b))
        self.register_buffer("num_drawn", torch.zeros((), dtype=torch.long))
        self.depth = len(sizes) - 1

    # -- the flat parameter vector the sampler moves --------------------------------------------------------
    def num_params(self) -> int:
        return sum(p.numel() for p in self.start.parameters())

    def flat_start(self) -> Tensor:
        return torch.cat([t.detach().reshape(-1) for t in self._layer_tensors(self.start)])

    def _layer_tensors(self, net: StackedMLP) -> list[Tensor]:
        out = []
        for w, b in zip(net.weights, net.biases):
            out += [w, b]
        return out

    def unflatten(self, theta: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``theta``: [P] or [K, P] -> per-layer weights [K, out, in] and biases [K, out]."""
        theta = theta.reshape(-1, theta.shape[-1])
        ws, bs, i = [], [], 0
        for w, b in zip(self.start.weights, self.start.biases):
            nw, nb = w[0].numel(), b[0].numel()
            ws.append(theta[:, i : i + nw].reshape(-1, *w.shape[1:]))
            bs.append(theta[:, i + nw : i + nw + nb].reshape(-1, *b.shape[1:]))
            i += nw + nb
        return ws, bs

    def logits_at(self, x: Tensor, theta: Tensor) -> Tensor:
        """Logits [K, B, C] of the networks with flat parameters ``theta`` ([P] or [K, P])."""
        ws, bs = self.unflatten(theta)
        return StackedMLP.batched(self._inputs(x), ws, bs)

    def set_samples(self, theta: Tensor) -> None:
        if theta.shape[0] != self.num_members:
            raise ValueError(f"expected {self.num_members} samples, got {theta.shape[0]}")
        ws, bs = self.unflatten(theta.to(self.sample_weight0))
        for i in range(self.depth):
            getattr(self, f"sample_weight{i}").copy_(ws[i])
            getattr(self, f"sample_bias{i}").copy_(bs[i])
        self.num_drawn.fill_(self.num_members)

    @property
    def has_samples(self) -> bool:
        return int(self.num_drawn) > 0

    # -- Posterior ----------------------------------------------------------------------------------------
    def sample_logits(self, x: Tensor, num_samples: int) -> Tensor:
        if not self.has_samples:
            return self.start(self._inputs(x)).expand(num_samples, -1, -1)
        idx = self._member_subset(self.num_members, num_samples, x.device)
        ws = [getattr(self, f"sample_weight{i}") for i in range(self.depth)]
        bs = [getattr(self, f"sample_bias{i}") for i in range(self.depth)]
        if idx is not None:
            ws, bs = [w[idx] for w in ws], [b[idx] for b in bs]
        return StackedMLP.batched(self._inputs(x), ws, bs)

    def training_logits(self, x: Tensor) -> Tensor:
        return self.start(self._inputs(x))

    def one_draw(self) -> Callable[[Tensor], Tensor]:
        if not self.has_samples:
            return lambda x: self.start(self._inputs(x))[0]
        k = int(torch.randint(self.num_members, (1,)))
        ws = [getattr(self, f"sample_weight{i}")[k : k + 1] for i in range(self.depth)]
        bs = [getattr(self, f"sample_bias{i}")[k : k + 1] for i in range(self.depth)]
        return lambda x: StackedMLP.batched(self._inputs(x), ws, bs)[0]

    def penalty(self) -> Tensor:
        return 0.5 * sum((p * p).sum() for p in self.start.parameters()) / self.prior_std**2


POSTERIORS: dict[str, type[Posterior]] = {
    "deterministic": DeterministicMLP,
    "mc_dropout": MCDropoutMLP,
    "mfvi": MeanFieldVIMLP,
    "ensemble": EnsembleMLP,
    "hmc": HMCMLP,
}


def build_posterior(posterior: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> Posterior:
    """The model config's entry point: ``posterior`` names the kind (:data:`POSTERIORS`)."""
    cls = POSTERIORS.get(str(posterior))
    if cls is None:
        raise BenchError(
            f"unknown posterior {posterior!r}; known posteriors: {', '.join(POSTERIORS)} "
            f"(choose one with model=bnn_<name>)"
        )
    return cls(input_shape=input_shape, num_classes=num_classes, **kwargs)
