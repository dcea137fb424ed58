"""``imagedepot report`` on a small run tree: every piece written, private, never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import imagedepot.cli
from imagedepot.cli import main
from imagedepot.report import REPORT_FILES


@pytest.fixture
def run_tree(tmp_path: Path) -> Path:
    """results/ of a run with one NIfTI item processed and one file quarantined."""
    res = tmp_path / "results"
    item = {"id": "n-1", "dataset": "n", "status": "pending", "batch": 0, "policy": "p"}
    manifest = {"items": [item], "quarantine": [{"path": "inbox/BAD", "reason": "unreadable"}]}
    summary = {
        "found": 2,
        "processed": 1,
        "quarantined": 1,
        "excluded": 0,
        "files_found": 2,
        "processed_items": ["n-1"],
        "quarantined_items": [{"file": "inbox/BAD", "dataset": None, "reason": "unreadable"}],
        "excluded_items": [],
    }
    (res / "ingest").mkdir(parents=True)
    (res / "ingest" / "manifest.json").write_text(json.dumps(manifest))
    (res / "summary.json").write_text(json.dumps(summary))
    folder = res / "deid" / "batch-0000" / "n-1"
    (folder / "nifti").mkdir(parents=True)
    vol = np.arange(8 * 9 * 10, dtype=np.int16).reshape(8, 9, 10)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), folder / "nifti" / "SUBJ-X_001.nii.gz")
    prov = {"status": "processed", "policy": {"name": "p"}, "options": {"reports": {}}}
    (folder / "provenance.json").write_text(json.dumps(prov))
    bench = tmp_path / "benchmarks" / "scan_inputs"
    bench.mkdir(parents=True)
    (bench / "scan.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n1.5\t0:00:01\t50\t1.0\n")
    return tmp_path


def _args(root: Path, *extra: str) -> list[str]:
    res = root / "results"
    return [
        "report",
        "--summary", str(res / "summary.json"),
        "--manifest", str(res / "ingest" / "manifest.json"),
        "--deid-root", str(res / "deid"),
        "--benchmarks", str(root / "benchmarks" / "scan_inputs" / "scan.tsv"),
        "--out-dir", str(res / "report"),
        *extra,
    ]  # fmt: skip


def test_report_writes_every_piece_privately(
    run_tree: Path, monkeypatch, capsys: pytest.CaptureFixture[str], caplog
) -> None:
    monkeypatch.setattr(imagedepot.cli, "VERBS", ("report",))
    assert main(_args(run_tree)) == 0
    out = run_tree / "results" / "report"
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES.values())
    assert all(p.stat().st_mode & 0o077 == 0 for p in out.iterdir())  # trusted zone
    assert capsys.readouterr().out.count("results/report/") == len(REPORT_FILES)
    accounting = (out / "accounting.html").read_text()
    assert "found 2 = 1 processed + 1 quarantined + 0 excluded by policy" in accounting
    assert "unreadable" in (out / "quarantine.html").read_text()
    assert "<td>scan_inputs</td>" in (out / "benchmarks.html").read_text()

    # an existing report is not replaced without --force
    assert main(_args(run_tree)) == 1
    assert "use --force" in caplog.text
    assert main(_args(run_tree, "--force")) == 0
