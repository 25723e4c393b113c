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
    assert sweep["command"] == ["${env}", "python", "-m", "bench", "fit", "${args_no_hyphens}"]
    params = sweep["parameters"]
    choices = {k: (v["values"] if "values" in v else [v["value"]]) for k, v in params.items()}
    for combo in itertools.islice(itertools.product(*choices.values()), 4):
        overrides = [f"{k}={v}" for k, v in zip(choices, combo)]
        cfg = compose(overrides)
        for k, v in zip(choices, combo):
            node = cfg
            if k in ("task", "experiment"):
                continue
            for part in k.split("."):
                node = node[part]
            assert node == v, k
