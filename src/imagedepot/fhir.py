"""FHIR linkage: one transaction Bundle per dataset, built from de-identified outputs only.

Every resource is built as FHIR JSON, validated by the ``fhir.resources`` models of the chosen
release (:class:`R5`, the default, or :class:`R4B`) and written as the models serialise it. A
bundle holds:

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
    ``Encounter``, ``Condition`` and ``Observation`` from :mod:`imagedepot.clinical`.

Loading is idempotent: resources with an identifier are conditional creates
(``request.ifNoneExist`` = ``identifier=system|value``) and ``Provenance`` (which has no
identifier) is a ``PUT`` to an id derived from the dataset, item and step; full URLs are
``urn:uuid`` derived from the same identifiers, so a resource has the same full URL in every
bundle. Pushing a bundle twice, or two bundles of the same subject, creates each resource once.

:func:`bundle_dataset` runs the leak gate on the bundle before writing it; :func:`push_bundle`
POSTs a bundle to a FHIR server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from imagedepot import __version__
from imagedepot.errors import ConfigError, ImagedepotError
from imagedepot.provenance import data_time

if TYPE_CHECKING:
    from imagedepot.clinical import ClinicalLinkage

log = logging.getLogger(__name__)

DUO_SYSTEM = "http://purl.obolibrary.org/obo/duo.owl"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_UID_SYSTEM = "urn:dicom:uid"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ENDPOINT_TYPE_SYSTEM = "urn:imagedepot:endpoint-type"
ENDPOINT_SYSTEM = "urn:imagedepot:endpoint"
SOURCE_DIGEST_SYSTEM = "urn:imagedepot:source-sha256"
PIPELINE_SYSTEM = "urn:imagedepot:pipeline"
UID_NS = uuid.UUID("6f1c2a8e-3b1d-4f6e-9a57-2d7c1e9b0a41")
BIA_STUDY_URL = "https://www.ebi.ac.uk/biostudies/bioimages/studies/{accession}"

#: DICOM Body Part Examined → SNOMED CT (code, display), after PS3.16 Annex L.
BODY_PARTS: Mapping[str, tuple[str, str]] = {
    "ABDOMEN": ("113345001", "Abdominal structure"),
    "BRAIN": ("12738006", "Brain structure"),
    "BREAST": ("76752008", "Breast structure"),
    "CHEST": ("51185008", "Thoracic structure"),
    "CSPINE": ("122494005", "Cervical spine structure"),
    "EXTREMITY": ("66019005", "Limb structure"),
    "FOOT": ("56459004", "Foot structure"),
    "HAND": ("85562004", "Hand structure"),
    "HEAD": ("69536005", "Head structure"),
    "HEART": ("80891009", "Heart structure"),
    "HIP": ("24136001", "Hip joint structure"),
    "KNEE": ("72696002", "Knee region structure"),
    "LIVER": ("10200004", "Liver structure"),
    "LSPINE": ("122496007", "Lumbar spine structure"),
    "NECK": ("45048000", "Neck structure"),
    "PELVIS": ("12921003", "Pelvic structure"),
    "SHOULDER": ("16982005", "Shoulder region structure"),
    "TSPINE": ("122495006", "Thoracic spine structure"),
    "WHOLEBODY": ("38266002", "Entire body as a whole"),
}

#: DICOM age units (Age String) → UCUM.
_AGE_UNITS = {"Y": ("a", "years"), "M": ("mo", "months"), "W": ("wk", "weeks"), "D": ("d", "days")}
_HUMAN = {"homo sapiens", "human", "ncbitaxon:9606"}
_DUMMY_DATES = {"19000101", "00000000"}


class FhirError(ImagedepotError):
    """A resource failed validation, or a bundle is not what this module expects."""


class FhirPushError(ImagedepotError):
    """A FHIR server refused a transaction (``issues`` from its OperationOutcome) or was not
    reachable after the retries."""

    def __init__(self, message: str, *, status: int | None = None, issues: Sequence[str] = ()):
        self.status = status
        self.issues = list(issues)
        super().__init__(message)


# --------------------------------------------------------------------------- releases


class FhirRelease:
    """Shapes that differ between FHIR releases, and validation with the release's models.

    Subclasses (:class:`R5`, :class:`R4B`) give the element names and data types of their
    release; building code asks them instead of testing version strings.
    """

    name: ClassVar[str]
    models: ClassVar[str]

    def model(self, resource_type: str) -> Any:
        """The ``fhir.resources`` model class of ``resource_type`` in this release."""
        import importlib

        try:
            module = importlib.import_module(self.models)
        except ImportError as exc:
            raise ConfigError(
                "FHIR bundles need the fhir.resources package: pip install 'imagedepot[fhir]'"
            ) from exc
        return module.get_fhir_model_class(resource_type)

    def validate(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``resource`` with the release's model and return it as the model writes it.

        Raises :class:`FhirError` naming the resource type and the invalid elements.
        """
        from pydantic import ValidationError

        rtype = str(resource.get("resourceType", ""))
        try:
            model = self.model(rtype)
        except (KeyError, ValueError) as exc:
            raise FhirError(f"FHIR {self.name}: unknown resource type {rtype!r}") from exc
        try:
            obj = model.model_validate(dict(resource))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
            )
            raise FhirError(f"FHIR {self.name} {rtype} is invalid: {problems}") from exc
        data: dict[str, Any] = json.loads(obj.model_dump_json())
        return data

    # -- shapes (R5 by default; R4B overrides)

    def concept(self, coding: Mapping[str, Any]) -> Any:
        """A coded element that R5 types as CodeableConcept and R4B as Coding."""
        return {"coding": [dict(coding)]}

    def body_site(self, coding: Mapping[str, Any]) -> Any:
        """``ImagingStudy.series.bodySite``: CodeableReference in R5, Coding in R4B."""
        return {"concept": {"coding": [dict(coding)]}}

    def device_name(self, name: str) -> dict[str, Any]:
        """The Device's name elements."""
        return {"name": [{"value": name, "type": "user-friendly-name"}], "displayName": name}

    def group(self, identifier: Mapping[str, str], name: str) -> dict[str, Any]:
        """A Group standing for a non-human subject."""
        return {
            "resourceType": "Group",
            "identifier": [dict(identifier)],
            "type": "animal",
            "membership": "definitional",
            "name": name,
        }

    def consent(
        self,
        *,
        identifier: Mapping[str, str],
        subject: str,
        policy_uri: str,
        purposes: Sequence[Mapping[str, str]],
    ) -> dict[str, Any]:
        """A Consent that permits the data uses ``purposes`` (DUO codings) under the policy."""
        return {
            "resourceType": "Consent",
            "identifier": [dict(identifier)],
            "status": "active",
            "category": [_CONSENT_CATEGORY],
            "subject": {"reference": subject},
            "decision": "permit",
            "policyBasis": {"url": policy_uri},
            "provision": [{"purpose": [dict(p) for p in purposes]}] if purposes else None,
        }

    def endpoint(
        self, *, identifier: Mapping[str, str], name: str, kind: str, address: str, payload: str
    ) -> dict[str, Any]:
        """An Endpoint of connection type ``kind`` (``xnat`` or ``bia``)."""
        return {
            "resourceType": "Endpoint",
            "identifier": [dict(identifier)],
            "status": "active",
            "connectionType": [{"coding": [{"system": ENDPOINT_TYPE_SYSTEM, "code": kind}]}],
            "name": name,
            "payload": [{"type": [{"text": payload}]}],
            "address": address,
        }

    def encounter(
        self, *, identifier: Mapping[str, str], subject: str, date: str | None, klass: str
    ) -> dict[str, Any]:
        """A finished Encounter of class ``klass`` (v3 ActCode) starting on ``date``."""
        return {
            "resourceType": "Encounter",
            "identifier": [dict(identifier)],
            "status": "completed",
            "class": [{"coding": [_act_code(klass)]}],
            "subject": {"reference": subject},
            "actualPeriod": {"start": date} if date else None,
        }

    def condition_status(self) -> dict[str, Any]:
        """``Condition``'s clinical status elements (R5 requires one; its value is unknown)."""
        return {
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "unknown",
                    }
                ]
            }
        }


