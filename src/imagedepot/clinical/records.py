"""Clinical records: the value sets accepted (ICD-10 codes, LOINC measurements, encounter classes),
the records as read (PHI, trusted zone only), the problems found, and the de-identified facts and
linkage of one subject."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CSV_REQUIRED = ("patient_id", "visit_date")
CSV_OPTIONAL = ("diagnosis_code", "diagnosis_system", "diagnosis_text", "weight_kg")

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10_SYSTEMS = {"icd-10": ICD10, "icd-10-cm": ICD10_CM, ICD10: ICD10, ICD10_CM: ICD10_CM}
#: ICD-10 / ICD-10-CM code: letter, two characters, optional dot and up to four more.
ICD10_RE = re.compile(r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ENCOUNTER_CLASSES = frozenset(
    {"AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "SS", "VR"}
)


@dataclass(frozen=True)
class MeasurementKind:
    """An Observation this module accepts: LOINC code, name, UCUM unit, plausible range."""

    loinc: str
    display: str
    unit: str
    low: float
    high: float


MEASUREMENTS: Mapping[str, MeasurementKind] = {
    m.loinc: m
    for m in (
        MeasurementKind("29463-7", "Body weight", "kg", 0.2, 700.0),
        MeasurementKind("8302-2", "Body height", "cm", 20.0, 275.0),
        MeasurementKind("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 5.0, 150.0),
    )
}
WEIGHT = MEASUREMENTS["29463-7"]


@dataclass(frozen=True)
class Measurement:
    """A measured value in the unit of its :class:`MeasurementKind`."""

    loinc: str
    value: float


@dataclass
class ClinicalRecord:
    """One record of the clinical input, before de-identification (PHI: trusted zone only).

    ``patient`` holds the candidate original IDs (a CSV row has one; a FHIR resource may have
    several identifiers); ``encounter`` is the v3 ActCode class when the record is a visit.
    """

    where: str
    patient: tuple[str, ...]
    date: dt.date | None
    encounter: str | None = None
    condition: tuple[str, str] | None = None
    condition_text: str | None = None
    measurements: tuple[Measurement, ...] = ()


@dataclass
class ClinicalIssue:
    """A problem with one record: ``severity`` ``error`` (record rejected) or ``warning``."""

    where: str
    problem: str
    severity: str = "error"
    patient: tuple[str, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, str]:
        """Plain-JSON form (no patient ID)."""
        return {"where": self.where, "problem": self.problem}


@dataclass
class ClinicalInput:
    """Everything read from a clinical file. ``identifiers`` maps an original patient ID to
    identifying values of that patient found in the input (for the leak gate)."""

    source: str
    records: list[ClinicalRecord] = field(default_factory=list)
    issues: list[ClinicalIssue] = field(default_factory=list)
    identifiers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class ClinicalFact:
    """A de-identified clinical fact of one subject, ready to become a FHIR resource.

    ``key`` is a stable, non-identifying identifier value; ``encounter`` the key of the
    Encounter it belongs to.
    """

    kind: str  # "encounter", "condition" or "observation"
    key: str
    date: str | None
    code: tuple[str, str] | None = None
    text: str | None = None
    value: float | None = None
    encounter: str | None = None
    encounter_class: str | None = None


@dataclass
class ClinicalLinkage:
    """Result of :func:`link_clinical` for one subject.

    ``source_identifiers`` (original IDs, dates, names of the input) are PHI: they go to the
    leak gate's identifier set only, never into outputs.
    """

    source: str
    pseudonym: str
    facts: list[ClinicalFact] = field(default_factory=list)
    errors: list[ClinicalIssue] = field(default_factory=list)
    warnings: list[ClinicalIssue] = field(default_factory=list)
    records: int = 0
    linked: int = 0
    other_subjects: int = 0
    dates: str = "shift"
    source_identifiers: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def to_status(self) -> dict[str, Any]:
        """The part of the bundle status that the run summary reads (no PHI)."""
        return {
            "source": self.source,
            "records": self.records,
            "linked": self.linked,
            "other_subjects": self.other_subjects,
            "rejected": len(self.errors),
            "dates": self.dates,
            "resources": len(self.facts),
            "errors": [e.to_dict() for e in self.errors],
            "warnings": [w.to_dict() for w in self.warnings],
        }
