"""The linear studies of the task: simulations (batched over repetitions) next to their closed-form theory.

Each study takes its config section (a plain dict) and a generator, and returns plain arrays: per point the
mean over repetitions, its standard error (std ddof=1 / sqrt(reps)) and the theory. The protocol logs them and
plots them; the claims read the logged numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.tasks.collapse_regression import theory
from bench.tasks.collapse_regression.linear import generation_chain, in_chunks, ridge_errors, spectrum


def mean_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over the leading (repetition) axis."""
    return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(len(x))


def random_direction(d: int, g: torch.Generator) -> torch.Tensor:
    z = torch.randn(d, dtype=torch.float64, generator=g)
    return z / z.norm()


def setting_axes(s: dict) -> dict:
    """A ridgeless setting as sweep-point axes: its metrics are
    ``d=.../T=.../T0=.../spectrum=.../generation=n/err``."""
    return {"d": int(s["d"]), "T": int(s["T"]), "T0": int(s["T0"]), "spectrum": s.get("spectrum", "identity")}


def ridgeless_study(cfg: dict, chunk: int, g: torch.Generator) -> list[dict]:
    """OLS chain + OLS downstream fit for each (d, T, T0, spectrum) setting, at each n of ``generations``."""
    gens = list(cfg["generations"])
    out = []
    for s in cfg["settings"]:
        d, T, T0 = int(s["d"]), int(s["T"]), int(s["T0"])
        eigs = spectrum(d, s.get("spectrum", "identity"), cfg.get("beta", 1.0))
        w0 = random_direction(d, g)  # the ridgeless error does not depend on w0
        errs = []
        for reps in in_chunks(int(cfg["repetitions"]), chunk):
            chain = generation_chain(w0, eigs, T0, max(gens), cfg["sigma0"], reps, g)[:, gens]
            errs.append(ridge_errors(chain, w0, eigs, T, cfg["sigma"], torch.zeros(1), g)[..., 0])
        m, se = mean_se(torch.cat(errs).numpy())
        th = theory.ridgeless_error(d, T, T0, np.array(gens), cfg["sigma"], cfg["sigma0"])
        out.append(
            {
                "axes": setting_axes(s),
                "d": d,
                "T": T,
                "T0": T0,
                "generations": gens,
                "err": m,
                "err_se": se,
                "theory": th,
            }
        )
    return out


def overparam_study(cfg: dict, chunk: int, g: torch.Generator) -> list[dict]:
    """Noise-free chain of minimum-norm fits on T0 < d isotropic inputs: ||w_n - w0||^2 against
    ||w0||^2 (1 - (T0/d)^n)."""
    d, gens = int(cfg["d"]), list(cfg["generations"])
    eigs = spectrum(d, "identity")
    w0 = random_direction(d, g) * cfg["w0_norm"]
    out = []
    for T0 in cfg["T0s"]:
        errs = []
        for reps in in_chunks(int(cfg["repetitions"]), chunk):
            chain = generation_chain(w0, eigs, int(T0), max(gens), 0.0, reps, g)[:, gens]
            errs.append((chain - w0).square().sum(-1))
        m, se = mean_se(torch.cat(errs).numpy())
        th = theory.overparam_noise_free_error(float(w0.square().sum()), d, int(T0), np.array(gens))
        out.append(
            {
                "axes": {"d": d, "T0": int(T0)},
                "d": d,
                "T0": int(T0),
                "generations": gens,
                "err": m,
                "err_se": se,
                "theory": th,
            }
        )
    return out


def per_rep_polyfit(errs: np.ndarray, ns: np.ndarray) -> dict[str, float]:
    """Slope of a straight line and curvature (x^2 coefficient) of a quadratic fitted to each repetition's
    error-vs-n curve; means and standard errors over repetitions (valid although the points of one
    repetition are correlated: the repetitions are independent)."""
    slope = np.polyfit(ns, errs.T, 1)[0]
    curvature = np.polyfit(ns, errs.T, 2)[0]
    (s, s_se), (c, c_se) = mean_se(slope), mean_se(curvature)
    return {"slope": float(s), "slope_se": float(s_se), "curvature": float(c), "curvature_se": float(c_se)}


