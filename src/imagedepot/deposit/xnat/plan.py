"""The XNAT plan of a staged folder (``imagedepot stage xnat``): local, no network, idempotent.

:func:`stage_xnat` reads a generic staged folder (``imagedepot stage local``: ``<dataset>/<item>/...``,
``<dataset>/fhir-bundle.json``, ``manifest.json``) and writes ``xnat-plan.json``: the staged
files mapped onto XNAT's model, each with size, SHA-256 and MD5 (XNAT reports MD5 digests)::

    project
    └─ subject            label = the subject pseudonym (from the item's provenance)
       ├─ resource FHIR   <dataset>-bundle.json, one per dataset (the bundle spans its sessions)
       └─ session         one per de-identified DICOM study: <pseudonym>_<dataset>_<MOD>_<h6>,
          │               h6 = 6 hex of SHA-256(remapped StudyInstanceUID); one per dataset for
          │               NIfTI and microscopy items: <pseudonym>_<dataset>
          └─ scan         one per item (a DICOM series, a NIfTI file, a microscopy image); ID
             │            from SeriesNumber (``N-k`` when numbers repeat), else the ordinal
             └─ resources DICOM (sent through the import service), NIFTI (.nii/.nii.gz/.bval/
                          .bvec), BIDS (JSON sidecars), OME-ZARR (one file per chunk, paths
                          kept), OME-TIFF, PROVENANCE (the staged provenance.json), OTHER

Labels contain only the pseudonym, the dataset id (which must not identify a person) and the
modality, so they are PHI-free and the same on every run with the same pseudonymisation key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imagedepot.deposit.xnat.errors import XnatDepositError
from imagedepot.errors import OutputExistsError
from imagedepot.io import CHUNK, read_json, write_json

log = logging.getLogger(__name__)


PLAN_VERSION = 1


#: Session and scan data types per (de-identified) DICOM modality. Anything else goes into
#: ``xnat:otherDicomSessionData``, which stock XNAT enables (unlike slide microscopy, whose
#: ``xnat:smSessionData`` ships disabled), so microscopy items use it too.
MODALITY_TYPES: dict[str, tuple[str, str]] = {
    "MR": ("xnat:mrSessionData", "xnat:mrScanData"),
    "CT": ("xnat:ctSessionData", "xnat:ctScanData"),
    "PT": ("xnat:petSessionData", "xnat:petScanData"),
    "NM": ("xnat:nmSessionData", "xnat:nmScanData"),
    "US": ("xnat:usSessionData", "xnat:usScanData"),
    "CR": ("xnat:crSessionData", "xnat:crScanData"),
    "DX": ("xnat:dxSessionData", "xnat:dxScanData"),
    "MG": ("xnat:mgSessionData", "xnat:mgScanData"),
    "XA": ("xnat:xaSessionData", "xnat:xaScanData"),
    "RF": ("xnat:rfSessionData", "xnat:rfScanData"),
}


OTHER_TYPES = ("xnat:otherDicomSessionData", "xnat:otherDicomScanData")


#: Resource label -> (format, content) attributes set when the resource is created.
RESOURCE_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "DICOM": ("DICOM", "RAW"),
    "NIFTI": ("NIFTI", "IMAGE"),
    "BIDS": ("JSON", "BIDS_SIDECAR"),
    "OME-ZARR": ("OME-ZARR", "IMAGE"),
    "OME-TIFF": ("OME-TIFF", "IMAGE"),
    "PROVENANCE": ("JSON", "IMAGEDEPOT_PROVENANCE"),
    "FHIR": ("JSON", "FHIR_BUNDLE"),
    "OTHER": ("", ""),
}


#: Files of the staged root that describe the staging itself and are not deposited.
STAGING_RECORDS = ("manifest.json", "MANIFEST.sha256", "summary.json")


_LABEL_BAD = re.compile(r"[^A-Za-z0-9_-]")


def xnat_label(text: str) -> str:
    """An XNAT label (``[A-Za-z0-9_-]``) from ``text``: other characters become ``_``."""
    label = _LABEL_BAD.sub("_", text.strip())
    if not label:
        raise ValueError(f"cannot make an XNAT label from {text!r}")
    return label


def _hashes(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file, read once in chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def _dicom_header(path: Path) -> dict[str, Any]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on damaged files
        raise XnatDepositError(f"{path.name}: not a readable DICOM file ({exc})") from exc

    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "").strip()

    number = ds.get("SeriesNumber")
    try:
        series_number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        series_number = None
    return {
        "study_instance_uid": text("StudyInstanceUID"),
        "series_instance_uid": text("SeriesInstanceUID"),
        "series_number": series_number,
        "modality": text("Modality").upper(),
        "series_description": text("SeriesDescription"),
        "protocol_name": text("ProtocolName"),
    }


def _resource_for(rel: str) -> tuple[str, str]:
    """(resource label, path inside the resource) of a file path relative to its item folder."""
    parts = rel.split("/")
    name = parts[-1]
    lower = name.lower()
    if parts[0] == "dicom":
        return "DICOM", name
    if parts[0] == "nifti":
        if lower.endswith(".json"):
            return "BIDS", "/".join(parts[1:])
        if lower.endswith((".nii", ".nii.gz", ".bval", ".bvec")):
            return "NIFTI", "/".join(parts[1:])
    if parts[0].lower().endswith(".ome.zarr"):
        return "OME-ZARR", rel
    if len(parts) == 1 and lower.endswith((".ome.tif", ".ome.tiff")):
        return "OME-TIFF", rel
    if rel == "provenance.json":
        return "PROVENANCE", rel
    return "OTHER", rel


def _types_for(modality: str) -> tuple[str, str]:
    return MODALITY_TYPES.get(modality.upper(), OTHER_TYPES)


def _file_entry(root: Path, rel: str, name: str, record: Mapping[str, Any]) -> dict[str, Any]:
    md5, sha = _hashes(root / rel)
    if sha != record["sha256"] or (root / rel).stat().st_size != record["size"]:
        raise XnatDepositError(
            f"{rel}: differs from the staged manifest.json; re-run the staging of this destination"
        )
    return {"name": name, "source": rel, "size": record["size"], "sha256": sha, "md5": md5}


def _new_resource(label: str, *, dicom_import: bool = False) -> dict[str, Any]:
    fmt, content = RESOURCE_ATTRIBUTES[label]
    res: dict[str, Any] = {"label": label, "format": fmt, "content": content, "files": []}
    if dicom_import:
        res["import"] = True
    return res


def build_plan(staged: str | Path, *, project: str | None = None) -> dict[str, Any]:
    """Map a generic staged folder onto XNAT's model (see the module docstring); no network.

    Every file listed in the staged ``manifest.json`` ends in exactly one resource of the plan or in
    ``not_deposited`` with a reason. The checksums are re-computed and must match the manifest.

    Raises
    ------
    XnatDepositError
        The folder is not a staged folder, a file differs from its manifest, an item has no
        subject pseudonym, or a DICOM item holds more than one series.
    """
    root = Path(staged)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise XnatDepositError(
            f"{root}: no manifest.json; give the folder written by `imagedepot stage local`"
        )
    manifest = read_json(manifest_path)
    records = {r["path"]: r for r in manifest["files"]}
    by_item: dict[tuple[str, str], list[str]] = {}
    dataset_files: dict[str, list[str]] = {}
    not_deposited: list[dict[str, str]] = []
    for rel in sorted(records):
        parts = rel.split("/")
        if len(parts) >= 3:
            by_item.setdefault((parts[0], parts[1]), []).append("/".join(parts[2:]))
        elif len(parts) == 2:
            dataset_files.setdefault(parts[0], []).append(parts[1])
        else:
            not_deposited.append({"path": rel, "reason": "not inside a dataset folder"})

    subjects: dict[str, dict[str, Any]] = {}
    sessions: dict[str, dict[str, Any]] = {}
    dataset_subject: dict[str, str] = {}
    for (dataset, item), rels in sorted(by_item.items()):
        item_dir = root / dataset / item
        if "provenance.json" not in rels:
            raise XnatDepositError(f"{dataset}/{item}: no provenance.json in the staged item")
        prov = read_json(item_dir / "provenance.json")
        pseudonym = (prov.get("options") or {}).get("subject_pseudonym")
        if not pseudonym:
            raise XnatDepositError(
                f"{dataset}/{item}: provenance.json has no options.subject_pseudonym; "
                "re-run de-identification with this version"
            )
        subject_label = xnat_label(str(pseudonym))
        if dataset_subject.setdefault(dataset, subject_label) != subject_label:
            raise XnatDepositError(f"{dataset}: items of one dataset carry different pseudonyms")
        subject = subjects.setdefault(
            subject_label, {"label": subject_label, "resources": [], "sessions": []}
        )
        grouped: dict[str, dict[str, Any]] = {}
        for rel in rels:
            label, inner = _resource_for(rel)
            res = grouped.get(label)
            if res is None:
                res = grouped[label] = _new_resource(label, dicom_import=label == "DICOM")
            src = f"{dataset}/{item}/{rel}"
            res["files"].append(_file_entry(root, src, inner, records[src]))
        scan: dict[str, Any] = {"item": item}
        study_uid = None
        if "DICOM" in grouped:
            headers = [_dicom_header(root / f["source"]) for f in grouped["DICOM"]["files"]]
            series = {h["series_instance_uid"] for h in headers}
            studies = {h["study_instance_uid"] for h in headers}
            if len(series) != 1 or len(studies) != 1 or "" in series or "" in studies:
                raise XnatDepositError(
                    f"{dataset}/{item}: a DICOM item must hold exactly one series of one study "
                    f"(found {len(series)} series, {len(studies)} studies)"
                )
            first = headers[0]
            study_uid = first["study_instance_uid"]
            modality = first["modality"] or "OT"
            scan.update(
                series_instance_uid=first["series_instance_uid"],
                series_number=first["series_number"],
                modality=modality,
                series_description=first["series_description"],
                type=first["series_description"] or first["protocol_name"] or modality,
            )
        else:
            modality = "OT"
            for entry in grouped.get("BIDS", {}).get("files", []):
                side = read_json(root / entry["source"])
                if isinstance(side, dict) and side.get("Modality"):
                    modality = str(side["Modality"]).upper()
                    break
            kind = "microscopy" if {"OME-ZARR", "OME-TIFF"} & set(grouped) else "nifti"
            scan.update(
                series_instance_uid=None,
                series_number=None,
                modality=modality,
                series_description="",
                type=modality if kind == "nifti" else "microscopy",
            )
        scan["xsi_type"] = _types_for(scan["modality"])[1]
        scan["resources"] = [grouped[k] for k in sorted(grouped)]
        for res in scan["resources"]:
            res["files"].sort(key=lambda f: f["name"])
        session_key = f"{subject_label}/{dataset}/{study_uid or ''}"
        session = sessions.get(session_key)
        if session is None:
            session = sessions[session_key] = {
                "label": xnat_label(f"{subject_label}_{dataset}"),
                "dataset": dataset,
                "study_instance_uid": study_uid,
                "scans": [],
                "resources": [],
                "_subject": subject_label,
            }
        session["scans"].append(scan)

    for session in sessions.values():
        _assign_scan_ids(session)
        modalities = Counter(s["modality"] for s in session["scans"])
        top = sorted(modalities.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        session["modality"] = top
        session["xsi_type"] = _types_for(top)[0]
        if session["study_instance_uid"]:
            h6 = hashlib.sha256(session["study_instance_uid"].encode()).hexdigest()[:6]
            session["label"] = f"{session['label']}_{xnat_label(top)}_{h6}"
        subjects[session.pop("_subject")]["sessions"].append(session)

    for dataset, names in sorted(dataset_files.items()):
        for name in names:
            rel = f"{dataset}/{name}"
            owner = dataset_subject.get(dataset)
            if name == "fhir-bundle.json" and owner is not None:
                subject = subjects[owner]
                fhir = next((r for r in subject["resources"] if r["label"] == "FHIR"), None)
                if fhir is None:
                    fhir = _new_resource("FHIR")
                    subject["resources"].append(fhir)
                fhir["files"].append(
                    _file_entry(root, rel, f"{xnat_label(dataset)}-bundle.json", records[rel])
                )
            else:
                not_deposited.append({"path": rel, "reason": "dataset-level file with no items"})

    ordered = [subjects[k] for k in sorted(subjects)]
    labels = Counter(s["label"] for subj in ordered for s in subj["sessions"])
    clash = [k for k, n in labels.items() if n > 1]
    if clash:
        raise XnatDepositError(f"session label(s) {clash} would be used twice; rename the datasets")
    for subj in ordered:
        subj["sessions"].sort(key=lambda s: s["label"])
        for res in subj["resources"]:
            res["files"].sort(key=lambda f: f["name"])
    files = [f for subj in ordered for res in _all_resources(subj) for f in res["files"]]
    plan = {
        "plan_version": PLAN_VERSION,
        "kind": "imagedepot-xnat-plan",
        "destination": manifest.get("destination"),
        "project": project or None,
        "staged_manifest_sha256": _hashes(manifest_path)[1],
        "subjects": ordered,
        "not_deposited": sorted(not_deposited, key=lambda d: d["path"]),
        "counts": {
            "subjects": len(ordered),
            "sessions": sum(len(s["sessions"]) for s in ordered),
            "scans": sum(len(x["scans"]) for s in ordered for x in s["sessions"]),
            "files": len(files),
            "bytes": sum(f["size"] for f in files),
        },
    }
    accounted = {f["source"] for f in files} | {d["path"] for d in plan["not_deposited"]}
    missing = sorted(set(records) - accounted)
    if missing:
        raise XnatDepositError(f"plan misses staged file(s): {missing[:5]}")
    return plan


def _assign_scan_ids(session: dict[str, Any]) -> None:
    """Scan IDs as XNAT's importer assigns them: SeriesNumber, ``N-k`` for repeats, else ordinals."""
    scans = sorted(
        session["scans"],
        key=lambda s: (
            s["series_number"] is None,
            s["series_number"] or 0,
            s["series_instance_uid"] or "",
            s["item"],
        ),
    )
    used: set[str] = set()
    for scan in scans:
        if scan["series_number"] is not None:
            sid = str(scan["series_number"])
            k = 1
            while sid in used:
                sid = f"{scan['series_number']}-{k}"
                k += 1
            scan["id"] = sid
            used.add(sid)
    ordinal = 1
    for scan in scans:
        if "id" not in scan:
            while str(ordinal) in used:
                ordinal += 1
            scan["id"] = str(ordinal)
            used.add(scan["id"])
    session["scans"] = scans


