"""An experiment belongs to the task it is named after (``conf/experiment/<task>_<name>.yaml``).

``experiment=neural_collapse_paper`` alone selects ``task=neural_collapse``; ``task=neural_collapse
experiment=group_priors_paper`` is refused (it would train neural_collapse with group_priors' data and settings).
An experiment whose name starts with no task's name is task-agnostic and combines with any task.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.harness.errors import BenchError


def owner_task(experiment: str, tasks: Iterable[str]) -> str | None:
    """The task an experiment is named after (the longest task name it starts with), or None."""
    owners = [t for t in tasks if experiment == t or experiment.startswith(t + "_")]
    return max(owners, key=len) if owners else None


def _values(argv: list[str], key: str) -> tuple[int, list[str]] | None:
    for i, a in enumerate(argv):
        if "=" in a and a.split("=", 1)[0].lstrip("+~") == key:
            return i, [v.strip() for v in a.split("=", 1)[1].split(",") if v.strip() not in ("", "null")]
    return None


def select_task(argv: list[str], tasks: Iterable[str]) -> list[str]:
    """``argv`` with ``task=<owner>`` added when only an experiment names the task; refuses a task / experiment
    mismatch in one line."""
    tasks = sorted(tasks)
    exp = _values(argv, "experiment")
    if exp is None or any(v.startswith(("choice(", "range(", "glob(")) for v in exp[1]):
        return argv
    owners = {e: owner_task(e, tasks) for e in exp[1]}
    named = _values(argv, "task")
    if named is None:
        found = sorted({o for o in owners.values() if o})
        if len(found) > 1:
            raise BenchError(
                f"the experiments {', '.join(exp[1])} belong to different tasks ({', '.join(found)}): "
                "run one task at a time, or give task=<name>"
            )
        return [*argv, f"task={found[0]}"] if found else argv
    for e, owner in owners.items():
        if owner and set(named[1]) != {owner}:
            raise BenchError(
                f"experiment={e} belongs to task {owner}, not {','.join(named[1])}: drop "
                f"task=... (experiment={e} selects task {owner}) or pick an experiment of that task"
            )
    return argv