def ridge_study(cfg: dict, chunk: int, g: torch.Generator) -> dict:
    """Ridge downstream fits on an OLS chain: error vs lambda for each n, fixed small lambda vs the lambda
    tuned on clean data (n = 0) vs the adaptive lambda (theory argmin for this T and n), and error vs T."""
    d, T, T0 = int(cfg["d"]), int(cfg["T"]), int(cfg["T0"])
    sigma, sigma0, n_max = float(cfg["sigma"]), float(cfg["sigma0"]), int(cfg["generations"])
    eigs = spectrum(d, cfg["spectrum"], cfg.get("beta", 1.0))
    w0 = random_direction(d, g)
    w0 = w0 / (eigs * w0.square()).sum().sqrt() * cfg["w0_norm"]  # ||w0||_Sigma = w0_norm
    eigs_np, w0_np = eigs.numpy(), w0.numpy()
    ns = np.arange(n_max + 1)
    lg = cfg["lambda_grid"]
    grid = np.logspace(np.log10(lg["low"]), np.log10(lg["high"]), int(lg["num"]))
    fine = np.logspace(
        np.log10(lg["low"]), np.log10(lg["high"]), 20 * int(np.ceil(np.log10(lg["high"] / lg["low"]))) + 1
    )
    fixed = float(cfg["fixed_lambda"])

    def th(lam: float, t: int, n: int) -> float:
        return theory.ridge_error(eigs_np, w0_np, lam, t, T0, int(n), sigma, sigma0)["total"]

    def adaptive(t: int) -> np.ndarray:
        return np.array([theory.optimal_lambda(eigs_np, w0_np, t, T0, int(n), sigma, sigma0, fine) for n in ns])

    lam_adapt = adaptive(T)
    lam_clean = lam_adapt[0]
    # columns: the sweep grid, then fixed, clean-tuned and adaptive lambda (one row per generation)
    named = np.stack([np.full(len(ns), fixed), np.full(len(ns), lam_clean), lam_adapt], 1)
    lam_main = np.concatenate([np.tile(grid, (len(ns), 1)), named], 1)
    T_grid, T_gens = [int(t) for t in cfg["T_grid"]], list(cfg["T_generations"])
    lam_T = {t: np.stack([np.full(len(T_gens), fixed), adaptive(t)[T_gens]], 1) for t in T_grid}

    main, by_T = [], {t: [] for t in T_grid}
    for reps in in_chunks(int(cfg["repetitions"]), chunk):
        chain = generation_chain(w0, eigs, T0, n_max, sigma0, reps, g)
        main.append(ridge_errors(chain, w0, eigs, T, sigma, torch.from_numpy(lam_main), g))
        for t in T_grid:
            by_T[t].append(ridge_errors(chain[:, T_gens], w0, eigs, t, sigma, torch.from_numpy(lam_T[t]), g))
    main_np = torch.cat(main).numpy()  # (reps, n_max + 1, L + 3)
    sweep, e_fixed, e_clean, e_adapt = main_np[..., : len(grid)], main_np[..., -3], main_np[..., -2], main_np[..., -1]

    m_sweep, se_sweep = mean_se(sweep)
    out = {
        "d": d,
        "T": T,
        "T0": T0,
        "generations": ns.tolist(),
        "grid": grid,
        "fine": fine,
        "sweep": m_sweep,
        "sweep_se": se_sweep,
        "sweep_theory": np.array([[th(lam, T, n) for lam in fine] for n in ns]),
        "best_lambda": grid[np.argmin(m_sweep, axis=1)],
        "best_lambda_theory": lam_adapt,
        "fixed_lambda": fixed,
        "clean_lambda": lam_clean,
        "collapse_per_generation_ridgeless": sigma0**2 * d / (T0 - d - 1),
    }
    for name, errs, lams in (
        ("fixed", e_fixed, np.full(len(ns), fixed)),
        ("clean_tuned", e_clean, np.full(len(ns), lam_clean)),
        ("adaptive", e_adapt, lam_adapt),
    ):
        m, se = mean_se(errs)
        out[name] = {
            "err": m,
            "err_se": se,
            "theory": np.array([th(lam, T, n) for lam, n in zip(lams, ns)]),
            "lambda": lams,
        }
    for name, errs in (("adaptive_gain", e_fixed - e_adapt), ("clean_tuned_gain", e_clean - e_adapt)):
        out[name], out[name + "_se"] = mean_se(errs)
    for name, errs, lam in (("fixed", e_fixed, fixed), ("clean_tuned", e_clean, lam_clean)):
        fit = per_rep_polyfit(errs, ns)
        fit["slope_theory"] = th(lam, T, 1) - th(lam, T, 0)
        out[name]["linear_fit"] = fit
    out["vs_T"] = {"T_grid": T_grid, "generations": T_gens, "fixed": {}, "adaptive": {}}
    for t in T_grid:
        m, se = mean_se(torch.cat(by_T[t]).numpy())
        for j, name in enumerate(("fixed", "adaptive")):
            out["vs_T"][name][t] = {
                "err": m[:, j],
                "err_se": se[:, j],
                "lambda": lam_T[t][:, j],
                "theory": np.array([th(lam, t, n) for lam, n in zip(lam_T[t][:, j], T_gens)]),
            }
    return out