class R5(FhirRelease):
    """FHIR R5 (5.0.0), the default (``fhir.resources``)."""

    name = "R5"
    models = "fhir.resources"


class R4B(FhirRelease):
    """FHIR R4B (4.3.0) (``fhir.resources.R4B``)."""

    name = "R4B"
    models = "fhir.resources.R4B"

    def concept(self, coding: Mapping[str, Any]) -> Any:
        return dict(coding)

    def body_site(self, coding: Mapping[str, Any]) -> Any:
        return dict(coding)

    def device_name(self, name: str) -> dict[str, Any]:
        return {"deviceName": [{"name": name, "type": "user-friendly-name"}]}

    def group(self, identifier: Mapping[str, str], name: str) -> dict[str, Any]:
        return {
            "resourceType": "Group",
            "identifier": [dict(identifier)],
            "type": "animal",
            "actual": False,
            "name": name,
        }

    def consent(
        self,
        *,
        identifier: Mapping[str, str],
        subject: str,
        policy_uri: str,
        purposes: Sequence[Mapping[str, str]],
    ) -> dict[str, Any]:
        return {
            "resourceType": "Consent",
            "identifier": [dict(identifier)],
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "research",
                    }
                ]
            },
            "category": [_CONSENT_CATEGORY],
            "patient": {"reference": subject},
            "policy": [{"uri": policy_uri}],
            "provision": (
                {"type": "permit", "purpose": [dict(p) for p in purposes]} if purposes else None
            ),
        }

    def endpoint(
        self, *, identifier: Mapping[str, str], name: str, kind: str, address: str, payload: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "Endpoint",
            "identifier": [dict(identifier)],
            "status": "active",
            "connectionType": {"system": ENDPOINT_TYPE_SYSTEM, "code": kind},
            "name": name,
            "payloadType": [{"text": payload}],
            "address": address,
        }

    def encounter(
        self, *, identifier: Mapping[str, str], subject: str, date: str | None, klass: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "identifier": [dict(identifier)],
            "status": "finished",
            "class": _act_code(klass),
            "subject": {"reference": subject},
            "period": {"start": date} if date else None,
        }

    def condition_status(self) -> dict[str, Any]:
        return {}  # optional in R4B; not asserted when unknown


