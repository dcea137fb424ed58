"""Read clinical records (:func:`read_clinical`), keyed by the original patient ID.

Input (trusted zone; keyed by the *original* patient ID, the sample sheet's ``subject``):

CSV / TSV
    One visit per row. Columns (header names are case-insensitive): ``patient_id`` and
    ``visit_date`` (``YYYY-MM-DD``) required; ``diagnosis_code`` (ICD-10, e.g. ``J18.9``),
    ``diagnosis_system`` (``icd-10-cm``, the default, or ``icd-10``), ``diagnosis_text``,
    ``weight_kg`` optional. Other columns are ignored (with a warning): nothing leaves that is
    not listed here. This is the layout of the demo's ``clinical.csv``.
FHIR
    A Bundle (``.json``) or NDJSON (``.ndjson``, ``.jsonl``) of ``Patient``, ``Encounter``,
    ``Condition`` (ICD-10 coded) and ``Observation`` (body weight LOINC 29463-7 in kg, body
    height 8302-2 in cm, BMI 39156-5 in kg/m2) resources. The patient is found from
    ``subject.reference`` (to a ``Patient`` of the input, whose identifier values or id are
    the original ID) or ``subject.identifier.value``. Only the elements named here are read;
    every other element (names, addresses, notes, performers...) is dropped. Other resource
    types are ignored with a warning.

A bad record does not stop the reading: it becomes a :class:`ClinicalIssue` (where and what, no
value), which :func:`imagedepot.clinical.link_clinical` reports.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from imagedepot.clinical.records import (
    ACT_CODE,
    CSV_OPTIONAL,
    CSV_REQUIRED,
    ENCOUNTER_CLASSES,
    ICD10,
    ICD10_CM,
    ICD10_RE,
    ICD10_SYSTEMS,
    LOINC,
    MEASUREMENTS,
    WEIGHT,
    ClinicalInput,
    ClinicalIssue,
    ClinicalRecord,
    Measurement,
    MeasurementKind,
)
from imagedepot.errors import InputError


def parse_date(value: str) -> dt.date | None:
    """A calendar date ``YYYY-MM-DD`` (optionally followed by a FHIR time) of 1900-2100, or None."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?", value.strip())
    if not m:
        return None
    try:
        d = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return d if 1900 <= d.year <= 2100 else None


def _number(value: str) -> float | None:
    try:
        x = float(value.strip().replace(",", "."))
    except ValueError:
        return None
    return x if x == x and abs(x) != float("inf") else None  # not NaN or infinite


def _measurement(
    kind: MeasurementKind, value: float | None, problems: list[str], name: str
) -> Measurement | None:
    if value is None:
        problems.append(f"{name} is not a number")
        return None
    if not kind.low <= value <= kind.high:
        problems.append(f"{name} is outside {kind.low:g}-{kind.high:g} {kind.unit}")
        return None
    return Measurement(kind.loinc, value)


