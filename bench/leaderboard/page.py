"""The HTML leaderboard: one self-contained page (inline style and script, no network), a section per task with
its table, claim status and figure. Every string from a record is HTML-escaped."""

from __future__ import annotations

import math
import struct
from html import escape

from bench.leaderboard.status import ClaimStatus
from bench.leaderboard.table import TaskTable
from bench.leaderboard.text import arxiv_url, direction, fmt

STYLE = """
body{margin:0;font:15px/1.45 system-ui,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;background:#f6f8fa}
main{max-width:1240px;margin:0 auto;padding:20px 24px}
h1{margin:8px 0 4px}h2{margin:0 0 6px;font-size:22px}h2 .ver{color:#57606a;font-weight:400;font-size:16px}
h3{font-size:16px;margin:18px 0 6px}
p{margin:4px 0 10px}a{color:#0969da}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:0 0 22px;min-width:0}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:14px;margin:4px 0}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 10px;text-align:right;vertical-align:top}
td{white-space:nowrap}th{background:#f6f8fa;font-weight:600;min-width:5em}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#eaeef2}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
.label{text-align:left;white-space:normal;min-width:14em;max-width:26em;overflow-wrap:anywhere}
.text{text-align:left;white-space:normal;min-width:7em;overflow-wrap:anywhere}.wide{min-width:13em}
.nowrap{text-align:left;white-space:nowrap}
.best{font-weight:700;background:#dafbe1}.sd,.n,.muted{color:#57606a}.n{font-size:12px}
.bad{color:#b00}.bad::after{content:" unreliable";font-size:12px}
.PASS{color:#1a7f37;font-weight:600}.FAIL{color:#cf222e;font-weight:600}.trend{color:#9a6700;font-weight:600}
table.claims td{white-space:normal;text-align:left}table.claims th{text-align:left}
table.claims td.measured{font-size:13px;color:#57606a;overflow-wrap:anywhere;max-width:30em}
figure{margin:14px 0 0}img{max-width:100%;height:auto;display:block}figcaption{color:#57606a;font-size:13px}
.legend{color:#57606a;font-size:13px}
""".strip()

# Click a column header to sort by it (again to reverse); cells sort by their data-v number, empty ones last.
SCRIPT = """
(function(){
  function key(td){
    var v=td.getAttribute("data-v");
    return v===null?td.textContent.trim().toLowerCase():(v===""?null:parseFloat(v));
  }
  function sort(table,col,th){
    var asc=th.getAttribute("aria-sort")!=="ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.removeAttribute("aria-sort");});
    th.setAttribute("aria-sort",asc?"ascending":"descending");
    var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=key(a.cells[col]),y=key(b.cells[col]);
      if(x===null||y===null){return (x===null)-(y===null);}
      return (x<y?-1:x>y?1:0)*(asc?1:-1);
    });
    rows.forEach(function(r){body.appendChild(r);});
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"),function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,col){
      th.title=(th.title?th.title+" - ":"")+"click to sort";
      th.addEventListener("click",function(){sort(table,col,th);});
    });
  });
})();
""".strip()


def png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk follows the 8-byte signature
    return width, height


def _num(x: float) -> str:
    return "" if not math.isfinite(x) else repr(round(x, 10))


def _claims_summary(st: ClaimStatus) -> str:
    if not st.claims:
        return f'<span class="muted">{escape(st.note or "not verified")}</span>'
    parts = []
    for s in ("PASS", "FAIL", "trend"):
        k = sum(c.status == s for c in st.claims)
        if k:
            parts.append(f'<span class="{s}">{k} {s}</span>')
    note = f' <span class="muted">({escape(st.note)})</span>' if st.note else ""
    return ", ".join(parts) + note


def _paper(t: TaskTable) -> str:
    url = arxiv_url(t.arxiv)
    return f'<a href="{escape(url)}">arXiv:{escape(t.arxiv)}</a>' if url else "–"


def _index(tables: list[TaskTable], statuses: dict[str, ClaimStatus]) -> list[str]:
    out = [
        '<section id="tasks"><h2>Tasks</h2><div class="scroll"><table class="sortable index"><thead><tr>',
        '<th class="nowrap">task</th><th>version</th><th>paper</th><th>rows</th><th>runs</th>'
        '<th class="text">ranked by</th><th class="text">best</th><th class="text wide">claims</th>'
        "</tr></thead><tbody>",
    ]
    for t in tables:
        first = t.metrics[0] if t.metrics else None
        by = f"{escape(first.display)} {direction(first)}" if first else "–"
        best = (
            "; ".join(f"{escape(r.label)} ({fmt(r.cells[first.name].mean)})" for r in t.rows if r.rank == 1)
            if first
            else ""
        )
        out.append(
            f'<tr><td class="nowrap"><a href="#task-{t.task}">{escape(t.task)}</a></td><td>{escape(t.version)}</td>'
            f'<td>{_paper(t)}</td><td data-v="{len(t.rows)}">{len(t.rows)}</td><td data-v="{t.runs}">{t.runs}</td>'
            f'<td class="text">{by}</td><td class="text">{best or "–"}</td>'
            f'<td class="text wide">{_claims_summary(statuses[t.task])}</td></tr>'
        )
    out.append("</tbody></table></div></section>")
    return out


