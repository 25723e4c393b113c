"""W&B sweep configs use the standard command form and every parameter composes into a valid config."""

import itertools

import pytest
import yaml

from bench.harness.config import compose
from bench.harness.registry import conf_dir

SWEEPS = sorted((conf_dir() / "sweep").glob("*.yaml"))


def test_there_are_sweeps():
    assert SWEEPS


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_composes(path):
    sweep = yaml.safe_load(path.read_text())
    command = sweep["command"]
    assert command[:5] == ["${env}", "python", "-m", "bench", "fit"] and command[-1] == "${args_no_hyphens}"
    # a sweep's runs must report to the sweep: W&B online
    fixed = command[5:-1]
    assert "logger.wandb.offline=false" in fixed
    params = sweep["parameters"]
    choices = {k: (v["values"] if "values" in v else [v["value"]]) for k, v in params.items()}
    for combo in itertools.islice(itertools.product(*choices.values()), 4):
        overrides = [f"{k}={v}" for k, v in zip(choices, combo)]
        cfg = compose(overrides + fixed)
        assert cfg.logger.wandb.offline is False
        for k, v in zip(choices, combo):
            node = cfg
            if k in ("task", "experiment"):
                continue
            for part in k.split("."):
                node = node[part]
            assert node == v, k


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_does_not_vary_what_standard_training_ignores(path):
    """ST trains on clean data only: sweeping the training radius with method=st runs the same config twice."""
    params = yaml.safe_load(path.read_text())["parameters"]
    methods = params.get("method", {})
    methods = methods.get("values", [methods.get("value")]) if methods else []
    assert not ("st" in methods and "module.train_eps" in params), f"{path.name} sweeps module.train_eps for method=st"
