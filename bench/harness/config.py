"""Compose configs in-process (``verify``, tests) exactly as ``bench fit`` does on the command line."""

from __future__ import annotations

from omegaconf import DictConfig

from bench.harness.registry import check_overrides, conf_dir, include_dirs


def searchpath_overrides() -> list[str]:
    """The Hydra override that adds the include folders (``$BENCH_INCLUDE``) to the config search path."""
    dirs = include_dirs()
    return [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"] if dirs else []


def compose(overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_overrides(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=[*searchpath_overrides(), *overrides])
