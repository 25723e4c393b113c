"""The command line: listing, and one clear line for bad input (no stack trace)."""

import subprocess
import sys

import pytest

from bench.harness.registry import tasks


def bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_list_shows_every_task_with_its_paper():
    r = bench("list")
    assert r.returncode == 0
    for name, t in tasks().items():
        line = next(row for row in r.stdout.splitlines() if row.startswith(name))
        assert f"arXiv:{t.arxiv}" in line and t.version in line


@pytest.mark.parametrize(
    "args, needle",
    [
        (["fit", "task=no_such_task"], "unknown task 'no_such_task'; known task options: "),
        (["fit", "task=neural_collapse", "data=nope"], "unknown data 'nope'; known data options: "),
        (["fit", "task=neural_collapse", "model=nope"], "unknown model 'nope'"),
        (["fit", "task=neural_collapse", "attack=nope"], "unknown attack 'nope'; known attack options: "),
        (["fit"], "no task given; add task=<name>"),
        (["verify"], "verify needs task=<name>"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_bad_input_gives_one_clear_line(args, needle, tmp_path):
    r = bench(*args, cwd=tmp_path)
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    if "known task options" in needle:
        assert "neural_collapse" in r.stderr


def test_missing_real_dataset_says_where_and_how(tmp_path):
    r = bench(
        "fit",
        "task=neural_collapse",
        "data=cifar10",
        "attack.eps=[0.03]",
        f"data.root={tmp_path}/nowhere",
        "logger=none",
        f"results_dir={tmp_path}/res",
        f"work_dir={tmp_path}/runs",
        cwd=tmp_path,
    )
    assert r.returncode == 1
    assert f"{tmp_path}/nowhere/cifar-10-batches-py" in r.stderr and "data.download=true" in r.stderr
    assert "Traceback" not in r.stderr
    assert not list((tmp_path / "res").rglob("*.json"))  # no record claiming success
