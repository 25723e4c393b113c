"""The protocol of ``collapse_regression``: the linear studies (closed-form fits batched over repetitions,
reported through ``ctx.log_metrics``), the kernel study (a closed-form LightningModule run through
``ctx.fit``, one stage per kernel), then the figures and a JSON of every curve."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.harness.context import RunContext
from bench.harness.errors import BenchError
from bench.harness.naming import point_name, point_prefix
from bench.tasks.collapse_regression import plots
from bench.tasks.collapse_regression.kernels import KERNELS
from bench.tasks.collapse_regression.linear import SPECTRA
from bench.tasks.collapse_regression.studies import overparam_study, ridge_study, ridgeless_study

STUDIES = ("ridgeless", "overparam", "ridge", "kernel")


def check_config(cfg: dict) -> None:
    """Every bad value named with its key and the fix, before anything runs."""

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise BenchError(msg)

    unknown = [s for s in cfg["studies"] if s not in STUDIES]
    need(not unknown, f"unknown collapse.studies {unknown}; known: {', '.join(STUDIES)}")
    need(int(cfg["chunk"]) >= 1, "collapse.chunk (repetitions per batched fit) must be >= 1")
    for name in ("ridgeless", "overparam", "ridge"):
        if name in cfg["studies"]:
            need(int(cfg[name]["repetitions"]) >= 2, f"collapse.{name}.repetitions must be >= 2 (standard errors)")
    if "ridgeless" in cfg["studies"]:
        c = cfg["ridgeless"]
        need(min(c["generations"]) >= 0, "collapse.ridgeless.generations must be >= 0")
        for s in c["settings"]:
            need(
                s.get("spectrum", "identity") in SPECTRA,
                f"collapse.ridgeless.settings: spectrum must be one of {SPECTRA}, got {s}",
            )
            need(
                min(s["T"], s["T0"]) >= s["d"] + 2,
                f"collapse.ridgeless.settings {s}: the ridgeless formula needs T, T0 >= d + 2; raise T / T0 or lower d",
            )
    if "overparam" in cfg["studies"]:
        c = cfg["overparam"]
        need(
            all(0 < t < c["d"] for t in c["T0s"]),
            f"collapse.overparam.T0s {c['T0s']} must lie in (0, d={c['d']}) (the over-parameterised regime)",
        )
        need(min(c["generations"]) >= 0, "collapse.overparam.generations must be >= 0")
    if "ridge" in cfg["studies"]:
        c = cfg["ridge"]
        need(c["spectrum"] in SPECTRA, f"collapse.ridge.spectrum must be one of {SPECTRA}, got {c['spectrum']!r}")
        need(
            c["T0"] >= c["d"] + 2,
            f"collapse.ridge: the generator chain is OLS and needs T0 >= d + 2 (d={c['d']}, T0={c['T0']})",
        )
        need(c["generations"] >= 1, "collapse.ridge.generations must be >= 1")
        need(
            0 < c["lambda_grid"]["low"] < c["lambda_grid"]["high"] and c["lambda_grid"]["num"] >= 3,
            "collapse.ridge.lambda_grid needs 0 < low < high and num >= 3",
        )
        need(c["fixed_lambda"] > 0, "collapse.ridge.fixed_lambda must be > 0")
        need(
            all(0 <= n <= c["generations"] for n in c["T_generations"]),
            f"collapse.ridge.T_generations {c['T_generations']} must lie in 0..generations={c['generations']}",
        )
        need(all(t >= 1 for t in c["T_grid"]), "collapse.ridge.T_grid must hold sample sizes >= 1")
    if "kernel" in cfg["studies"]:
        bad = [k for k in cfg["kernel"]["kernels"] if k not in KERNELS]
        need(not bad, f"unknown collapse.kernel.kernels {bad}; known: {', '.join(KERNELS)}")


def kernel_stage(kind: str) -> str:
    """The stage of one kernel, named by the sweep-point convention: ``kernel=<kind>``."""
    return point_prefix(kernel=kind).rstrip("/")


def stage_generator(ctx: RunContext, stage: str) -> torch.Generator:
    """A generator seeded from the run seed and the study name (studies are independent of each other)."""
    ctx.seed_stage(stage)
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))


def point_metrics(settings: list[dict]) -> dict[str, float]:
    out = {}
    for s in settings:
        for j, n in enumerate(s["generations"]):
            for key in ("err", "err_se", "theory"):
                out[point_name(key, **s["axes"], generation=n)] = float(s[key][j])
    return out


def ridge_metrics(r: dict) -> dict[str, float]:
    out: dict[str, float] = {
        "lambda_grid_ratio": float(r["grid"][1] / r["grid"][0]),
        "fixed_lambda": r["fixed_lambda"],
        "clean_lambda": r["clean_lambda"],
    }
    for n in r["generations"]:
        for name in ("fixed", "clean_tuned", "adaptive"):
            for key in ("err", "err_se", "theory", "lambda"):
                out[point_name(f"{name}/{key}", generation=n)] = float(r[name][key][n])
        out[point_name("best_lambda", generation=n)] = float(r["best_lambda"][n])
        out[point_name("best_lambda_theory", generation=n)] = float(r["best_lambda_theory"][n])
        for key in ("adaptive_gain", "adaptive_gain_se", "clean_tuned_gain", "clean_tuned_gain_se"):
            out[point_name(key, generation=n)] = float(r[key][n])
    for name in ("fixed", "clean_tuned"):
        for key, v in r[name]["linear_fit"].items():
            out[f"{name}/{key}"] = float(v)
    vt = r["vs_T"]
    for name in ("fixed", "adaptive"):
        for t in vt["T_grid"]:
            for j, n in enumerate(vt["generations"]):
                for key in ("err", "err_se", "theory"):
                    out[point_name(f"{name}/{key}", T=t, generation=n)] = float(vt[name][t][key][j])
    return out


def kernel_study(ctx: RunContext, cfg: dict) -> dict[str, dict]:
    dm = ctx.build_datamodule()
    pool = len(dm.split("train")["y"])
    T, T0 = int(ctx.cfg.module.T), int(ctx.cfg.module.T0)
    if max(T, T0) > pool:
        raise BenchError(
            f"module.T={T} / module.T0={T0} exceed the training pool of {ctx.cfg.data._target_} "
            f"({pool} inputs); lower them"
        )
    out = {}
    for kind in cfg["kernels"]:
        module = ctx.build_module(dm, kernel=kind, num_classes=dm.num_classes)
        stage = kernel_stage(kind)
        m = ctx.fit(module, dm, stage=stage, max_epochs=1)
        # Lightning logged these without the stage prefix (both kernels write n0/test_mse ...): log them again
        # under their record names so that W&B / CSV keep the kernels apart
        ctx.log_metrics({k[len(stage) + 1 :]: v for k, v in m.items()}, stage=stage)
        ns = list(range(int(ctx.cfg.module.generations) + 1))

        def get(key: str, m=m, stage=stage, ns=ns) -> np.ndarray:
            return np.array([m.get(f"{stage}/" + point_name(key, generation=n), np.nan) for n in ns], dtype=float)

        out[kind] = {
            "generations": ns,
            "mse": get("test_mse"),
            "mse_se": get("test_mse_se"),
            "acc": get("test_acc"),
            "acc_se": get("test_acc_se"),
        }
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def run(ctx: RunContext) -> None:
    cfg = OmegaConf.to_container(ctx.cfg.collapse, resolve=True)
    check_config(cfg)
    chunk = int(cfg["chunk"])
    res: dict[str, Any] = {}
    for name, study in (("ridgeless", ridgeless_study), ("overparam", overparam_study), ("ridge", ridge_study)):
        if name in cfg["studies"]:
            res[name] = study(cfg[name], chunk, stage_generator(ctx, name))
            ctx.log_metrics(ridge_metrics(res[name]) if name == "ridge" else point_metrics(res[name]), stage=name)
    if "kernel" in cfg["studies"]:
        res["kernel"] = kernel_study(ctx, cfg["kernel"])

    import matplotlib.pyplot as plt

    figures = []
    if any(k in res for k in ("ridgeless", "ridge", "overparam")):
        figures.append(("error_vs_n", plots.error_vs_n(res.get("ridgeless"), res.get("ridge"), res.get("overparam"))))
    if "ridge" in res:
        figures += [
            ("error_vs_lambda", plots.error_vs_lambda(res["ridge"])),
            ("error_vs_T", plots.error_vs_T(res["ridge"])),
        ]
    if "kernel" in res:
        figures.append(("kernel_error_vs_n", plots.kernel_error_vs_n(res["kernel"])))
    for name, fig in figures:
        ctx.save_figure(fig, name)
        plt.close(fig)
    path = ctx.artifact_path("curves.json")
    path.write_text(json.dumps(_jsonable(res), indent=1))
    ctx.add_artifact("curves", path)
