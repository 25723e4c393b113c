"""Compose configs in-process (``verify``, tests) exactly as ``bench fit`` does on the command line."""

from __future__ import annotations

from omegaconf import DictConfig

from bench.harness.registry import check_overrides, conf_dir


def compose(overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_overrides(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))
