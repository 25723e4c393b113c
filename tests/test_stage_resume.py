"""Multi-stage resume (issue 26): a run interrupted between stages and resumed with ``ckpt_path=last`` equals the
uninterrupted run, in every multi-stage task; a finished stage's callback states come back with it; a cached stage is
never stored from a computation that replayed stages; ``done.json`` damage is one line; robust_erm's linear part
checkpoints and resumes; ``ckpt_path=<file>`` is used or refused, never ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.harness.context import RunContext
from bench.harness.errors import BenchError, RunInterrupted


def fit(overrides, base: Path, **extra_overrides):
    """One in-process run with its outputs under ``base`` (loggers off, run id fixed: folders a and b compare)."""
    from bench.harness.config import compose
    from bench.harness.run import run_fit

    extra = [f"results_dir={base / 'results'}", f"work_dir={base / 'runs'}", "print_summary=false", "logger=none"]
    extra += ["run_id=r", *(f"{k}={v}" for k, v in extra_overrides.items())]
    return run_fit(compose(list(overrides) + extra))


def interrupt_before_second_stage(monkeypatch) -> list[str]:
    """Ctrl+C when the protocol asks ``ctx.fit`` for a second stage: the first one has finished (its done marker
    written), nothing of the second has run. Returns the stages fitted so far."""
    original = RunContext.fit
    fitted: list[str] = []

    def fit_or_stop(self, module, datamodule, stage="main", *args, **kwargs):
        if fitted and stage not in fitted:
            raise KeyboardInterrupt
        fitted.append(stage)
        return original(self, module, datamodule, stage, *args, **kwargs)

    monkeypatch.setattr(RunContext, "fit", fit_or_stop)
    return fitted


def assert_same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diff, f"{len(diff)} of {len(a)} metrics differ after resume: {dict(list(diff.items())[:5])}"


# Every task whose protocol fits more than one stage, at its smoke profile, with a config that has several stages;
# and, where stages are cached across runs, a second config that reuses the cache (another method).
MULTI_STAGE = {
    "galaxy_distillation": (["method=mtt"], ["method=adaptive"]),
    "robust_pruning": (["method=el2n"], ["method=forgetting"]),
    "group_priors": (["method=gap_last_layer"], ["method=dfr"]),
    "iteration_heads": (["pipeline=transfer"], None),
    "collapse_regression": ([], None),
    "collapse_tails": ([], None),
    "bnn_attacks": ([], None),
    "robust_erm": (["part=network", "network.train_eps=[0.0,0.1]"], None),
}


@pytest.mark.parametrize("task", sorted(MULTI_STAGE))
def test_resume_between_stages_equals_the_uninterrupted_run(task, tmp_path, monkeypatch):
    own, sharing = MULTI_STAGE[task]
    ov = [f"task={task}", "profile=smoke", *own]
    fitted = interrupt_before_second_stage(monkeypatch)
    with pytest.raises(RunInterrupted):
        fit(ov, tmp_path / "a")
    assert len(fitted) == 1, "the task fitted a single stage: it is not multi-stage under this config"
    (done,) = (tmp_path / "a" / "runs" / task / "r" / "stages").glob(f"{fitted[0]}/done.json")
    monkeypatch.undo()

    resumed = fit(ov, tmp_path / "a", ckpt_path="last")
    whole = fit(ov, tmp_path / "b")
    assert_same_metrics(resumed["metrics"], whole["metrics"])
    assert resumed["validity"] == whole["validity"]
    assert resumed["artifacts"].keys() == whole["artifacts"].keys()
    if sharing is not None:
        # the cache the resumed run left is not poisoned: a run reusing it equals one on a cache built in one go
        other_a = fit([*ov, *sharing], tmp_path / "a")
        other_b = fit([*ov, *sharing], tmp_path / "b")
        assert_same_metrics(other_a["metrics"], other_b["metrics"])


def _galaxy_run_with_one_finished_expert(tmp_path, monkeypatch) -> Path:
    """galaxy_distillation (experts in a cached stage) interrupted after expert0: returns expert0's stage folder."""
    interrupt_before_second_stage(monkeypatch)
    with pytest.raises(RunInterrupted):
        fit(["task=galaxy_distillation", "profile=smoke"], tmp_path)
    monkeypatch.undo()
    return tmp_path / "runs" / "galaxy_distillation" / "r" / "stages" / "expert0"


