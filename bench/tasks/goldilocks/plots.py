"""Figures of the Goldilocks sweeps, from records (one run or a verify plan's runs, grouped by data set):
positive curvature vs alpha with the temperature sweep overlaid, accuracy vs alpha, gradient norm vs prior
mismatch over random inits."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.harness.naming import points  # noqa: E402


def setting(record: dict) -> str:
    """A readable name of the record's data set (the part of its ``data._target_`` before ``DataModule``)."""
    target = str(((record.get("config") or {}).get("data") or {}).get("_target_", "data"))
    return target.rsplit(".", 1)[-1].replace("DataModule", "").lower() or "data"


def by_setting(records: Iterable[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        out[setting(r)].append(r)
    return dict(sorted(out.items()))


def curve(records: list[dict], metric: str, axis: str = "alpha") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(axis values, mean, std over records) of one sweep metric; NaN where a record lacks a point."""
    per = [{float(a[axis]): v for a, v in points(r["metrics"], metric) if axis in a and len(a) == 1} for r in records]
    xs = np.array(sorted(set().union(*per))) if per else np.array([])
    vals = np.array([[np.nan if p.get(x) is None else p[x] for x in xs] for p in per], dtype=float)
    if not len(xs):
        return xs, xs, xs
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (diverged in every seed) stays NaN
        return xs, np.nanmean(vals, axis=0), (np.nanstd(vals, axis=0) if len(per) > 1 else np.zeros(len(xs)))


def _band(ax, x, mean, std, **kw):
    (line,) = ax.plot(x, mean, **kw)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, lw=0)
    return line


def _depth(records: list[dict]) -> int:
    return int(records[0]["metrics"].get("model/depth") or 3)


def curvature_vs_alpha(groups: dict[str, list[dict]]):
    fig, axes = plt.subplots(1, len(groups), figsize=(6.2 * len(groups), 4.4), squeeze=False)
    for ax, (name, recs) in zip(axes[0], groups.items()):
        L, n = _depth(recs), len(recs)
        x, m, s = curve(recs, "curv/positive_curvature")
        _band(ax, x, m, s, color="navy", lw=2.5, label="Hessian, weights scaled by alpha")
        t, mt, _ = curve(recs, "curv/positive_curvature", axis="temperature")
        if len(t):
            ax.plot(
                t ** (-1.0 / L),
                mt,
                "o",
                ms=4,
                mfc="none",
                color="tab:orange",
                label=f"Hessian, softmax temperature alpha^-{L} (same curve: claim a)",
            )
        for metric, color, label in (
            ("curv/ggn/positive_curvature", "cornflowerblue", "Gauss-Newton part G"),
            ("curv/rest/positive_curvature", "violet", "H - G"),
            ("curv/hutch/positive_curvature", "tab:green", "Hutchinson, full space"),
        ):
            xg, mg, sg = curve(recs, metric)
            if len(xg):
                _band(ax, xg, mg, sg, color=color, lw=1.2, label=label)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("initialisation scale alpha")
        ax.set_ylabel("positive curvature  Tr(H) / ||H||_F")
        ax.set_title(f"{name}: curvature at init ({n} seed{'s' if n > 1 else ''}, mean ± std)")
        ax.grid(True, ls="--", alpha=0.4)
        ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    return fig


def accuracy_vs_alpha(groups: dict[str, list[dict]]):
    fig, axes = plt.subplots(1, len(groups), figsize=(6.2 * len(groups), 4.4), squeeze=False)
    for ax, (name, recs) in zip(axes[0], groups.items()):
        for metric, color, label in (
            ("train/acc", "tab:blue", "train accuracy"),
            ("test/acc", "tab:red", "test accuracy"),
        ):
            x, m, s = curve(recs, metric)
            if len(x):
                _band(ax, x, m, s, color=color, lw=2, marker=".", label=label)
        xc, mc, _ = curve(recs, "curv/positive_curvature")
        x, mt, _ = curve(recs, "test/acc")
        if len(xc):
            ax.axvline(xc[np.nanargmax(mc)], color="navy", ls="--", lw=1, label="curvature peak")
        if len(x) and np.isfinite(mt).any():
            ax.axvline(x[np.nanargmax(mt)], color="tab:red", ls=":", lw=1.5, label="best test accuracy")
        twin = ax.twinx()
        twin.plot(xc, mc, color="grey", lw=1, alpha=0.6)
        twin.set_ylabel("positive curvature (grey)", color="grey")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("initialisation scale alpha")
        ax.set_ylabel("final accuracy (full-batch GD, lr 0.1 / alpha^(L-2))")
        ax.set_title(f"{name}: trainability vs init scale")
        ax.grid(True, ls="--", alpha=0.4)
        ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    return fig


def grad_vs_mismatch(groups: dict[str, list[dict]]):
    fig, axes = plt.subplots(1, len(groups), figsize=(5.4 * len(groups), 4.4), squeeze=False)
    for ax, (name, recs) in zip(axes[0], groups.items()):
        xs, ys = [], []
        for r in recs:
            pm = {a["init"]: v for a, v in points(r["metrics"], "init/prior_mismatch")}
            gn = {a["init"]: v for a, v in points(r["metrics"], "init/grad_norm")}
            keys = sorted(set(pm) & set(gn), key=int)
            x, y = np.array([pm[k] for k in keys]), np.array([gn[k] for k in keys])
            ax.scatter(x, y, s=9, alpha=0.6, label=f"seed {r.get('seed', 0)}")
            xs.append(x)
            ys.append(y)
        if xs and len(np.concatenate(xs)) > 2:
            x, y = np.concatenate(xs), np.concatenate(ys)
            slope = (x @ y) / (x @ x)
            grid = np.array([0, x.max()])
            ax.plot(grid, slope * grid, color="purple", lw=1.5, label=f"grad = {slope:.3g} x mismatch")
            ax.set_title(f"{name}: {len(x)} random inits, corr = {np.corrcoef(x, y)[0, 1]:.3f}")
        ax.set_xlabel("prior mismatch  ||Q - mean softmax||")
        ax.set_ylabel("gradient norm  ||dL/dw||")
        ax.grid(True, ls="--", alpha=0.4)
        ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    return fig


def figures(records: Iterable[dict]) -> dict[str, plt.Figure]:
    groups = by_setting(records)
    return {
        "curvature_vs_alpha": curvature_vs_alpha(groups),
        "accuracy_vs_alpha": accuracy_vs_alpha(groups),
        "grad_vs_mismatch": grad_vs_mismatch(groups),
    }
