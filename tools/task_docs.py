"""Write (or ``--check``) ``docs/tasks/<task>.md`` from the task's own sources: its module docstring, its task
config (headline metrics, verify plan, comments), its claims, its paper experiment's comments, its smoke shrink and
the committed verify summary ``leaderboard/records/<task>/verify/latest.json``.

    python tools/task_docs.py            # every task under bench/tasks
    python tools/task_docs.py --check    # exit 1 naming the pages that differ from their sources
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def comments(path):
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        s = line.strip()
        if s.startswith("#") and "@package" not in s:
            out.append(s.lstrip("#").strip())
    return out


def inline_comments(path):
    out = []
    for line in path.read_text().splitlines():
        if "#" in line and not line.strip().startswith("#"):
            k, _, c = line.partition("#")
            out.append((k.rstrip(), c.strip()))
    return out


def fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items() if not isinstance(x, dict))
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def esc(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def page(task: str) -> str:
    """The Markdown page of one task."""
    from bench.harness.claims import load_claims

    tcfg = yaml.safe_load((ROOT / "conf/task" / f"{task}.yaml").read_text())
    spec = tcfg["task"]
    mod = importlib.import_module(f"bench.tasks.{task}")
    claims = load_claims(spec["claims"])
    exp = ROOT / "conf/experiment" / f"{task}_paper.yaml"
    smoke = ROOT / "conf/task_profile" / f"{task}_smoke.yaml"
    ver = ROOT / "leaderboard/records" / task / "verify/latest.json"
    v = json.loads(ver.read_text()) if ver.is_file() else None
    by_name = {c["name"]: c for c in (v or {}).get("claims", [])}
    L = [
        f"# {task} (v{spec['version']})",
        "",
        f"{spec['description']}. Paper: [arXiv:{spec['arxiv']}](https://arxiv.org/abs/{spec['arxiv']}).",
        "",
        f"Run it: `bench fit task={task}` (one run), `bench verify task={task}` (the paper's claims), "
        f"`bench fit task={task} profile=smoke` (seconds, wiring only).",
        "",
        "## Protocol and metrics",
        "",
        f"From the task's docstring (`bench/tasks/{task}/__init__.py`):",
        "",
        "```text",
        textwrap.dedent(mod.__doc__).strip(),
        "```",
        "",
        "Headline metrics (the leaderboard's columns, the first one sorts):",
        "",
    ]
    for m in spec["headline_metrics"]:
        L.append(
            f"- `{m['name']}` ({m.get('display', m['name'])}; "
            f"{'higher' if m.get('higher_is_better', True) else 'lower'} is better)"
        )
    plan = spec.get("verify", {})
    L += [
        "",
        "## Claims and their tolerances",
        "",
        f"`bench verify task={task}` runs the plan in `conf/task/{task}.yaml` (`task.verify`): overrides "
        f"`{' '.join(plan.get('overrides') or []) or '(none)'}`, {len(plan.get('runs') or [[]])} run(s) "
        f"x seeds {plan.get('seeds') or [0]}, then checks each claim (`{spec['claims']}`). A trend claim is reported "
        "but does not gate the verdict. The tolerance is in the claim's expected column; the check's docstring in "
        f"`bench/tasks/{task}/claims.py` argues any deviation from the paper's statement.",
        "",
    ]
    L += [
        "| claim | expected (the check) | gates | last committed verify (its task version below) |",
        "|---|---|---|---|",
    ]
    for c in claims:
        r = by_name.get(c.name)
        res = (
            "not in the committed summary"
            if r is None
            else (("PASS" if r["passed"] else "FAIL") + ": " + fmt(r["measured"]))
        )
        L.append(f"| {esc(c.name)} | {esc(c.expected)} | {'no (trend)' if c.trend else 'yes'} | {esc(res)} |")
    L += ["", "## Profiles and run times", ""]
    if v:
        n_runs = len(v.get("runs", []))
        if v.get("runs_cpu_s") is not None:
            cost = (
                f"its {n_runs} runs took {v['runs_cpu_s']} s CPU and {v['runs_wall_s']} s wall time, summed from "
                "their records (`bench verify --jobs 2` runs two at once on 2 cores)"
            )
        elif v.get("runs_wall_s") is not None:
            cost = (
                f"its {n_runs} runs took {v['runs_wall_s']} s wall time, summed from their records (some records "
                "predate the CPU-time field)"
            )
        else:
            cost = (
                f"{v['duration_s']} s wall time of the verify command over {n_runs} runs (runs whose records "
                "existed were reused, not re-timed)"
            )
        L.append(
            f"- paper profile (`bench verify task={task}`, experiment `{task}_paper`): the committed summary "
            f"`leaderboard/records/{task}/verify/latest.json` records {cost}; verdict "
            f"{'PASS' if v['passed'] else 'FAIL'} (task version {v.get('task_version')}, profile "
            f"{v.get('profile', 'not recorded')})."
        )
        if str(v.get("task_version")) != str(spec["version"]):
            L.append(
                f"  The summary is of v{v.get('task_version')}; the task is now v{spec['version']}: rerun "
                f"`bench verify task={task}` for current numbers."
            )
    else:
        L.append(f"- paper profile: no committed verify summary yet (run `bench verify task={task}`).")
    L.append(
        f"- smoke (`profile=smoke`, `conf/profile/smoke.yaml` + `conf/task_profile/{task}_smoke.yaml`): shrinks "
        'the run to seconds for tests; its claims are shown as "not meaningful (smoke)".'
    )
    if smoke.is_file():
        L += ["", "Smoke shrink:", "", "```yaml", smoke.read_text().strip(), "```"]
    L += ["", "## The paper profile and its deviations from the paper", ""]
    if exp.is_file():
        L += [f"`conf/experiment/{task}_paper.yaml` states them (its comments, verbatim):", ""]
        L += [f"> {c}" if c else ">" for c in comments(exp)]
        ic = inline_comments(exp)
        if ic:
            L += ["", "Settings with their reasons:", ""]
            L += [f"- `{esc(k.strip())}`: {esc(c)}" for k, c in ic]
    else:
        L.append("No paper experiment file: the defaults of the task config are the paper profile.")
    tc = [c for c in comments(ROOT / "conf/task" / f"{task}.yaml")]
    if tc:
        L += ["", f"From `conf/task/{task}.yaml`:", ""] + [f"> {c}" if c else ">" for c in tc]
    return "\n".join(L) + "\n"


def tasks() -> list[str]:
    return sorted(p.name for p in (ROOT / "bench" / "tasks").iterdir() if (p / "__init__.py").is_file())


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for task in [a for a in argv if not a.startswith("--")] or tasks():
        path = ROOT / "docs" / "tasks" / f"{task}.md"
        text = page(task)
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run python tools/task_docs.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
