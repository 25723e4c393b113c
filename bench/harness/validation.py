"""Config values checked before any training: one line each, naming the key, the value and what is allowed.

Also turns Hydra's composition errors (a misspelled key, a bad override) into one line with a "did you mean" for
the closest known key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.harness.errors import BenchError

_MISSING = object()


def _get(cfg: DictConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, str) and re.fullmatch(r"[+-]?\d+", v.strip()) is not None


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(str(v))
        return True
    except ValueError:
        return False


def _bad(key: str, value: Any, allowed: str) -> BenchError:
    return BenchError(f"{key}={value!r} is not allowed: {key} must be {allowed}")


# key -> (check(value) -> bool, what is allowed); absent keys are skipped, ``None`` passes only where listed
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer (any size, e.g. seed=0 or seed=20240101)"),
    "optimizer.lr": (lambda v: _is_number(v) and float(v) > 0, "a positive number, e.g. optimizer.lr=0.01"),
    "trainer.max_epochs": (
        lambda v: _is_int(v) and int(v) >= -1,
        "an integer >= 0 (-1: no limit), e.g. trainer.max_epochs=10",
    ),
    "data.batch_size": (lambda v: v is None or (_is_int(v) and int(v) >= 1), "an integer >= 1, or null for full batch"),
    "data.eval_batch_size": (
        lambda v: v is None or (_is_int(v) and int(v) >= 1),
        "an integer >= 1, or null for the whole split",
    ),
    "num_threads": (
        lambda v: v is None or (_is_int(v) and int(v) >= 1),
        "an integer >= 1, or null for torch's default",
    ),
    "checkpoint_every_n_epochs": (
        lambda v: v is None or (_is_int(v) and int(v) >= 0),
        "an integer >= 0 (0: no checkpoints)",
    ),
}

# groups every task's protocol builds from
_REQUIRED_GROUPS = ("data", "trainer")


def validate_run_config(cfg: DictConfig) -> None:
    """Raise one :class:`BenchError` for the first value that a run cannot use (before anything is built)."""
    from bench.harness.registry import options
    from bench.harness.spec import parse_task

    # the task block as composed (an experiment or profile may override parts of it) still fits the task spec
    try:
        parse_task(OmegaConf.to_container(cfg.task, resolve=True), str(cfg.task.name))
    except BenchError as e:
        raise BenchError(f"{e} (after the experiment / profile / command-line overrides)") from None

    for group in _REQUIRED_GROUPS:
        if group in cfg and cfg[group] is None:
            raise BenchError(
                f"{group}=null: task {cfg.task.name} needs a {group} config; choose one of: {', '.join(options(group))}"
            )
    for key, (check, allowed) in _RULES.items():
        try:
            value = _get(cfg, key)
        except Exception as e:  # an interpolation that does not resolve
            raise BenchError(f"{key}: {e}".splitlines()[0]) from None
        if value is _MISSING:
            continue
        if value is None and key in ("seed", "optimizer.lr", "trainer.max_epochs"):
            raise _bad(key, value, allowed)
        if not check(value):
            raise _bad(key, value, allowed)
    attack = cfg.get("attack")
    if attack is not None and not _radius_left_to_the_task(attack):
        from bench.attacks.factory import validate_attack_config

        validate_attack_config(attack)  # eps, steps, norm; a scalar eps becomes a one-element list


def _radius_left_to_the_task(attack: Any) -> bool:
    """An ``eps`` entry that resolves to null (``${oc.select:data.eps_scale,null}``): the task picks the radius from
    its data or refuses with its own line, after it has built the data."""
    try:
        eps = attack.get("eps")
    except Exception:  # an interpolation that does not resolve: the attack validator names it
        return False
    values = list(eps) if OmegaConf.is_list(eps) or isinstance(eps, (list, tuple)) else [eps]
    return any(v is None for v in values)


# -- Hydra composition errors ----------------------------------------------------------------------------------
def _known_keys(overrides: list[str], dotted: str) -> list[str]:
    """The keys next to ``dotted``'s last part in the config composed without the bad override."""
    from bench.harness.config import compose

    parent = dotted.rsplit(".", 1)[0] if "." in dotted else ""
    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != dotted]
    try:
        cfg = compose(keep)
    except Exception:
        return []
    node = _get(cfg, parent) if parent else cfg
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []


def composition_error(exc: BaseException, overrides: list[str]) -> BenchError:
    """One line for a Hydra composition error, with "did you mean" for a misspelled key."""
    text = " ".join(str(exc).split())
    cause = exc.__cause__
    while cause is not None and not text:
        text = " ".join(str(cause).split())
        cause = cause.__cause__
    if "Got NoneType" in text:  # group=null
        from bench.harness.registry import GROUPS, options

        nulls = [o.split("=", 1)[0].lstrip("+~") for o in overrides if o.split("=", 1)[-1].strip() in ("null", "None")]
        group = next((g for g in nulls if g in GROUPS), None)
        if group is not None:
            return BenchError(
                f"{group}=null: the task needs a {group} config; choose one of: {', '.join(options(group))}"
            )
    m = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text)
    if m:
        dotted = m.group(1)
        if "." not in dotted:
            full = next(
                (
                    o.split("=", 1)[0].lstrip("+~")
                    for o in overrides
                    if o.split("=", 1)[0].lstrip("+~").endswith("." + dotted)
                ),
                dotted,
            )
            dotted = full
        last = dotted.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(last, _known_keys(overrides, dotted), n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return BenchError(f"unknown config key `{dotted}`: {hint}(to add a new key, write +{dotted}=...)")
    return BenchError(f"bad override: {text[:300]}")


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """A multirun's overrides with each sweep (``seed=0,1``) replaced by its first value, to check composition once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = []
    for o in overrides:
        try:
            (parsed,) = parser.parse_overrides([o])
        except Exception:
            out.append(o)
            continue
        if parsed.is_sweep_override():
            first = next(iter(parsed.sweep_string_iterator()), None)
            if first is None:
                continue
            out.append(f"{parsed.get_key_element()}={first}")
        else:
            out.append(o)
    return out


def check_composition(overrides: list[str]) -> DictConfig:
    """Compose ``overrides`` as ``bench fit`` will; a Hydra error becomes one line."""
    from bench.harness.config import compose

    try:
        return compose(overrides)
    except BenchError:
        raise
    except Exception as e:
        raise composition_error(e, overrides) from None
