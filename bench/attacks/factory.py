"""Attacks from ``_target_`` configs, their threat-model facts, and the checks of their values.

An attack config (``conf/attack/*.yaml``, or a task's own ``conf/attack/<x>.yaml`` pointing into its folder) is a
Hydra partial of a factory ``f(model, eps, **options) -> attack`` where ``attack(x, y[, index=...]) -> x_adv``
(a torchattacks ``Attack`` or anything callable like one)::

    _target_: bench.attacks.standard.pgd_linf
    _partial_: true
    name: pgd_linf          # display name in records
    eps: [0.1]              # radii; the first is reported as test/robust_acc; a scalar is one radius
    steps: 10               # options: passed to the factory
    step_size: 0.25
    random_start: true
    validity: {enabled: true, steps_multiplier: 2, tolerance: 0.01}
    S_attack: 10            # stochastic models only: posterior draws per attack step (EOT)
    S_eval: 100             # stochastic models only: posterior draws when scoring

``eps``, ``name``, ``validity``, ``S_attack`` and ``S_eval`` are the harness's (:data:`HARNESS_KEYS`); every other
key is an option of the factory. What the harness needs to know about an attack comes from the factory, declared
with :func:`attack`: its norm (for the random-noise baseline) and whether it is iterative (a ``steps`` option:
the "more steps" check). A config may state ``norm`` itself. ``build_attack`` also passes the factory
``num_classes`` and ``seed`` when its signature asks for them, and wraps a stochastic model (see
:mod:`bench.models.stochastic`) in its predictive mean over ``S_attack`` draws.

A config with no ``_target_`` is a disabled attack (``attack=none``), unless it names a config of this group
(``{name: pgd_linf, steps: 10}``): then it is that file with the given keys on top.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from bench.attacks.noise import random_noise  # noqa: F401  (the noise baseline, re-exported for callers)
from bench.harness.errors import BenchError

HARNESS_KEYS = ("eps", "name", "validity", "S_attack", "S_eval")
VALIDITY_KEYS = ("enabled", "steps_multiplier", "samples_multiplier", "tolerance", "stochastic_tolerance")
NORMS = ("linf", "l2")
DEFAULT_S_ATTACK = 10
DEFAULT_S_EVAL = 100


def attack(norm: str | None = None, iterative: bool | None = None) -> Callable[[Callable], Callable]:
    """Declare what the harness needs to know about an attack factory: ``norm`` (``linf`` / ``l2``; ``None``: the
    factory's own ``norm`` option) and ``iterative`` (``None``: whether it takes ``steps``)."""

    def mark(factory: Callable) -> Callable:
        factory.attack_norm = norm
        factory.attack_iterative = iterative
        return factory

    return mark


# -- the config ------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def attack_config(cfg: Any) -> dict[str, Any]:
    """The attack config as a plain dict, whatever form it came in: a mapping (DictConfig or dict), the
    ``functools.partial`` Hydra made of it (a parent instantiated recursively), ``None`` (no attack), or a legacy
    ``{name: <config of conf/attack/>, ...}``."""
    if cfg is None:
        return {}
    if isinstance(cfg, functools.partial):
        fn = cfg.func
        out = {"_target_": f"{fn.__module__}.{fn.__qualname__}", "_partial_": True}
        out.update({k: _plain(v) for k, v in cfg.keywords.items()})
        return out
    if not isinstance(cfg, Mapping) and not isinstance(cfg, DictConfig):
        raise BenchError(f"attack config must be a mapping with _target_, got {type(cfg).__name__}: {cfg!r}")
    out = dict(_plain(cfg))
    name = out.get("name")
    if "_target_" not in out and name not in (None, "none"):
        out = {**_group_config(str(name)), **out}
    return out


def _group_config(name: str) -> dict[str, Any]:
    from bench.harness.registry import search_dirs

    for d in search_dirs():
        path = d / "attack" / f"{name}.yaml"
        if path.is_file():
            return dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    options = sorted({p.stem for d in search_dirs() for p in (d / "attack").glob("*.yaml")})
    raise BenchError(f"unknown attack {name!r}; known attack options: {', '.join(options)}")


def attack_enabled(cfg: Any) -> bool:
    """Whether the config is an attack to run (a ``_target_`` and at least one radius)."""
    c = attack_config(cfg)
    return "_target_" in c and bool(eps_list(c.get("eps", [])))


def eps_list(eps: Any, key: str = "attack.eps") -> list[float]:
    """The radii as floats; a scalar is one radius. Anything but non-negative finite numbers: one BenchError."""
    values = list(eps) if isinstance(eps, (list, tuple, ListConfig)) else [eps]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise BenchError(
                f"{key}={_show(eps)} is not allowed: radii must be non-negative numbers, one or a list "
                f"(e.g. {key}=0.1 or {key}=[0.1,0.2])"
            )
        out.append(float(v))
    return out


def _show(value: Any) -> str:
    v = _plain(value)
    return "[" + ",".join(map(str, v)) + "]" if isinstance(v, list) else str(v)


# -- the factory and what it declares --------------------------------------------------------------------------
def factory_of(cfg: Any) -> Callable:
    """The callable the config's ``_target_`` names."""
    c = attack_config(cfg)
    target = c.get("_target_")
    if not target:
        raise BenchError("this attack config has no _target_ (attack=none): there is no attack to build")
    return _factory(str(target))


@functools.lru_cache(maxsize=64)
def _factory(target: str) -> Callable:
    """The object ``target`` names, imported once per process (an evaluation builds several attacks)."""
    from hydra.utils import get_object

    try:
        fn = get_object(str(target))
    except Exception as e:  # noqa: BLE001 - Hydra raises ImportError or its own errors; the line says which target
        raise BenchError(
            f"attack._target_={target} cannot be imported ({type(e).__name__}); point it at an attack "
            f"factory, e.g. bench.attacks.standard.pgd_linf"
        ) from None
    if not callable(fn):
        raise BenchError(f"attack._target_={target} is not callable; point it at an attack factory")
    return fn


def _params(fn: Callable) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def _takes(fn: Callable, name: str) -> bool:
    ps = _params(fn)
    return name in ps or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ps.values())