#: Supported releases by name (config ``fhir.version``).
RELEASES: Mapping[str, FhirRelease] = {"R5": R5(), "R4B": R4B()}

_CONSENT_CATEGORY = {
    "coding": [
        {
            "system": LOINC,
            "code": "57016-8",
            "display": "Privacy policy acknowledgement Document",
        }
    ]
}


def _act_code(code: str) -> dict[str, str]:
    return {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}


def release(name: str) -> FhirRelease:
    """The :class:`FhirRelease` called ``name`` (``R5`` or ``R4B``)."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ConfigError(
            f"fhir.version: unknown FHIR release {name!r} (known: {', '.join(RELEASES)})"
        ) from None


# --------------------------------------------------------------------------- entries


def urn_for(resource_type: str, *parts: str) -> str:
    """Stable ``urn:uuid`` full URL of a resource, from its type and identifying parts."""
    return f"urn:uuid:{uuid.uuid5(UID_NS, '|'.join((resource_type, *parts)))}"


def identifier_query(system: str, value: str) -> str:
    """``identifier=system|value`` search string (each side URL-encoded, ``|`` kept)."""
    return f"identifier={quote(system, safe=':/')}|{quote(value, safe=':/')}"


def _drop_empty(value: Any) -> Any:
    """Remove ``None``, empty strings, lists and dicts (FHIR forbids empty elements)."""
    if isinstance(value, dict):
        out = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [_drop_empty(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


@dataclass(frozen=True)
class Planned:
    """A resource to put in a bundle.

    ``identifier`` (system, value) makes it a conditional create and fixes its full URL;
    ``put_id`` makes it an update-as-create of that id (for resources without identifier).
    """

    resource: Mapping[str, Any]
    identifier: tuple[str, str] | None = None
    put_id: str | None = None

    @property
    def full_url(self) -> str:
        """The entry's ``urn:uuid`` full URL."""
        rtype = str(self.resource["resourceType"])
        if self.identifier is not None:
            return urn_for(rtype, *self.identifier)
        if self.put_id is not None:
            return urn_for(rtype, "id", self.put_id)
        raise FhirError(f"{rtype}: a bundle entry needs an identifier or an id")