def test_a_cached_stage_is_not_stored_from_replayed_stages(tmp_path, monkeypatch):
    """The resumed run replays expert0 from its done marker: its result is right for this run (the snapshots come
    back), but only a computation that trained every stage in one go is stored for other runs."""
    _galaxy_run_with_one_finished_expert(tmp_path, monkeypatch)
    fit(["task=galaxy_distillation", "profile=smoke"], tmp_path, ckpt_path="last")
    assert not list((tmp_path / "runs" / "cache" / "galaxy_distillation").rglob("result.pt"))
    fit(["task=galaxy_distillation", "profile=smoke", "method=adaptive"], tmp_path)
    assert len(list((tmp_path / "runs" / "cache" / "galaxy_distillation").rglob("result.pt"))) == 1


def test_a_done_marker_without_callback_states_redoes_the_stage(tmp_path, monkeypatch):
    """A done marker whose callback states are missing (written before they were kept) cannot be replayed
    faithfully: the stage is trained again, and the run equals the uninterrupted one."""
    expert0 = _galaxy_run_with_one_finished_expert(tmp_path / "a", monkeypatch)
    (expert0 / "callbacks.pt").unlink(missing_ok=True)  # absent before the fix
    resumed = fit(["task=galaxy_distillation", "profile=smoke"], tmp_path / "a", ckpt_path="last")
    whole = fit(["task=galaxy_distillation", "profile=smoke"], tmp_path / "b")
    assert_same_metrics(resumed["metrics"], whole["metrics"])


def test_a_damaged_done_marker_is_one_line(tmp_path, monkeypatch):
    expert0 = _galaxy_run_with_one_finished_expert(tmp_path, monkeypatch)
    done = expert0 / "done.json"
    done.write_text(done.read_text()[:10])  # truncated
    with pytest.raises(BenchError, match="done.json.*delete"):
        fit(["task=galaxy_distillation", "profile=smoke"], tmp_path, ckpt_path="last")


def test_done_marker_is_written_through_the_atomic_writer(tmp_path, monkeypatch):
    import bench.harness.context as context

    written = []
    original = context.atomic_write_text
    monkeypatch.setattr(
        context, "atomic_write_text", lambda path, text: (written.append(path.name), original(path, text))
    )
    fit(["task=robust_erm", "profile=smoke"], tmp_path)
    assert "done.json" in written


# -- robust_erm's linear part: checkpoints, resume equals the uninterrupted run -----------------------------------
LINEAR = ["task=robust_erm", "profile=smoke", "part=linear", "optimizer=cd", "optimizer.line_search=true"]


def test_robust_erm_linear_writes_last_ckpt_and_resumes_to_the_same_numbers(tmp_path):
    import torch

    # 4 Lightning steps of 50 optimizer steps; Ctrl+C at the start of the third
    interrupt = ["+callbacks.interrupt._target_=interrupt_helper.InterruptAtEpoch", "+callbacks.interrupt.epoch=2"]
    with pytest.raises(RunInterrupted):
        fit([*LINEAR, *interrupt], tmp_path / "a", checkpoint_min_interval_s=0)
    last = tmp_path / "a" / "runs" / "robust_erm" / "r" / "stages" / "main" / "last.ckpt"
    assert last.is_file(), "the linear part wrote no checkpoint: a killed run restarts from zero"
    ckpt = torch.load(last, weights_only=False)
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 100)  # epochs 0, 1 of 50 optimizer steps each
    never = ["+callbacks.interrupt._target_=interrupt_helper.InterruptAtEpoch", "+callbacks.interrupt.epoch=99"]
    resumed = fit([*LINEAR, *never], tmp_path / "a", checkpoint_min_interval_s=0, ckpt_path="last")
    whole = fit([*LINEAR, *never], tmp_path / "b", checkpoint_min_interval_s=0)
    assert_same_metrics(resumed["metrics"], whole["metrics"])


