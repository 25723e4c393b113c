"""Config values checked before any training: one line each, naming the key, the value and what is allowed.

Also turns Hydra's composition errors (a misspelled key, a bad override) into one line with a "did you mean" for
the closest known key.
"""

from __future__ import annotations

import difflib
import inspect
import math
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
    "checkpoint_min_interval_s": (
        lambda v: v is None or (_is_number(v) and 0 <= float(v) < math.inf),
        "a number of seconds >= 0 (0: a checkpoint every time), e.g. checkpoint_min_interval_s=60",
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

        checked = validate_attack_config(attack)  # eps, steps, norm; a scalar eps becomes a one-element list
        _check_radius_range(checked)
    if cfg.get("init_weights"):  # the user's file: missing or not a checkpoint is one line now, not after the data
        from pathlib import Path

        from bench.harness.checkpoint import check_checkpoint_file

        check_checkpoint_file(Path(str(cfg.init_weights)).expanduser(), named_by="init_weights")
    plain = _resolved(cfg)
    check_numbers(plain)
    check_targets(plain)
    _check_trainer(cfg)
    _check_data_files(cfg)


def _radius_left_to_the_task(attack: Any) -> bool:
    """An ``eps`` entry that resolves to null (``${oc.select:data.eps_scale,null}``): the task picks the radius from
    its data or refuses with its own line, after it has built the data."""
    try:
        eps = attack.get("eps")
    except Exception:  # an interpolation that does not resolve: the attack validator names it
        return False
    values = list(eps) if OmegaConf.is_list(eps) or isinstance(eps, (list, tuple)) else [eps]
    return any(v is None for v in values)


def _check_radius_range(attack: dict) -> None:
    """l_inf radii are in input units and inputs lie in [0, 1]: a radius above 1 reaches every input."""
    from bench.attacks.factory import attack_norm

    if not attack.get("eps") or "_target_" not in attack or attack_norm(attack) != "linf":
        return
    if any(e > 1 for e in attack["eps"]):
        shown = "[" + ",".join(f"{e:g}" for e in attack["eps"]) + "]"
        raise BenchError(
            f"attack.eps={shown} is not allowed: l_inf radii are in input units and inputs lie in [0, 1], so each "
            "radius must be in [0, 1] (e.g. attack.eps=[0.1])"
        )


# -- generic checks: every number, every component's keys, the trainer, the data files -------------------------
# Rules by key name, so that a new key of any task is checked without being listed here. The last part of a key,
# split at "_", decides: a seed may be any integer (it is hashed into range); a count or size is an integer >= 0;
# seconds, rates and weights are numbers >= 0; fractions and probabilities lie in [0, 1]; every float is finite.
_COUNT_WORDS = frozenset(
    "n num steps epochs size count iters iterations repetitions reps generations chains samples examples nets "
    "models layers heads depth width dim dims chunk warmup thin probes subsets every classes buckets sequences "
    "len window upweight multiplier".split()
)
_COUNT_NAMES = frozenset({"d", "m", "k", "t", "t0", "t0s", "head", "hidden"})  # whole names: "t_min" is none
_UNIT_WORDS = frozenset({"fraction", "prob", "momentum", "dropout", "density", "tolerance"})
_POSITIVE_WORDS = frozenset({"lr"})
_NON_NEGATIVE_WORDS = frozenset({"decay", "tau", "rho", "eta", "noise", "sigma", "sigma0"})
# Lightning's "no limit" / "all" is -1
_MINUS_ONE_OK = frozenset({"trainer.max_epochs", "trainer.max_steps", "trainer.num_sanity_val_steps"})
# dotted keys where inf or nan is a meaningful value (none yet): every other float must be finite
_NONFINITE_OK: frozenset[str] = frozenset()


def _resolved(cfg: DictConfig) -> dict:
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception as e:  # an interpolation that does not resolve
        key = getattr(e, "full_key", "") or "config"
        text = " ".join(str(e).split()).split(" full_key:")[0]  # OmegaConf appends a multi-line key / type block
        raise BenchError(f"{key}: {text[:300]}") from None
    plain.pop("hydra", None)
    return plain


def _leaves(node: Any, key: str = ""):
    """(dotted key, value) of every scalar; list elements keep their list's key plus ``[i]``."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{key}[{i}]")
    else:
        yield key, node


def _value_rule(key: str) -> tuple[Callable[[Any], bool], str] | None:
    """(check, what is allowed) for a key by its name, or None."""
    name = re.sub(r"\[\d+\]$", "", key).rsplit(".", 1)[-1].lower()
    words = set(name.split("_"))
    real = lambda v: _is_number(v) and not isinstance(v, str)
    if "seed" in name:
        return None
    if name.endswith("_s"):
        return lambda v: real(v) and float(v) >= 0, "a number of seconds >= 0"
    if name.endswith("step_size"):  # a step's length, not a count
        return lambda v: real(v) and float(v) > 0, "a positive number"
    if words & _COUNT_WORDS or name in _COUNT_NAMES:
        low = -1 if re.sub(r"\[\d+\]$", "", key) in _MINUS_ONE_OK else 0
        allowed = "an integer >= 0" if low == 0 else "an integer >= 0, or -1 for no limit"
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, allowed
    if words & _UNIT_WORDS:
        return lambda v: real(v) and 0 <= float(v) <= 1, "a number in [0, 1]"
    if words & _POSITIVE_WORDS:
        return lambda v: real(v) and float(v) > 0, "a positive number"
    if words & _NON_NEGATIVE_WORDS:
        return lambda v: real(v) and float(v) >= 0, "a number >= 0"
    return None


def check_numbers(plain: dict) -> None:
    """Every float of the resolved config is finite, and every value whose key names a count, a size, a duration,
    a rate or a fraction is in its range (None, a key's "unset", passes)."""
    for key, value in _leaves(plain):
        if key.startswith(("task.", "hydra.")) or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value) and key not in _NONFINITE_OK:
            raise _bad(key, value, "a finite number")
        rule = _value_rule(key)
        if rule is not None and not rule[0](value):
            raise _bad(key, value, rule[1])


_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


def _accepted_keywords(fn: Callable) -> tuple[set[str], bool]:
    """(the keyword arguments ``fn`` takes, whether it takes any keyword). A class is followed up its bases while
    each ``__init__`` passes ``**kwargs`` on."""
    if inspect.isclass(fn):
        inits = [c.__dict__["__init__"] for c in inspect.getmro(fn) if "__init__" in c.__dict__]
    else:
        inits = [fn]
    names: set[str] = set()
    for init in inits:
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):  # a builtin without a signature: cannot tell
            return names, True
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names - {"self"}, False
    return names, True


