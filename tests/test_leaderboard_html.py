"""The HTML leaderboard in a real headless browser (Debian's chromium): it renders, has no page-level horizontal
overflow in a 1400 px window, every image loads, and the columns sort. The screenshot stays in pytest's temporary
folder (its path is printed). Without chromium this test fails: install it with `apt-get install -y chromium`."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_leaderboard import ACC, ROBUST, fixture_records, rec, results_folder

from bench.leaderboard.build import build_leaderboard

WIDE = [ROBUST, ACC] + [
    {"name": f"test/metric_{i}", "display": f"a long readable metric name {i}", "higher_is_better": i % 2 == 0}
    for i in range(12)
]

# Runs after the page's own script: measures the layout, waits for the images, clicks a header twice, and writes
# what it saw into the DOM, which --dump-dom prints.
PROBE = """
<script>
window.addEventListener("load", function () {
  var doc = document.documentElement, imgs = Array.prototype.slice.call(document.images);
  var table = document.querySelector("#task-alpha table.board"), th = table.tHead.rows[0].cells;
  function labels() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[1].textContent; });
  }
  var before = labels(); th[4].click(); var asc = labels(); th[4].click(); var desc = labels();
  var wide = Array.prototype.filter.call(document.querySelectorAll("section"), function (s) {
    return s.getBoundingClientRect().right > doc.clientWidth; }).map(function (s) { return s.id; });
  var out = {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, innerWidth: window.innerWidth,
             images: imgs.map(function (i) { return [i.getAttribute("src"), i.complete && i.naturalWidth > 0]; }),
             sections: document.querySelectorAll("section").length, wideSections: wide,
             before: before, asc: asc, desc: desc};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on PATH: the HTML leaderboard test needs it (Debian: apt-get install -y chromium)")


def run_chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_page_renders_without_overflow_and_every_image_loads(tmp_path):
    long_label = "a method with a rather long readable name/and a config that goes on and on"
    records = fixture_records() + [
        rec(
            "wide",
            lbl,
            s,
            0.5 + 0.1 * i,
            0.3 + 0.05 * s,
            headline=WIDE,
            extra={f"test/metric_{k}": 1000.0 * k + s for k in range(12)},
        )
        for i, lbl in enumerate(["x", long_label])
        for s in (0, 1)
    ]
    out = tmp_path / "lb"
    build_leaderboard(records, out, results_dir=results_folder(tmp_path / "results"))
    page = (out / "index.html").read_text()
    assert "http://" not in page and 'src="http' not in page and "<link" not in page  # nothing from the network
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))

    p = run_chromium(["--window-size=1400,1000", "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], tmp_path)
    m = re.search(r'<pre id="probe">(.*?)</pre>', p.stdout, re.S)
    assert p.returncode == 0 and m, f"chromium failed (rc {p.returncode}): {p.stderr[-2000:]}"
    seen = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))

    assert seen["sections"] == 1 + 3  # the task index and alpha, beta, wide
    assert seen["clientWidth"] == 1400 and seen["scrollWidth"] <= seen["clientWidth"], seen  # no page-level overflow
    assert seen["wideSections"] == [], seen
    assert sorted(src for src, _ in seen["images"]) == ["alpha.png", "beta.png", "wide.png"]
    assert all(ok for _, ok in seen["images"]), seen["images"]
    assert seen["before"] == ["trades", "at", "st"]  # ranked by robust accuracy
    assert seen["asc"] == ["at", "trades", "st"] and seen["desc"] == ["st", "trades", "at"]  # sorted by accuracy

    shot = tmp_path / "leaderboard.png"
    p = run_chromium(["--window-size=1400,2400", f"--screenshot={shot}", (out / "index.html").as_uri()], tmp_path)
    assert p.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, p.stderr[-2000:]
    print(f"screenshot of the HTML leaderboard: {shot}")
