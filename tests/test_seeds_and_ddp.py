"""Determinism: one seed derivation for any integer seed in every task; posterior draws keyed by example (1 process
and 2 DDP processes agree on the same weights); DDP training records the mean loss over every process's shard."""

import json
import math

import pytest
from conftest import fit_in_subprocess

from bench.harness.registry import tasks
from bench.harness.seeding import SEED_RANGE, bounded_seed, derive_seed, generator, stage_seed

UNUSUAL_SEEDS = [-1, 2**32, 2**64 - 1]
# smoke profiles of 15-45 s each on 2 busy cores: the default run takes their 2**64 - 1 case, `-m slow` the others
# (all 30 cases together take about 5 minutes there)
SLOW_SMOKE = {"collapse_regression", "collapse_tails", "goldilocks"}


def _smoke_cases() -> list:
    return [
        pytest.param(task, seed, marks=[pytest.mark.slow] if task in SLOW_SMOKE and seed != 2**64 - 1 else [])
        for task in sorted(tasks())
        for seed in UNUSUAL_SEEDS
    ]


def test_seeds_in_range_are_kept_and_any_other_integer_is_mapped_into_it():
    # in range: the value itself (the reference records of small seeds stay bit-identical)
    assert [bounded_seed(v, "x") for v in (0, 1, 1234, SEED_RANGE - 1)] == [0, 1, 1234, SEED_RANGE - 1]
    mapped = [bounded_seed(v, "x") for v in (-1, -5, SEED_RANGE, 2**64 - 1, 2**64, 10**40)]
    assert all(0 <= v < SEED_RANGE for v in mapped) and len(set(mapped)) == len(mapped)
    assert bounded_seed(-1, "a") != bounded_seed(-1, "b")  # names separate streams
    assert stage_seed(7, "main") == derive_seed(7, "main") != derive_seed(7, "erm")
    assert generator(2**64 - 1, "x").initial_seed() == bounded_seed(2**64 - 1, "x")


@pytest.mark.parametrize(("task", "seed"), _smoke_cases())
def test_every_task_runs_its_smoke_profile_with_any_64_bit_seed(task, seed, run_bench):
    # 30 smoke runs; every task's data, stages and evaluation seed from the run seed (mnist1d's legacy numpy
    # seeding, the robust callback's noise, DFR's rng, the split, the posterior's evaluation draws)
    rec = run_bench([f"task={task}", "profile=smoke", f"seed={seed}"])
    assert rec["seed"] == seed
    for m in rec["headline_metrics"]:
        value = rec["metrics"].get(m["name"])
        assert value is not None and math.isfinite(value), f"{task} seed={seed}: {m['name']} = {value}"


@pytest.mark.parametrize(
    "overrides",
    [
        ["task=group_priors", "method=dfr", "seed=-5"],  # DFR's numpy generator, after the ERM stage
        ["task=neural_collapse", f"seed={2**64}"],  # past torch's range: the split, the robust callback's noise
    ],
)
def test_seeds_outside_every_generator_range_reach_the_end_of_the_run(overrides, run_bench):
    rec = run_bench([*overrides, "profile=smoke"])
    assert all(math.isfinite(rec["metrics"][m["name"]]) for m in rec["headline_metrics"])


def _fit(tmp_path, task: str, *overrides: str) -> None:
    fit_in_subprocess(tmp_path, f"task={task}", "profile=smoke", *overrides)


def _records(tmp_path, task: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / task).glob("*.json"))]


@pytest.mark.parametrize("model", ["bnn_mc_dropout", "bnn_mfvi"])
def test_posterior_evaluation_is_the_same_on_one_and_two_ddp_processes(tmp_path, model, run_bench):
    # ~30-80 s: the DDP run is a bench process starting 2 workers (process and gloo start-up on a busy machine)
    base = [f"model={model}", "bnn_attacks.shift.enabled=false", "data.eval_batch_size=64"]
    single = run_bench(["task=bnn_attacks", "profile=smoke", *base, "trainer.max_epochs=1"])
    weights = tmp_path / "runs" / "bnn_attacks" / single["run_id"] / "stages" / "main" / "final.pt"
    _fit(tmp_path, "bnn_attacks", *base, "trainer=ddp_cpu", "trainer.max_epochs=0", f"init_weights={weights}")
    (ddp,) = [r for r in _records(tmp_path, "bnn_attacks") if r["config"]["trainer"]["devices"] == 2]
    a, b = single["metrics"], ddp["metrics"]
    assert sum(v for k, v in b.items() if k.startswith("test/class_count/")) == 359  # each test example once
    compared = [k for k in a if not k.startswith("train/")]  # the DDP run did not train
    assert len(compared) > 30
    differ = {k: (a[k], b.get(k)) for k in compared if b.get(k) != pytest.approx(a[k], rel=1e-6, abs=1e-7)}
    assert not differ, differ


def test_ddp_training_records_the_mean_loss_over_both_processes(tmp_path, run_bench):
    # ~30-70 s: the DDP run is a bench process starting 2 workers (process and gloo start-up on a busy machine)
    # no random draws in training (fixture.input_noise=0): 2 processes with batch 32 each take the steps of one
    # process with batch 64 (the union of the two shards' batches), so the mean over both shards' losses is the
    # single process's loss; rank 0's shard alone differs
    base = ["fixture.input_noise=0", "trainer.max_epochs=2"]
    single = run_bench(["task=fixture", "profile=smoke", *base, "data.batch_size=64"])
    _fit(tmp_path, "fixture", *base, "data.batch_size=32", "trainer=ddp_cpu")
    (ddp,) = [r for r in _records(tmp_path, "fixture") if r["config"]["trainer"]["devices"] == 2]
    assert ddp["config"]["trainer"]["strategy"] == "ddp"
    assert ddp["metrics"]["train/loss"] == pytest.approx(single["metrics"]["train/loss"], rel=1e-5)
