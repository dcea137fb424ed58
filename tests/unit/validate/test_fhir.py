"""imagedepot.validate.fhir: bundles checked by the models of the release they declare, and their
references."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from imagedepot.validate import detect_kind, validate_path

PATIENT = "urn:uuid:7d1e4a52-3c59-4d1b-9a57-1f4c55b0a001"
STUDY = "urn:uuid:7d1e4a52-3c59-4d1b-9a57-1f4c55b0a002"


def bundle(release: str = "R5") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "meta": {"tag": [{"system": "urn:imagedepot:pipeline", "code": f"fhir-{release}"}]},
        "entry": [
            {
                "fullUrl": PATIENT,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:example:pseudonym", "value": "SUBJ-1"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": STUDY,
                "resource": {
                    "resourceType": "ImagingStudy",
                    "status": "available",
                    "subject": {"reference": PATIENT},
                },
                "request": {"method": "POST", "url": "ImagingStudy"},
            },
        ],
    }


def write(tmp_path: Path, doc: dict[str, Any], name: str = "fhir-bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("release", ["R5", "R4B"])
def test_good_bundle_of_each_release(tmp_path: Path, release: str) -> None:
    path = write(tmp_path, bundle(release))
    assert detect_kind(path) == "fhir-bundle"
    result = validate_path(path)
    assert result.valid, result.errors
    assert result.info["release"] == release and result.info["entries"] == 2


def test_bad_reference(tmp_path: Path) -> None:
    doc = bundle()
    doc["entry"][1]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-0"
    errors = validate_path(write(tmp_path, doc)).errors
    assert any("is not in the bundle" in e for e in errors), errors
    doc["entry"][1]["resource"]["subject"]["reference"] = "Pateint/123"
    errors = validate_path(write(tmp_path, doc)).errors
    assert any("'Pateint' is not a resource type of FHIR R5" in e for e in errors), errors
    doc["entry"][1]["resource"]["subject"]["reference"] = "the patient"
    errors = validate_path(write(tmp_path, doc)).errors
    assert any("is not a FHIR reference" in e for e in errors), errors
    doc["entry"][1]["resource"]["subject"]["reference"] = "Patient/123"  # on the server: fine
    assert validate_path(write(tmp_path, doc)).valid


def test_checked_with_the_declared_release(tmp_path: Path) -> None:
    doc = bundle("R5")
    doc["entry"][1]["resource"]["procedure"] = [{"concept": {"text": "CT head"}}]  # R5 shape
    assert validate_path(write(tmp_path, doc)).valid
    r4b = copy.deepcopy(doc)
    r4b["meta"]["tag"][0]["code"] = "fhir-R4B"
    errors = validate_path(write(tmp_path, r4b)).errors
    assert any("FHIR R4B ImagingStudy is invalid" in e or "FHIR R4B Bundle" in e for e in errors)


def test_invalid_resource_and_undeclared_release(tmp_path: Path) -> None:
    doc = bundle()
    doc["entry"][1]["resource"]["numberOfSeries"] = "many"  # unsignedInt
    errors = validate_path(write(tmp_path, doc)).errors
    assert any("numberOfSeries" in e for e in errors), errors
    del doc["meta"]
    del doc["entry"][1]["resource"]["numberOfSeries"]
    result = validate_path(write(tmp_path, doc))
    assert result.valid and result.info["release_declared"] is False
