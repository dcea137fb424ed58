"""``imagedepot validate`` through ``main()``: walking a staged folder, one line per file, JSON,
exit codes; and the deposit verbs refusing what fails it."""

# Fixtures are imported from tests/servers/*_fixture.py (not a conftest), so pytest's fixture
# arguments shadow those imports by design.
# ruff: noqa: F811

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pydicom
import pytest

from imagedepot.cli import main
from tests.cli.test_bia_cli import write_config
from tests.servers import xnat_fixture
from tests.servers.bia_fixture import DemoStage, bia_package, demo_microscopy_stage  # noqa: F401
from tests.unit.validate.conftest import needs_dciodvfy

xnat_staged_demo = xnat_fixture.xnat_staged_demo


def broken_copy(staged: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the staged folder with one DICOM file no longer marked de-identified."""
    copy = tmp_path / "stage" / "xnat"
    shutil.copytree(staged, copy)
    victim = next(p for p in sorted(copy.rglob("*.dcm")))
    ds = pydicom.dcmread(victim)
    del ds.PatientIdentityRemoved
    ds.save_as(victim)
    return copy, victim


@needs_dciodvfy
def test_staged_demo_validates_clean_one_line_per_file(
    xnat_staged_demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(xnat_staged_demo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    kinds = {line.split()[1] for line in lines if line.startswith("valid")}
    assert {"dicom", "fhir-bundle", "manifest", "nifti"} <= kinds, lines
    assert not [line for line in lines if line.startswith("INVALID")]
    # a dataset folder on its own (once answered "unknown") is walked too
    dataset = next(p for p in sorted(xnat_staged_demo.iterdir()) if p.is_dir())
    assert main(["validate", "--json", str(dataset)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in results} <= {"valid", "skipped"}
    assert any(r["kind"] == "dicom" for r in results)


def test_invalid_file_exits_1(
    xnat_staged_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy, victim = broken_copy(xnat_staged_demo, tmp_path)
    assert main(["validate", str(copy)]) == 1
    out = capsys.readouterr().out
    assert f"INVALID dicom       {victim}" in out
    assert "Patient Identity Removed (0012,0062) is not YES" in out
    assert "MANIFEST.sha256" in out  # the changed file no longer matches its checksum


def test_deposit_xnat_refuses_what_fails_validation(
    xnat_staged_demo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy, victim = broken_copy(xnat_staged_demo, tmp_path)
    receipt = tmp_path / "receipt.json"
    argv = ["deposit", "xnat", str(copy), "--url", "http://127.0.0.1:9", "--project", "P"]
    with caplog.at_level(logging.ERROR):
        assert main([*argv, "--receipt", str(receipt)]) == 1
    assert f"refusing to upload {copy}" in caplog.text
    assert str(victim) in caplog.text and "Patient Identity Removed" in caplog.text
    assert not receipt.exists()  # stopped before any request


def test_deposit_bia_refuses_a_truncated_bag(
    bia_package: Path,
    demo_microscopy_stage: DemoStage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prov = next((bia_package / "micro-cells" / "data" / "upload").rglob("provenance.json"))
    prov.write_bytes(prov.read_bytes()[:10])
    monkeypatch.setenv("TEST_BIA_FTP_URL", "ftp://user:secret@127.0.0.1:9/upload")
    cfg = write_config(demo_microscopy_stage, tmp_path / "c.yaml", url="http://127.0.0.1:9")
    report = tmp_path / "report.json"
    argv = ["deposit", "bia", "bia", str(bia_package), "--config", str(cfg)]
    with caplog.at_level(logging.ERROR):
        assert main([*argv, "--report", str(report)]) == 1
    assert f"refusing to upload {bia_package}" in caplog.text
    assert "bagit" in caplog.text and "secret" not in caplog.text
    assert not report.exists()
