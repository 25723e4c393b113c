"""Figures: simulation (markers, +-2 standard errors) with the closed-form theory (lines) over it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _legend(axes: dict) -> str:
    """A setting's legend entry: ``d=5, T=20, T0=15`` (the spectrum only when it is not the identity)."""
    return ", ".join(f"{k}={v}" for k, v in axes.items() if not (k == "spectrum" and v == "identity"))


def _sim(ax, x, m, se, color, label):
    ax.errorbar(x, m, yerr=2 * np.asarray(se), fmt="o", ms=4, color=color, capsize=2, label=label)


def error_vs_n(ridgeless: list[dict] | None, ridge: dict | None, overparam: list[dict] | None):
    panels = [p for p in (ridgeless, ridge, overparam) if p]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.2 * max(len(panels), 1), 4.2), squeeze=False)
    axes = list(axes[0])
    if ridgeless:
        ax = axes.pop(0)
        for i, s in enumerate(ridgeless):
            c = f"C{i}"
            _sim(ax, s["generations"], s["err"], s["err_se"], c, _legend(s["axes"]))
            ax.plot(s["generations"], s["theory"], "-", color=c, lw=1)
        ax.set(title="ridgeless: sim vs exact formula (lines)", xlabel="generation n", ylabel="E_test")
        ax.legend(fontsize=7)
    if ridge:
        ax = axes.pop(0)
        ns = ridge["generations"]
        for i, name in enumerate(("fixed", "clean_tuned", "adaptive")):
            r = ridge[name]
            lab = {
                "fixed": f"fixed lambda={ridge['fixed_lambda']:.0e}",
                "clean_tuned": f"lambda tuned at n=0 ({ridge['clean_lambda']:.2g})",
                "adaptive": "adaptive lambda(T, n)",
            }[name]
            _sim(ax, ns, r["err"], r["err_se"], f"C{i}", lab)
            ax.plot(ns, r["theory"], "-", color=f"C{i}", lw=1)
        ax.set(
            title=f"ridge, d={ridge['d']} T={ridge['T']} T0={ridge['T0']} (lines: theory)",
            xlabel="generation n",
            ylabel="E_test",
        )
        ax.legend(fontsize=7)
    if overparam:
        ax = axes.pop(0)
        for i, s in enumerate(overparam):
            _sim(ax, s["generations"], s["err"], s["err_se"], f"C{i}", _legend(s["axes"]))
            ax.plot(s["generations"], s["theory"], "-", color=f"C{i}", lw=1)
        ax.set(
            title="noise-free min-norm chain: ||w0||^2 (1 - (T0/d)^n)", xlabel="generation n", ylabel="||w_n - w0||^2"
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def error_vs_lambda(ridge: dict):
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for n in ridge["generations"]:
        c = f"C{n % 10}"
        _sim(ax, ridge["grid"], ridge["sweep"][n], ridge["sweep_se"][n], c, f"n={n}")
        ax.plot(ridge["fine"], ridge["sweep_theory"][n], "-", color=c, lw=1)
        lam = ridge["best_lambda_theory"][n]
        ax.plot([lam], [np.min(ridge["sweep_theory"][n])], "*", color=c, ms=11, mec="k")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="lambda",
        ylabel="E_test",
        title=f"error vs lambda, d={ridge['d']} T={ridge['T']} T0={ridge['T0']} (stars: adaptive lambda)",
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def error_vs_T(ridge: dict):
    vt = ridge["vs_T"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, name in zip(axes, ("fixed", "adaptive")):
        for j, n in enumerate(vt["generations"]):
            c = f"C{j}"
            ts = vt["T_grid"]
            m = np.array([vt[name][t]["err"][j] for t in ts])
            se = np.array([vt[name][t]["err_se"][j] for t in ts])
            _sim(ax, ts, m, se, c, f"n={n}")
            ax.plot(ts, [vt[name][t]["theory"][j] for t in ts], "-", color=c, lw=1)
            if n > 0:  # the ridgeless collapse floor n sigma0^2 d / (T0 - d - 1)
                ax.axhline(n * ridge["collapse_per_generation_ridgeless"], color=c, ls=":", lw=1)
        title = f"fixed lambda={ridge['fixed_lambda']:.0e}" if name == "fixed" else "adaptive lambda(T, n)"
        ax.set(
            xscale="log", yscale="log", xlabel="T (downstream samples)", title=f"{title}; dotted: n sigma0^2 d/(T0-d-1)"
        )
        ax.legend(fontsize=7)
    axes[0].set_ylabel("E_test")
    fig.tight_layout()
    return fig


def kernel_error_vs_n(kernel: dict[str, dict]):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, (name, r) in enumerate(kernel.items()):
        ns = r["generations"]
        _sim(axes[0], ns, r["mse"], r["mse_se"], f"C{i}", name)
        axes[0].plot(ns, r["mse"], "-", color=f"C{i}", lw=0.8)
        _sim(axes[1], ns, r["acc"], r["acc_se"], f"C{i}", name)
        axes[1].plot(ns, r["acc"], "-", color=f"C{i}", lw=0.8)
    axes[0].set(
        xlabel="generation n", ylabel="test MSE to the one-hot label", title="kernel ridge, labels re-synthesised"
    )
    axes[1].set(xlabel="generation n", ylabel="test accuracy (argmax)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
