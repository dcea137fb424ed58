"""Build the transaction Bundle of one dataset from de-identified outputs only (:func:`build_bundle`).

Every resource is validated by the release's models (:mod:`imagedepot.fhir.releases`) and added
as a conditional create (:mod:`imagedepot.fhir.bundle`). A bundle holds:

``Patient``
    The pseudonymous identifier only (system from ``fhir.identifier_system``). Under a policy
    with ``retain_patient_characteristics``, also the sex kept in the de-identified images and
    either the age at each study (an ``Observation``, LOINC 30525-0, ages of 90 and over given
    as ``>= 90``) or, when the policy record says ``birth_date_detail: year``, the year of birth
    on the images' (shifted) time line. Never a name, never a full birth date.
    Subjects of a non-human organism (sample sheet ``organism``) are a ``Group`` of type animal.
``ImagingStudy``
    One per DICOM study, read from the de-identified files (remapped UIDs, modality, body site
    from Body Part Examined as SNOMED CT, series and instance counts, start date as shifted in
    the images); one per NIfTI volume (modality and acquisition date of its de-identified
    sidecar); one per microscopy image with modality ``SM`` and ``series.specimen`` pointing to
    a ``Specimen`` built from the sample sheet (``sample``, ``organism``).
``Endpoint``
    Where the data will live, for the dataset's destinations of type ``xnat`` (the ``url``
    and ``project`` of the destination) and ``bia`` (the study page of an ``accession``, else the
    ``url``); destinations without an address are left out.
``Consent``
    From the cohort policy, when it requires consent: its DUO codes (data use permission and
    modifiers) as provision purposes, the policy URI as basis.
``Device`` and ``Provenance``
    The pipeline as a Device with its version; one Provenance per item and transformation
    (``transform`` for the conversion, ``deidentify`` for the de-identification, ISO 21089
    life-cycle codes), whose entity is the item's source data by checksum (SHA-256 of the sorted
    SHA-256 of its files, never a path) and whose policy is the policy URI.
Clinical resources
    ``Encounter``, ``Condition`` and ``Observation`` from :mod:`imagedepot.clinical`
    (:mod:`imagedepot.fhir.clinical`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from imagedepot import __version__
from imagedepot.clinical.records import ClinicalLinkage
from imagedepot.fhir.bundle import BundleBuilder, Planned
from imagedepot.fhir.clinical import clinical_resources
from imagedepot.fhir.imaging import (
    age_observation,
    dicom_study,
    microscopy_resources,
    nifti_study,
    patient_characteristics,
)
from imagedepot.fhir.inputs import EndpointSpec, ItemOutcome, read_dicom_studies, source_digest
from imagedepot.fhir.releases import release
from imagedepot.fhir.terminology import (
    DUO_SYSTEM,
    ENDPOINT_SYSTEM,
    LIFECYCLE,
    PARTICIPANT_TYPE,
    PIPELINE_SYSTEM,
    SOURCE_DIGEST_SYSTEM,
    UID_NS,
)
from imagedepot.provenance import data_time

_HUMAN = {"homo sapiens", "human", "ncbitaxon:9606"}


@dataclass
class BundleOptions:
    """Options of :func:`build_bundle`.

    Attributes
    ----------
    identifier_system
        System URI of the pseudonymous identifier; other identifiers use it as a prefix
        (``<system>/imaging``, ``/specimen``, ``/consent``, ``/encounter``...).
    release
        ``R5`` or ``R4B``.
    endpoints
        Where the dataset will live (:func:`endpoints_for`).
    """

    identifier_system: str = "urn:imagedepot:pseudonym"
    release: str = "R5"
    endpoints: Sequence[EndpointSpec] = ()


def policy_uri(policy: Mapping[str, Any]) -> str:
    """URI naming a policy and its exact content: ``urn:imagedepot:policy:<name>:sha256:<hex>``."""
    return f"urn:imagedepot:policy:{quote(str(policy.get('name', '')))}:sha256:{policy.get('sha256', '')}"


def build_bundle(
    dataset_id: str,
    outcomes: Sequence[ItemOutcome],
    *,
    pseudonym: str,
    policy: Mapping[str, Any],
    options: BundleOptions | None = None,
    metadata: Mapping[str, str] | None = None,
    clinical: ClinicalLinkage | None = None,
) -> dict[str, Any]:
    """Build the transaction Bundle of one dataset (see the module docstring for its content).

    Parameters
    ----------
    dataset_id
        The sample sheet's dataset id.
    outcomes
        The dataset's processed (de-identified, leak-checked) items.
    pseudonym
        The subject's pseudonymous id (the only identifier of the subject).
    policy
        The policy as recorded in the de-identification provenance
        (:meth:`imagedepot.policy.Policy.to_provenance`).
    options
        Identifier system, FHIR release, endpoints.
    metadata
        The dataset's sample sheet metadata (``organism``, ``sample``, ``title``...).
    clinical
        De-identified clinical records of the subject (:func:`imagedepot.clinical.link_clinical`).

    Raises
    ------
    FhirError
        A resource does not validate against the release's models (a bug or unusable metadata).
    """
    opts = options or BundleOptions()
    rel = release(opts.release)
    meta = dict(metadata or {})
    system = opts.identifier_system
    deid_options = set(policy.get("deid_options") or [])
    characteristics = "retain_patient_characteristics" in deid_options
    b = BundleBuilder(rel)

    organism = meta.get("organism", "").strip()
    human = not organism or organism.casefold() in _HUMAN
    subject_id = (system, pseudonym)
    studies: dict[str, dict[str, Any]] = {}
    for oc in outcomes:
        if oc.item["kind"] == "dicom":
            for uid, st in read_dicom_studies(oc.deid_dir / "dicom").items():
                have = studies.setdefault(uid, st | {"series": {}, "items": []})
                have["series"].update(st["series"])
                have["items"].append(oc.item["id"])
    subject: dict[str, Any]
    if human:
        subject = {
            "resourceType": "Patient",
            "identifier": [{"system": system, "value": pseudonym}],
        }
        if characteristics:
            subject |= patient_characteristics(studies, policy)
    else:
        subject = rel.group({"system": system, "value": pseudonym}, organism)
    subject_url = b.add(Planned(subject, identifier=subject_id))

    device_id = (PIPELINE_SYSTEM, f"imagedepot-{__version__}")
    device_url = b.add(
        Planned(
            {
                "resourceType": "Device",
                "identifier": [{"system": device_id[0], "value": device_id[1]}],
                "status": "active",
                "manufacturer": "imagedepot developers",
                "version": [{"value": __version__}],
                **rel.device_name("imagedepot"),
            },
            identifier=device_id,
        )
    )

    p_uri = policy_uri(policy)
    consent_required = bool((policy.get("consent") or {}).get("required", True))
    if human and consent_required:
        data_use = policy.get("data_use") or {}
        duo = [c for c in [data_use.get("permission"), *data_use.get("modifiers", [])] if c]
        cid = (f"{system}/consent", f"{pseudonym}-{policy.get('name', '')}")
        b.add(
            Planned(
                rel.consent(
                    identifier={"system": cid[0], "value": cid[1]},
                    subject=subject_url,
                    policy_uri=p_uri,
                    purposes=[{"system": DUO_SYSTEM, "code": c} for c in duo],
                ),
                identifier=cid,
            )
        )

    endpoint_urls: list[str] = []
    for ep in opts.endpoints:
        eid = (ENDPOINT_SYSTEM, ep.address)
        payload = "DICOM" if ep.kind == "xnat" else "OME-Zarr"
        endpoint_urls.append(
            b.add(
                Planned(
                    rel.endpoint(
                        identifier={"system": eid[0], "value": eid[1]},
                        name=ep.name,
                        kind=ep.kind,
                        address=ep.address,
                        payload=payload,
                    ),
                    identifier=eid,
                )
            )
        )
    endpoints = [{"reference": u} for u in endpoint_urls]

    targets: dict[str, list[str]] = {}  # item id -> ImagingStudy full URLs
    for uid, st in studies.items():
        url = b.add(dicom_study(rel, uid, st, subject_url, endpoints))
        for item_id in st["items"]:
            targets.setdefault(item_id, []).append(url)
        if characteristics and human and policy.get("birth_date_detail", "age") == "age":
            age = age_observation(uid, st, subject_url, url, system, pseudonym)
            if age is not None:
                b.add(age)
    for oc in outcomes:
        if oc.item["kind"] == "nifti":
            study = nifti_study(rel, oc, meta, subject_url, endpoints, system)
            targets.setdefault(oc.item["id"], []).append(b.add(study))
        if oc.item["kind"] == "microscopy":
            spec_url, study = microscopy_resources(
                rel, oc.item, meta, subject_url, endpoints, system
            )
            b.add(spec_url)
            targets.setdefault(oc.item["id"], []).append(b.add(study))

    for oc in outcomes:
        refs = targets.get(oc.item["id"])
        if not refs:
            continue
        digest = source_digest(oc.item.get("files", []))
        steps = [("deidentify", "De-identify (anonymize)", oc.provenance)]
        if oc.convert_provenance is not None:
            steps.insert(0, ("transform", "Transform/translate", oc.convert_provenance))
        for code, display, prov in steps:
            put_id = str(uuid.uuid5(UID_NS, f"provenance|{dataset_id}|{oc.item['id']}|{code}"))
            b.add(
                Planned(
                    _provenance(
                        targets=refs,
                        activity=(code, display),
                        prov=prov,
                        device_url=device_url,
                        policy=p_uri,
                        digest=digest,
                        n_files=len(oc.item.get("files", [])),
                        item_id=oc.item["id"],
                        recorded=data_time([oc.item.get("data_time")]),
                    ),
                    put_id=put_id,
                )
            )

    if clinical is not None:
        for planned in clinical_resources(
            clinical, release=rel, subject=subject_url, identifier_system=system
        ):
            b.add(planned)
    return b.bundle()


def _provenance(
    *,
    targets: Sequence[str],
    activity: tuple[str, str],
    prov: Mapping[str, Any],
    device_url: str,
    policy: str,
    digest: str,
    n_files: int,
    item_id: str,
    recorded: str,
) -> dict[str, Any]:
    # ``recorded`` is the item's data time (imagedepot.provenance.data_time), not the wall clock
    # of the step: the bundle is staged, and a rerun must stage the same bytes. The steps' own
    # times stay in the trusted zone's provenance.json (occurredPeriod is optional, left out).
    return {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in targets],
        "recorded": recorded,
        "policy": [policy],
        "activity": {
            "coding": [{"system": LIFECYCLE, "code": activity[0], "display": activity[1]}]
        },
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "performer"}]},
                "who": {"reference": device_url},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": SOURCE_DIGEST_SYSTEM, "value": digest},
                    "display": f"source data of item {item_id} ({n_files} file(s))",
                },
            }
        ],
    }
