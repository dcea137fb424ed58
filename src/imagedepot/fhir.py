"""FHIR linkage: one transaction Bundle per dataset, built from de-identified outputs only.

Resources: ``Patient`` (pseudonymous identifier only), ``ImagingStudy`` per DICOM study (remapped UIDs,
shifted start date) and per microscopy image (modality SM, ``series.specimen``), ``Specimen`` for
microscopy samples, ``Consent`` from the cohort policy (DUO codes), ``Device`` for the pipeline and
``Provenance`` for the conversion and de-identification. Entries use ``urn:uuid`` full URLs derived
from stable identifiers and conditional creates (``ifNoneExist``) so loading the bundle twice creates
no duplicates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagedepot import __version__
from imagedepot.provenance import now

DUO_SYSTEM = "http://purl.obolibrary.org/obo/duo.owl"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
UID_NS = uuid.UUID("6f1c2a8e-3b1d-4f6e-9a57-2d7c1e9b0a41")
PIPELINE_SYSTEM = "urn:imagedepot:pipeline"


@dataclass
class ItemOutcome:
    """What the bundle needs of one processed item."""

    item: dict[str, Any]
    deid_dir: Path
    provenance: dict[str, Any]


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(UID_NS, '|'.join(parts))}"


def _entry(resource: dict[str, Any], full_url: str, if_none_exist: str | None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _da_to_iso(value: str) -> str | None:
    try:
        return dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def _dicom_studies(outcome: ItemOutcome) -> dict[str, dict[str, Any]]:
    """Read the de-identified DICOM of one item: studies → series → instances."""
    import pydicom

    studies: dict[str, dict[str, Any]] = {}
    folder = outcome.deid_dir / "dicom"
    files = sorted(folder.rglob("*")) if folder.is_dir() else []
    for f in files:
        if not f.is_file():
            continue
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        st = studies.setdefault(
            str(ds.StudyInstanceUID),
            {"date": _da_to_iso(str(ds.get("StudyDate", "") or "")), "series": {}},
        )
        se = st["series"].setdefault(
            str(ds.SeriesInstanceUID),
            {
                "modality": str(ds.get("Modality", "") or "OT"),
                "number": int(ds.SeriesNumber)
                if ds.get("SeriesNumber") not in (None, "")
                else None,
                "instances": [],
            },
        )
        se["instances"].append(
            {
                "uid": str(ds.SOPInstanceUID),
                "sopClass": str(ds.SOPClassUID),
                "number": int(ds.InstanceNumber)
                if ds.get("InstanceNumber") not in (None, "")
                else None,
            }
        )
    return studies


def build_bundle(
    dataset_id: str,
    outcomes: Sequence[ItemOutcome],
    *,
    pseudonym: str,
    policy: dict[str, Any],
    identifier_system: str,
    fhir_version: str = "R5",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the transaction Bundle of one dataset.

    Parameters
    ----------
    dataset_id
        The sample sheet's dataset id.
    outcomes
        The dataset's processed (de-identified, leak-checked) items.
    pseudonym
        The subject's pseudonymous id (the only Patient identifier).
    policy
        The policy's provenance record (name, sha256, data_use with DUO codes).
    identifier_system
        System URI of the pseudonymous identifier.
    fhir_version
        ``R5`` or ``R4B`` (the shapes used here are common to both except where noted).
    """
    meta = metadata or {}
    entries: list[dict[str, Any]] = []
    patient_url = _urn("Patient", identifier_system, pseudonym)
    entries.append(
        _entry(
            {
                "resourceType": "Patient",
                "identifier": [{"system": identifier_system, "value": pseudonym}],
            },
            patient_url,
            f"identifier={identifier_system}|{pseudonym}",
        )
    )
    device_url = _urn("Device", __version__)
    device: dict[str, Any] = {
        "resourceType": "Device",
        "identifier": [{"system": PIPELINE_SYSTEM, "value": f"imagedepot-{__version__}"}],
        "version": [{"value": __version__}],
    }
    if fhir_version == "R5":
        device["name"] = [{"value": "imagedepot", "type": "user-friendly-name"}]
    else:
        device["deviceName"] = [{"name": "imagedepot", "type": "user-friendly-name"}]
    entries.append(
        _entry(device, device_url, f"identifier={PIPELINE_SYSTEM}|imagedepot-{__version__}")
    )

    data_use = policy.get("data_use") or {}
    duo_codes = [c for c in [data_use.get("permission"), *data_use.get("modifiers", [])] if c]
    consent_url = _urn("Consent", pseudonym, policy.get("name", ""))
    consent: dict[str, Any] = {
        "resourceType": "Consent",
        "identifier": [
            {"system": f"{identifier_system}/consent", "value": f"{pseudonym}-{policy.get('name')}"}
        ],
        "status": "active",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": "57016-8",
                        "display": "Privacy policy acknowledgement Document",
                    }
                ]
            }
        ],
        "subject": {"reference": patient_url},
    }
    if fhir_version == "R5":
        consent["decision"] = "permit"
        consent["regulatoryBasis"] = [
            {"coding": [{"system": DUO_SYSTEM, "code": c}]} for c in duo_codes
        ]
    else:
        consent["scope"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}
            ]
        }
        consent["policy"] = [{"uri": f"{DUO_SYSTEM}#{c.replace(':', '_')}"} for c in duo_codes]
    entries.append(
        _entry(
            consent,
            consent_url,
            f"identifier={identifier_system}/consent|{pseudonym}-{policy.get('name')}",
        )
    )

    target_refs: list[str] = []
    for oc in outcomes:
        item = oc.item
        if item["kind"] == "dicom":
            for study_uid, st in _dicom_studies(oc).items():
                url = _urn("ImagingStudy", study_uid)
                series = []
                for se_uid, se in st["series"].items():
                    code = {"system": DICOM_DCM, "code": se["modality"]}
                    s: dict[str, Any] = {
                        "uid": se_uid,
                        "modality": {"coding": [code]} if fhir_version == "R5" else code,
                        "numberOfInstances": len(se["instances"]),
                        "instance": [
                            {
                                "uid": i["uid"],
                                "sopClass": {
                                    "system": "urn:ietf:rfc:3986",
                                    "code": f"urn:oid:{i['sopClass']}",
                                },
                            }
                            | ({"number": i["number"]} if i["number"] is not None else {})
                            for i in se["instances"]
                        ],
                    }
                    if se["number"] is not None:
                        s["number"] = se["number"]
                    series.append(s)
                study = {
                    "resourceType": "ImagingStudy",
                    "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}],
                    "status": "available",
                    "subject": {"reference": patient_url},
                    "numberOfSeries": len(series),
                    "numberOfInstances": sum(se["numberOfInstances"] for se in series),
                    "series": series,
                }
                if st["date"]:
                    study["started"] = st["date"]
                entries.append(_entry(study, url, f"identifier=urn:oid:{study_uid}"))
                target_refs.append(url)
        elif item["kind"] == "microscopy":
            spec_url = _urn("Specimen", item["id"])
            specimen: dict[str, Any] = {
                "resourceType": "Specimen",
                "identifier": [{"system": f"{identifier_system}/specimen", "value": item["id"]}],
                "subject": {"reference": patient_url},
            }
            if meta.get("sample"):
                specimen["note"] = [{"text": meta["sample"]}]
            entries.append(
                _entry(specimen, spec_url, f"identifier={identifier_system}/specimen|{item['id']}")
            )
            url = _urn("ImagingStudy", "microscopy", item["id"])
            code = {"system": DICOM_DCM, "code": "SM"}
            study = {
                "resourceType": "ImagingStudy",
                "identifier": [{"system": f"{identifier_system}/imaging", "value": item["id"]}],
                "status": "available",
                "subject": {"reference": patient_url},
                "numberOfSeries": 1,
                "series": [
                    {
                        "uid": f"2.25.{uuid.uuid5(UID_NS, item['id']).int}",
                        "modality": {"coding": [code]} if fhir_version == "R5" else code,
                        "specimen": [{"reference": spec_url}],
                    }
                ],
            }
            entries.append(
                _entry(study, url, f"identifier={identifier_system}/imaging|{item['id']}")
            )
            target_refs.append(url)
    if target_refs:
        by_step: dict[str, list[str]] = defaultdict(list)
        by_step["de-identification"] = target_refs
        prov = {
            "resourceType": "Provenance",
            "target": [{"reference": r} for r in target_refs],
            "recorded": now(),
            "policy": [
                f"urn:imagedepot:policy:{policy.get('name')}:sha256:{policy.get('sha256', '')}"
            ],
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "DEID",
                        "display": "deidentify",
                    }
                ]
            },
            "agent": [{"who": {"reference": device_url}}],
        }
        entries.append(_entry(prov, _urn("Provenance", dataset_id, *target_refs), None))
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "meta": {"tag": [{"system": PIPELINE_SYSTEM, "code": f"fhir-{fhir_version}"}]},
        "entry": entries,
    }


