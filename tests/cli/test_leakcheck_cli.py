"""``imagedepot leakcheck``: exit 0 clean, 3 leak (0 with --no-fail), report without values."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import imagedepot.cli
from imagedepot.cli import main

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture(autouse=True)
def only_leakcheck_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    # Build the parser with this verb only (test_help.py checks that every verb registers).
    monkeypatch.setattr(imagedepot.cli, "VERBS", ("leakcheck",))


def write_dicom(path: Path, *, name: str, patient_id: str, date: str) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MR_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MR_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.StudyDate = date
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.fixture
def case(tmp_path: Path) -> dict[str, Path]:
    orig = write_dicom(
        tmp_path / "orig" / "IM1", name="DOE^JOHN", patient_id="PAT778812", date="20240131"
    )
    clean = write_dicom(
        tmp_path / "clean" / "a.dcm", name="SUBJ-X", patient_id="SUBJ-X", date="20230301"
    )
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "sidecar.json").write_text(json.dumps({"PatientName": "Doe^John"}))
    return {"orig": orig.parent, "clean": clean.parent, "leaky": leaky, "tmp": tmp_path}


def test_positional_original_output_clean(case: dict[str, Path]) -> None:
    report = case["tmp"] / "r.json"
    assert main(["leakcheck", str(case["orig"]), str(case["clean"]), "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["status"] == "clean"
    assert data["files_scanned"] == 1


def test_leak_exits_3_and_report_has_no_values(
    case: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    report = case["tmp"] / "r.json"
    with caplog.at_level(logging.INFO):
        rc = main(["leakcheck", str(case["orig"]), str(case["leaky"]), "--report", str(report)])
    assert rc == 3
    text = report.read_text()
    data = json.loads(text)
    assert data["status"] == "leak"
    assert data["hits"][0]["file"] == "leaky/sidecar.json"
    assert data["hits"][0]["location"] == "PatientName"
    assert data["hits"][0]["kind"] == "person_name"
    for value in ("doe", "john", "pat778812", "20240131"):
        assert value not in text.lower()
        assert value not in caplog.text.lower()


def test_no_fail_writes_report_and_exits_0(case: dict[str, Path]) -> None:
    report = case["tmp"] / "r.json"
    argv = ["leakcheck", str(case["orig"]), str(case["leaky"]), "--report", str(report)]
    assert main([*argv, "--no-fail"]) == 0
    assert json.loads(report.read_text())["status"] == "leak"


def test_repeatable_originals_and_outputs(case: dict[str, Path]) -> None:
    other = write_dicom(
        case["tmp"] / "orig2" / "x.dcm", name="ROE^RICHARD", patient_id="QQ99123", date="20220202"
    )
    out = case["tmp"] / "out2"
    out.mkdir()
    (out / "notes.txt").write_text("seen QQ99123\n")
    argv = ["leakcheck", str(case["orig"]), "--original", str(other.parent)]
    assert main([*argv, "--output", str(case["clean"]), "--output", str(out)]) == 3
    assert main([*argv, "--output", str(case["clean"])]) == 0


def test_identifiers_from_option_and_file(case: dict[str, Path]) -> None:
    (case["clean"] / "samples.tsv").write_text("dataset\tsubject\nd1\tS-4471-AB\n")
    argv = ["leakcheck", str(case["orig"]), str(case["clean"])]
    assert main(argv) == 0
    assert main([*argv, "--identifier", "S-4471-AB"]) == 3
    ids = case["tmp"] / "ids.txt"
    ids.write_text("\nS-4471-AB\n")
    assert main([*argv, "--identifiers-file", str(ids)]) == 3


def test_allow_kind(case: dict[str, Path]) -> None:
    out = case["tmp"] / "dated"
    write_dicom(out / "a.dcm", name="SUBJ-X", patient_id="SUBJ-X", date="20240131")
    assert main(["leakcheck", str(case["orig"]), str(out)]) == 3
    assert main(["leakcheck", str(case["orig"]), str(out), "--allow-kind", "date"]) == 0


def test_usage_errors(case: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["leakcheck", str(case["orig"])])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["leakcheck", str(case["orig"]), str(case["clean"]), "--allow-kind", "bogus"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_missing_output_is_an_error(case: dict[str, Path]) -> None:
    assert main(["leakcheck", str(case["orig"]), str(case["tmp"] / "missing")]) == 1
