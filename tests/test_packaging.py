"""A wheel install works without the repository: the configs ship inside the package (bench/conf, copied from the
top-level conf/ at build time) and ``conf_dir()`` finds them."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_configs_and_runs_from_another_folder(tmp_path):
    src = tmp_path / "src"
    # a copy of the sources, so the build leaves nothing (build/, egg-info) in the working tree
    shutil.copytree(ROOT / "bench", src / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", src / "conf")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("bench/conf/") for n in names if n.startswith("bench/conf/")}
    assert shipped == {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_CONF_DIR", "BENCH_INCLUDE")}
    env["PYTHONPATH"] = str(unpacked)
    probe = subprocess.run(
        [sys.executable, "-c", "import bench, bench.harness.registry as r; print(bench.__file__); print(r.conf_dir())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    where, conf = probe.stdout.split()
    assert Path(where).is_relative_to(unpacked) and Path(conf) == unpacked / "bench" / "conf"
    listed = subprocess.run(
        [sys.executable, "-m", "bench", "list"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} >= {"neural_collapse", "group_priors"}


def test_conf_dir_prefers_the_repository_copy():
    from bench.harness.registry import conf_dir

    assert conf_dir() == ROOT / "conf"


def test_slurm_launcher_composes_a_multirun_config():
    """The optional extra ``slurm`` (hydra-submitit-launcher): ``hydra/launcher=slurm`` composes with bench's
    defaults; no job is submitted."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bench.harness.registry import conf_dir

    GlobalHydra.instance().clear()
    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "task=neural_collapse", "method=st"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.timeout_min == 240 and launcher.tasks_per_node == 1
    assert cfg.task.name == "neural_collapse"
    GlobalHydra.instance().clear()