def _cell_html(c, row_n: int) -> str:
    if not math.isfinite(c.mean):
        return '<td data-v="">–</td>'
    classes = [k for k, on in (("best", c.best), ("bad", c.unreliable)) if on]
    cls = f' class="{" ".join(classes)}"' if classes else ""
    sd = f' <span class="sd">± {fmt(c.std)}</span>' if math.isfinite(c.std) else ""
    n = f' <span class="n">(n={c.n})</span>' if c.n != row_n else ""
    return f'<td data-v="{_num(c.mean)}"{cls}>{fmt(c.mean)}{sd}{n}</td>'


def _task_section(t: TaskTable, st: ClaimStatus, plot: tuple[str, bytes] | None) -> list[str]:
    out = [f'<section id="task-{t.task}"><h2>{escape(t.task)} <span class="ver">v{escape(t.version)}</span></h2>']
    if t.description:
        out.append(f"<p>{escape(t.description)}</p>")
    out.append(
        f"<p>Paper: {_paper(t)} &middot; {len(t.rows)} rows, {t.runs} runs &middot; claims: {_claims_summary(st)}</p>"
    )
    heads = ["<th>rank</th>", '<th class="label">method / config</th>', "<th>n</th>"]
    heads += [f'<th title="{escape(m.name)}">{escape(m.display)}&nbsp;{direction(m)}</th>' for m in t.metrics]
    out.append(
        '<div class="scroll"><table class="sortable board"><thead><tr>' + "".join(heads) + "</tr></thead><tbody>"
    )
    for r in t.rows:
        rank = f'<td data-v="{r.rank}">{r.rank}</td>' if r.rank is not None else '<td data-v="">–</td>'
        cells = [rank, f'<td class="label">{escape(r.label)}</td>', f'<td data-v="{r.n}">{r.n}</td>']
        cells += [_cell_html(r.cells[m.name], r.n) for m in t.metrics]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    out.append(
        '<p class="legend">Mean ± std over seeds (ddof = 1); n = seeds; (n=k): fewer seeds than the row; '
        "green: best in its column; ↑/↓: higher/lower is better; hover a header for the metric's name, "
        "click it to sort.</p>"
    )
    if plot:
        name, png = plot
        w, h = png_size(png)
        alt = f"{t.task}: {t.metrics[0].display} per method"
        out.append(
            f'<figure><img src="{escape(name)}" width="{w}" height="{h}" alt="{escape(alt)}">'
            f"<figcaption>{escape(t.metrics[0].display)} per row: mean ± std over seeds, dots are seeds."
            "</figcaption></figure>"
        )
    out.append("<h3>Claims</h3>")
    if st.claims:
        out.append(
            '<div class="scroll"><table class="claims"><thead><tr><th>claim</th><th>status</th><th>expected</th>'
            "<th>measured</th></tr></thead><tbody>"
        )
        for c in st.claims:
            out.append(
                f'<tr><td>{escape(c.name)}</td><td class="{c.status}">{c.status}</td><td>{escape(c.expected)}</td>'
                f'<td class="measured">{escape(c.measured)}</td></tr>'
            )
        out.append("</tbody></table></div>")
        if st.note:
            out.append(f'<p class="muted">Note: {escape(st.note)}.</p>')
    else:
        out.append(f'<p class="muted">Not verified: run <code>bench verify task={escape(t.task)}</code>.</p>')
    out.append("</section>")
    return out


def render_html(tables: list[TaskTable], statuses: dict[str, ClaimStatus], plots: dict[str, tuple[str, bytes]]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>bench leaderboard</title>",
        f"<style>\n{STYLE}\n</style></head><body><main>",
        "<h1>bench leaderboard</h1>",
        '<p class="muted">Generated by <code>python -m bench leaderboard</code> from result records; claims from '
        "each task's latest <code>bench verify</code> summary.</p>",
    ]
    parts += _index(tables, statuses)
    for t in tables:
        parts += _task_section(t, statuses[t.task], plots.get(t.task))
    parts.append(f"</main><script>\n{SCRIPT}\n</script></body></html>\n")
    return "\n".join(parts)