def _components(node: Any, key: str = ""):
    """(dotted key, mapping) of every mapping with a ``_target_``."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield key, node
        for k, v in node.items():
            yield from _components(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _components(v, f"{key}[{i}]")


def check_targets(plain: dict) -> None:
    """Every component's keys are arguments of its ``_target_`` (checked against the signature before anything is
    built, so ``+optimizer.nope=1`` is one line instead of a TypeError after the data were built). Attack configs
    carry the harness's own keys and are checked by :func:`bench.attacks.factory.check_attack`."""
    from hydra.utils import get_object

    for key, node in _components(plain):
        if key == "task.protocol" or key.startswith("hydra") or key.rsplit(".", 1)[-1].endswith("attack"):
            continue
        target = str(node["_target_"])
        try:
            fn = get_object(target)
        except Exception as e:  # noqa: BLE001 - ImportError, AttributeError or Hydra's own: the line says which
            raise BenchError(
                f"{key}._target_={target} cannot be imported ({type(e).__name__}); check the name and that its "
                "package is installed"
            ) from None
        accepted, open_ = _accepted_keywords(fn)
        if open_:
            continue
        for k in node:
            if k not in accepted and k not in _HYDRA_KEYS:
                close = difflib.get_close_matches(str(k), sorted(accepted), n=1, cutoff=0.6)
                hint = f"did you mean `{close[0]}`? " if close else ""
                raise BenchError(
                    f"{key}.{k} is not an option of {target}: {hint}its options are "
                    f"{', '.join(sorted(accepted)) or 'none'} (remove {key}.{k})"
                )


def _check_trainer(cfg: DictConfig) -> None:
    """A GPU trainer on a machine without one, or values Lightning refuses: one line now, not Hydra's block when
    the first stage builds its trainer. The trainer is cheap to build (nothing is written until it runs)."""
    tcfg = cfg.get("trainer")
    if tcfg is None or "_target_" not in tcfg:
        return
    accelerator = str(tcfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BenchError(
                f"trainer.accelerator={accelerator}: torch sees no CUDA GPU on this machine; run with trainer=cpu "
                "(or trainer=ddp_cpu for several CPU processes)"
            )
    from hydra.utils import instantiate

    try:
        instantiate(
            tcfg,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except Exception as e:  # noqa: BLE001 - Lightning raises TypeError, ValueError, MisconfigurationException
        cause = e.__cause__ or e
        text = " ".join(str(cause).split()) or type(cause).__name__
        named = [k for k in re.findall(r"`(\w+)`", text) if k in tcfg]
        where = ", ".join(f"trainer.{k}={tcfg[k]!r}" for k in named) or "the trainer config"
        raise BenchError(f"{where} is not allowed: Lightning says: {text[:300]}") from None


def _check_data_files(cfg: DictConfig) -> None:
    """Build the datamodule object (its constructor only; the data are read in ``setup``), so a dataset whose files
    are missing is reported first, as the cause, before a task asks for what depends on it (e.g. its radius)."""
    data = cfg.get("data")
    if data is None or "_target_" not in data:
        return
    from hydra.utils import instantiate

    from bench.harness.run import user_error

    try:
        instantiate(data)
    except Exception as e:  # noqa: BLE001 - only the module's own one-line errors are reported here
        cause = user_error(e)
        if cause is not None:
            raise cause from None
        # anything else (a constructor that needs what the task passes in) is the build's to report


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