@dataclass
class BundleBuilder:
    """Collects validated entries; the same full URL twice keeps the first entry."""

    release: FhirRelease
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, planned: Planned) -> str:
        """Validate and add a resource; return its full URL."""
        url = planned.full_url
        if url in self.entries:
            return url
        resource = dict(_drop_empty(dict(planned.resource)))
        rtype = str(resource["resourceType"])
        request: dict[str, Any]
        if planned.put_id is not None:
            resource["id"] = planned.put_id
            request = {"method": "PUT", "url": f"{rtype}/{planned.put_id}"}
        else:
            request = {"method": "POST", "url": rtype}
            if planned.identifier is not None:
                request["ifNoneExist"] = identifier_query(*planned.identifier)
        self.entries[url] = {
            "fullUrl": url,
            "resource": self.release.validate(resource),
            "request": request,
        }
        return url

    def bundle(self) -> dict[str, Any]:
        """The transaction Bundle, validated as a whole."""
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "meta": {"tag": [{"system": PIPELINE_SYSTEM, "code": f"fhir-{self.release.name}"}]},
            "entry": list(self.entries.values()),
        }
        out = self.release.validate(bundle)
        problems = check_references(out)
        if problems:
            raise FhirError("bundle references do not resolve: " + "; ".join(problems[:10]))
        return out


