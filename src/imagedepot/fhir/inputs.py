"""What a bundle is built from: the processed items, the de-identified DICOM studies read back,
the destinations that become Endpoints, and the checksum that names an item's source data."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imagedepot.fhir.terminology import (
    BIA_STUDY_URL,
)

_DUMMY_DATES = {"19000101", "00000000"}


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
