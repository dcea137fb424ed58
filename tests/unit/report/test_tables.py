"""The report's numbers: accounting per dataset, quarantine reasons, policies, benchmark files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagedepot.errors import ImagedepotError
from imagedepot.report import tables

MANIFEST = {
    "items": [
        {"id": "a-1", "dataset": "a", "status": "pending", "batch": 0, "policy": "p"},
        {"id": "a-2", "dataset": "a", "status": "pending", "batch": 0, "policy": "p"},
        {"id": "a-3", "dataset": "a", "status": "excluded", "batch": 0, "policy": "p"},
        {"id": "b-1", "dataset": "b", "status": "pending", "batch": 1, "policy": "q"},
    ],
    "quarantine": [{"path": "inbox/x/BROKEN", "dataset": None, "reason": "not DICOM"}],
}
SUMMARY = {
    "found": 5,
    "processed": 2,
    "quarantined": 2,
    "excluded": 1,
    "processed_items": ["a-1", "b-1"],
    "quarantined_items": [
        {"item": "a-2", "dataset": "a", "reason": "leak gate: 1 identifier hit(s) in the outputs"},
        {"file": "inbox/x/BROKEN", "dataset": None, "reason": "not DICOM"},
    ],
    "excluded_items": [{"item": "a-3", "dataset": "a", "reason": "no consent", "files": 2}],
}


def test_accounting_per_dataset_adds_up() -> None:
    rows = tables.accounting_rows(SUMMARY, MANIFEST)
    got = {r.dataset: (r.found, r.processed, r.quarantined, r.excluded) for r in rows}
    assert got == {"(no dataset)": (1, 0, 1, 0), "a": (3, 1, 1, 1), "b": (1, 1, 0, 0)}
    assert sum(r.found for r in rows) == SUMMARY["found"]


def test_accounting_refuses_a_summary_that_does_not_add_up() -> None:
    with pytest.raises(ImagedepotError, match="do not add up"):
        tables.accounting_rows(SUMMARY | {"processed": 3, "found": 6}, MANIFEST)


def test_every_quarantine_and_exclusion_reason_is_listed() -> None:
    rows = tables.quarantine_rows(SUMMARY)
    assert [(r["outcome"], r["input"], r["reason"]) for r in rows] == [
        ("quarantined", "a-2", "leak gate: 1 identifier hit(s) in the outputs"),
        ("quarantined", "inbox/x/BROKEN", "not DICOM"),
        ("excluded by policy", "a-3", "no consent"),
    ]


def _provenance(root: Path, batch: int, item: str, status: str, reports: dict) -> None:
    folder = root / f"batch-{batch:04d}" / item
    folder.mkdir(parents=True)
    prov = {
        "status": status,
        "policy": {"name": "p", "file": "p.yaml", "sha256": "ab" * 32, "deid_options": ["x"]},
        "options": {"reports": reports},
    }
    (folder / "provenance.json").write_text(json.dumps(prov))


def test_policy_uses_count_what_each_policy_did(tmp_path: Path) -> None:
    dicom = {
        "n_written": 3,
        "actions": {"X": 10, "D": 2},
        "pixel_cleaned": [{"file": "1.dcm", "rules": ["acme", "pixel_text"]}],
        "pixel_text": [{"blanked": [[0, 0, 4, 4], [5, 5, 9, 9]]}, {"blanked": []}],
    }
    nifti = {"totals": {"files": 1, "sidecar_keys_removed": 7}}
    _provenance(tmp_path, 0, "a-1", "processed", {"dicom": dicom, "nifti": nifti})
    _provenance(tmp_path, 0, "a-2", "quarantined", {})
    ome = {"format": "ome-zarr", "xml": {"annotations_removed": 2}, "zarr_names_replaced": 1}
    (tmp_path / "batch-0001" / "b-1").mkdir(parents=True)
    (tmp_path / "batch-0001" / "b-1" / "provenance.json").write_text(
        json.dumps({"status": "processed", "options": {"reports": {"b.ome.zarr": ome}}})
    )
    p, q = tables.policy_uses(MANIFEST, tmp_path)
    assert (p.name, p.items, p.deidentified, p.quarantined, p.excluded) == ("p", 2, 1, 1, 1)
    assert p.actions == {"X": 10, "D": 2} and p.dicom_files == 3
    assert p.pixel_rules == {"acme": 1} and (p.text_images, p.text_regions) == (1, 2)
    assert p.nifti["sidecar_keys_removed"] == 7
    counts = dict(tables.policy_counts(p))
    assert counts["DICOM attributes removed (X)"] == 10
    assert counts["images blanked by pixel-cleaning rule acme"] == 1
    assert counts["items excluded (consent, media index...)"] == 1
    settings = dict(tables.policy_settings(p))
    assert settings["file (SHA-256)"] == "p.yaml (abababababab)"
    assert settings["de-identification options"] == "x"
    # a policy whose items carry no policy record still gets its counts
    assert q.record is None and q.ome["XML annotations removed"] == 2
    assert dict(tables.policy_counts(q))["OME Zarr names replaced"] == 1
    assert "no item reached" in tables.policy_settings(q)[0][1]


def test_benchmark_files(tmp_path: Path) -> None:
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    conv = tmp_path / "convert_batch"
    conv.mkdir()
    (conv / "0000.tsv").write_text(header + "2.0\t0:00:02\t100.5\t1\t1\t1\t0\t0\t10\t1.5\n")
    # two repeats: averaged; a job too short for a memory sample has NA
    (conv / "0001.tsv").write_text(
        header + "4.0\t0:00:04\tNA\t1\t1\t1\t0\t0\t10\t3\n6.0\t0:00:06\tNA\t1\t1\t1\t0\t0\t10\t5\n"
    )
    scan = tmp_path / "scan_inputs"
    scan.mkdir()
    (scan / "scan.tsv").write_text(header + "0.5\t0:00:00\t20\t1\t1\t1\t0\t0\t10\t0.2\n")
    jobs = [
        tables.read_benchmark(p) for p in (scan / "scan.tsv", conv / "0000.tsv", conv / "0001.tsv")
    ]
    assert (jobs[2].seconds, jobs[2].max_rss_mb, jobs[2].cpu_seconds) == (5.0, None, 4.0)
    costs = tables.rule_costs(jobs)
    assert [c.rule for c in costs] == ["scan_inputs", "convert_batch"]
    c = costs[1]
    assert (c.jobs, c.seconds, c.seconds_max, c.cpu_seconds, c.max_rss_mb) == (
        2,
        7.0,
        5.0,
        5.5,
        100.5,
    )
    (tmp_path / "bad.tsv").write_text("hello\n")
    with pytest.raises(ImagedepotError, match="not a Snakemake benchmark file"):
        tables.read_benchmark(tmp_path / "bad.tsv")


def test_html_table_escapes_and_aligns_numbers() -> None:
    out = tables.html_table(["a", "b"], [("<x>", 1234), ("y", None)], total=("all", 2.5))
    assert "&lt;x&gt;" in out and "<x>" not in out
    assert '<td class="num">1,234</td>' in out and "<td>\u2013</td>" in out
    assert '<tr class="total"><td>all</td><td class="num">2.5</td></tr>' in out
    page = tables.html_page("T & U", [("h", "n", out)])
    assert page.startswith("<!DOCTYPE html>") and "<h1>T &amp; U</h1>" in page