def read_clinical(path: str | Path) -> ClinicalInput:
    """Read a clinical CSV/TSV, FHIR Bundle (``.json``) or NDJSON file.

    Raises
    ------
    InputError
        The file cannot be read, a CSV lacks a required column, or a JSON file is not a
        FHIR resource or Bundle.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "clinical records file not found")
    name = p.name.lower()
    if name.endswith((".csv", ".tsv", ".tab", ".txt")):
        return _read_csv(p)
    if name.endswith((".ndjson", ".jsonl")):
        return _read_fhir(p, _ndjson(p))
    if name.endswith(".json"):
        return _read_fhir(p, _bundle_entries(p))
    raise InputError(p, "clinical records must be CSV/TSV, a FHIR Bundle (.json) or NDJSON")


def _read_csv(p: Path) -> ClinicalInput:
    out = ClinicalInput(source=p.name)
    delimiter = "," if p.name.lower().endswith(".csv") else "\t"
    try:
        with open(p, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(
            p, f"cannot read as {'CSV' if delimiter == ',' else 'TSV'} ({exc})"
        ) from exc
    rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(p, "empty clinical records file")
    header = [c.strip().lower() for c in rows[0][1]]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise InputError(
            p, f"missing column(s) {', '.join(missing)} (columns: {', '.join(header)})"
        )
    ignored = [c for c in header if c and c not in CSV_REQUIRED + CSV_OPTIONAL]
    if ignored:
        out.issues.append(
            ClinicalIssue("header", f"column(s) ignored: {', '.join(ignored)}", "warning")
        )
    for line, cells in rows[1:]:
        row = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)}
        record, problems = _csv_record(f"line {line}", row)
        patient = (row["patient_id"],) if row.get("patient_id") else ()
        if problems:
            out.issues.append(ClinicalIssue(f"line {line}", "; ".join(problems), patient=patient))
        elif record is not None:
            out.records.append(record)
    return out


def _csv_record(where: str, row: Mapping[str, str]) -> tuple[ClinicalRecord | None, list[str]]:
    problems: list[str] = []
    patient = row.get("patient_id", "")
    if not patient:
        problems.append("patient_id is empty")
    date = parse_date(row.get("visit_date", ""))
    if date is None:
        problems.append("visit_date is not a date (YYYY-MM-DD, 1900-2100)")
    condition = None
    code = row.get("diagnosis_code", "").upper()
    system_name = row.get("diagnosis_system", "").lower() or "icd-10-cm"
    if code:
        if system_name not in ICD10_SYSTEMS:
            problems.append("diagnosis_system is not icd-10 or icd-10-cm")
        elif not ICD10_RE.fullmatch(code):
            problems.append("diagnosis_code is not an ICD-10 code (like J18.9)")
        else:
            condition = (ICD10_SYSTEMS[system_name], code)
    text = row.get("diagnosis_text", "") or None
    if text and condition is None and not code:
        problems.append("diagnosis_text without diagnosis_code")
    measurements = []
    if row.get("weight_kg"):
        m = _measurement(WEIGHT, _number(row["weight_kg"]), problems, "weight_kg")
        if m is not None:
            measurements.append(m)
    if problems:
        return None, problems
    return (
        ClinicalRecord(
            where=where,
            patient=(patient,),
            date=date,
            encounter="AMB",
            condition=condition,
            condition_text=text,
            measurements=tuple(measurements),
        ),
        [],
    )


def _ndjson(p: Path) -> Iterator[tuple[str, Any, str | None]]:
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(p, f"cannot read as NDJSON ({exc})") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield f"line {n}", json.loads(line), None
        except ValueError:
            yield f"line {n}", None, None


def _bundle_entries(p: Path) -> Iterator[tuple[str, Any, str | None]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(p, f"cannot read as JSON ({exc})") from exc
    if not isinstance(data, dict) or "resourceType" not in data:
        raise InputError(p, "not a FHIR resource or Bundle")
    if data["resourceType"] != "Bundle":
        yield "resource", data, None
        return
    for i, entry in enumerate(data.get("entry") or []):
        if isinstance(entry, dict):
            yield f"entry {i}", entry.get("resource"), entry.get("fullUrl")
        else:
            yield f"entry {i}", None, None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _codings(concept: Any) -> list[dict[str, Any]]:
    """Codings of a CodeableConcept, a Coding, or a list of either."""
    if isinstance(concept, list):
        return [c for x in concept for c in _codings(x)]
    if not isinstance(concept, dict):
        return []
    if "coding" in concept:
        return [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    return [concept] if "code" in concept else []


def _patient_values(res: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Identifying values of a FHIR Patient, as (value, leak-harvest kind)."""
    out: list[tuple[str, str]] = []
    for ident in res.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            out.append((str(ident["value"]), "id"))
    for name in res.get("name") or []:
        if not isinstance(name, dict):
            continue
        parts = [*(name.get("given") or []), name.get("family") or ""]
        full = " ".join(str(x) for x in parts if x)
        if full:
            out.append((full, "person_name"))
        if name.get("text"):
            out.append((str(name["text"]), "person_name"))
    if res.get("birthDate"):
        out.append((str(res["birthDate"]), "birth_date"))
    for tel in res.get("telecom") or []:
        if isinstance(tel, dict) and tel.get("value"):
            out.append((str(tel["value"]), "phone" if tel.get("system") != "email" else "email"))
    for addr in res.get("address") or []:
        if isinstance(addr, dict):
            for line in [*(addr.get("line") or []), addr.get("city"), addr.get("postalCode")]:
                if line:
                    out.append((str(line), "address"))
    return out


