"""The training objectives: ERM (BenchModule's cross-entropy), GroupDRO and GAP, and their pure building blocks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bench.harness.errors import BenchError
from bench.harness.module import BenchModule


class GroupClassifier(BenchModule):
    """A BenchModule that also answers validation batches (for model selection on validation groups)."""

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"logits": self(batch["x"])}


ERMModule = GroupClassifier


def require_feature_split(net: nn.Module) -> None:
    if not (hasattr(net, "features") and isinstance(getattr(net, "classifier", None), nn.Linear)):
        raise BenchError(
            f"last-layer methods need a model with .features and a linear .classifier "
            f"(bench.models.mlp.MLP, bench.models.cnn.SmallCNN); {type(net).__name__} has not"
        )


# -- GroupDRO ----------------------------------------------------------------------------------------------------
def group_mean_losses(losses: Tensor, groups: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """(mean loss per group, which groups are present) for per-example ``losses``."""
    total = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device).index_add(0, groups, losses)
    count = torch.bincount(groups, minlength=num_groups).to(losses.dtype)
    return total / count.clamp(min=1), count > 0


def group_dro_weights(weights: Tensor, group_losses: Tensor, present: Tensor, eta: float) -> Tensor:
    """One online step of GroupDRO's group weights (Sagawa et al. 2020, Alg. 1): exponentiated gradient ascent
    q_g <- q_g exp(eta L_g) on the groups present in the batch, renormalised."""
    w = weights * torch.exp(eta * group_losses.detach() * present)
    return w / w.sum()


class GroupDROModule(GroupClassifier):
    """Minimises sum_g q_g L_g with the group weights q updated online (step size ``eta``) from the batch's group
    losses. ``group_weights`` is kept in the state dict (it resumes with the run)."""

    def __init__(
        self, net: nn.Module, optimizer: Callable | None = None, num_groups: int = 4, eta: float = 0.01
    ) -> None:
        super().__init__(net, optimizer)
        if eta <= 0:
            raise BenchError(f"group_dro.eta must be > 0, got {eta}")
        self.num_groups, self.eta = num_groups, eta
        self.register_buffer("group_weights", torch.full((num_groups,), 1.0 / num_groups))

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        losses = F.cross_entropy(self(batch["x"]), batch["y"], reduction="none")
        group_losses, present = group_mean_losses(losses, batch["group"].long(), self.num_groups)
        self.group_weights.copy_(group_dro_weights(self.group_weights, group_losses, present, self.eta))
        return (self.group_weights * group_losses).sum()


# -- GAP ---------------------------------------------------------------------------------------------------------
def tempered_context_probs(groups: Tensor, num_groups: int, s: float) -> Tensor:
    """Sampling probability of each context example: proportional to (N_ctx / n_g)^s for an example of group g
    (s = 0: uniform; s = 1: every group equally often; s > 1: minority groups oversampled beyond balance)."""
    counts = torch.bincount(groups.long(), minlength=num_groups).double()
    ratio = groups.numel() / counts[groups.long()]
    # normalise in log space: (N / n_g)^s overflows nothing at s = 4, but large s or tiny groups could
    logp = s * torch.log(ratio)
    return torch.softmax(logp, dim=0).float()


class GAPModule(GroupClassifier):
    """Training with the group-aware prior (GAP, Rudner et al. 2024; objective as in TASKS.md section 5). One step:

        mean NLL(batch) + (tau / B) * L_C(theta + rho * eps_hat) + ||theta - theta_0||^2 / (2 sigma_p^2 N)

    L_C is the mean NLL on a context batch of ``context_size`` examples drawn with replacement from the context set
    with probability proportional to (N_ctx / n_g)^s; eps_hat = grad L_C / ||grad L_C|| at theta (no gradient
    through it, as in SAM); theta_0 the ERM weights the module starts from; N the size of the retraining set;
    ``prior_precision`` = 1 / sigma_p^2. ``last_layer_only``: theta is the classifier (features frozen, kept in
    eval mode); otherwise every parameter.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable | None = None,
        context: dict[str, Tensor] | None = None,
        num_groups: int = 4,
        num_train: int = 1,
        tau: float = 15.0,
        rho: float = 0.15,
        s: float = 4.0,
        prior_precision: float = 500.0,
        context_size: int = 64,
        last_layer_only: bool = True,
    ) -> None:
        super().__init__(net, optimizer)
        for name, v in (("tau", tau), ("rho", rho), ("prior_precision", prior_precision)):
            if v < 0:
                raise BenchError(f"gap.{name} must be >= 0, got {v}")
        if context is None or "group" not in context:
            raise BenchError("GAP needs a group-labelled context set (x, y, group)")
        self.tau, self.rho, self.s, self.prior_precision = tau, rho, s, prior_precision
        self.num_train, self.context_size, self.last_layer_only = num_train, context_size, last_layer_only
        if last_layer_only:
            require_feature_split(net)
            for p in net.features.parameters():
                p.requires_grad_(False)
        self.theta_names = [n for n, p in self.head().named_parameters() if p.requires_grad]
        # theta_0 and the context set move with the module; not saved (rebuilt from the ERM stage)
        for i, (_, p) in enumerate(self._theta().items()):
            self.register_buffer(f"theta0_{i}", p.detach().clone(), persistent=False)
        self.register_buffer("context_x", context["x"], persistent=False)
        self.register_buffer("context_y", context["y"], persistent=False)
        self.register_buffer("context_probs", tempered_context_probs(context["group"], num_groups, s), persistent=False)

    def head(self) -> nn.Module:
        """The module whose parameters theta are (the classifier, or the whole net)."""
        return self.net.classifier if self.last_layer_only else self.net

    def _theta(self) -> dict[str, Tensor]:
        params = dict(self.head().named_parameters())
        return {n: params[n] for n in self.theta_names}

    def _inputs(self, x: Tensor) -> Tensor:
        if not self.last_layer_only:
            return x
        with torch.no_grad():
            return self.net.features(x)

    def on_train_epoch_start(self) -> None:
        if self.last_layer_only:
            self.net.features.eval()  # frozen features: no batch-norm statistics updates

    def prior_penalty(self) -> Tensor:
        sq = sum(((p - getattr(self, f"theta0_{i}")) ** 2).sum() for i, p in enumerate(self._theta().values()))
        return self.prior_precision * sq / (2.0 * self.num_train)

    def context_loss(self) -> Tensor:
        """L_C at theta + rho * eps_hat (at theta when rho = 0), differentiable in theta."""
        idx = torch.multinomial(self.context_probs, self.context_size, replacement=True)
        inputs, y = self._inputs(self.context_x[idx]), self.context_y[idx]
        head, theta = self.head(), self._theta()
        if self.rho == 0:
            return F.cross_entropy(head(inputs), y)
        grads = torch.autograd.grad(F.cross_entropy(head(inputs), y), list(theta.values()))
        norm = torch.sqrt(sum((g**2).sum() for g in grads)).clamp(min=1e-12)
        perturbed = {n: p + self.rho * g / norm for (n, p), g in zip(theta.items(), grads)}
        return F.cross_entropy(functional_call(head, perturbed, (inputs,)), y)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        y = batch["y"]
        loss = F.cross_entropy(self.head()(self._inputs(batch["x"])), y)
        if self.tau > 0:
            loss = loss + self.tau / len(y) * self.context_loss()
        if self.prior_precision > 0:
            loss = loss + self.prior_penalty()
        return loss
