"""Resources of the imaging data: an ``ImagingStudy`` per DICOM study, NIfTI volume and
microscopy image (with its ``Specimen``), the ``Patient``'s characteristics kept in the images and
the age at each study (see :mod:`imagedepot.fhir.build` for when each is made)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from imagedepot.fhir.bundle import Planned
from imagedepot.fhir.inputs import ItemOutcome
from imagedepot.fhir.releases import FhirRelease
from imagedepot.fhir.terminology import (
    BODY_PARTS,
    DICOM_DCM,
    DICOM_UID_SYSTEM,
    LOINC,
    SNOMED,
    UCUM,
    UID_NS,
)

#: DICOM age units (Age String) → UCUM.
_AGE_UNITS = {"Y": ("a", "years"), "M": ("mo", "months"), "W": ("wk", "weeks"), "D": ("d", "days")}


def _parse_age(value: str) -> tuple[int, str] | None:
    m = re.fullmatch(r"(\d{3})([DWMY])", value.strip())
    return (int(m.group(1)), m.group(2)) if m else None


def patient_characteristics(
    studies: Mapping[str, Mapping[str, Any]], policy: Mapping[str, Any]
) -> dict[str, Any]:
    """Sex and (when the policy asks for it) year of birth kept in the de-identified images."""
    out: dict[str, Any] = {}
    sexes = {st.get("sex") for st in studies.values()} - {"", None}
    gender = {"M": "male", "F": "female", "O": "other"}
    if len(sexes) == 1:
        out["gender"] = gender.get(str(next(iter(sexes))).upper(), "unknown")
    if policy.get("birth_date_detail") == "year":
        years = set()
        for st in studies.values():
            age = _parse_age(str(st.get("age") or ""))
            if st.get("date") and age is not None and age[1] == "Y" and age[0] < 90:
                years.add(int(str(st["date"])[:4]) - age[0])
        if years:
            # The age at the study is whole years: the birth year is this or the one before.
            out["birthDate"] = str(min(years))
    return out


def age_observation(
    uid: str,
    st: Mapping[str, Any],
    subject_url: str,
    study_url: str,
    system: str,
    pseudonym: str,
) -> Planned | None:
    age = _parse_age(str(st.get("age") or ""))
    if age is None:
        return None
    value, unit = age
    ucum, unit_name = _AGE_UNITS[unit]
    quantity: dict[str, Any] = {"value": value, "unit": unit_name, "system": UCUM, "code": ucum}
    if unit == "Y" and value >= 90:
        quantity |= {"value": 90, "comparator": ">="}  # ages over 89 are aggregated
    oid = (f"{system}/observation", f"{pseudonym}-age-{uuid.uuid5(UID_NS, uid)}")
    return Planned(
        {
            "resourceType": "Observation",
            "identifier": [{"system": oid[0], "value": oid[1]}],
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "30525-0", "display": "Age"}]},
            "subject": {"reference": subject_url},
            "partOf": [{"reference": study_url}],
            "effectiveDateTime": st.get("date"),
            "valueQuantity": quantity,
        },
        identifier=oid,
    )


def dicom_study(
    rel: FhirRelease,
    uid: str,
    st: Mapping[str, Any],
    subject_url: str,
    endpoints: list[dict[str, str]],
) -> Planned:
    series = []
    modalities: dict[str, None] = {}
    for se_uid, se in sorted(st["series"].items(), key=lambda kv: (kv[1]["number"] or 0, kv[0])):
        modality = {"system": DICOM_DCM, "code": se["modality"]}
        modalities.setdefault(se["modality"])
        body = BODY_PARTS.get(se["body_part"])
        instances = sorted(se["instances"].items(), key=lambda kv: (kv[1]["number"] or 0, kv[0]))
        series.append(
            {
                "uid": se_uid,
                "number": se["number"],
                "modality": rel.concept(modality),
                "description": se["description"],
                "numberOfInstances": len(instances),
                "endpoint": endpoints,
                "bodySite": (
                    rel.body_site({"system": SNOMED, "code": body[0], "display": body[1]})
                    if body
                    else None
                ),
                "instance": [
                    {
                        "uid": i_uid,
                        "sopClass": {
                            "system": "urn:ietf:rfc:3986",
                            "code": f"urn:oid:{i['sop_class']}",
                        },
                        "number": i["number"],
                    }
                    for i_uid, i in instances
                ],
            }
        )
    ident = (DICOM_UID_SYSTEM, f"urn:oid:{uid}")
    return Planned(
        {
            "resourceType": "ImagingStudy",
            "identifier": [{"system": ident[0], "value": ident[1]}],
            "status": "available",
            "modality": [rel.concept({"system": DICOM_DCM, "code": m}) for m in modalities],
            "subject": {"reference": subject_url},
            "started": st.get("date"),
            "endpoint": endpoints,
            "numberOfSeries": len(series),
            "numberOfInstances": sum(s["numberOfInstances"] for s in series),
            "description": st.get("description"),
            "series": series,
        },
        identifier=ident,
    )


def nifti_study(
    rel: FhirRelease,
    oc: ItemOutcome,
    meta: Mapping[str, str],
    subject_url: str,
    endpoints: list[dict[str, str]],
    system: str,
) -> Planned:
    """An ImagingStudy for a NIfTI volume: modality and acquisition date from its de-identified
    BIDS sidecar (as shifted there), a series UID derived from the item id."""
    sidecar: dict[str, Any] = {}
    for f in sorted((oc.deid_dir / "nifti").glob("*.json")):
        try:
            sidecar = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        break
    modality = str(sidecar.get("Modality") or "OT")
    when = str(sidecar.get("AcquisitionDateTime") or sidecar.get("AcquisitionDate") or "")
    started = when[:10] if re.fullmatch(r"\d{4}-\d{2}-\d{2}", when[:10]) else None
    code = {"system": DICOM_DCM, "code": modality}
    iid = (f"{system}/imaging", str(oc.item["id"]))
    return Planned(
        {
            "resourceType": "ImagingStudy",
            "identifier": [{"system": iid[0], "value": iid[1]}],
            "status": "available",
            "modality": [rel.concept(code)],
            "subject": {"reference": subject_url},
            "started": started,
            "endpoint": endpoints,
            "description": meta.get("title", "").strip(),
            "numberOfSeries": 1,
            "series": [
                {
                    "uid": f"2.25.{uuid.uuid5(UID_NS, str(oc.item['id'])).int}",
                    "modality": rel.concept(code),
                    "endpoint": endpoints,
                }
            ],
        },
        identifier=iid,
    )


def microscopy_resources(
    rel: FhirRelease,
    item: Mapping[str, Any],
    meta: Mapping[str, str],
    subject_url: str,
    endpoints: list[dict[str, str]],
    system: str,
) -> tuple[Planned, Planned]:
    sid = (f"{system}/specimen", str(item["id"]))
    organism = meta.get("organism", "").strip()
    specimen = Planned(
        {
            "resourceType": "Specimen",
            "identifier": [{"system": sid[0], "value": sid[1]}],
            "status": "available",
            "type": {"text": meta.get("sample", "").strip()},
            "subject": {"reference": subject_url},
            "note": [{"text": f"Organism: {organism}"}] if organism else None,
        },
        identifier=sid,
    )
    code = {"system": DICOM_DCM, "code": "SM"}
    iid = (f"{system}/imaging", str(item["id"]))
    study = Planned(
        {
            "resourceType": "ImagingStudy",
            "identifier": [{"system": iid[0], "value": iid[1]}],
            "status": "available",
            "modality": [rel.concept(code)],
            "subject": {"reference": subject_url},
            "endpoint": endpoints,
            "description": meta.get("title", "").strip(),
            "numberOfSeries": 1,
            "series": [
                {
                    "uid": f"2.25.{uuid.uuid5(UID_NS, str(item['id'])).int}",
                    "modality": rel.concept(code),
                    "description": meta.get("imaging_method", "").strip(),
                    "endpoint": endpoints,
                    "specimen": [{"reference": specimen.full_url}],
                }
            ],
        },
        identifier=iid,
    )
    return specimen, study
