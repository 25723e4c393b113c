"""W&B sweep configs use the standard command form and every parameter composes into a valid config."""

import itertools

import pytest
import yaml

from bench.harness.config import compose
from bench.harness.registry import conf_dir

SWEEPS = sorted((conf_dir() / "sweep").glob("*.yaml"))


def test_the_documented_sweeps_are_complete_wandb_grids():
    """Every sweep the docs name exists, and each file has what ``wandb sweep`` needs: a grid over named values
    and a metric the task reports."""
    import re

    docs = (conf_dir().parent / "README.md").read_text() + (conf_dir().parent / "docs" / "wandb.md").read_text()
    named = set(re.findall(r"conf/sweep/(\w+)\.yaml", docs))
    assert named and named <= {p.stem for p in SWEEPS}, f"documented sweeps missing from conf/sweep: {named}"
    for path in SWEEPS:
        sweep = yaml.safe_load(path.read_text())
        assert {"program", "method", "metric", "parameters", "command"} <= set(sweep), path.name
        assert sweep["program"] == "bench" and sweep["method"] == "grid", path.name
        assert sweep["metric"]["goal"] in ("maximize", "minimize"), path.name
        params = sweep["parameters"]
        assert "task" in params and all(("values" in v) != ("value" in v) for v in params.values()), path.name
        cfg = compose([f"task={params['task']['value']}"])
        reported = {m.name for m in cfg.task.headline_metrics} | {"test/acc", "test/robust_acc"}
        assert sweep["metric"]["name"] in reported, f"{path.name} optimises a metric the task does not report"


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
    for combo in itertools.product(*choices.values()):  # every run of the grid composes
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
