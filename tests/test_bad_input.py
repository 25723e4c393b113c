"""Bad input gets one line (issue 26, part D): every value checked by generic rules before training, a component's
keys checked against its ``_target_``'s signature, the trainer and the data files checked first, a checkpoint the
user names never called damaged-and-deletable, full disks and hostile files in the results folder named."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness.errors import BenchError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ["task=fixture", "profile=smoke"]
needs_no_gpu = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the refusal on a machine without a GPU"
)


def refused(overrides: list[str], tmp_path: Path) -> str:
    """The one line ``bench fit`` (in-process, composed as the CLI composes) refuses ``overrides`` with; nothing
    trained, nothing written outside ``tmp_path``."""
    from bench.harness.run import run_fit
    from bench.harness.validation import check_composition

    base = [f"results_dir={tmp_path / 'results'}", f"work_dir={tmp_path / 'runs'}", "print_summary=false"]
    with pytest.raises(BenchError) as e:
        run_fit(check_composition([*base, "logger=none", *overrides]))  # the test's overrides win
    message = str(e.value)
    assert "\n" not in message, message
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.json")), "trained or wrote a record"
    return message


@pytest.mark.parametrize(
    "overrides,needles",
    [
        # every value, by generic rules: finite floats, counts >= 0, ranges by key name, the l_inf radius in [0, 1]
        ([*FIXTURE, "attack=pgd_linf", "attack.eps=[1e300]"], ["attack.eps=[1e+300]", "[0, 1]"]),
        ([*FIXTURE, "optimizer.momentum=-1"], ["optimizer.momentum=-1", "in [0, 1]"]),
        ([*FIXTURE, "checkpoint_min_interval_s=abc"], ["checkpoint_min_interval_s='abc'", "seconds >= 0"]),
        (["task=group_priors", "profile=smoke", "gap.context_size=-1"], ["gap.context_size=-1", "integer >= 0"]),
        (["task=group_priors", "profile=smoke", "gap.tau=nan"], ["gap.tau=nan", "finite"]),
        (["task=neural_collapse", "profile=smoke", "module.train_steps=-2"], ["module.train_steps=-2", ">= 0"]),
        ([*FIXTURE, "model.hidden=[16,-4]"], ["model.hidden[1]=-4", "integer >= 0"]),
        # a component's keys against its _target_'s signature
        ([*FIXTURE, "+optimizer.nope=1"], ["optimizer.nope is not an option of torch.optim.SGD"]),
        ([*FIXTURE, "+data.nope=1"], ["data.nope is not an option of", "GaussianMixtureDataModule"]),
        # the trainer, before anything is built
        pytest.param([*FIXTURE, "trainer=gpu"], ["trainer.accelerator=gpu", "trainer=cpu"], marks=needs_no_gpu),
        pytest.param([*FIXTURE, "trainer=ddp"], ["trainer.accelerator=gpu", "trainer=cpu"], marks=needs_no_gpu),
        ([*FIXTURE, "trainer.devices=abc"], ["trainer.devices='abc'", "int > 0"]),
        # a file the user named is theirs: no "delete it"
        ([*FIXTURE, "init_weights=/etc/passwd"], ["init_weights=/etc/passwd cannot be read as a checkpoint"]),
        ([*FIXTURE, "init_weights=/no/such/weights.pt"], ["init_weights=/no/such/weights.pt: no such file"]),
        # the missing dataset is the cause: reported before the radius it would have declared
        (
            ["task=neural_collapse", "profile=smoke", "data=cifar10", "data.root=/no/such/folder"],
            ["cifar10: missing", "/no/such/folder/cifar-10-batches-py", "data.download=true"],
        ),
    ],
)
def test_bad_values_are_one_line_before_training(overrides, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written by mistake to a relative path lands here
    message = refused(overrides, tmp_path)
    for needle in needles:
        assert needle in message, message
    assert "delete" not in message and "Traceback" not in message


def test_unusable_work_dir_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    message = refused([*FIXTURE, f"work_dir={afile}"], tmp_path)
    assert f"work_dir={afile} is not writable" in message, message
    assert afile.read_text() == "not a folder"


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'tests'}:{ROOT}", OMP_NUM_THREADS="1", WANDB_MODE="offline")
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env
    )


# ~15 s each on 2 busy cores (a fresh process imports torch and Lightning): Hydra's own folder and job wrapper are
# only on this path, so the one-line promise is checked through the real command line
@pytest.mark.parametrize(
    "override,needle",
    [
        pytest.param("trainer=gpu", "trainer.accelerator=gpu: torch sees no CUDA GPU", marks=needs_no_gpu),
        ("work_dir={tmp}/afile", "work_dir={tmp}/afile is not writable"),
    ],
)
def test_bad_input_through_the_cli_is_one_line(override, needle, tmp_path):
    (tmp_path / "afile").write_text("")
    override, needle = override.format(tmp=tmp_path), needle.format(tmp=tmp_path)
    args = ["fit", "task=fixture", "logger=none", f"results_dir={tmp_path}/res", f"work_dir={tmp_path}/runs"]
    r = cli([*args, override], tmp_path)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.json"))


# -- checkpoints: another model's weights, a full disk ------------------------------------------------------------
def _fit(overrides: list[str], tmp_path: Path) -> dict:
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    base = [f"results_dir={tmp_path / 'results'}", f"work_dir={tmp_path / 'runs'}", "print_summary=false"]
    return run_fit(compose([*FIXTURE, *overrides, *base, "logger=none", "trainer.max_epochs=2"]))


def test_weights_of_another_model_are_one_line(tmp_path):
    first = _fit(["model.hidden=[16]"], tmp_path)
    stage = tmp_path / "runs" / "fixture" / first["run_id"] / "stages" / "main"
    for key, path in (("init_weights", stage / "final.pt"), ("ckpt_path", stage / "last.ckpt")):
        assert path.is_file()
        with pytest.raises(BenchError) as e:
            _fit(["model.hidden=[32]", f"{key}={path}"], tmp_path)
        message = str(e.value)
        assert "\n" not in message and f"{key}={path} holds weights of another model" in message, message
        assert "size mismatch" in message and "delete" not in message
        assert path.is_file()  # the user's file is kept


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    import torch

    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch", 0) >= 1 and "state_dict" in obj:  # the second last.ckpt
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(BenchError) as e:
        _fit(["checkpoint_min_interval_s=0"], tmp_path)
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    message = str(e.value)
    assert "\n" not in message and "No space left on device" in message, message
    assert str(last.parent) in message and "ckpt_path=last" in message
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0  # the previous one, whole
    assert [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")] == []


# -- the other commands ---------------------------------------------------------------------------------------
def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    from bench.__main__ import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--epochs", "-1"], "argument --epochs: '-1' is not allowed: give an integer >= 1"),
        (["--epochs", "0"], "argument --epochs: '0' is not allowed"),
        (["--repeats", "0"], "argument --repeats: '0' is not allowed"),
        (["--attack-repeats", "0"], "argument --attack-repeats: '0' is not allowed"),
        (["--epochs", "abc"], "argument --epochs: 'abc' is not allowed"),
    ],
)
def test_perf_arguments_are_checked_in_one_line(args, needle, capsys):
    rc, _, err = run_main(["perf", *args], capsys)
    assert rc != 0 and err.count("\n") == 1 and needle in err, err


def _a_valid_record(results: Path) -> None:
    """One committed reference record, so the leaderboard has something to build."""
    (src,) = sorted((ROOT / "leaderboard" / "records" / "collapse_regression").glob("*.json"))[:1]
    (results / "collapse_regression").mkdir(parents=True, exist_ok=True)
    (results / "collapse_regression" / src.name).write_text(src.read_text())


def _deep_json(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * 100_000 + "]" * 100_000)  # deeper than Python's JSON parser goes: RecursionError


def test_deeply_nested_json_in_results_is_skipped_not_a_crash(tmp_path, capsys):
    from bench.harness.console import verify_status
    from bench.harness.record import read_record

    _a_valid_record(tmp_path / "res")
    _deep_json(tmp_path / "res" / "fixture" / "deep.json")
    _deep_json(tmp_path / "res" / "fixture" / "verify" / "latest.json")
    with pytest.raises(ValueError, match="nested too deeply"):
        read_record(tmp_path / "res" / "fixture" / "deep.json")
    rc, _, err = run_main(["leaderboard", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb")], capsys)
    assert rc == 0 and "deep.json" in err, err
    assert verify_status("fixture", "1.0", tmp_path / "res") == "not verified"


def test_a_verify_summary_that_is_not_a_mapping_reads_as_not_verified(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "results" / "fixture" / "verify" / "latest.json"
    summary.parent.mkdir(parents=True)
    summary.write_text("[]")
    monkeypatch.chdir(tmp_path)  # bench list reads ./results
    rc, out, err = run_main(["list"], capsys)
    assert "Traceback" not in err
    assert any(line.startswith("fixture") and "not verified" in line for line in out.splitlines()), out


def test_leaderboard_out_naming_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "out.md"
    afile.write_text("mine")
    _a_valid_record(tmp_path / "res")
    rc, _, err = run_main(["leaderboard", "--results", str(tmp_path / "res"), "--out", str(afile)], capsys)
    assert rc == 1 and err.count("\n") == 1 and f"--out {afile} is not a folder" in err, err
    assert afile.read_text() == "mine"