def _references(obj: Any, path: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str):
                yield path + ".reference", v
            else:
                yield from _references(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _references(v, f"{path}[{i}]")


def check_references(bundle: Mapping[str, Any]) -> list[str]:
    """Problems with a transaction bundle's internal references (empty when all is well).

    Every full URL must be unique, and every ``urn:uuid`` reference inside a resource must be
    the full URL of an entry of the bundle.
    """
    problems: list[str] = []
    urls: set[str] = set()
    for i, entry in enumerate(bundle.get("entry", [])):
        url = entry.get("fullUrl")
        if url in urls:
            problems.append(f"entry[{i}]: duplicate fullUrl")
        if url:
            urls.add(url)
    for i, entry in enumerate(bundle.get("entry", [])):
        for where, ref in _references(entry.get("resource", {})):
            if ref.startswith("urn:uuid:") and ref not in urls:
                problems.append(f"entry[{i}].resource.{where}: {ref} is not in the bundle")
    return problems


# --------------------------------------------------------------------------- inputs


@dataclass
class ItemOutcome:
    """What the bundle needs of one processed item."""

    item: dict[str, Any]
    deid_dir: Path
    provenance: dict[str, Any]
    convert_provenance: dict[str, Any] | None = None


@dataclass(frozen=True)
class EndpointSpec:
    """Where a dataset will live: a destination of type ``xnat`` or ``bia`` with an address."""

    name: str
    kind: str
    address: str


def endpoints_for(destinations: Iterable[str], config: Mapping[str, Any]) -> list[EndpointSpec]:
    """Endpoints of the named destinations that are XNAT or BioImage Archive deposits.

    XNAT: ``url`` (plus ``/data/projects/<project>`` when ``project`` is set). BioImage
    Archive: the study page of ``accession`` when the destination has one (after deposit),
    else ``url``. Destinations without an address yet are skipped.
    """
    out: list[EndpointSpec] = []
    specs = config.get("destinations") or {}
    for name in destinations:
        spec = specs.get(name) or {}
        kind = spec.get("type")
        url = str(spec.get("url") or "").rstrip("/")
        if kind == "xnat" and url:
            project = str(spec.get("project") or "")
            address = f"{url}/data/projects/{quote(project)}" if project else url
        elif kind == "bia" and spec.get("accession"):
            address = BIA_STUDY_URL.format(accession=quote(str(spec["accession"])))
        elif kind == "bia" and url:
            address = url
        else:
            continue
        out.append(EndpointSpec(name=name, kind=kind, address=address))
    return out


def source_digest(files: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 of the sorted SHA-256 hex digests of an item's files, one per line.

    Identifies the source data of an item without naming a path; anyone holding the files can
    recompute it (``sha256sum`` of each, sort, join with newlines, hash).
    """
    digests = sorted(str(f["sha256"]) for f in files if f.get("sha256"))
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _da_to_iso(value: str) -> str | None:
    v = value.strip()[:8]
    if v in _DUMMY_DATES:
        return None
    try:
        return dt.datetime.strptime(v, "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip() if value not in (None, "") else ""


def _int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def read_dicom_studies(folder: Path) -> dict[str, dict[str, Any]]:
    """Read de-identified DICOM files: study UID → date, description, age, sex, series."""
    import pydicom

    studies: dict[str, dict[str, Any]] = {}
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        st = studies.setdefault(
            str(ds.StudyInstanceUID),
            {
                "date": _da_to_iso(_text(ds, "StudyDate")),
                "description": _text(ds, "StudyDescription"),
                "age": _text(ds, "PatientAge"),
                "sex": _text(ds, "PatientSex"),
                "series": {},
            },
        )
        se = st["series"].setdefault(
            str(ds.SeriesInstanceUID),
            {
                "modality": _text(ds, "Modality") or "OT",
                "number": _int(ds, "SeriesNumber"),
                "description": _text(ds, "SeriesDescription"),
                "body_part": _text(ds, "BodyPartExamined").upper(),
                "instances": {},
            },
        )
        se["instances"][str(ds.SOPInstanceUID)] = {
            "sop_class": str(ds.SOPClassUID),
            "number": _int(ds, "InstanceNumber"),
        }
    return studies


def _parse_age(value: str) -> tuple[int, str] | None:
    m = re.fullmatch(r"(\d{3})([DWMY])", value.strip())
    return (int(m.group(1)), m.group(2)) if m else None


# --------------------------------------------------------------------------- building


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
            subject |= _patient_characteristics(studies, policy)
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
        url = b.add(_dicom_study(rel, uid, st, subject_url, endpoints))
        for item_id in st["items"]:
            targets.setdefault(item_id, []).append(url)
        if characteristics and human and policy.get("birth_date_detail", "age") == "age":
            age = _age_observation(uid, st, subject_url, url, system, pseudonym)
            if age is not None:
                b.add(age)
    for oc in outcomes:
        if oc.item["kind"] == "nifti":
            study = _nifti_study(rel, oc, meta, subject_url, endpoints, system)
            targets.setdefault(oc.item["id"], []).append(b.add(study))
        if oc.item["kind"] == "microscopy":
            spec_url, study = _microscopy(rel, oc.item, meta, subject_url, endpoints, system)
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
        from imagedepot.clinical import clinical_resources

        for planned in clinical_resources(
            clinical, release=rel, subject=subject_url, identifier_system=system
        ):
            b.add(planned)
    return b.bundle()


def _patient_characteristics(
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


def _age_observation(
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


def _dicom_study(
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


def _nifti_study(
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


def _microscopy(
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


# --------------------------------------------------------------------------- per dataset


@dataclass
class ClinicalSettings:
    """Clinical records for :func:`bundle_dataset`: the file and the pseudonymisation key."""

    path: Path
    key: bytes = field(repr=False)


def item_path(root: Path, item: Mapping[str, Any], suffix: str = "") -> Path:
    """An item's folder (``suffix`` ``""``) or leak report (``".json"``) under a stage root.

    Items live in batch folders (``<root>/batch-NNNN/<item>``); a flat ``<root>/<item>`` is
    used when only that exists.
    """
    name = f"{item['id']}{suffix}"
    batched = root / f"batch-{int(item.get('batch') or 0):04d}" / name
    flat = root / name
    return flat if flat.exists() and not batched.exists() else batched


def _known_subjects(config: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every subject of the sample sheet (``samples`` of the config), else of every item."""
    sheet = config.get("samples")
    if sheet and Path(sheet).is_file():
        from imagedepot.samplesheet import read_table

        return {r["subject"].strip() for r in read_table(sheet) if r.get("subject", "").strip()}
    return {str(i["subject"]) for i in items if i.get("subject")}


def _status_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".json") + ".status.json")


