"""Console output: a run's summary and a claim table (rich)."""

from __future__ import annotations

from collections.abc import Iterable

from bench.harness.claims import ClaimResult


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def print_run_summary(record: dict, max_rows: int = 30) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"{record['task']} v{record['task_version']} · {record['label']} · seed {record['seed']}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    display = {m["name"]: m["display"] for m in record["headline_metrics"]}
    head = [m for m in display if m in record["metrics"]]
    rest = [m for m in record["metrics"] if m not in head and "acc/" not in m and "count/" not in m]
    shown = (head + rest)[:max_rows]
    for k in shown:
        v = record["metrics"][k]
        flag = record["validity"].get(k, {}).get("reliable")
        name = f"{k} ({display[k]})" if k in display and display[k] != k else k
        t.add_row(name, _fmt(v) + ("  [red]unreliable[/red]" if flag is False else ""))
    console.print(t)
    hidden = len(record["metrics"]) - len(shown)
    if hidden > 0:
        console.print(f"({hidden} more metrics, per class / group / sweep point, are in the record)")
    if record["claims"]:
        print_claims(record["claims"], title="claims checkable from this run alone", profile=record.get("profile"))
    console.print(f"record: {record.get('_path')}   ({record['duration_s']:.1f} s)")


def print_claims(claims: Iterable[dict | ClaimResult], title: str = "claims", profile: str | None = None) -> None:
    """The claim table. Claims measured in the smoke profile (``profile`` names it) are shown as "not meaningful
    (smoke)": a smoke run checks the wiring, its numbers cannot confirm or refute a paper."""
    from rich.console import Console
    from rich.table import Table

    from bench.harness.console import is_smoke

    smoke = is_smoke(profile)
    t = Table(title=title)
    for col in ("claim", "measured", "expected", "result"):
        t.add_column(col, overflow="fold")
    for c in claims:
        c = c.to_dict() if isinstance(c, ClaimResult) else c
        res = "PASS" if c["passed"] else "FAIL"
        if c["trend"]:
            res += " (trend)"
        style = "green" if c["passed"] else ("yellow" if c["trend"] else "red")
        if smoke:
            res, style = f"not meaningful (smoke; {res})", "dim"
        t.add_row(c["name"], _fmt(c["measured"]), c["expected"], f"[{style}]{res}[/{style}]")
    Console().print(t)
