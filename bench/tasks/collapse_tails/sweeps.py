"""The closed-form part of the task: error-vs-T curves of the memorising model on clean, tail-cut, mixed and
generated data, their Monte-Carlo counterparts, and the numbers the claims check (returned as flat metrics).

Metric names follow the harness's sweep-point convention (``beta=2/k=10/topk/plateau``: axes first, then the
metric; ``hutter/`` is added by the protocol). Below, ``<b>/`` stands for ``beta=<beta>/``:
  ``<b>/clean/slope`` (fitted log-log slope of the exact error over ``slope_range``), ``<b>/clean/slope_theory``,
  ``<b>/clean/mc_slope`` and ``<b>/clean/mc_slope_se`` (per-repetition slopes of Monte-Carlo curves over
  [slope_range[0], monte_carlo.t_max]: mean and standard error);
  ``<b>/k=<k>/topk/plateau`` (exact error at the grid's largest T), ``<b>/k=<k>/topk/plateau_theory``,
  ``<b>/topk/plateau_slope`` (log-log slope of the plateau against k), ``<b>/topk/plateau_slope_theory``;
  ``<b>/p=<p>/topp/k`` (the k a top-p cut keeps) and ``<b>/p=<p>/topp/plateau``;
  ``<b>/pi=<pi>/mix/t_leave`` (first T at which the top-k cut mixed with a clean fraction pi falls to
  ``leave_fraction`` x its plateau), ``<b>/mix/leave_slope`` (log-log slope of t_leave against pi; theory -1);
  ``<b>/generation=<n>/chain/floor`` and ``.../floor_se`` (missing mass of generation n, mean and standard error over
  chains), ``<b>/generation=<n>/chain/rise`` and ``.../rise_se`` (paired increase over generation n - 1),
  ``<b>/chain/floor_gen_slope`` (log-log slope of the floor against n); ``<b>/T0=<T0>/chain/floor`` (generation-1
  floor for each T0 of ``T0_sweep``, with ``_se``), ``<b>/chain/T0_slope`` and ``<b>/chain/T0_slope_theory``;
  ``mc/max_abs_t`` (largest |Monte Carlo - exact| / standard error over every compared point: those where the
  repetitions are expected to miss >= MIN_EXPECTED_MISSES items), ``mc/comparisons`` and ``mc/dof`` (repetitions
  - 1), for the claim's Bonferroni threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.harness.naming import point_name
from bench.harness.seeding import generator as seeded_generator
from bench.tasks.collapse_tails import hutter
from bench.tasks.collapse_tails.zipf import Zipf, generation_chain, mix

# The t test of Monte Carlo against the exact error is made where the repetitions together are expected to miss
# at least this many items (a Poisson count of mean >= 100 is close to normal out to the Bonferroni threshold).
MIN_EXPECTED_MISSES = 100


@dataclass
class Curves:
    """Everything the figures draw, for one beta."""

    beta: float
    T: np.ndarray
    clean: np.ndarray
    clean_theory: np.ndarray
    topk: dict[int, np.ndarray] = field(default_factory=dict)
    topk_theory: dict[int, float] = field(default_factory=dict)
    topp: dict[float, tuple[int, np.ndarray]] = field(default_factory=dict)
    mix_k: int = 0
    mix: dict[float, np.ndarray] = field(default_factory=dict)
    mix_scale: dict[float, float] = field(default_factory=dict)
    chain: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # generation -> mean, se
    chain_T0: int = 0
    chain_floor_theory: float = 0.0
    monte_carlo: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)  # T, mean, se


def _mean_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (ddof=1) over the first axis."""
    return x.mean(0), x.std(0, ddof=1) / math.sqrt(len(x))