def _all_resources(subject: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    yield from subject["resources"]
    for session in subject["sessions"]:
        yield from session["resources"]
        for scan in session["scans"]:
            yield from scan["resources"]


def stage_xnat(
    staged: str | Path,
    out: str | Path,
    *,
    project: str | None = None,
    force: bool = True,
) -> dict[str, Any]:
    """Write the XNAT plan of a staged folder to ``out`` (JSON); local and idempotent.

    The plan holds no timestamps, so the same staged folder always gives the same bytes; file
    paths are relative to the staged folder, whose location relative to ``out`` is kept in
    ``staged_dir``.

    Parameters
    ----------
    staged
        Folder written by :func:`imagedepot.stage.stage_destination` for an XNAT destination.
    out
        Plan file to write (atomically).
    project
        XNAT project ID to record in the plan (the deposit may still be pointed elsewhere).
    force
        Replace an existing ``out``.
    """
    out_p = Path(out)
    if out_p.exists() and not force:
        raise OutputExistsError(out_p)
    plan = build_plan(staged, project=project)
    plan["staged_dir"] = Path(
        os.path.relpath(Path(staged).resolve(), out_p.parent.resolve())
    ).as_posix()
    write_json(out_p, plan)
    c = plan["counts"]
    log.info(
        "xnat plan: %d subject(s), %d session(s), %d scan(s), %d file(s) -> %s",
        c["subjects"],
        c["sessions"],
        c["scans"],
        c["files"],
        out_p,
    )
    return plan


def load_plan(path: str | Path) -> dict[str, Any]:
    """Read a plan written by :func:`stage_xnat` and check its version."""
    plan = read_json(path)
    if not isinstance(plan, dict) or plan.get("kind") != "imagedepot-xnat-plan":
        raise XnatDepositError(f"{path}: not an XNAT plan written by `imagedepot stage xnat`")
    if plan.get("plan_version") != PLAN_VERSION:
        raise XnatDepositError(
            f"{path}: plan version {plan.get('plan_version')} is not {PLAN_VERSION}; re-run the staging"
        )
    return dict(plan)


def iter_plan_files(plan: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """Every file entry of a plan."""
    for subject in plan["subjects"]:
        for res in _all_resources(subject):
            yield from res["files"]
