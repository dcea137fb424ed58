"""Benchmark: the package before and after a refactoring, on the same inputs, in one run.

Usage::

    python benchmarks/redesign/bench_redesign.py --before REV [--after REV] [--out DIR]

Checks out ``REV`` (and ``--after``, default the working tree) in temporary git worktrees, makes
the inputs once (a synthetic text-free CT series of 64 slices of 512 x 512, and a 3 x 4096 x 4096
uint16 OME-TIFF, tiled and deflated), then alternates before/after ``--pairs`` times:

* header-only DICOM de-identification of the series (``deidentify_dicom``, one process, OCR
  switched off in that process as ``benchmarks/pixels`` does: the refactoring is what is measured,
  not the OCR), best of 5 per turn;
* conversion of the OME-TIFF to OME-Zarr (``imagedepot convert ome-zarr --reader tifffile
  --threads 1``), wall time of the whole command.

Each turn runs in a fresh interpreter with ``PYTHONPATH`` pointing at the tree measured. Results go
to ``results.md`` in ``--out`` (default: this folder).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

DEID = """
import shutil, sys, time
from pathlib import Path
import imagedepot.deid.dicom as deid_dicom
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.pixeltext.dicom import PixelTextSettings
deid_dicom._Engine._text = lambda self, ds, path, rules: False
files = sorted(Path(sys.argv[1]).glob('*.dcm'))
out = Path(sys.argv[2])
best = 1e9
for _ in range(5):
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    deid_dicom.deidentify_dicom(files, out, policy_options=frozenset(),
        pseudonymizer=Pseudonymizer(key=b'k' * 32), subject='S1', force=True,
        skip_bad_files=True, workers=1, pixel_text=PixelTextSettings())
    best = min(best, time.perf_counter() - t)
print(best)
"""


def _worktree(rev: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(where), rev], check=True
    )
    return where


def _env(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree / "src"))


def _deid(tree: Path, series: Path, work: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", DEID, str(series), str(work / "deid-out")],
        env=_env(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _convert(tree: Path, tif: Path, work: Path) -> float:
    exe = Path(sys.executable).parent / "imagedepot"
    cmd = [str(exe), "convert", "ome-zarr", str(tif), str(work / "out.zarr")]
    cmd += ["--reader", "tifffile", "--threads", "1", "--force"]
    t = time.perf_counter()
    subprocess.run(cmd, env=_env(tree), capture_output=True, check=True)
    return time.perf_counter() - t


def _inputs(work: Path) -> tuple[Path, Path]:
    import numpy as np
    import tifffile

    from imagedepot.synthetic.burned_in import make_series

    series = work / "series"
    make_series(series, slices=64, rows=512)
    rng = np.random.default_rng(0)
    tif = work / "big.ome.tif"
    tifffile.imwrite(
        tif,
        rng.integers(0, 4000, (3, 4096, 4096)).astype(np.uint16),
        ome=True,
        metadata={"axes": "CYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2},
        tile=(512, 512),
        compression="zlib",
    )
    return series, tif


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision before the refactoring")
    ap.add_argument("--after", help="git revision after it (default: the working tree)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imagedepot-bench-redesign-") as tmp:
        work = Path(tmp)
        trees = {"before": _worktree(args.before, work / "before")}
        trees["after"] = _worktree(args.after, work / "after") if args.after else ROOT
        try:
            series, tif = _inputs(work)
            times: dict[str, dict[str, list[float]]] = {
                k: {"deid": [], "convert": []} for k in trees
            }
            for _ in range(args.pairs):
                for name, tree in trees.items():
                    times[name]["deid"].append(_deid(tree, series, work))
                    times[name]["convert"].append(_convert(tree, tif, work))
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(
                        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                        check=False,
                    )
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in times.items()}
    lines = [
        "# Before and after the refactoring",
        "",
        f"`python benchmarks/redesign/bench_redesign.py --before {args.before}"
        + (f" --after {args.after}" if args.after else "")
        + f"` ({args.pairs} alternating pairs, median; {platform.platform()}, "
        f"{os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.2f}).",
        "",
        "| measure | before | after | after / before |",
        "|---|---:|---:|---:|",
        f"| header-only DICOM de-identification, 64 slices of 512 x 512, one process (s, best of 5) "
        f"| {med['before']['deid']:.3f} | {med['after']['deid']:.3f} | "
        f"{med['after']['deid'] / med['before']['deid']:.2f} |",
        f"| OME-TIFF 3 x 4096 x 4096 uint16 to OME-Zarr, whole command (s) "
        f"| {med['before']['convert']:.2f} | {med['after']['convert']:.2f} | "
        f"{med['after']['convert'] / med['before']['convert']:.2f} |",
        "",
        "Every turn: " + "; ".join(f"{k} {d}" for k, d in times.items()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
