"""imagedepot.validate.dicom: de-identification markers, private tags, IOD by dciodvfy."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from imagedepot.deid.dicom import deidentify_dicom
from imagedepot.validate import validate_path
from imagedepot.validate.dicom import new_errors, normalise_error
from tests.unit.deid.test_dicom import make_instance, pz
from tests.unit.validate.conftest import needs_dciodvfy


def ct_small() -> Path:
    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom's CT_small.dcm not available")
    return Path(path)


@pytest.fixture
def deidentified(tmp_path: Path) -> Path:
    out = tmp_path / "out" / "ct.dcm"
    deidentify_dicom(ct_small(), out, policy_options=frozenset(), pseudonymizer=pz(), subject="S")
    return out


@needs_dciodvfy
def test_deidentified_file_is_valid(deidentified: Path) -> None:
    result = validate_path(deidentified)
    assert result.kind == "dicom"
    assert result.valid, result.errors
    assert result.info["iod_errors"] == 0 and result.info["options_claimed"] == []


@needs_dciodvfy
def test_iod_invalid_file_is_reported(deidentified: Path) -> None:
    ds = pydicom.dcmread(deidentified)
    del ds.Modality  # Type 1 in General Series
    ds.save_as(deidentified)
    errors = validate_path(deidentified).errors
    assert any(e.startswith("dciodvfy: Error") and "Modality" in e for e in errors), errors


def test_original_is_not_deidentified() -> None:
    errors = validate_path(ct_small(), iod=False).errors
    assert "Patient Identity Removed (0012,0062) is not YES" in errors
    assert any("De-identification Method (0012,0063)" in e for e in errors)


def test_method_must_name_every_claimed_option(deidentified: Path) -> None:
    ds = pydicom.dcmread(deidentified)
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "113110", "DCM"
    item.CodeMeaning = "Retain UIDs Option"
    ds.DeidentificationMethodCodeSequence.append(item)  # claimed, not in the text
    bogus = pydicom.Dataset()
    bogus.CodeValue, bogus.CodingSchemeDesignator, bogus.CodeMeaning = "999", "DCM", "x"
    ds.DeidentificationMethodCodeSequence.append(bogus)
    ds.save_as(deidentified)
    errors = validate_path(deidentified, iod=False).errors
    assert any("does not name 'Retain UIDs Option'" in e for e in errors), errors
    assert any("DCM:999 is not a CID 7050 code" in e for e in errors), errors


def test_private_tags_only_from_the_safe_list_when_retained(tmp_path: Path) -> None:
    src = make_instance(tmp_path / "in.dcm")
    kept = tmp_path / "kept.dcm"
    deidentify_dicom(
        src, kept, policy_options={"retain_safe_private"}, pseudonymizer=pz(), subject="S"
    )
    assert pydicom.dcmread(kept).get((0x0019, 0x100C)) is not None  # a safe Siemens element
    assert validate_path(kept, iod=False).valid, validate_path(kept, iod=False).errors
    plain = tmp_path / "plain.dcm"
    deidentify_dicom(src, plain, policy_options=frozenset(), pseudonymizer=pz(), subject="S")
    ds = pydicom.dcmread(plain)
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00091001, "LO", "kept by mistake")
    ds.save_as(plain)
    errors = validate_path(plain, iod=False).errors
    assert "(0009,1001) private attribute" in errors
    ds = pydicom.dcmread(kept)
    ds.add_new(0x00091001, "LO", "not safe")  # no creator, not on the list
    ds.save_as(kept)
    assert any(
        "(0009,1001) not on the safe-private list" in e
        for e in validate_path(kept, iod=False).errors
    )


def test_new_errors_masks_values_that_deidentification_changes() -> None:
    before = [
        'Error - Illegal root for UID - "9.8.7.6" in (0x0008,0x1155) Referenced SOP Instance UID',
        "Error - Not listed but have IMAGE ReferencedSOPInstanceUID 0",
    ]
    after = [
        'Error - Illegal root for UID - "2.25.1234" in (0x0008,0x1155) Referenced SOP Instance UID',
        "Error - Not listed but have IMAGE ReferencedSOPInstanceUID 2.25.99",
        "Error - Missing attribute Type 2 Required Element=<RTPlanDate> Module=<RTGeneralPlan>",
    ]
    assert new_errors(before, after) == [after[2]]
    assert new_errors(after, after + after[:1]) == [normalise_error(after[0])]