def factory_options(cfg: Any) -> dict[str, Any]:
    """The keys of the config that are options of the factory (not the harness's)."""
    c = attack_config(cfg)
    fn = factory_of(c)
    skip = set(HARNESS_KEYS) | {"_target_", "_partial_"}
    if not _takes(fn, "norm"):
        skip.add("norm")  # a statement about the threat model, not an option of this factory
    return {k: v for k, v in c.items() if k not in skip}


def attack_name(cfg: Any) -> str:
    c = attack_config(cfg)
    return str(c.get("name") or str(c.get("_target_", "none")).rsplit(".", 1)[-1])


def attack_norm(cfg: Mapping[str, Any]) -> str:
    """``linf`` or ``l2``: the config's ``norm``, else the factory's declaration, else its ``norm`` default."""
    c = attack_config(cfg)
    fn = factory_of(c)
    norm = c.get("norm") or getattr(fn, "attack_norm", None)
    if norm is None:
        p = _params(fn).get("norm")
        norm = p.default if p is not None and p.default is not inspect.Parameter.empty else None
    norm = {"Linf": "linf", "L2": "l2"}.get(norm, norm)
    if norm not in NORMS:
        raise BenchError(
            f"attack {attack_name(c)}: its norm is unknown ({norm!r}); declare it with "
            f"@bench.attacks.factory.attack(norm=...) or set attack.norm to one of {', '.join(NORMS)}"
        )
    return str(norm)


def attack_iterative(cfg: Any) -> bool:
    """Whether the attack takes ``steps`` (the "more steps are not weaker" check applies)."""
    fn = factory_of(cfg)
    declared = getattr(fn, "attack_iterative", None)
    return bool(declared) if declared is not None else "steps" in _params(fn)


def eot_samples(cfg: Any) -> tuple[int, int]:
    """``(S_attack, S_eval)``: posterior draws per attack step and for scoring a stochastic model."""
    from bench.models.stochastic import check_num_samples

    c = attack_config(cfg)
    return (
        check_num_samples(c.get("S_attack", DEFAULT_S_ATTACK), "attack.S_attack"),
        check_num_samples(c.get("S_eval", DEFAULT_S_EVAL), "attack.S_eval"),
    )


# -- building ----------------------------------------------------------------------------------------------
def build_attack(
    cfg: Mapping[str, Any],
    model: nn.Module,
    eps: float,
    steps: int | None = None,
    num_classes: int = 10,
    seed: int = 0,
    samples: int | None = None,
):
    """The config's attack on ``model`` at radius ``eps`` (``steps`` overrides the config's for iterative attacks).

    A stochastic ``model`` (or a LightningModule whose ``net`` is one) is attacked through its predictive mean over
    ``samples`` (default ``S_attack``) fresh posterior draws per step: expectation over transformation."""
    from bench.models.stochastic import PredictiveMean, find_stochastic

    c = attack_config(cfg)
    fn = factory_of(c)
    options = factory_options(c)
    if steps is not None:
        if not attack_iterative(c):
            raise BenchError(f"attack {attack_name(c)} is not iterative: it takes no steps")
        options["steps"] = int(steps)
    for extra, value in (("num_classes", num_classes), ("seed", seed)):
        if extra not in options and extra in _params(fn):
            options[extra] = value
    stochastic = find_stochastic(model)
    if stochastic is not None:
        model = PredictiveMean(stochastic, samples if samples is not None else eot_samples(c)[0])
    try:
        key = json.dumps(options, sort_keys=True)
    except TypeError:  # an option JSON cannot hold: instantiate it afresh
        return _instantiate_partial(c["_target_"], options)(model=model, eps=float(eps))
    return _cached_partial(c["_target_"], key)(model=model, eps=float(eps))