def _read_fhir(p: Path, items: Iterable[tuple[str, Any, str | None]]) -> ClinicalInput:
    out = ClinicalInput(source=p.name)
    resources: list[tuple[str, dict[str, Any]]] = []
    patients: dict[str, tuple[str, ...]] = {}
    for where, res, full_url in items:
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            out.issues.append(ClinicalIssue(where, "not a FHIR resource"))
            continue
        if res["resourceType"] == "Patient":
            ids = [
                str(i["value"])
                for i in res.get("identifier") or []
                if isinstance(i, dict) and i.get("value")
            ]
            if res.get("id"):
                ids.append(str(res["id"]))
            keys = tuple(dict.fromkeys(ids))
            for ref in (f"Patient/{res.get('id')}" if res.get("id") else None, full_url):
                if ref:
                    patients[ref] = keys
            values = _patient_values(res)
            for k in keys:
                out.identifiers.setdefault(k, []).extend(values)
            continue
        resources.append((where, res))
    for where, res in resources:
        rtype = res["resourceType"]
        if rtype not in ("Encounter", "Condition", "Observation"):
            out.issues.append(ClinicalIssue(where, f"resource type {rtype} ignored", "warning"))
            continue
        subject = _dict(res.get("subject"))
        ref = str(subject.get("reference") or "")
        patient: tuple[str, ...] = ()
        if ref in patients:
            patient = patients[ref]
        elif ref.startswith("Patient/") and "/" not in ref[8:]:
            patient = (ref[8:],)
        elif _dict(subject.get("identifier")).get("value"):
            patient = (str(subject["identifier"]["value"]),)
        problems: list[str] = []
        if not patient:
            problems.append("no subject (a Patient reference or identifier)")
        record = {"Encounter": _encounter, "Condition": _condition, "Observation": _observation}[
            rtype
        ](where, res, patient, problems)
        if problems or record is None:
            out.issues.append(
                ClinicalIssue(where, f"{rtype}: " + "; ".join(problems), patient=patient)
            )
        else:
            out.records.append(record)
    return out


def _fhir_date(res: Mapping[str, Any], keys: Sequence[str], problems: list[str]) -> dt.date | None:
    for key in keys:
        obj: Any = res
        for part in key.split("."):
            obj = obj.get(part) if isinstance(obj, dict) else None
        if obj:
            d = parse_date(str(obj))
            if d is None:
                problems.append(f"{key} is not a full date (YYYY-MM-DD, 1900-2100)")
            return d
    problems.append(f"no date ({' or '.join(keys)})")
    return None


def _encounter(
    where: str, res: Mapping[str, Any], patient: tuple[str, ...], problems: list[str]
) -> ClinicalRecord | None:
    date = _fhir_date(res, ("actualPeriod.start", "period.start"), problems)
    klass = "AMB"
    for c in _codings(res.get("class")):
        if c.get("system") == ACT_CODE and c.get("code") in ENCOUNTER_CLASSES:
            klass = str(c["code"])
            break
    return ClinicalRecord(where=where, patient=patient, date=date, encounter=klass)


def _condition(
    where: str, res: Mapping[str, Any], patient: tuple[str, ...], problems: list[str]
) -> ClinicalRecord | None:
    date = _fhir_date(res, ("recordedDate", "onsetDateTime"), problems)
    code = _dict(res.get("code"))
    icd = [c for c in _codings(code) if c.get("system") in (ICD10, ICD10_CM)]
    if not icd:
        problems.append("code has no ICD-10 coding")
        return None
    value = str(icd[0].get("code") or "").upper()
    if not ICD10_RE.fullmatch(value):
        problems.append("code is not an ICD-10 code (like J18.9)")
        return None
    text = code.get("text")
    return ClinicalRecord(
        where=where,
        patient=patient,
        date=date,
        condition=(str(icd[0]["system"]), value),
        condition_text=str(text) if text else None,
    )


def _observation(
    where: str, res: Mapping[str, Any], patient: tuple[str, ...], problems: list[str]
) -> ClinicalRecord | None:
    date = _fhir_date(res, ("effectiveDateTime", "effectivePeriod.start", "issued"), problems)
    kinds = [
        MEASUREMENTS[str(c.get("code"))]
        for c in _codings(res.get("code"))
        if c.get("system") == LOINC and str(c.get("code")) in MEASUREMENTS
    ]
    if not kinds:
        problems.append(
            "code is not a supported LOINC measurement (" + ", ".join(MEASUREMENTS) + ")"
        )
        return None
    kind = kinds[0]
    q = _dict(res.get("valueQuantity"))
    unit = q.get("code") or q.get("unit")
    if unit != kind.unit:
        problems.append(f"valueQuantity is not in {kind.unit} (UCUM)")
        return None
    value = q.get("value")
    m = _measurement(
        kind,
        float(value) if isinstance(value, int | float) else None,
        problems,
        "valueQuantity.value",
    )
    if m is None:
        return None
    return ClinicalRecord(where=where, patient=patient, date=date, measurements=(m,))
