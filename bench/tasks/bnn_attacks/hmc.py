"""Full-batch Hamiltonian Monte Carlo over an MLP's weights with pyro's NUTS (default) or HMC kernel.

The potential is ``U(theta) = -sum_i log p(y_i | x_i, theta) - log N(theta; 0, prior_std^2 I)`` over the whole
training set (temperature 1, no minibatching: the exact posterior HMC targets). Warm-up adapts the step size
(dual averaging to ``target_accept``) and a diagonal mass matrix; the chain starts at the MAP estimate the task
trains first (a random start would spend the short CPU budget of warm-up far from the posterior's bulk). After
warm-up, every ``thin``-th of ``num_samples * thin`` draws is kept. NUTS's ``max_tree_depth`` bounds the leapfrog
steps per draw (2^depth - 1): plain HMC with a fixed trajectory length needs ``length / step size`` steps, which
explodes early in warm-up while the mass matrix is still the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def run_chain(
    potential: Callable[[Tensor], Tensor],
    start: Tensor,
    num_samples: int,
    warmup: int,
    trajectory_length: float = 1.0,
    step_size: float = 1e-3,
    kernel: str = "hmc",
    target_accept: float = 0.8,
    thin: int = 1,
    max_tree_depth: int = 5,
) -> tuple[Tensor, dict[str, float]]:
    """Samples ``[num_samples, P]`` of ``exp(-potential)`` and the sampler's statistics: ``accept_rate`` (mean
    acceptance probability after warm-up), ``step_size`` (adapted), ``divergences``, ``num_steps`` (leapfrog steps
    per proposal, HMC), ``ess_median`` (median effective sample size over the coordinates)."""
    from pyro.infer.mcmc import HMC, MCMC, NUTS

    def potential_fn(params: dict) -> Tensor:
        return potential(params["theta"])

    if kernel == "nuts":
        k = NUTS(
            potential_fn=potential_fn,
            step_size=step_size,
            adapt_step_size=True,
            adapt_mass_matrix=True,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
        )
    elif kernel == "hmc":
        # leapfrog steps per proposal = trajectory_length / step size (pyro): the length stays fixed while warm-up
        # adapts the step size and the (diagonal) mass matrix
        k = HMC(
            potential_fn=potential_fn,
            step_size=step_size,
            trajectory_length=float(trajectory_length),
            adapt_step_size=True,
            adapt_mass_matrix=True,
            target_accept_prob=target_accept,
        )
    else:
        raise ValueError(f"unknown HMC kernel {kernel!r}; use hmc or nuts")
    mcmc = MCMC(
        k,
        num_samples=int(num_samples) * int(thin),
        warmup_steps=int(warmup),
        initial_params={"theta": start.detach().clone()},
        disable_progbar=True,
    )
    mcmc.run()
    theta = mcmc.get_samples()["theta"][:: int(thin)].detach()
    diag = mcmc.diagnostics()  # per chain: "acceptance rate", "divergences"; per site: n_eff, r_hat
    ess = diag.get("theta", {}).get("n_eff")
    stats = {
        "accept_rate": float(diag["acceptance rate"]["chain 0"]),
        "step_size": float(k.step_size),
        "divergences": float(len(diag.get("divergences", {}).get("chain 0", []))),
        "num_steps": float(k.num_steps) if kernel == "hmc" else float(2 ** int(max_tree_depth) - 1),  # (NUTS: the cap)
        "ess_median": float(ess.median()) if ess is not None else float("nan"),
    }
    return theta, stats


def mlp_potential(model, x: Tensor, y: Tensor, prior_std: float) -> Callable[[Tensor], Tensor]:
    """The full-batch BNN potential of :class:`bench.models.posteriors.HMCMLP` on ``(x, y)``."""
    inv_var = 1.0 / float(prior_std) ** 2

    def potential(theta: Tensor) -> Tensor:
        logits = model.logits_at(x, theta)[0]
        return F.cross_entropy(logits, y, reduction="sum") + 0.5 * inv_var * (theta * theta).sum()

    return potential


def sample_posterior(
    model,
    x: Tensor,
    y: Tensor,
    num_samples: int,
    warmup: int,
    trajectory_length: float,
    step_size: float,
    kernel: str,
    target_accept: float,
    thin: int,
    prior_std: float,
    max_tree_depth: int = 5,
) -> dict[str, float]:
    """Run the chain from the model's start point and store its samples in the model; returns the statistics."""
    theta, stats = run_chain(
        mlp_potential(model, x, y, prior_std),
        model.flat_start(),
        num_samples,
        warmup,
        trajectory_length=trajectory_length,
        step_size=step_size,
        kernel=kernel,
        target_accept=target_accept,
        thin=thin,
        max_tree_depth=max_tree_depth,
    )
    model.set_samples(theta)
    return stats
