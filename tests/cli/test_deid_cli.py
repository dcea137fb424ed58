"""``imagedepot deid dicom`` on a clinical group's PACS export: one folder, many patients, and
files that are not DICOM beside the images."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest

from imagedepot.cli import main
from tests.conftest import PACS_PATIENTS, make_dicom, make_pacs_export

KEY_ENV = "IMAGEDEPOT_TEST_DEID_CLI_KEY"

POLICY = """\
policy_version: 1
name: pacs-cohort
data_use: {permission: "DUO:0000042", modifiers: []}
consent: {required: true, sheet: consent.tsv, subject_column: subject,
          consent_column: consent, consent_values: ["yes"]}
destinations: {allowed_classes: [internal]}
deidentification:
  options: [retain_longitudinal_modified_dates]
  pseudonym_prefix: SUBJ
"""


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A policy under which MRN-1001 and MRN-2002 consented, MRN-3003 did not."""
    monkeypatch.setenv(KEY_ENV, "deid-cli-test-key-0123456789")
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "consent.tsv").write_text(
        "subject\tconsent\nMRN-1001\tyes\nMRN-2002\tyes\nMRN-3003\tno\n", encoding="utf-8"
    )
    (folder / "policy.yaml").write_text(POLICY, encoding="utf-8")
    return folder / "policy.yaml"


def _deid(src: Path, out: Path, policy: Path, *extra: str) -> int:
    return main(
        ["deid", "dicom", str(src), str(out), "--policy", str(policy), "--key-env", KEY_ENV, *extra]
    )


def test_multi_patient_folder_gives_one_folder_per_pseudonym(
    tmp_path: Path,
    policy: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    export = make_pacs_export(tmp_path / "export")
    out = tmp_path / "out"
    linkage = tmp_path / "secure" / "linkage.tsv"
    with caplog.at_level(logging.INFO, logger="imagedepot.progress"):
        assert _deid(export, out, policy, "--skip-bad-files", "--linkage", str(linkage)) == 0
    # Not on a terminal: progress as log lines (header pass, then the consented patients' files).
    progress = [r.getMessage() for r in caplog.records if r.name == "imagedepot.progress"]
    assert any(m.startswith("deid dicom: Patient IDs: 10/10 files (100%)") for m in progress)
    assert any(m.startswith("deid dicom: 5/5 files (100%)") for m in progress)
    captured = capsys.readouterr()
    report = json.loads(captured.out)

    rows = dict(line.split("\t") for line in linkage.read_text().splitlines()[1:])
    assert set(rows) == {"MRN-1001", "MRN-2002"}  # MRN-3003: no consent
    assert sorted(p.name for p in out.iterdir()) == sorted(rows.values())
    for pid, n in (("MRN-1001", 3), ("MRN-2002", 2)):
        files = sorted((out / rows[pid]).iterdir())
        assert len(files) == n
        for f in files:
            ds = pydicom.dcmread(f)
            assert ds.PatientID == rows[pid]
            assert PACS_PATIENTS[pid][0].split("^")[0] not in str(ds.PatientName)

    assert [s["output"] for s in report["subjects"]] == sorted(rows.values())
    assert report["n_written"] == 5
    assert len(report["excluded"]) == 1 and report["excluded"][0]["files"] == 1
    assert {s["reason"] for s in report["skipped"]} == {
        "not a DICOM file (no DICM prefix, no DICOM attributes)"
    }
    assert len(report["skipped"]) == 4  # README.txt, export.json, nifti/brain.json, .nii.gz
    assert "MRN-" not in captured.out  # the report names no original identifier

    listed = captured.err.splitlines()
    for name in ("README.txt", "export.json", "nifti/brain.nii.gz", "nifti/brain.json"):
        assert any(line.startswith(f"deid dicom: skipped {name}: not a DICOM") for line in listed)
    assert any("excluded patient" in line and "no recorded consent" in line for line in listed)


def test_multi_patient_folder_without_skipping_fails_closed_naming_the_file(
    tmp_path: Path, policy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    export = make_pacs_export(tmp_path / "export")
    out = tmp_path / "out"
    assert _deid(export, out, policy) == 1
    assert "README.txt: cannot read Patient ID: not a DICOM file" in caplog.text
    assert "--skip-bad-files lists such files" in caplog.text
    assert not out.exists()


def test_skip_bad_files_skips_a_readme_beside_one_patients_files(
    tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bug of issue 15: the flag did not skip a README when the subject was inferred."""
    src = tmp_path / "in"
    for i in (1, 2):
        make_dicom(
            src / f"im{i}.dcm", study="1.2.3", series="1.2.3.1", instance=i, patient_id="MRN-1001"
        )
    (src / "README.txt").write_text("scanned for ALPHA^ANNA\n")
    (src / "meta.json").write_text("{}\n")
    out = tmp_path / "out"
    assert _deid(src, out, policy, "--skip-bad-files") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["n_written"] == 2 and len(list(out.iterdir())) == 2  # one patient: OUT itself
    assert len(report["skipped"]) == 2 and not report["errors"]
    assert "deid dicom: skipped README.txt: not a DICOM file" in captured.err
    assert "deid dicom: skipped meta.json: not a DICOM file" in captured.err
