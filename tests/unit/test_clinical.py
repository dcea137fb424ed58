"""Clinical linkage: reading CSV and FHIR input, re-keying, date shifts, free text, bad records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagedepot.clinical import (
    ICD10,
    ICD10_CM,
    ClinicalInput,
    date_mode,
    link_clinical,
    read_clinical,
    text_is_safe,
)
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.demo import CLINICAL_ROWS, DEMO_PHI, SUBJECT_A, SUBJECT_B, SUBJECT_C
from imagedepot.errors import InputError
from imagedepot.fhir import (
    RELEASES,
    BundleBuilder,
    ClinicalSettings,
    bundle_dataset,
    clinical_resources,
    urn_for,
)
from imagedepot.leakcheck import Identifiers, leakcheck
from tests.servers.fhir_fixture import DemoResults, build_demo_results

PZ = Pseudonymizer(key=b"k" * 32, prefix="SUBJ", max_shift_days=3650)
A, B, C = SUBJECT_A.patient_id, SUBJECT_B.patient_id, SUBJECT_C.patient_id
MODIFIED = ["retain_longitudinal_modified_dates"]

CSV_HEADER = "patient_id,visit_date,diagnosis_code,diagnosis_text,weight_kg\n"


def _csv(tmp_path: Path, body: str, header: str = CSV_HEADER) -> Path:
    path = tmp_path / "clinical.csv"
    path.write_text(header + body)
    return path


def _link(source: ClinicalInput, subject: str = A, **kw: Any):
    kw.setdefault("known_subjects", [A, B, C])
    kw.setdefault("deid_options", MODIFIED)
    return link_clinical(source, subject=subject, pseudonymizer=PZ, **kw)


def test_demo_csv_is_read_and_shifted_like_the_images(tmp_path: Path) -> None:
    from imagedepot.demo import make_demo

    demo = make_demo(tmp_path / "demo")
    source = read_clinical(demo.clinical)
    assert len(source.records) == len(CLINICAL_ROWS) and source.issues == []
    link = _link(source)
    assert (link.linked, link.other_subjects, link.errors) == (2, 3, [])
    visits = [r for r in CLINICAL_ROWS if r[0] == A]
    encounters = [f for f in link.facts if f.kind == "encounter"]
    assert [f.date for f in encounters] == [PZ.shift_date(v[1], A) for v in visits]
    assert all(f.date != v[1] for f, v in zip(encounters, visits, strict=True))
    conditions = [f for f in link.facts if f.kind == "condition"]
    assert [c.code for c in conditions] == [(ICD10_CM, v[2]) for v in visits]
    assert [c.text for c in conditions] == [v[3] for v in visits]  # no identifier in them
    weights = [f for f in link.facts if f.kind == "observation"]
    assert [w.value for w in weights] == [v[4] for v in visits]
    assert all(f.encounter == encounters[i].key for i, f in enumerate(conditions))


def test_date_handling_follows_the_policy(tmp_path: Path) -> None:
    source = read_clinical(_csv(tmp_path, f"{A},2023-04-15,R51.9,,80\n"))
    assert date_mode(["retain_longitudinal_full_dates"]) == "keep"
    kept = _link(source, deid_options=["retain_longitudinal_full_dates"])
    assert {f.date for f in kept.facts} == {"2023-04-15"}
    removed = _link(source, deid_options=[])
    assert {f.date for f in removed.facts} == {None}
    assert removed.dates == "remove"


def test_bad_records_are_rejected_one_by_one_without_their_values(tmp_path: Path) -> None:
    body = (
        f"{A},2023-04-15,G43.909,Migraine,84.0\n"  # line 2: fine
        f"{A},15/04/2023,R51.9,,83\n"  # line 3: malformed date
        f"{A},2023-02-30,R51.9,,83\n"  # line 4: no such day
        f"{A},2023-05-02,HEADACHE,,83\n"  # line 5: not ICD-10
        f"{A},2023-05-02,R51.9,,heavy\n"  # line 6: not a number
        f"{A},2023-05-02,R51.9,,8300\n"  # line 7: out of range
        "MRN0000000,2023-05-02,R51.9,,83\n"  # line 8: unknown subject
        ",2023-05-02,R51.9,,83\n"  # line 9: no patient
        f"{B},1800-01-01,J18.9,,60\n"  # line 10: another subject's bad row: not ours
    )
    source = read_clinical(_csv(tmp_path, body))
    link = _link(source)
    errors = {e.where: e.problem for e in link.errors}
    assert set(errors) == {f"line {n}" for n in (3, 4, 5, 6, 7, 8, 9)}
    assert "visit_date" in errors["line 3"] and "visit_date" in errors["line 4"]
    assert "ICD-10" in errors["line 5"]
    assert "weight_kg is not a number" in errors["line 6"]
    assert "outside" in errors["line 7"]
    assert "unknown subject" in errors["line 8"]
    assert "patient_id is empty" in errors["line 9"]
    assert link.linked == 1 and len(link.facts) == 3  # the valid row still links
    status = json.dumps(link.to_status())
    for value in ("15/04/2023", "HEADACHE", "heavy", "MRN0000000", A):
        assert value not in status


def test_a_file_without_required_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing column.*visit_date"):
        read_clinical(_csv(tmp_path, f"{A},R51.9\n", header="patient_id,diagnosis_code\n"))
    with pytest.raises(InputError, match="not found"):
        read_clinical(tmp_path / "nope.csv")
    (tmp_path / "x.xml").write_text("<x/>")
    with pytest.raises(InputError, match="CSV/TSV"):
        read_clinical(tmp_path / "x.xml")


def test_unknown_columns_are_dropped_with_a_warning(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        f"{A},2023-04-15,Doe John,R51.9\n",
        header="patient_id,visit_date,name,diagnosis_code\n",
    )
    link = _link(read_clinical(path))
    assert [w.to_dict() for w in link.warnings] == [
        {"where": "header", "problem": "column(s) ignored: name"}
    ]
    assert "Doe" not in json.dumps([f.__dict__ for f in link.facts])


def test_free_text_with_identifiers_is_dropped() -> None:
    ids = Identifiers()
    ids.add_person_name("DOE^JOHN")
    assert text_is_safe("Pneumonia, unspecified organism", ids)
    assert not text_is_safe("John Doe reports headaches", ids)
    assert not text_is_safe("seen on 12/03/2023", None)
    assert not text_is_safe("call +44 20 7946 0123", None)
    assert not text_is_safe("MRN 0012345", None)
    assert not text_is_safe("mail j.doe@example.org", None)


def test_text_matching_the_leak_harvest_is_dropped_with_a_warning(tmp_path: Path) -> None:
    source = read_clinical(
        _csv(tmp_path, f"{A},2023-04-15,R51.9,Headache after a fall at 12 Elm Street,\n")
    )
    ids = Identifiers()
    ids.add("12 Elm Street", "address")
    link = _link(source, identifiers=ids)
    (cond,) = [f for f in link.facts if f.kind == "condition"]
    assert cond.text is None
    assert link.warnings[0].where == "line 2" and "dropped" in link.warnings[0].problem


def _fhir_input(tmp_path: Path, ndjson: bool = False) -> Path:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:hospital:mrn", "value": A}],
        "name": [{"family": "Doe", "given": ["John"]}],
        "birthDate": "1965-03-12",
        "telecom": [{"system": "phone", "value": "+44 20 7946 0123"}],
    }
    resources: list[Any] = [
        patient,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2023-04-15T08:00:00Z"},
            "participant": [{"individual": {"display": "Dr Quill"}}],
        },
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/p1"},
            "code": {
                "coding": [{"system": ICD10, "code": "G43.9", "display": "Migraine"}],
                "text": "Migraine (John Doe)",
            },
            "recordedDate": "2023-04-15",
            "note": [{"text": "lives at 12 Elm Street"}],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"identifier": {"value": A}},
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "effectiveDateTime": "2023-04-15",
            "valueQuantity": {
                "value": 84.0,
                "unit": "kg",
                "system": "http://unitsofmeasure.org",
                "code": "kg",
            },
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "effectiveDateTime": "2023-04-15",
            "valueQuantity": {"value": 5.5, "code": "mmol/L"},
        },
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "37796009"}]},
            "recordedDate": "2023-04-15",
        },
        {"resourceType": "Practitioner", "name": [{"family": "Quill"}]},
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/unknown"},
            "code": {"coding": [{"system": ICD10, "code": "J18.9"}]},
            "recordedDate": "2023-04-15",
        },
    ]
    if ndjson:
        path = tmp_path / "clinical.ndjson"
        path.write_text("\n".join(json.dumps(r) for r in resources) + "\n{not json\n")
    else:
        path = tmp_path / "clinical.json"
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in resources],
        }
        path.write_text(json.dumps(bundle))
    return path


@pytest.mark.parametrize("ndjson", [False, True])
def test_fhir_input_is_rekeyed_and_stripped(tmp_path: Path, ndjson: bool) -> None:
    source = read_clinical(_fhir_input(tmp_path, ndjson))
    link = _link(source)
    kinds = sorted(f.kind for f in link.facts)
    assert kinds == ["condition", "encounter", "observation"]
    (enc,) = [f for f in link.facts if f.kind == "encounter"]
    assert enc.encounter_class == "IMP" and enc.date == PZ.shift_date("2023-04-15", A)
    (cond,) = [f for f in link.facts if f.kind == "condition"]
    assert cond.code == (ICD10, "G43.9")
    assert cond.text is None  # "Migraine (John Doe)": the input Patient's name is in it
    problems = " | ".join(f"{e.where}: {e.problem}" for e in link.errors)
    assert "not a supported LOINC measurement" in problems
    assert "no ICD-10 coding" in problems
    assert "unknown subject" in problems
    if ndjson:
        assert "not a FHIR resource" in problems
    assert any("Practitioner ignored" in w.problem for w in link.warnings)
    values = {v for v, _ in link.source_identifiers}
    assert {A, "1965-03-12", "+44 20 7946 0123", "John Doe"} <= values  # for the leak gate


@pytest.mark.parametrize("version", ["R5", "R4B"])
def test_clinical_resources_validate_and_link(tmp_path: Path, version: str) -> None:
    source = read_clinical(_csv(tmp_path, f"{A},2023-04-15,G43.909,Migraine,84.0\n"))
    link = _link(source)
    patient = urn_for("Patient", "urn:sys", link.pseudonym)
    planned = clinical_resources(
        link, release=RELEASES[version], subject=patient, identifier_system="urn:sys"
    )
    builder = BundleBuilder(RELEASES[version])
    urls = [builder.add(p) for p in planned]
    entries = {e["fullUrl"]: e["resource"] for e in builder.entries.values()}
    enc_url = urls[0]
    assert entries[enc_url]["resourceType"] == "Encounter"
    for res in entries.values():
        assert res["subject"]["reference"] == patient
    cond = next(r for r in entries.values() if r["resourceType"] == "Condition")
    obs = next(r for r in entries.values() if r["resourceType"] == "Observation")
    assert cond["encounter"]["reference"] == obs["encounter"]["reference"] == enc_url
    assert obs["valueQuantity"] == {
        "value": 84.0,
        "unit": "kg",
        "system": "http://unitsofmeasure.org",
        "code": "kg",
    }
    assert obs["code"]["coding"][0]["code"] == "29463-7"
    # the same input gives the same identifiers (conditional creates stay idempotent)
    again = clinical_resources(
        _link(source), release=RELEASES[version], subject=patient, identifier_system="urn:sys"
    )
    assert [p.identifier for p in again] == [p.identifier for p in planned]


# --------------------------------------------------------------------------- with the pipeline


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResults:
    return build_demo_results(tmp_path_factory.mktemp("clinical-demo"), datasets=("dcm-subj01",))


def _bundle_with(demo: DemoResults, clinical: Path, out: Path, key: bytes | None = None) -> dict:
    return bundle_dataset(
        "dcm-subj01",
        manifest=demo.items_dir,
        deid_root=demo.deid_root,
        leak_root=demo.leak_root,
        out=out,
        config=json.loads(demo.config_json()),
        clinical=ClinicalSettings(clinical, key or demo.demo.key_file.read_bytes().strip()),
    )


def test_bundle_links_clinical_records_and_reports_bad_ones(
    demo: DemoResults, tmp_path: Path
) -> None:
    clinical = tmp_path / "clinical.csv"
    rows = demo.demo.clinical.read_text()
    clinical.write_text(rows + f"{A},2023-13-01,R51.9,,80\nMRN0000000,2023-05-02,R51.9,,80\n")
    out = tmp_path / "bundle.json"
    status = _bundle_with(demo, clinical, out)
    assert status["status"] == "clean"
    c = status["clinical"]
    assert (c["linked"], c["rejected"]) == (2, 2)
    assert [e["where"] for e in c["errors"]] == ["line 7", "line 8"]
    bundle = json.loads(out.read_text())
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types.count("Encounter") == 2 and types.count("Condition") == 2
    (patient,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] in ("Encounter", "Condition", "Observation"):
            assert e["resource"]["subject"]["reference"] == patient["fullUrl"]
    # the gate: nothing of the originals nor of the clinical input leaks
    originals = [Path(f["path"]) for i in demo.items("dcm-subj01") for f in i["files"]]
    assert leakcheck(originals, [out], extra=DEMO_PHI).status == "clean"
    assert "MRN0000000" not in json.dumps(status)


def test_clinical_text_that_identifies_is_dropped_before_the_gate(
    demo: DemoResults, tmp_path: Path
) -> None:
    clinical = tmp_path / "clinical.csv"
    clinical.write_text(CSV_HEADER + f"{A},2023-04-15,R51.9,Headache; referred by Dr Quill,80\n")
    out = tmp_path / "bundle.json"
    status = _bundle_with(demo, clinical, out)
    assert status["status"] == "clean"  # the referring physician is in the DICOM harvest
    assert status["clinical"]["warnings"][0]["problem"].startswith("diagnosis text dropped")
    assert "Quill" not in out.read_text()


def test_a_different_key_is_refused(demo: DemoResults, tmp_path: Path) -> None:
    from imagedepot.errors import ConfigError

    with pytest.raises(ConfigError, match="key differs"):
        _bundle_with(
            demo,
            demo.demo.clinical,
            tmp_path / "bundle.json",
            key=b"another-key-of-32-bytes-length!!",
        )
    assert not (tmp_path / "bundle.json").exists()
