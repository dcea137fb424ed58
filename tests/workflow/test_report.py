"""The run report: made by the default run, gathered by `snakemake --report`, shown by a browser.

The browser part opens the report in Debian's headless Chromium, goes through its menu the way a
reader would (a category, then a result's view button), takes a screenshot and dumps the DOM:
the table or figure must be on screen (OCR of the table, pixel statistics of the figure) and be
exactly the file the workflow made.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imagedepot.report import REPORT_FILES

pytestmark = pytest.mark.workflow

WINDOW = (1400, 2000)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_pieces_are_made_by_the_default_run_and_never_staged(demo_run: Path) -> None:
    report = demo_run / "results" / "report"
    made = sorted(p.name for p in report.iterdir())
    assert made == sorted(REPORT_FILES.values())
    # trusted zone: private files
    assert all((p.stat().st_mode & 0o077) == 0 for p in report.iterdir())

    summary = json.loads((demo_run / "results" / "summary.json").read_text())
    accounting = (report / "accounting.html").read_text()
    assert f"found {summary['found']} = {summary['processed']} processed" in accounting
    assert '<table id="accounting">' in accounting
    quarantine = html.unescape((report / "quarantine.html").read_text())
    for q in summary["quarantined_items"] + summary["excluded_items"]:
        assert q["reason"] in quarantine
    assert "IM_CORRUPT" in quarantine
    policies = (report / "policies.html").read_text()
    assert "Policy demo-cohort: settings" in policies and "clean_pixel_data" in policies
    assert "images blanked by pixel-cleaning rule" in policies
    benchmarks = (report / "benchmarks.html").read_text()
    for rule in ("scan_inputs", "convert_batch", "deidentify_batch", "summarize_run"):
        assert f"<td>{rule}</td>" in benchmarks

    # The thumbnails of both kinds of blanking exist in the trusted zone...
    thumbs = sorted(p.name for p in (demo_run / "results" / "deid").rglob("*.png"))
    assert any(".rules.before.png" in n for n in thumbs), thumbs
    assert any(n.endswith(".before.png") and ".rules." not in n for n in thumbs), thumbs
    # ...and nothing of the report or of the thumbnails leaves it.
    secret = {_sha256(p) for p in report.iterdir()}
    secret |= {_sha256(p) for p in (demo_run / "results" / "deid").rglob("*.png")}
    for out in ("stage", "bia", "bids"):
        for f in (demo_run / "results" / out).rglob("*"):
            assert "pixeltext-thumbnails" not in f.parts
            assert not f.is_file() or _sha256(f) not in secret, f


@pytest.fixture(scope="module")
def report_html(demo_run: Path, run_snakemake) -> Path:
    """`snakemake --report report.html` after the run (what the README says to do)."""
    out = demo_run / "report.html"
    proc = run_snakemake(demo_run, "--report", str(out))
    log = proc.stdout + proc.stderr
    for name in REPORT_FILES.values():
        assert f"Adding {name}" in log, log
    assert out.stat().st_size > 100_000
    return out


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run does)")
    return exe


#: Goes to a result through the report's own menu: the category, then the result's view button
#: (found by its label), then sets the page title to say how far it got.
_DRIVER = """
<script>
(function () {
  function link(text) {
    const a = Array.from(document.querySelectorAll("a")).find(x => x.textContent.trim() === text);
    if (!a) { document.title = "no menu entry " + text; return false; }
    a.click();
    return true;
  }
  function view(label) {
    const row = Array.from(document.querySelectorAll("tr")).find(r => r.textContent.includes(label));
    const button = row && row.querySelector("a[type=button]");
    if (!button) { document.title = "no result " + label; return false; }
    button.click();
    return true;
  }
  setTimeout(function () {
    if (CATEGORY === null) { document.title = "shown"; return; }
    if (!link(CATEGORY)) return;
    setTimeout(function () { if (view(LABEL)) document.title = "shown"; }, 500);
  }, 500);
})();
</script>
"""


def _render(report: Path, tmp: Path, category: str | None, label: str | None):
    """Screenshot (PIL image) and DOM of the report after going to ``label`` in ``category``."""
    from PIL import Image

    exe = _chromium()
    page = report.read_text(encoding="utf-8")
    head, body_end, tail = page.rpartition("</body>")  # the last one: scripts hold the others
    driver = _DRIVER.replace("CATEGORY", json.dumps(category)).replace("LABEL", json.dumps(label))
    driven = tmp / "report.html"
    driven.write_text(head + driver + body_end + tail, encoding="utf-8")
    shot = tmp / "screen.png"
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", f"--screenshot={shot}",
        "--dump-dom", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=8000",
        driven.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    dom = proc.stdout
    title = re.search(r"<title>([^<]*)</title>", dom)
    assert title and title.group(1) == "shown", title and title.group(1)
    with Image.open(shot) as im:
        screen = im.convert("RGB")
    assert screen.size == WINDOW
    return screen, dom


def _navbar_edge(screen) -> int:
    """Where the report's navigation bar (a grey column on the left, as wide as its longest
    entry) ends: the first pixel, low on the screen, of another colour than its left edge."""
    import numpy as np

    row = np.asarray(screen)[WINDOW[1] // 2, :, :].astype(int)
    differs = np.flatnonzero(np.abs(row - row[2]).sum(axis=-1) > 30)
    assert differs.size and 150 < differs[0] < WINDOW[0] // 2, differs[:5]
    return int(differs[0])


def _content_stats(screen) -> tuple[float, int]:
    """Standard deviation of the grey levels and number of distinct colours right of the menu."""
    import numpy as np

    content = np.asarray(screen.crop((_navbar_edge(screen), 0, *WINDOW)))
    colours = len(np.unique(content.reshape(-1, 3), axis=0))
    return float(content.mean(axis=-1).std()), colours


def _ocr(screen, tmp: Path) -> str:
    exe = shutil.which("tesseract")
    if exe is None:
        pytest.skip("tesseract is not installed (it is a system requirement of the package)")
    crop = tmp / "content.png"
    screen.crop((_navbar_edge(screen) + 2, 0, WINDOW[0], 1300)).save(crop)
    proc = subprocess.run([exe, str(crop), "-"], capture_output=True, text=True, timeout=120)
    return " ".join(proc.stdout.split())


def _embedded(dom: str, tag: str, name: str) -> bytes:
    """The bytes of the data URI the content pane shows (``<iframe src>`` or ``<img src>``)."""
    found = re.search(
        rf'<{tag} src="data:[^;]+;charset=utf8;filename={re.escape(name)};base64,([^"]+)"', dom
    )
    assert found, f"no <{tag}> showing {name} in the rendered page"
    return base64.b64decode(found.group(1))


def test_landing_page_lists_every_category(report_html: Path, tmp_path: Path) -> None:
    screen, dom = _render(report_html, tmp_path, None, None)
    for category in ("1. Accounting", "2. Quarantine", "3. Policies", "4. Images",
                     "5. Time and memory"):  # fmt: skip
        assert f"<span>{category}</span>" in dom
    assert "imagedepot run report" in dom and "Trusted zone only." in dom
    std, colours = _content_stats(screen)  # a blank page: 0 and 1
    assert std > 5 and colours > 100, (std, colours)


@pytest.mark.parametrize(
    ("category", "label", "name", "words"),
    [
        (
            "1. Accounting",
            "inputs per dataset (table)",
            "accounting.html",
            [
                r"Inputs per dataset",
                r"found\s*{found}\s*=\s*{processed}\s*processed\s*\+\s*{quarantined}\s*quarantined",
                r"all datasets",
                r"micro-cells",
            ],
        ),
        (
            "2. Quarantine",
            "every quarantine and exclusion reason",
            "quarantine.html",
            [r"Quarantine and exclusions", r"quarantined", r"no consent"],
        ),
        (
            "3. Policies",
            "options and actions counted (table)",
            "policies.html",
            [r"demo-cohort", r"clean.pixel.data", r"removed \(X\)"],
        ),
    ],
    ids=["accounting", "quarantine", "policies"],
)
def test_tables_are_on_screen(
    report_html: Path, demo_run: Path, tmp_path: Path, category, label, name, words
) -> None:
    screen, dom = _render(report_html, tmp_path, category, label)
    assert label in dom  # the category's results table lists it
    shown = _embedded(dom, "iframe", name)
    assert shown == (demo_run / "results" / "report" / name).read_bytes()
    assert b"<table" in shown
    std, colours = _content_stats(screen)
    assert std > 5 and colours > 20, (std, colours)
    counts = json.loads((demo_run / "results" / "summary.json").read_text())
    text = _ocr(screen, tmp_path)
    for pattern in words:
        pattern = pattern.format(**{k: counts[k] for k in ("found", "processed", "quarantined")})
        assert re.search(pattern, text, re.IGNORECASE), (pattern, text)


@pytest.mark.parametrize(
    ("category", "label", "name"),
    [
        ("1. Accounting", "inputs per dataset (chart)", "accounting.png"),
        ("4. Images", "burned-in text: before and after", "blanked.png"),
        ("4. Images", "OME-Zarr: every image at every level", "ome-zarr.png"),
        ("4. Images", "NIfTI: mid-slices in three planes", "nifti.png"),
        ("5. Time and memory", "per rule (chart)", "benchmarks.png"),
    ],
    ids=["accounting-chart", "blanked", "ome-zarr", "nifti", "benchmarks"],
)
def test_figures_are_on_screen(
    report_html: Path, demo_run: Path, tmp_path: Path, category, label, name
) -> None:
    import cv2
    import numpy as np

    screen, dom = _render(report_html, tmp_path, category, label)
    assert label in dom
    shown = _embedded(dom, "img", name)
    figure = demo_run / "results" / "report" / name
    assert shown == figure.read_bytes()
    std, colours = _content_stats(screen)
    assert std > 5 and colours > 100, (std, colours)
    # The figure is on screen as drawn: its central patch is found in the screenshot (at its
    # own size, or shrunk to the width of the content pane).
    fig = cv2.imread(str(figure), cv2.IMREAD_GRAYSCALE)
    grey = cv2.cvtColor(np.asarray(screen), cv2.COLOR_RGB2GRAY)
    best = 0.0
    for scale in np.arange(1.0, 0.69, -0.02):
        small = cv2.resize(fig, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = small.shape
        patch = small[max(0, h // 2 - 100) : h // 2 + 100, max(0, w // 2 - 100) : w // 2 + 100]
        best = max(best, float(cv2.matchTemplate(grey, patch, cv2.TM_CCOEFF_NORMED).max()))
        if best > 0.9:
            break
    assert best > 0.9, best