def bundle_dataset(
    dataset_id: str,
    *,
    items_dir: Path,
    deid_root: Path,
    leak_root: Path,
    out: Path,
    config: dict[str, Any],
) -> dict[str, Any]:
    """Build the bundle of one dataset from its clean items, run the leak gate on it, write it.

    Writes ``out`` (only when clean) and ``<out stem>.status.json`` with ``status`` ``clean``, ``leak``
    or ``empty`` (no processed item). Returns the status record.
    """
    from imagedepot.io import read_json, write_json
    from imagedepot.leakcheck import allowed_kinds_for_options, leakcheck

    fcfg = config.get("fhir", {})
    items = [read_json(p) for p in sorted(items_dir.glob("*.json"))]
    items = [i for i in items if i.get("dataset") == dataset_id and i["status"] == "pending"]
    outcomes: list[ItemOutcome] = []
    pseudonym = None
    policy: dict[str, Any] = {}
    originals: list[Path] = []
    metadata: dict[str, str] = {}
    for item in items:
        leak = read_json(leak_root / f"{item['id']}.json")
        if leak["status"] != "clean":
            continue
        prov = read_json(deid_root / item["id"] / "provenance.json")
        pseudonym = prov["options"]["subject_pseudonym"]
        policy = prov.get("policy") or {}
        metadata = item.get("metadata", {})
        outcomes.append(ItemOutcome(item=item, deid_dir=deid_root / item["id"], provenance=prov))
        originals.extend(Path(f["path"]) for f in item["files"])
    status_path = out.with_name(out.name.removesuffix(".json") + ".status.json")
    if not outcomes or pseudonym is None:
        status = {"dataset": dataset_id, "status": "empty", "entries": 0}
        if out.exists():
            out.unlink()
        write_json(status_path, status)
        return status
    bundle = build_bundle(
        dataset_id,
        outcomes,
        pseudonym=pseudonym,
        policy=policy,
        identifier_system=fcfg.get("identifier_system", "urn:imagedepot:pseudonym"),
        fhir_version=fcfg.get("version", "R5"),
        metadata=metadata,
    )
    extra = sorted({i["subject"] for i in items if i.get("subject")})
    tmp_dir = out.parent / f".{out.name}.check"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    candidate = tmp_dir / out.name
    write_json(candidate, bundle)
    try:
        allow = allowed_kinds_for_options(policy.get("deid_options", []))
        report = leakcheck(originals, [candidate], extra=extra, allow_kinds=allow).to_dict()
    finally:
        candidate.unlink()
        tmp_dir.rmdir()
    status = {
        "dataset": dataset_id,
        "status": "clean" if report["status"] == "clean" else "leak",
        "entries": len(bundle["entry"]),
        "leakcheck": report,
    }
    if status["status"] == "clean":
        write_json(out, bundle)
    elif out.exists():
        out.unlink()
    write_json(status_path, status)
    return status
