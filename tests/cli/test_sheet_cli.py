"""``imagedepot sheet``: a cohort folder in two commands (draft the sheet, run on it)."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest

from imagedepot.cli import main
from imagedepot.samplesheet import load_samples
from tests.cli.test_deid_cli import POLICY
from tests.conftest import PACS_PATIENTS, make_dicom, make_pacs_export


def _rows(sheet: Path) -> list[dict[str, str]]:
    with open(sheet, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a PACS export in ``inbox/export`` and one patient's own folder
    (named after the patient, as exports often are) in ``inbox/ALPHA_ANNA``."""
    monkeypatch.chdir(tmp_path)
    make_pacs_export(tmp_path / "inbox" / "export")
    for i in (1, 2):
        make_dicom(
            tmp_path / "inbox" / "ALPHA_ANNA" / f"im{i}",
            study="1.2.826.0.1.3680043.8.498.103",
            series="1.2.826.0.1.3680043.8.498.103.1",
            instance=i,
            patient="ALPHA^ANNA",
            patient_id="MRN-1001",
        )
    return tmp_path


def test_sheet_groups_per_patient_and_study_with_names_free_of_identifiers(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sheet", "inbox", "-o", "samples.tsv", "--destination", "local"]) == 0
    out = capsys.readouterr().out
    rows = _rows(project / "samples.tsv")
    dicom = [r for r in rows if r["modality_class"] == "dicom"]
    # One dataset per patient and study: MRN-1001 has three studies, MRN-2002 and -3003 one.
    assert sorted((r["subject"], r["study_instance_uid"]) for r in dicom) == sorted(
        [(pid, study) for pid, (_, studies) in PACS_PATIENTS.items() for study in studies]
        + [("MRN-1001", "1.2.826.0.1.3680043.8.498.103")]
    )
    assert [r["dataset_id"] for r in dicom] == [f"dcm-{n:03d}" for n in range(1, 6)]
    (nifti,) = [r for r in rows if r["modality_class"] == "nifti"]
    assert nifti["dataset_id"] == "nii-001" and nifti["subject"] == ""
    assert nifti["source"] == "inbox/export/nifti/brain.nii.gz"
    assert {r["destinations"] for r in rows} == {"local"} and {r["policy"] for r in rows} == {""}

    # Names carry no identifier: no Patient ID, no name, no folder name, no study date.
    identifiers = [*PACS_PATIENTS, "ALPHA", "ANNA", "BRAVO", "CHARLIE", "20240102", "2024"]
    for r in rows:
        assert not any(v.lower() in r["dataset_id"].lower() for v in identifiers), r
    # The console names subjects by number only.
    assert not any(pid in out for pid in PACS_PATIENTS) and "ALPHA" not in out.split("->")[0]

    by_id = {r["dataset_id"]: r for r in rows}
    own_folder = next(r for r in dicom if r["study_instance_uid"].endswith(".103"))
    assert own_folder["source"] == "inbox/ALPHA_ANNA" and own_folder["file_list"] == ""
    listed = [r for r in dicom if r["file_list"]]
    # Studies of more than one file in the flat export: the export folder and a list each.
    assert {r["source"] for r in listed} == {"inbox/export"} and len(listed) == 2
    for r in listed:
        names = (project / r["file_list"]).read_text().split()
        assert names and all(n.startswith("IM") for n in names)
    singles = [r for r in dicom if not r["file_list"] and r is not own_folder]
    assert all(r["source"].startswith("inbox/export/IM") for r in singles)
    assert sorted(by_id) == sorted(r["dataset_id"] for r in rows)

    assert "left out: 2 file(s)" in out
    assert "export/README.txt" in out and "export/export.json" in out
    assert "to fill before running: subject (1 row), policy (6 rows)" in out
    # The sheet names patients: written for its owner only.
    assert stat.S_IMODE(os.stat(project / "samples.tsv").st_mode) & 0o077 == 0

    # Drafted again: the same names for the same groups (a stable order).
    assert main(["sheet", "inbox", "-o", "again.tsv", "--destination", "local"]) == 0
    again = {
        (r["subject"], r["study_instance_uid"]): r["dataset_id"]
        for r in _rows(project / "again.tsv")
    }
    assert again == {(r["subject"], r["study_instance_uid"]): r["dataset_id"] for r in rows}
    # Refuses to overwrite without --force.
    assert main(["sheet", "inbox", "-o", "samples.tsv"]) == 1


def test_per_folder_groups_nifti_by_folder(project: Path) -> None:
    assert main(["sheet", "inbox", "-o", "s.tsv", "--per", "folder", "--policy", "p"]) == 0
    (nifti,) = [r for r in _rows(project / "s.tsv") if r["modality_class"] == "nifti"]
    assert nifti["source"] == "inbox/export/nifti" and nifti["file_list"] == ""


def test_the_scan_accepts_the_draft(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "policy").mkdir()
    (project / "policy" / "consent.tsv").write_text(
        "subject\tconsent\nMRN-1001\tyes\nMRN-2002\tyes\nMRN-3003\tno\n", encoding="utf-8"
    )
    (project / "policy" / "pacs.yaml").write_text(POLICY, encoding="utf-8")
    config = {
        "samples": "samples.tsv",
        "inbox": "inbox",
        "policies": {"pacs": "policy/pacs.yaml"},
        "pseudonymisation": {"key_env": "IMAGEDEPOT_TEST_UNSET_KEY", "linkage_dir": "secure"},
        "destinations": {"local": {"class": "internal", "type": "folder"}},
    }
    (project / "config.yaml").write_text(json.dumps(config), encoding="utf-8")
    argv = ["sheet", "inbox", "-o", "samples.tsv", "--policy", "pacs", "--destination", "local"]
    assert main(argv) == 0
    # The one thing left to fill: the NIfTI's subject (its header names none).
    text = (project / "samples.tsv").read_text()
    (project / "samples.tsv").write_text(text.replace("nii-001\t\t", "nii-001\tMRN-2002\t"))
    assert len(load_samples("samples.tsv")) == 6
    capsys.readouterr()

    assert main(["scan", "--config", "config.yaml", "--out", "results/ingest/manifest.json"]) == 0
    manifest = json.loads(Path("results/ingest/manifest.json").read_text())
    items = manifest["items"]
    pending = [i for i in items if i["status"] == "pending"]
    excluded = [i for i in items if i["status"] == "excluded"]
    assert {i["subject"] for i in excluded} == {"MRN-3003"}  # no consent
    assert {(i["subject"], i["kind"]) for i in pending} == {
        ("MRN-1001", "dicom"),
        ("MRN-2002", "dicom"),
        ("MRN-2002", "nifti"),
    }
    assert sum(len(i["files"]) for i in pending if i["kind"] == "dicom") == 7
    # Only the files in no dataset are quarantined: no Patient ID mismatch, no overlap.
    assert sorted(Path(q["path"]).name for q in manifest["quarantine"]) == [
        "README.txt",
        "export.json",
    ]
    assert all("not part of any dataset" in q["reason"] for q in manifest["quarantine"])