def _instantiate_partial(target: str, options: Mapping[str, Any]) -> Callable:
    from hydra.utils import instantiate

    return instantiate({"_target_": target, "_partial_": True, **options})


@functools.lru_cache(maxsize=64)
def _cached_partial(target: str, options_json: str) -> Callable:
    """Hydra's partial of the factory, made once per process and option set: ``instantiate`` costs about a
    millisecond, which an evaluation of a few hundred examples would otherwise pay for every attack it builds."""
    return _instantiate_partial(target, json.loads(options_json))


def takes_index(atk: Any) -> bool:
    """Whether ``atk(x, y, index=...)`` keys its random draws by example index (a torchattacks attack: its
    ``forward`` takes ``index``; any other callable: its ``__call__`` does)."""
    fn = getattr(atk, "forward", None) or (atk if callable(atk) else None)
    try:
        return fn is not None and "index" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def run_attack(atk: Any, x, y, index=None):
    """``atk(x, y)``, passing the examples' indices to attacks that key their random draws by them."""
    return atk(x, y, index=index) if index is not None and takes_index(atk) else atk(x, y)


# -- validation before training --------------------------------------------------------------------------------
def check_attack(cfg: Any, key: str = "attack") -> dict[str, Any]:
    """Every value of an attack config checked (one BenchError line naming key, value and what is allowed);
    returns the plain config with ``eps`` as a list of floats."""
    c = attack_config(cfg)
    c["eps"] = eps_list(c.get("eps", []), f"{key}.eps")
    if "_target_" not in c:
        return c
    fn = factory_of(c)
    positive_int = {"steps": 1}
    for k, low in positive_int.items():
        if k in c:
            v = c[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise BenchError(f"{key}.{k}={_show(v)} is not allowed: use an integer >= {low}")
    if "step_size" in c:
        v = c["step_size"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise BenchError(
                f"{key}.step_size={_show(v)} is not allowed: use a positive number (the step as a "
                f"fraction of eps, e.g. 0.25)"
            )
    if "random_start" in c and not isinstance(c["random_start"], bool):
        raise BenchError(f"{key}.random_start={_show(c['random_start'])} is not allowed: use true or false")
    if "norm" in c and {"Linf": "linf", "L2": "l2"}.get(c["norm"], c["norm"]) not in NORMS:
        raise BenchError(f"{key}.norm={_show(c['norm'])} is not allowed: use one of {', '.join(NORMS)}")
    eot_samples(c)
    v = c.get("validity") or {}
    if not isinstance(v, Mapping):
        raise BenchError(f"{key}.validity={_show(v)} is not allowed: use a mapping of {', '.join(VALIDITY_KEYS)}")
    for k in v:
        if k not in VALIDITY_KEYS:
            raise BenchError(f"{key}.validity.{k} is not a validity option; the options are {', '.join(VALIDITY_KEYS)}")
    for k in ("steps_multiplier", "samples_multiplier"):
        if k in v and (isinstance(v[k], bool) or not isinstance(v[k], int) or v[k] < 2):
            raise BenchError(f"{key}.validity.{k}={_show(v[k])} is not allowed: use an integer >= 2")
    for k in ("tolerance", "stochastic_tolerance"):
        if k in v and (isinstance(v[k], bool) or not isinstance(v[k], (int, float)) or not 0 <= v[k] < 1):
            raise BenchError(f"{key}.validity.{k}={_show(v[k])} is not allowed: use a number in [0, 1)")
    if "enabled" in v and not isinstance(v["enabled"], bool):
        raise BenchError(f"{key}.validity.enabled={_show(v['enabled'])} is not allowed: use true or false")
    ps = _params(fn)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ps.values()):
        allowed = [p for p in ps if p not in ("model", "eps", "num_classes", "seed")]
        for k in factory_options(c):
            if k not in ps:
                raise BenchError(
                    f"{key}.{k} is not an option of attack {attack_name(c)}; its options are "
                    f"{', '.join(allowed) or 'none'} (and {', '.join(HARNESS_KEYS)})"
                )
    if c["eps"]:
        attack_norm(c)
    return c


def validate_attack_config(attack_cfg: Any, key: str = "attack") -> dict[str, Any]:
    """Check a run's ``attack`` config before anything trains (``bench.harness.validation`` calls it with
    ``cfg.attack``), and write a scalar ``eps`` back into it as a one-element list (``attack.eps=0.1`` becomes
    ``[0.1]``, so ``${attack.eps.0}`` interpolations work). Returns the checked plain config."""
    if attack_cfg is None:
        return {}
    raw = attack_cfg.get("eps") if isinstance(attack_cfg, (DictConfig, Mapping)) else None
    checked = check_attack(attack_cfg, key)
    if isinstance(attack_cfg, DictConfig) and raw is not None and not isinstance(raw, (list, tuple, ListConfig)):
        from omegaconf import open_dict

        with open_dict(attack_cfg):
            attack_cfg.eps = checked["eps"]
    return checked