def bundle_dataset(
    dataset_id: str,
    *,
    manifest: Path | Mapping[str, Any],
    deid_root: Path,
    leak_root: Path,
    out: Path,
    config: Mapping[str, Any],
    convert_root: Path | None = None,
    clinical: ClinicalSettings | None = None,
) -> dict[str, Any]:
    """Build the bundle of one dataset from its clean items, run the leak gate on it, write it.

    Writes ``out`` (only when clean) and ``<out stem>.status.json`` with ``status`` ``clean``,
    ``leak`` or ``empty`` (no processed item), the number of entries per resource type and,
    with clinical records, what was linked and the per-record errors (``clinical.errors``:
    ``where`` and ``problem``, never the offending values). Returns the status record.

    Raises
    ------
    InputError
        The clinical file is unusable as a whole (unreadable, a required column missing).
    ConfigError
        The key differs from the one the de-identification used.
    FhirError
        A resource does not validate.
    """
    from imagedepot.io import read_json, write_json
    from imagedepot.leakcheck import allowed_kinds_for_options, harvest, scan
    from imagedepot.pipeline import all_item_files, manifest_items

    fcfg = config.get("fhir", {})
    every = manifest_items(manifest)
    items = [i for i in every if i.get("dataset") == dataset_id and i["status"] == "pending"]
    outcomes: list[ItemOutcome] = []
    pseudonym = None
    policy: dict[str, Any] = {}
    originals: list[Path] = []
    metadata: dict[str, str] = {}
    subject = ""
    for item in items:
        leak = read_json(item_path(leak_root, item, ".json"))
        if leak["status"] != "clean":
            continue
        deid_dir = item_path(deid_root, item)
        prov = read_json(deid_dir / "provenance.json")
        conv = None
        if convert_root is not None:
            conv_file = item_path(convert_root, item) / "provenance.json"
            conv = read_json(conv_file) if conv_file.is_file() else None
        pseudonym = prov["options"]["subject_pseudonym"]
        policy = prov.get("policy") or {}
        metadata = item.get("metadata") or {}
        subject = item.get("subject") or item["id"]
        outcomes.append(
            ItemOutcome(
                item=item,
                deid_dir=deid_dir,
                provenance=prov,
                convert_provenance=conv,
            )
        )
        originals.extend(all_item_files(item))
    status_path = _status_path(out)
    if not outcomes or pseudonym is None:
        status: dict[str, Any] = {"dataset": dataset_id, "status": "empty", "entries": 0}
        if out.exists():
            out.unlink()
        write_json(status_path, status)
        return status

    subjects = sorted({i["subject"] for i in items if i.get("subject")})
    if clinical is not None:
        subjects = sorted(set(subjects) | _known_subjects(config, every))
    allow = allowed_kinds_for_options(policy.get("deid_options", []))
    ids = harvest(originals, extra=subjects)
    linkage = None
    if clinical is not None:
        from imagedepot.clinical import link_clinical, read_clinical
        from imagedepot.deid.pseudonym import Pseudonymizer

        pz = Pseudonymizer(
            key=clinical.key,
            prefix=str(policy.get("pseudonym_prefix", "SUBJ")),
            max_shift_days=int(policy.get("max_date_shift_days", 3650)),
        )
        if pz.subject_id(subject) != pseudonym:
            raise ConfigError(
                f"dataset {dataset_id}: the pseudonymisation key differs from the one used to "
                "de-identify its items; give the same key (pseudonymisation.key_env/key_file)"
            )
        source = read_clinical(clinical.path)
        linkage = link_clinical(
            source,
            subject=subject,
            known_subjects=subjects,
            pseudonymizer=pz,
            deid_options=policy.get("deid_options", []),
            identifiers=ids,
        )
        for value, kind in linkage.source_identifiers:
            ids.add(value, kind)

    bundle = build_bundle(
        dataset_id,
        outcomes,
        pseudonym=pseudonym,
        policy=policy,
        options=BundleOptions(
            identifier_system=fcfg.get("identifier_system", "urn:imagedepot:pseudonym"),
            release=fcfg.get("version", "R5"),
            endpoints=endpoints_for(items[0].get("destinations", []), config),
        ),
        metadata=metadata,
        clinical=linkage,
    )
    tmp_dir = out.parent / f".{out.name}.check"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    candidate = tmp_dir / out.name
    write_json(candidate, bundle)
    try:
        report = scan(ids, [candidate], allow_kinds=allow).to_dict()
    finally:
        candidate.unlink()
        tmp_dir.rmdir()
    types: dict[str, int] = {}
    for e in bundle["entry"]:
        types[e["resource"]["resourceType"]] = types.get(e["resource"]["resourceType"], 0) + 1
    status = {
        "dataset": dataset_id,
        "status": "clean" if report["status"] == "clean" else "leak",
        "fhir_version": fcfg.get("version", "R5"),
        "entries": len(bundle["entry"]),
        "resources": dict(sorted(types.items())),
        "leakcheck": report,
    }
    if linkage is not None:
        status["clinical"] = linkage.to_status()
    if status["status"] == "clean":
        write_json(out, bundle)
    elif out.exists():
        out.unlink()
    write_json(status_path, status)
    return status