# -- ckpt_path=<file>: used, or refused in one line before training -----------------------------------------------
def test_a_named_checkpoint_no_stage_uses_is_refused_before_training(tmp_path, monkeypatch):
    """group_priors ERM trains stage erm, never a main stage from a checkpoint: a file from elsewhere (which starts
    the main stage) would be ignored. Refused before the first stage trains."""
    first = fit(["task=neural_collapse", "profile=smoke", "attack=none", "trainer.max_epochs=1"], tmp_path / "nc")
    mine = tmp_path / "mine.ckpt"
    shutil.copy(tmp_path / "nc" / "runs" / "neural_collapse" / first["run_id"] / "stages" / "main" / "final.pt", mine)
    trained = []
    original = RunContext.trainer
    monkeypatch.setattr(
        RunContext, "trainer", lambda self, stage, *a, **k: (trained.append(stage), original(self, stage, *a, **k))[1]
    )
    with pytest.raises(BenchError, match=r"ckpt_path=.*mine\.ckpt.*stage 'main'.*'erm'"):
        fit(["task=group_priors", "profile=smoke"], tmp_path, ckpt_path=str(mine))
    assert not trained, "refused only after training"
    assert not list((tmp_path / "results").rglob("*.json"))


def test_a_named_checkpoint_of_a_finished_stage_is_used(tmp_path):
    """ckpt_path=<the run's own stage file> continues that stage from it even when the stage has a done marker."""
    import torch

    base = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null"]
    fit([*base, "trainer.max_epochs=2"], tmp_path, checkpoint_min_interval_s=0)
    last = tmp_path / "runs" / "neural_collapse" / "r" / "stages" / "main" / "last.ckpt"
    assert (last.parent / "done.json").is_file()
    fit([*base, "trainer.max_epochs=3"], tmp_path, checkpoint_min_interval_s=0, ckpt_path=str(last))
    assert torch.load(last, weights_only=False)["epoch"] == 2  # trained on from the file: epoch 2 was added


def test_a_named_checkpoint_of_a_stage_the_run_never_trains_is_refused(tmp_path):
    """A file under the run folder names its stage by its folder; a stage the protocol has no use for (here every
    stage is finished and replayed) would leave it ignored: refused at the end, with no record."""
    base = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null"]
    fit([*base, "trainer.max_epochs=1"], tmp_path, checkpoint_min_interval_s=0)
    stages = tmp_path / "runs" / "neural_collapse" / "r" / "stages"
    (stages / "other").mkdir()
    shutil.copy(stages / "main" / "last.ckpt", stages / "other" / "last.ckpt")
    (tmp_path / "results").rename(tmp_path / "results_first")
    with pytest.raises(BenchError, match=r"ckpt_path=.*other.*trained no such stage"):
        fit([*base, "trainer.max_epochs=1"], tmp_path, ckpt_path=str(stages / "other" / "last.ckpt"))
    assert not list((tmp_path / "results").rglob("*.json"))


def test_a_stage_resumed_from_its_final_checkpoint_keeps_its_training_metrics(tmp_path):
    """Killed after the last epoch's checkpoint (during the test, before the done marker): the resumed stage trains
    no further epoch, yet its record has the training metrics the uninterrupted run logged."""
    base = ["task=neural_collapse", "profile=smoke", "attack=none", "callbacks.neural_collapse=null"]
    whole = fit([*base, "trainer.max_epochs=2"], tmp_path, checkpoint_min_interval_s=0)
    (tmp_path / "runs" / "neural_collapse" / "r" / "stages" / "main" / "done.json").unlink()
    resumed = fit([*base, "trainer.max_epochs=2"], tmp_path, checkpoint_min_interval_s=0, ckpt_path="last")
    assert "train/loss" in whole["metrics"]
    assert_same_metrics(resumed["metrics"], whole["metrics"])
