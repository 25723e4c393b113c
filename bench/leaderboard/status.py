"""A task's claim status, read from its latest verify summary (``<results>/<task>/verify/latest.json``).

Each claim reads PASS (its check passed), FAIL (a claim that gates verify failed) or trend (a trend claim, which
never gates, did not hold). A summary of another task version than the leaderboard shows, or of the smoke profile,
says so: its claims are not about the rows on the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ClaimLine:
    name: str
    status: str  # PASS | FAIL | trend
    expected: str
    measured: str


@dataclass
class ClaimStatus:
    claims: list[ClaimLine] = field(default_factory=list)
    version: str = ""
    profile: str = ""
    note: str = ""  # why the claims may not describe the table ("" when they do)

    def counts(self) -> str:
        """'3 PASS, 1 FAIL, 1 trend' (only the kinds present), or 'not verified'."""
        if not self.claims:
            return "not verified"
        parts = [f"{sum(c.status == s for c in self.claims)} {s}" for s in ("PASS", "FAIL", "trend")]
        return ", ".join(p for p in parts if not p.startswith("0 "))


def _measured(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_measured(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_measured(x) for x in v)
    return "–" if v is None else str(v)


def claim_status(results_dir: str | Path | None, task: str, version: str) -> ClaimStatus:
    """The claim status of ``task`` (``task`` must already match the task-name pattern). Missing or unreadable
    summaries give an empty status with a note, never an error: the leaderboard still builds."""
    if results_dir is None:
        return ClaimStatus()
    path = Path(results_dir) / task / "verify" / "latest.json"
    if not path.is_file():
        return ClaimStatus()
    try:
        summary = json.loads(path.read_text())
        lines = []
        for c in summary["claims"]:
            status = "PASS" if c["passed"] else ("trend" if c.get("trend") else "FAIL")
            lines.append(ClaimLine(str(c["name"]), status, str(c.get("expected", "")), _measured(c.get("measured"))))
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # RecursionError: nested too deeply
        return ClaimStatus(note=f"unreadable verify summary {path} ({type(e).__name__})")
    st = ClaimStatus(lines, str(summary.get("task_version", "")), str(summary.get("profile") or ""))
    notes = []
    if st.version and st.version != version:
        notes.append(f"verified at v{st.version}, table shows v{version}")
    if st.profile == "smoke":
        notes.append("smoke profile: not meaningful")
    st.note = "; ".join(notes)
    return st