# --------------------------------------------------------------------------- push

#: HTTP statuses worth retrying: rate limiting and server-side trouble.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF = 30.0


@dataclass
class PushResult:
    """What a FHIR server answered to a transaction.

    ``entries`` holds one ``{"status", "location"}`` per request entry, in order.
    """

    url: str
    status: int
    attempts: int
    entries: list[dict[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Entries per response status code (``201`` created, ``200`` existing or updated)."""
        out: dict[str, int] = {}
        for e in self.entries:
            code = e.get("status", "").split(" ")[0]
            out[code] = out.get(code, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "counts": self.counts(),
            "entries": self.entries,
        }


def outcome_issues(body: Any) -> list[str]:
    """Readable lines for the issues of an ``OperationOutcome`` (empty if ``body`` is not one)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return []
    lines = []
    for issue in body.get("issue", []):
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        where = ", ".join(issue.get("expression") or issue.get("location") or [])
        line = f"{issue.get('severity', '?')} {issue.get('code', '?')}"
        if where:
            line += f" at {where}"
        lines.append(f"{line}: {text}" if text else line)
    return lines


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def push_bundle(
    path: str | Path,
    url: str,
    *,
    token: str | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """POST a transaction bundle to the FHIR server at ``url`` (its base URL).

    Connection errors, timeouts and HTTP 408/429/5xx are retried up to ``retries`` times after
    the first attempt, waiting ``backoff * 2**n`` seconds (with jitter, at most 30 s, or what
    ``Retry-After`` asks). Retrying a transaction is safe: its entries are conditional creates
    and updates, so a transaction the server committed before failing to answer is not
    duplicated by the retry.

    Parameters
    ----------
    token
        Bearer token for the ``Authorization`` header (never logged).

    Returns
    -------
    PushResult
        The server's answer: one status and location per entry.

    Raises
    ------
    FhirPushError
        The server refused the transaction (with the issues of its ``OperationOutcome``), its
        answer is not a ``transaction-response``, or it stayed unreachable.
    """
    import requests

    p = Path(path)
    try:
        bundle = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FhirPushError(f"{p}: cannot read the bundle ({exc})") from exc
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise FhirPushError(f"{p}: not a FHIR transaction Bundle")
    base = url.rstrip("/")
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "User-Agent": f"imagedepot/{__version__}",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(bundle).encode("utf-8")
    attempt = 0
    while True:
        attempt += 1
        wait: float | None = None
        try:
            resp = requests.post(base, data=data, headers=headers, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__}"
            status = None
        else:
            status = resp.status_code
            if status not in TRANSIENT_STATUSES:
                break
            problem = f"HTTP {status}"
            wait = _retry_after(resp.headers.get("Retry-After"))
        if attempt > retries:
            raise FhirPushError(
                f"FHIR server {base} not reachable after {attempt} attempt(s) (last: {problem})",
                status=status,
            )
        delay = min(MAX_BACKOFF, wait if wait is not None else backoff * 2 ** (attempt - 1))
        delay *= 1.0 if wait is not None else random.uniform(0.5, 1.0)  # noqa: S311 - jitter
        log.warning("fhir push: %s; retrying in %.1f s (attempt %d)", problem, delay, attempt)
        sleep(delay)
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not 200 <= status < 300:
        issues = outcome_issues(body)
        detail = "; ".join(issues) if issues else (resp.text[:300].strip() or resp.reason)
        raise FhirPushError(
            f"FHIR server {base} refused the transaction (HTTP {status}): {detail}",
            status=status,
            issues=issues,
        )
    if not isinstance(body, dict) or body.get("type") != "transaction-response":
        raise FhirPushError(f"FHIR server {base} did not answer with a transaction-response")
    entries = []
    for e in body.get("entry", []):
        r = e.get("response") or {}
        entries.append({"status": str(r.get("status", "")), "location": str(r.get("location", ""))})
    if len(entries) != len(bundle.get("entry", [])):
        raise FhirPushError(
            f"FHIR server {base} answered {len(entries)} entries for "
            f"{len(bundle.get('entry', []))} requests"
        )
    return PushResult(url=base, status=status, attempts=attempt, entries=entries)