class MonteCarloCheck:
    """Monte-Carlo curves against the exact error: keeps the largest |t| statistic over all points."""

    def __init__(self, T: torch.Tensor, reps: int) -> None:
        if reps < 2:
            raise ValueError("the Monte-Carlo check needs at least 2 repetitions for a standard error")
        self.T, self.reps = T, reps
        self.max_abs_t, self.comparisons = 0.0, 0

    def run(self, zipf: Zipf, q, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(T, mean, standard error, every repetition) of the Monte-Carlo error of q."""
        mc = hutter.monte_carlo_error(zipf, q, self.T, self.reps, generator).numpy()
        exact = hutter.expected_error(zipf, q, self.T).numpy()
        mean, se = _mean_se(mc)
        # Compared: points where the mean over repetitions is close to normal. Where T is large enough that the
        # training sets miss only a few items of a finite support (a tail-cut plateau), the error is a sum of rare
        # events (a repetition misses one item now and then) and a t statistic means nothing; there the exact
        # and Monte-Carlo values still agree, but only the figures show it.
        misses = self.reps * hutter.expected_missed_items(q, self.T).numpy()
        varying = (misses >= MIN_EXPECTED_MISSES) & (se > 1e-12)  # 1e-12: far above float64 rounding (~1e-16)
        t = np.abs(mean[varying] - exact[varying]) / se[varying]
        self.max_abs_t = max(self.max_abs_t, float(t.max()) if len(t) else 0.0)
        self.comparisons += int(varying.sum())
        return self.T.numpy(), mean, se, mc


def run_beta(cfg: Any, beta: float, generator: torch.Generator, check: MonteCarloCheck) -> tuple[dict, Curves]:
    """All sweeps for one beta; returns (metrics without the ``hutter/`` prefix, curves)."""
    zipf = Zipf(beta, head=int(cfg.head), support=None if cfg.support is None else int(cfg.support))
    pt = lambda metric, **axes: point_name(metric, beta=beta, **axes)  # noqa: E731
    T = hutter.log_grid(float(cfg.grid.t_min), float(cfg.grid.t_max), int(cfg.grid.per_decade))
    Tn = T.numpy()
    m: dict[str, float] = {}

    # clean scaling: exact slope over slope_range, Monte-Carlo slope per repetition
    lo, hi = (float(v) for v in cfg.slope_range)
    clean = hutter.expected_error(zipf, zipf.clean(), T).numpy()
    fit = (Tn >= lo) & (Tn <= hi)
    m[pt("clean/slope")] = hutter.loglog_slope(Tn[fit], clean[fit])
    m[pt("clean/slope_theory")] = hutter.clean_slope(beta)
    curves = Curves(beta, Tn, clean, hutter.clean_theory(zipf, Tn))
    Tm, mean, se, mc = check.run(zipf, zipf.clean(), generator)
    curves.monte_carlo["clean"] = (Tm, mean, se)
    mfit = Tm >= lo
    slopes = np.array([hutter.loglog_slope(Tm[mfit], rep[mfit]) for rep in mc])
    m[pt("clean/mc_slope")] = float(slopes.mean())
    m[pt("clean/mc_slope_se")] = float(slopes.std(ddof=1) / math.sqrt(len(slopes)))

    # top-k cuts: plateau at the largest T against the tail mass law
    ks = [int(k) for k in cfg.top_k]
    for k in ks:
        curve = hutter.expected_error(zipf, zipf.top_k(k), T).numpy()
        curves.topk[k] = curve
        curves.topk_theory[k] = float(hutter.cut_plateau_theory(zipf, k))
        m[pt("topk/plateau", k=k)] = float(curve[-1])
        m[pt("topk/plateau_theory", k=k)] = curves.topk_theory[k]
    m[pt("topk/plateau_slope")] = hutter.loglog_slope(ks, [curves.topk[k][-1] for k in ks])
    m[pt("topk/plateau_slope_theory")] = -(beta - 1)
    mc_k = int(cfg.monte_carlo.k)
    curves.monte_carlo[f"top-{mc_k}"] = check.run(zipf, zipf.top_k(mc_k), generator)[:3]

    # top-p cuts: the same plateau, at the k that p keeps
    for p in cfg.top_p:
        k = zipf.top_p_k(float(p))
        curve = hutter.expected_error(zipf, zipf.top_p(float(p)), T).numpy()
        curves.topp[float(p)] = (k, curve)
        m[pt("topp/k", p=float(p))] = k
        m[pt("topp/plateau", p=float(p))] = float(curve[-1])

    # mixing a clean fraction pi into top-k data: the plateau is left at T ~ k^beta / pi
    k, frac = int(cfg.mixing.k), float(cfg.mixing.leave_fraction)
    plateau = zipf.mass_beyond(k)
    curves.mix_k = k
    pis = [float(pi) for pi in cfg.mixing.pis]
    leaves = []
    for pi in pis:
        curve = hutter.expected_error(zipf, mix(zipf.top_k(k), pi), T).numpy()
        curves.mix[pi] = curve
        curves.mix_scale[pi] = hutter.mixing_scale(zipf, k, pi)
        leaves.append(hutter.first_crossing(Tn, curve, frac * plateau))
        m[pt("mix/t_leave", pi=pi)] = leaves[-1]
        m[pt("mix/t_leave_scale", pi=pi)] = curves.mix_scale[pi]
    m[pt("mix/leave_slope")] = hutter.loglog_slope(pis, leaves) if all(np.isfinite(leaves)) else math.nan
    mc_pi = float(cfg.monte_carlo.pi)
    curves.monte_carlo[f"top-{k} + pi={mc_pi:g}"] = check.run(zipf, mix(zipf.top_k(k), mc_pi), generator)[:3]

    # generation chains from T0 samples: floors per generation, paired rises, exact curves averaged over chains
    ch = cfg.chain
    T0, gens, n_chains = int(ch.T0), int(ch.generations), int(ch.chains)
    top_p = None if ch.top_p is None else float(ch.top_p)
    chains = [generation_chain(zipf, T0, gens, generator, top_p) for _ in range(n_chains)]
    floors = np.array([[hutter.floor(zipf, q) for q in chain] for chain in chains])  # (chains, gens)
    floors = np.concatenate([np.zeros((n_chains, 1)), floors], 1)  # generation 0: clean data, no floor
    curves.chain_T0 = T0
    curves.chain_floor_theory = float(hutter.clean_theory(zipf, T0))
    for n in range(1, gens + 1):
        mean, se = _mean_se(floors[:, n])
        rise, rise_se = _mean_se(floors[:, n] - floors[:, n - 1])
        m[pt("chain/floor", generation=n)], m[pt("chain/floor_se", generation=n)] = float(mean), float(se)
        m[pt("chain/rise", generation=n)], m[pt("chain/rise_se", generation=n)] = float(rise), float(rise_se)
        errors = np.stack([hutter.expected_error(zipf, chain[n - 1], T).numpy() for chain in chains])
        curves.chain[n] = _mean_se(errors)
    if gens >= 2:
        m[pt("chain/floor_gen_slope")] = hutter.loglog_slope(np.arange(1, gens + 1), floors[:, 1:].mean(0))
    curves.monte_carlo["generation 1"] = check.run(zipf, chains[0][0], generator)[:3]
    curves.monte_carlo[f"generation {gens}"] = check.run(zipf, chains[0][-1], generator)[:3]

    # generation 1 acts as a cut at k ~ T0^(1/beta): its floor scales as T0^-(1 - 1/beta)
    sweep = [int(t) for t in ch.T0_sweep]
    sweep_floors = []
    for t0 in sweep:
        f = np.array([hutter.floor(zipf, generation_chain(zipf, t0, 1, generator)[0]) for _ in range(n_chains)])
        mean, se = _mean_se(f)
        sweep_floors.append(mean)
        m[pt("chain/floor", T0=t0)], m[pt("chain/floor_se", T0=t0)] = float(mean), float(se)
    if len(sweep) >= 2:
        m[pt("chain/T0_slope")] = hutter.loglog_slope(sweep, sweep_floors)
        m[pt("chain/T0_slope_theory")] = hutter.clean_slope(beta)
    return m, curves


def run_all(cfg: Any, seed: int) -> tuple[dict[str, float], list[Curves]]:
    """Every beta of ``cfg.betas``; the Monte-Carlo draws are seeded by ``seed``."""
    generator = seeded_generator(int(seed), "hutter/monte_carlo")
    mc = cfg.monte_carlo
    check = MonteCarloCheck(hutter.log_grid(1, float(mc.t_max), int(mc.per_decade)), int(mc.reps))
    metrics: dict[str, float] = {}
    all_curves = []
    for beta in cfg.betas:
        m, curves = run_beta(cfg, float(beta), generator, check)
        metrics.update(m)
        all_curves.append(curves)
    metrics["mc/max_abs_t"] = check.max_abs_t
    metrics["mc/comparisons"] = check.comparisons
    metrics["mc/dof"] = check.reps - 1
    return metrics, all_curves
