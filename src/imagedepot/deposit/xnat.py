"""Deposit staged, de-identified data to XNAT: plan locally, upload, verify, resume.

Two steps, matching the workflow's split between local staging and network deposit:

:func:`stage_xnat` (local, no network, idempotent)
    Reads a generic staged folder (``imagedepot stage local``: ``<dataset>/<item>/...``,
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

:func:`deposit_xnat` (network)
    Uses the ``xnat`` (xnatpy) client. The project must exist (projects are created by an XNAT
    administrator); subjects and sessions are created explicitly by label. DICOM goes through the
    import service (``POST /data/services/import``) with ``project``, ``subject`` and ``session``
    set and ``overwrite=append``, to ``/archive`` when the project auto-archives
    (``prearchive_code`` 4 or 5), otherwise to ``/prearchive`` followed by an archive request, so
    nothing is left unmatched in the prearchive. Everything else is uploaded file by file
    (``PUT .../resources/<label>/files/<path>?inbody=true&overwrite=true``); OME-Zarr is uploaded
    per chunk rather than zipped so that a resumed run re-sends only the chunks that are missing.

Verification compares what XNAT lists (``ResultSet.Result`` of the ``files`` listing: ``URI``,
``Size``, ``digest``) with the plan: every planned file present with the planned size and MD5
digest. DICOM files are renamed by XNAT on import, so they are matched by content: MD5 digest and
size. When the server lists no digest, the files are downloaded (streamed, up to
``download_verify_limit`` bytes each) and hashed; a larger file is not accepted on its size: the
deposit fails naming it and the setting to raise (:mod:`imagedepot.deposit.verify`). Only
``dicom_verify="count"``, chosen explicitly, checks DICOM by size and count alone.
A site or project DICOM anonymisation script rewrites headers and so changes checksums: such a
deposit fails naming the scan (disable the script for this project, the data is already
de-identified, or pass ``dicom_verify="count"``).

Every round reads the server's state first and acts only on what is missing or different, so a
re-run transfers nothing, a retried request never duplicates a subject, session, scan or file, and
an interrupted deposit resumes from what the server holds. The import service is not idempotent:
it is never retried blindly; the next round re-reads the session and re-sends only missing files.
Idempotent requests are retried with exponential backoff on connection errors, timeouts and 5xx
(:mod:`imagedepot.deposit.retry`). The receipt JSON records what was verified, the server ids and
a history of runs, and never holds credentials.

Credentials come from ``<PREFIX>_USER`` / ``<PREFIX>_PASSWORD`` in the environment or from the
``~/.netrc`` entry of the server's host, never from configuration files, and are never logged.

The client connects with ``no_parse_model=True``: the deposit uses XNAT's REST paths directly, so
it does not download and compile the site's XSD data model on every connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import netrc
import os
import re
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from imagedepot.deposit.retry import (
    RetryExhaustedError,
    RetryPolicy,
    describe_error,
    http_status,
    is_transient,
    retry_call,
)
from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT, HashSink, over_limit_message
from imagedepot.errors import ConfigError, ImagedepotError, OutputExistsError
from imagedepot.io import CHUNK, read_json, write_json
from imagedepot.provenance import now, tool_versions

log = logging.getLogger(__name__)

PLAN_VERSION = 1
RECEIPT_VERSION = 1

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
_FILES_IN_URI = re.compile(r"^.*?/resources/[^/]+/files/")


class XnatDepositError(ImagedepotError):
    """The deposit could not be completed; the message names the XNAT object and XNAT's answer.

    ``status`` is the HTTP status when XNAT refused a request.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# Planning (local)


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


# --------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or XNAT alias token and secret); the password never prints."""

    user: str
    password: str = field(repr=False)
    source: str = "explicit"


def resolve_credentials(
    url: str,
    credentials_env: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    netrc_file: str | Path | None = None,
) -> Credentials:
    """Find the credentials for ``url``: ``<PREFIX>_USER``/``<PREFIX>_PASSWORD``, else ``~/.netrc``.

    The netrc file is ``netrc_file``, else ``$NETRC``, else ``~/.netrc``; its entry is looked up by
    ``host:port`` and then by host. The error message names where to put them, never a value.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError(
            "the XNAT URL must not contain credentials; use environment variables or ~/.netrc"
        )
    if credentials_env:
        user = env.get(f"{credentials_env}_USER")
        password = env.get(f"{credentials_env}_PASSWORD")
        if user and password is not None:
            return Credentials(user, password, source=f"environment ({credentials_env}_USER)")
    rc_path = Path(netrc_file or env.get("NETRC") or Path.home() / ".netrc")
    host = parts.hostname or ""
    if rc_path.is_file():
        try:
            rc = netrc.netrc(str(rc_path))
        except (netrc.NetrcParseError, OSError) as exc:
            raise ConfigError(
                f"{rc_path}: cannot be read as a netrc file ({type(exc).__name__})"
            ) from exc
        for key in (parts.netloc, host):
            auth = rc.authenticators(key)
            if auth is not None and auth[0]:
                return Credentials(auth[0], auth[2] or "", source=f"netrc ({key})")
    hint = (
        f"set {credentials_env}_USER and {credentials_env}_PASSWORD or " if credentials_env else ""
    )
    raise ConfigError(f"no credentials for {host}: {hint}add a 'machine {host}' entry to ~/.netrc")


# --------------------------------------------------------------------------------------------
# Client: the xnatpy session with retries, re-login and timeouts


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}".rstrip(
        "/"
    )


class XnatClient:
    """Thin wrapper around an ``xnat`` (xnatpy) session: every call has a timeout, transient
    failures are retried with backoff, and an expired session (HTTP 401) is re-established once."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        policy: RetryPolicy,
        timeout: float = 120.0,
        pool_size: int = 4,
        verify: bool = True,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._credentials = credentials
        self.policy = policy
        self.timeout = timeout
        self.pool_size = pool_size
        self.verify = verify
        self._on_retry = on_retry
        self._session: Any = None
        self._lock = threading.Lock()
        self._generation = 0
        self.server_version: str | None = None

    @property
    def user(self) -> str:
        """The user name (for messages; the password is never exposed)."""
        return self._credentials.user

    # connection ----------------------------------------------------------------------------
    def _connect_once(self) -> Any:
        import requests.adapters
        import xnat

        session = xnat.connect(
            self.url,
            user=self._credentials.user,
            password=self._credentials.password,
            verify=self.verify,
            no_parse_model=True,
            logger=logging.getLogger(f"{__name__}.client"),
            default_timeout=self.timeout,
            pilot_timeout=min(self.timeout, 30.0),
        )
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(self.pool_size, 2))
        session.interface.mount("http://", adapter)
        session.interface.mount("https://", adapter)
        return session

    def connect(self) -> None:
        """Log in (retrying transient failures); a refused login fails at once."""
        from xnat import exceptions as xe

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, xe.XNATExpiredCredentialsError):
                return False
            if isinstance(exc, xe.XNATLoginFailedError):
                # xnatpy raises this for any non-200 answer to the login request; XNAT's own
                # refusal carries its message, a proxy's 502/503 page does not ("unknown error").
                return str(exc).rstrip().endswith("unknown error")
            return is_transient(exc) or isinstance(exc, (xe.XNATConnectionError, xe.XNATAuthError))

        try:
            self._session = retry_call(
                self._connect_once,
                policy=self.policy,
                what=f"log in to {_public_url(self.url)}",
                retry_if=transient,
                on_retry=self._on_retry,
            )
        except (xe.XNATLoginFailedError, xe.XNATExpiredCredentialsError) as exc:
            raise XnatDepositError(
                f"{_public_url(self.url)}: login refused for user {self._credentials.user!r} "
                f"(credentials from {self._credentials.source}): {exc}"
            ) from exc
        except RetryExhaustedError as exc:
            raise XnatDepositError(str(exc)) from exc
        self._generation += 1
        try:
            self.server_version = str(self._session.xnat_version)
        except Exception as exc:  # the version is informative only
            log.info("could not read the XNAT version: %s", describe_error(exc))

    def _reconnect(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # another thread already re-established the session
            log.warning("XNAT session expired; logging in again")
            old = self._session
            self._session = None
            self._close_session(old, delete=False)
            self.connect()

    @staticmethod
    def _close_session(session: Any, *, delete: bool = True) -> None:
        if session is None:
            return
        if delete:
            try:
                session.disconnect()
                return
            except Exception as exc:
                log.info("closing the XNAT session: %s", describe_error(exc))
        from xnat.session import BaseXNATSession

        with contextlib.suppress(Exception):
            BaseXNATSession.disconnect(session)

    def close(self) -> None:
        """Log out (best effort)."""
        session, self._session = self._session, None
        self._close_session(session)

    def __enter__(self) -> XnatClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests ------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        accepted: Iterable[int] = (200, 201),
        what: str | None = None,
        body: Callable[[], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        sink: Callable[[], Any] | None = None,
    ) -> Any:
        """One REST call with retries; returns the ``requests`` response.

        ``body`` is a callable returning the request body afresh for every attempt (e.g. a file
        opened at offset 0). With ``sink`` (a ``GET``), the body is streamed into a fresh object
        from ``sink()`` on every attempt (anything with ``write``), which is returned instead.
        With ``retry=False`` a transient failure is raised as is.
        """
        label = what or f"{method} {path}"
        accepted_set = list(accepted)
        relogged = False

        def attempt() -> Any:
            nonlocal relogged
            session = self._session
            if session is None:
                raise XnatDepositError("not connected to XNAT")
            generation = self._generation
            data = body() if body is not None else None
            try:
                kwargs: dict[str, Any] = {
                    "query": dict(query or {}),
                    "accepted_status": accepted_set,
                    "timeout": self.timeout,
                }
                if headers:
                    kwargs["headers"] = dict(headers)
                if method == "GET" and sink is not None:
                    out = sink()
                    session.download_stream(path, out, timeout=self.timeout)
                    return out
                if method == "GET":
                    return session.get(path, **kwargs)
                if method == "PUT":
                    return session.put(path, data=data, **kwargs)
                if method == "POST":
                    return session.post(path, data=data, **kwargs)
                if method == "DELETE":
                    return session.delete(path, **kwargs)
                raise ValueError(f"unsupported method {method}")
            except Exception as exc:
                status = http_status(exc)
                if status == 401 and not relogged:
                    relogged = True
                    self._reconnect(generation)
                    return attempt()
                if status is not None and not is_transient(exc):
                    raise XnatDepositError(
                        f"{label}: XNAT answered {describe_error(exc)}", status=status
                    ) from exc
                raise
            finally:
                close = getattr(data, "close", None)
                if callable(close):
                    close()

        if not retry:
            return attempt()
        return retry_call(attempt, policy=self.policy, what=label, on_retry=self._on_retry)

    def get_json(
        self, path: str, query: Mapping[str, str] | None = None, *, missing_ok: bool = False
    ) -> Any:
        """GET ``path`` with ``format=json`` and decode it (retrying a garbled body too).

        With ``missing_ok``, a 403 or 404 answer gives None instead of an error.
        """

        def fetch() -> Any:
            response = self.call(
                "GET",
                path,
                query={**(query or {}), "format": "json"},
                accepted=(200, 403, 404) if missing_ok else (200,),
                retry=False,
            )
            if response.status_code != 200:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise ConnectionError(f"GET {path}: response is not JSON") from exc

        return retry_call(fetch, policy=self.policy, what=f"GET {path}", on_retry=self._on_retry)

    def result_set(self, path: str, query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The ``ResultSet.Result`` rows of a listing."""
        data = self.get_json(path, query)
        try:
            rows = data["ResultSet"]["Result"]
        except (KeyError, TypeError) as exc:
            raise XnatDepositError(f"GET {path}: unexpected answer (no ResultSet.Result)") from exc
        return list(rows)


# --------------------------------------------------------------------------------------------
# Report and receipt


@dataclass
class DepositReport:
    """What one deposit run did and found. ``status``: ``complete``, ``failed`` or ``dry_run``."""

    url: str
    project: str
    dry_run: bool = False
    status: str = "incomplete"
    archive_mode: str | None = None
    server_version: str | None = None
    created: dict[str, list[str]] = field(
        default_factory=lambda: {"subjects": [], "sessions": [], "scans": [], "resources": []}
    )
    would_create: dict[str, list[str]] = field(
        default_factory=lambda: {"subjects": [], "sessions": [], "scans": [], "resources": []}
    )
    would_upload: list[str] = field(default_factory=list)
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    dicom_imports: int = 0
    dicom_files_sent: int = 0
    archived_from_prearchive: int = 0
    metadata_updates: int = 0
    verified_files: int = 0
    verified_by_digest: int = 0
    verified_by_download: int = 0
    verified_by_size_only: int = 0
    verified_sessions: list[str] = field(default_factory=list)
    retries: int = 0
    rounds: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: str = field(default_factory=now)
    ended: str | None = None

    @property
    def transferred(self) -> bool:
        """True if this run wrote anything to the server."""
        return bool(
            self.uploaded_files
            or self.dicom_imports
            or self.archived_from_prearchive
            or self.metadata_updates
            or any(self.created.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (no credentials: the URL is stripped of any user info)."""
        d = dict(self.__dict__)
        d["transferred"] = self.transferred
        return d


# --------------------------------------------------------------------------------------------
# Deposit


def _q(text: str) -> str:
    return quote(text, safe="")


def _qpath(path: str) -> str:
    return "/".join(_q(p) for p in path.split("/"))


@dataclass
class _ServerFile:
    path: str
    size: int | None
    digest: str | None
    uri: str


@dataclass
class _ServerScan:
    id: str
    xsi_type: str
    type: str
    uid: str | None
    resources: dict[str, list[_ServerFile]]


@dataclass
class _Diff:
    send: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tally: Counter[str] = field(default_factory=Counter)


@dataclass
class _Work:
    """What one round found missing in one scope (a session or a subject's own resources)."""

    imports: list[dict[str, Any]] = field(default_factory=list)
    creates: list[Mapping[str, Any]] = field(default_factory=list)
    updates: list[tuple[Mapping[str, Any], _ServerScan]] = field(default_factory=list)
    new_resources: list[tuple[str, Mapping[str, Any], str]] = field(default_factory=list)
    uploads: list[tuple[str, Mapping[str, Any], Mapping[str, Any], str]] = field(
        default_factory=list
    )
    pending: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra_scans: list[str] = field(default_factory=list)
    tally: Counter[str] = field(default_factory=Counter)

    def empty(self) -> bool:
        return not (
            self.imports
            or self.creates
            or self.updates
            or self.new_resources
            or self.uploads
            or self.pending
        )


class _Depositor:
    """One deposit run: reads the server's state, acts on the difference, verifies."""

    def __init__(
        self,
        client: XnatClient,
        plan: Mapping[str, Any],
        staged: Path,
        project: str,
        report: DepositReport,
        *,
        rounds: int,
        parallel_streams: int,
        dry_run: bool,
        dicom_verify: str,
        download_verify_limit: int,
        prearchive_wait: float,
        progress: Callable[[dict[str, Any]], None] | None,
        receipt: _Receipt | None,
    ) -> None:
        self.client = client
        self.plan = plan
        self.staged = staged
        self.project = project
        self.report = report
        self.rounds = max(1, rounds)
        self.streams = max(1, parallel_streams)
        self.dry_run = dry_run
        self.count_dicom = dicom_verify == "count"
        self.download_limit = download_verify_limit
        self.prearchive_wait = prearchive_wait
        self.progress = progress
        self.receipt = receipt
        self.archive_dest = "/prearchive"
        self.project_path = f"/data/projects/{_q(project)}"
        self._downloaded: dict[tuple[str, int], tuple[str, str]] = {}
        self._lock = threading.Lock()

    # helpers -------------------------------------------------------------------------------
    def _emit(self, event: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(event)

    def fail(self, message: str) -> None:
        log.error("%s", message)
        self.report.problems.append(message)

    def _pause(self, rnd: int) -> None:
        policy = self.client.policy
        time.sleep(min(policy.max_delay, policy.base_delay * policy.multiplier ** max(0, rnd - 2)))

    # project and subjects ------------------------------------------------------------------
    def check_project(self) -> None:
        """Require the project; choose the import destination from its prearchive setting."""
        response = self.client.call(
            "GET", self.project_path, query={"format": "json"}, accepted=(200, 403, 404)
        )
        if response.status_code != 200:
            raise XnatDepositError(
                f"XNAT project {self.project!r} does not exist at {_public_url(self.client.url)} or "
                f"user {self.client.user!r} cannot access it (HTTP {response.status_code}); "
                "projects are created by an XNAT administrator"
            )
        code_resp = self.client.call(
            "GET", f"{self.project_path}/prearchive_code", accepted=(200, 403, 404)
        )
        code = code_resp.text.strip() if code_resp.status_code == 200 else ""
        # 4: auto-archive, 5: auto-archive with overwrite; 0 or unknown: review in the prearchive.
        self.archive_dest = "/archive" if code in {"4", "5"} else "/prearchive"
        self.report.archive_mode = self.archive_dest.lstrip("/")
        log.info(
            "project %s: prearchive_code %s, DICOM import to %s",
            self.project,
            code or "unknown",
            self.archive_dest,
        )

    def ensure_subjects(self) -> None:
        rows = self.client.result_set(f"{self.project_path}/subjects", {"columns": "ID,label"})
        existing = {str(r.get("label")): str(r.get("ID") or "") for r in rows}
        for subject in self.plan["subjects"]:
            label = subject["label"]
            if label in existing:
                continue
            if self.dry_run:
                self.report.would_create["subjects"].append(label)
                continue
            response = self.client.call(
                "PUT", f"{self.project_path}/subjects/{_q(label)}", what=f"create subject {label}"
            )
            existing[label] = response.text.strip()
            self.report.created["subjects"].append(label)
            self._emit({"event": "subject_created", "subject": label})
        if self.receipt is not None:
            with self.receipt.lock:
                self.receipt.data["subjects"].update(
                    {s["label"]: existing.get(s["label"]) for s in self.plan["subjects"]}
                )

    # listings ------------------------------------------------------------------------------
    def _files(self, resource_path: str) -> list[_ServerFile]:
        out = []
        for r in self.client.result_set(f"{resource_path}/files"):
            uri = str(r.get("URI") or "")
            path = unquote(_FILES_IN_URI.sub("", uri, count=1)) if uri else str(r.get("Name", ""))
            size = str(r.get("Size") or "").strip()
            digest = str(r.get("digest") or "").strip().lower() or None
            out.append(_ServerFile(path, int(size) if size.isdigit() else None, digest, uri))
        return out

    def _resources(self, base: str, wanted: Iterable[str]) -> dict[str, list[_ServerFile]]:
        labels = {str(r.get("label")) for r in self.client.result_set(f"{base}/resources")}
        return {w: self._files(f"{base}/resources/{_q(w)}") for w in wanted if w in labels}

    def _scans(self, exp_path: str, session: Mapping[str, Any]) -> dict[str, _ServerScan]:
        need_uid = any(s.get("series_instance_uid") for s in session["scans"])
        labels = {r["label"] for s in session["scans"] for r in s["resources"]}
        scans: dict[str, _ServerScan] = {}
        for row in self.client.result_set(f"{exp_path}/scans"):
            sid = str(row.get("ID"))
            uid = None
            if need_uid:
                detail = self.client.get_json(f"{exp_path}/scans/{_q(sid)}")
                try:
                    uid = str(detail["items"][0]["data_fields"].get("UID") or "") or None
                except (KeyError, IndexError, TypeError, AttributeError):
                    uid = None
            scans[sid] = _ServerScan(
                id=sid,
                xsi_type=str(row.get("xsiType") or ""),
                type=str(row.get("type") or ""),
                uid=uid,
                resources=self._resources(f"{exp_path}/scans/{_q(sid)}", labels),
            )
        return scans

    # comparison ----------------------------------------------------------------------------
    def _download_hashes(self, sf: _ServerFile) -> tuple[str, str]:
        """(MD5, SHA-256) of a server file, downloaded in a stream (memory flat in its size)."""
        key = (sf.uri, sf.size if sf.size is not None else -1)
        if key not in self._downloaded:
            path = urlsplit(sf.uri).path
            got = self.client.call("GET", path, sink=HashSink, what=f"download {path}")
            self._downloaded[key] = (got.md5.hexdigest(), got.sha256.hexdigest())
        return self._downloaded[key]

    def _over_limit(self, sf: _ServerFile) -> bool:
        return sf.size is not None and sf.size > self.download_limit

    def _refuse_over_limit(self, diff: _Diff, paths: list[str]) -> None:
        if paths:
            diff.problems.append(
                over_limit_message(
                    paths, self.download_limit, "download_verify_limit (--download-verify-limit)"
                )
            )

    def _compare(
        self, res: Mapping[str, Any], server: list[_ServerFile] | None, *, count: bool = False
    ) -> _Diff:
        """What of one planned resource is missing or different on the server."""
        diff = _Diff()
        if server is None:
            diff.send = list(res["files"])
            return diff
        if res.get("import"):
            # DICOM: XNAT renames files on import, so match by content (MD5 and size). A file the
            # server lists without a digest is downloaded and hashed ("count": sizes only).
            pool: Counter[tuple[str | None, int | None, str]] = Counter()
            too_big = []
            for listed in server:
                if count:
                    pool[(None, listed.size, "size")] += 1
                elif listed.digest is not None:
                    pool[(listed.digest, listed.size, "digest")] += 1
                elif self._over_limit(listed):
                    too_big.append(listed.path)
                else:
                    pool[(self._download_hashes(listed)[0], listed.size, "download")] += 1
            self._refuse_over_limit(diff, too_big)
            for f in res["files"]:
                md5 = None if count else f["md5"]
                how = next(
                    (h for h in ("digest", "download", "size") if pool[(md5, f["size"], h)] > 0),
                    None,
                )
                if how is None:
                    diff.send.append(f)
                    continue
                pool[(md5, f["size"], how)] -= 1
                diff.tally[how] += 1
            extra = sum(pool.values())
            if extra:
                hint = (
                    ""
                    if count
                    else " (a DICOM anonymisation script on the project or site rewrites files "
                    "on import; disable it for this project or use dicom_verify='count')"
                )
                diff.problems.append(
                    f"holds {extra} DICOM file(s) that are not in the plan or differ from it{hint}"
                )
            return diff
        by_path = {sf.path: sf for sf in server}
        too_big = []
        for f in res["files"]:
            sf = by_path.get(f["name"])
            if sf is None or (sf.size is not None and sf.size != f["size"]):
                diff.send.append(f)
            elif sf.digest is not None:
                if sf.digest == f["md5"]:
                    diff.tally["digest"] += 1
                else:
                    diff.send.append(f)
            elif self._over_limit(sf):
                too_big.append(sf.path)
            elif self._download_hashes(sf)[1] == f["sha256"]:
                diff.tally["download"] += 1
            else:
                self._downloaded.pop((sf.uri, sf.size if sf.size is not None else -1), None)
                diff.send.append(f)
        self._refuse_over_limit(diff, too_big)
        extra_names = sorted(set(by_path) - {f["name"] for f in res["files"]})
        if extra_names:
            diff.problems.append(
                f"holds {len(extra_names)} file(s) not in the plan: {', '.join(extra_names[:5])}"
            )
        return diff

    def _resource_work(
        self,
        base: str,
        resources: Iterable[Mapping[str, Any]],
        server: Mapping[str, list[_ServerFile]] | None,
        scope: str,
        work: _Work,
    ) -> None:
        """Compare the non-DICOM resources of one object (``server`` None: object not there yet)."""
        for res in resources:
            if res.get("import"):
                continue
            diff = self._compare(res, None if server is None else server.get(res["label"]))
            work.problems += [f"{scope} resource {res['label']} {p}" for p in diff.problems]
            work.tally += diff.tally
            if not diff.send:
                continue
            where = f"{scope}/resources/{res['label']}"
            work.missing.append(f"{where}: {len(diff.send)} file(s) missing or different")
            if server is None:
                work.pending += [f"{where}/{f['name']}" for f in diff.send]
                continue
            if res["label"] not in server:
                work.new_resources.append((base, res, scope))
            work.uploads += [(base, res, f, scope) for f in diff.send]

    # writing -------------------------------------------------------------------------------
    def _ensure_resource(self, base: str, res: Mapping[str, Any], scope: str) -> None:
        self.client.call(
            "PUT",
            f"{base}/resources/{_q(res['label'])}",
            query={"format": res["format"], "content": res["content"]},
            accepted=(200, 201, 409),  # 409: created by an attempt whose answer was lost
            what=f"create {scope}/resources/{res['label']}",
        )
        self.report.created["resources"].append(f"{scope}/resources/{res['label']}")

    def _upload(
        self, base: str, res: Mapping[str, Any], entry: Mapping[str, Any], scope: str
    ) -> None:
        local = self.staged / entry["source"]
        name = f"{scope}/resources/{res['label']}/{entry['name']}"
        if local.stat().st_size != entry["size"]:
            raise XnatDepositError(f"{entry['source']}: size differs from the plan; re-run staging")
        query = {"inbody": "true", "overwrite": "true"}
        if res["format"]:
            query["format"] = res["format"]
        self.client.call(
            "PUT",
            f"{base}/resources/{_q(res['label'])}/files/{_qpath(entry['name'])}",
            query=query,
            body=lambda: open(local, "rb"),  # noqa: SIM115 (closed by XnatClient.call)
            headers={"Content-Type": "application/octet-stream"},
            what=f"upload {name}",
        )
        with self._lock:
            self.report.uploaded_files += 1
            self.report.uploaded_bytes += entry["size"]
        self._emit({"event": "uploaded", "file": name, "bytes": entry["size"]})

    def _run_uploads(
        self, uploads: list[tuple[str, Mapping[str, Any], Mapping[str, Any], str]]
    ) -> list[str]:
        """Upload in parallel; transient failures that outlived their retries are returned (the
        next round retries them); a refusal by XNAT is raised."""
        errors: list[str] = []
        hard: list[XnatDepositError] = []
        if not uploads:
            return errors

        def job(item: tuple[str, Mapping[str, Any], Mapping[str, Any], str]) -> None:
            self._upload(*item)

        with ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="xnat-up") as pool:
            futures = [pool.submit(job, u) for u in uploads]
            for fut in as_completed(futures):
                exc = fut.exception()
                if isinstance(exc, RetryExhaustedError):
                    errors.append(str(exc))
                elif isinstance(exc, XnatDepositError):
                    hard.append(exc)
                elif exc is not None:
                    # Interrupted (or a bug): stop queueing uploads; the running ones finish.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise exc
        if hard:
            raise hard[0]
        return errors

    @staticmethod
    def _guard(fn: Callable[[], None]) -> list[str]:
        try:
            fn()
        except RetryExhaustedError as exc:
            return [str(exc)]
        return []

    def _converge(
        self, scope: str, read: Callable[[], _Work], act: Callable[[_Work], list[str]]
    ) -> _Work | None:
        """Read-compare-act rounds until nothing differs; the converged work, or None on failure."""
        errors: list[str] = []
        rnd = 0
        while True:
            rnd += 1
            self.report.rounds = max(self.report.rounds, rnd)
            work = read()
            if work.problems:
                for p in work.problems:
                    self.fail(p)
                return None
            if work.empty():
                r = self.report
                r.verified_files += sum(work.tally.values())
                r.verified_by_digest += work.tally["digest"]
                r.verified_by_download += work.tally["download"]
                r.verified_by_size_only += work.tally["size"]
                return work
            if self.dry_run:
                self._record_dry_run(work)
                return work
            if rnd > self.rounds:
                last = f"; last error: {errors[-1]}" if errors else ""
                self.fail(
                    f"{scope}: still differs from the plan after {self.rounds} round(s) "
                    f"({'; '.join(work.missing[:5]) or 'scans missing'}){last}"
                )
                return None
            if rnd > 1:
                self._pause(rnd)
            errors = act(work)

    def _record_dry_run(self, work: _Work) -> None:
        r = self.report
        r.would_upload += [f"DICOM import {f['source']}" for f in work.imports]
        r.would_create["scans"] += [f"scan {s['id']} ({s['item']})" for s in work.creates]
        r.would_create["resources"] += [
            f"{scope}/resources/{res['label']}" for _, res, scope in work.new_resources
        ]
        r.would_upload += [
            f"{scope}/resources/{res['label']}/{f['name']}" for _, res, f, scope in work.uploads
        ]
        r.would_upload += work.pending

    # prearchive and import -----------------------------------------------------------------
    def _prearchive_entries(self, subject: str, label: str) -> list[dict[str, Any]]:
        data = self.client.get_json(
            f"/data/prearchive/projects/{_q(self.project)}", missing_ok=True
        )
        if data is None:
            return []  # no prearchive (404) or not visible to this user (403)
        try:
            rows = data["ResultSet"]["Result"]
        except (KeyError, TypeError) as exc:
            raise XnatDepositError("prearchive listing: unexpected answer (no ResultSet)") from exc
        return [r for r in rows if r.get("name") == label and r.get("subject") == subject]

    def archive_leftovers(self, subject: str, label: str) -> None:
        """Archive this session's prearchive entries (from this or an interrupted run)."""
        deadline = time.monotonic() + self.prearchive_wait
        delay = 0.1
        while True:
            waiting = []
            for entry in self._prearchive_entries(subject, label):
                status = str(entry.get("status", "")).upper()
                src = str(entry.get("url", ""))
                if status == "READY":
                    if self.dry_run:
                        self.report.warnings.append(f"{src} would be archived into {label}")
                    elif not self._archive(src, subject, label):
                        waiting.append(src)  # the answer was lost: look at the prearchive again
                elif status in {"CONFLICT", "ERROR"}:
                    raise XnatDepositError(
                        f"prearchive entry {src} of session {label} is in state {status}; resolve "
                        "it in XNAT's prearchive, then re-run"
                    )
                else:
                    waiting.append(src)
            if not waiting or self.dry_run:
                return
            if time.monotonic() > deadline:
                raise XnatDepositError(
                    f"prearchive entries {waiting} of session {label} not READY after "
                    f"{self.prearchive_wait:.0f}s; re-run the deposit later"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _archive(self, src: str, subject: str, label: str) -> bool:
        """Archive one prearchive entry; False when a transient failure leaves it unknown whether
        the server did (the caller lists the prearchive again)."""
        query = {
            "src": src,
            "project": self.project,
            "subject": subject,
            "session": label,
            "overwrite": "append",
        }
        try:
            response = self.client.call(
                "POST",
                "/data/services/archive",
                query=query,
                accepted=(200, 201, 404),
                what=f"archive {src} into session {label}",
                retry=False,  # not idempotent: the next round re-reads the prearchive instead
            )
        except Exception as exc:
            if is_transient(exc):
                log.warning("archive %s: %s; will check again", src, describe_error(exc))
                return False
            raise
        if response.status_code == 404:
            return True  # archived by an earlier attempt whose answer was lost
        self.report.archived_from_prearchive += 1
        self._emit({"event": "archived", "session": label, "src": src})
        return True

    def _import(self, subject: str, label: str, files: list[dict[str, Any]]) -> None:
        """Send DICOM files through the import service (one zip per session and round)."""
        with tempfile.TemporaryDirectory(prefix="imagedepot-xnat-") as tmpdir:
            archive = Path(tmpdir) / "dicom.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
                for n, f in enumerate(files):
                    zf.write(self.staged / f["source"], f"{n:06d}_{f['name']}")
            size = archive.stat().st_size

            query = {
                "inbody": "true",
                "import-handler": "SI",
                "project": self.project,
                "subject": subject,
                "session": label,
                "overwrite": "append",
                "dest": self.archive_dest,
            }
            self.report.dicom_imports += 1
            self.report.dicom_files_sent += len(files)
            try:
                response = self.client.call(
                    "POST",
                    "/data/services/import",
                    query=query,
                    body=lambda: open(archive, "rb"),  # noqa: SIM115 (closed by XnatClient.call)
                    headers={"Content-Type": "application/zip"},
                    what=f"import {len(files)} DICOM file(s) into session {label}",
                    retry=False,  # not idempotent: the next round sends only what is missing
                )
            except Exception as exc:
                if is_transient(exc):
                    log.warning(
                        "import into %s: %s; checking what arrived", label, describe_error(exc)
                    )
                    self.archive_leftovers(subject, label)
                    return
                raise
        self._emit({"event": "imported", "session": label, "files": len(files), "bytes": size})
        if response.text.strip().startswith(("/data/prearchive", "/prearchive")):
            self.archive_leftovers(subject, label)

    def _create_scan(self, exp_path: str, label: str, scan: Mapping[str, Any]) -> None:
        xsi = scan["xsi_type"]
        self.client.call(
            "PUT",
            f"{exp_path}/scans/{_q(scan['id'])}",
            query={
                "xsiType": xsi,
                f"{xsi}/type": scan["type"],
                f"{xsi}/series_description": scan.get("series_description") or "",
            },
            what=f"create scan {scan['id']} in session {label}",
        )
        self.report.created["scans"].append(f"{label}/{scan['id']}")

    def _update_scan(
        self, exp_path: str, label: str, scan: Mapping[str, Any], server_scan: _ServerScan
    ) -> None:
        xsi = server_scan.xsi_type or scan["xsi_type"]
        self.client.call(
            "PUT",
            f"{exp_path}/scans/{_q(server_scan.id)}",
            query={"xsiType": xsi, f"{xsi}/type": scan["type"]},
            what=f"set the type of scan {server_scan.id} in session {label}",
        )
        self.report.metadata_updates += 1

    # scopes --------------------------------------------------------------------------------
    def sync_session(self, subject: str, session: Mapping[str, Any]) -> bool:
        """Bring one session to the plan; True when verified (or reported, in a dry run)."""
        label = session["label"]
        exp_path = f"{self.project_path}/subjects/{_q(subject)}/experiments/{_q(label)}"
        self.archive_leftovers(subject, label)
        exists = True
        if subject in self.report.would_create["subjects"]:
            exists = False
        else:
            rows = self.client.result_set(f"{self.project_path}/subjects/{_q(subject)}/experiments")
            found = {str(r.get("label")): str(r.get("xsiType") or "") for r in rows}
            exists = label in found
            if exists and found[label] and found[label] != session["xsi_type"]:
                self.report.warnings.append(
                    f"session {label} exists as {found[label]}; the plan says {session['xsi_type']}"
                )
        if not exists:
            if self.dry_run:
                self.report.would_create["sessions"].append(label)
            else:
                self.client.call(
                    "PUT",
                    exp_path,
                    query={"xsiType": session["xsi_type"]},
                    what=f"create session {label}",
                )
                self.report.created["sessions"].append(label)
                self._emit({"event": "session_created", "session": label})
                exists = True
        scan_map: dict[str, str] = {}

        def read() -> _Work:
            work = _Work()
            scans = self._scans(exp_path, session) if exists else {}
            by_uid = {s.uid: s for s in scans.values() if s.uid}
            scan_map.clear()
            for scan in session["scans"]:
                uid = scan.get("series_instance_uid")
                ss = by_uid.get(uid) if uid else scans.get(scan["id"])
                if ss is None and uid and scan["id"] in scans and not scans[scan["id"]].uid:
                    ss = scans[scan["id"]]  # a server that reports no UIDs
                sid = ss.id if ss is not None else scan["id"]
                scope = f"session {label} scan {sid}"
                if ss is not None:
                    scan_map[scan["item"]] = ss.id
                for res in scan["resources"]:
                    if res.get("import"):
                        diff = self._compare(
                            res,
                            ss.resources.get(res["label"]) if ss else None,
                            count=self.count_dicom,
                        )
                        work.problems += [f"{scope} resource DICOM {p}" for p in diff.problems]
                        work.tally += diff.tally
                        if diff.send:
                            work.imports += diff.send
                            work.missing.append(f"{scope}: {len(diff.send)} DICOM file(s) missing")
                server: Mapping[str, list[_ServerFile]] | None
                if ss is not None:
                    server = ss.resources
                    if scan["type"] and not ss.type:
                        work.updates.append((scan, ss))
                elif not uid:
                    work.creates.append(scan)
                    server = {}
                else:
                    server = None  # waits for the DICOM import to create the scan
                base = f"{exp_path}/scans/{_q(sid)}"
                self._resource_work(base, scan["resources"], server, scope, work)
            work.extra_scans = sorted(
                set(scans) - set(scan_map.values()) - {s["id"] for s in work.creates}
            )
            if session["resources"]:
                server_res = (
                    self._resources(exp_path, [r["label"] for r in session["resources"]])
                    if exists
                    else {}
                )
                self._resource_work(
                    exp_path, session["resources"], server_res, f"session {label}", work
                )
            return work

        def act(work: _Work) -> list[str]:
            errors: list[str] = []
            if work.imports:
                self._import(subject, label, work.imports)
            for scan in work.creates:
                errors += self._guard(partial(self._create_scan, exp_path, label, scan))
            for scan, ss in work.updates:
                errors += self._guard(partial(self._update_scan, exp_path, label, scan, ss))
            for base, res, scope in work.new_resources:
                errors += self._guard(partial(self._ensure_resource, base, res, scope))
            errors += self._run_uploads(work.uploads)
            return errors

        done = self._converge(f"session {label}", read, act)
        if done is None:
            return False
        for sid in done.extra_scans:
            self.report.warnings.append(
                f"session {label} holds scan {sid}, which is not in the plan"
            )
        if not self.dry_run:
            self.report.verified_sessions.append(label)
            if self.receipt is not None:
                self.receipt.session_done(subject, session, scan_map)
        return True

    def sync_subject_resources(self, subject: Mapping[str, Any]) -> bool:
        """Bring a subject's own resources (the FHIR bundles) to the plan."""
        if not subject["resources"]:
            return True
        label = subject["label"]
        base = f"{self.project_path}/subjects/{_q(label)}"
        new = label in self.report.would_create["subjects"]
        scope = f"subject {label}"

        def read() -> _Work:
            work = _Work()
            server = (
                {} if new else self._resources(base, [r["label"] for r in subject["resources"]])
            )
            self._resource_work(base, subject["resources"], server, scope, work)
            return work

        def act(work: _Work) -> list[str]:
            errors: list[str] = []
            for b, res, sc in work.new_resources:
                errors += self._guard(partial(self._ensure_resource, b, res, sc))
            return errors + self._run_uploads(work.uploads)

        return self._converge(scope, read, act) is not None


class _Receipt:
    """The local receipt: what was verified where, server ids, and a history of runs."""

    def __init__(self, path: Path, url: str, project: str, plan_sha256: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        old: dict[str, Any] = {}
        if path.is_file():
            try:
                old = read_json(path)
            except (OSError, ValueError):
                old = {}
        same = old.get("url") == url and old.get("project") == project
        self.data: dict[str, Any] = {
            "receipt_version": RECEIPT_VERSION,
            "url": url,
            "project": project,
            "plan_sha256": plan_sha256,
            "status": old.get("status", "incomplete") if same else "incomplete",
            "subjects": old.get("subjects", {}) if same else {},
            "sessions": old.get("sessions", {}) if same else {},
            "runs": old.get("runs", []) if same else [],
            "versions": tool_versions(),
        }

    def session_done(
        self, subject: str, session: Mapping[str, Any], scans: Mapping[str, str]
    ) -> None:
        files = sum(len(r["files"]) for s in session["scans"] for r in s["resources"])
        with self.lock:
            self.data["sessions"][session["label"]] = {
                "subject": subject,
                "dataset": session["dataset"],
                "scans": dict(sorted(scans.items())),
                "files": files,
                "verified": now(),
            }
            self.write()

    def write(self) -> None:
        write_json(self.path, self.data)


def _plan_sha256(plan: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def deposit_xnat(
    plan: str | Path | Mapping[str, Any],
    url: str,
    *,
    project: str,
    staged: str | Path | None = None,
    credentials: Credentials | None = None,
    credentials_env: str | None = None,
    retries: int = 5,
    parallel_streams: int = 2,
    dry_run: bool = False,
    receipt: str | Path | None = None,
    timeout: float = 120.0,
    backoff: RetryPolicy | None = None,
    dicom_verify: str = "checksum",
    download_verify_limit: int = DOWNLOAD_VERIFY_LIMIT,
    prearchive_wait: float = 300.0,
    verify_tls: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> DepositReport:
    """Upload a plan to XNAT, verify every file, and report (see the module docstring).

    Parameters
    ----------
    plan
        The plan (from :func:`build_plan`) or the path of a plan file (from :func:`stage_xnat`).
    url
        XNAT base URL, without credentials.
    project
        XNAT project ID; it must exist.
    staged
        The staged folder the plan's ``source`` paths are relative to; by default the plan's
        ``staged_dir`` relative to the plan file.
    credentials, credentials_env
        Explicit credentials, or the prefix of ``<PREFIX>_USER``/``<PREFIX>_PASSWORD``; without
        either, ``~/.netrc`` (:func:`resolve_credentials`).
    retries
        Attempts per request on transient failures (exponential backoff), and rounds of
        upload-then-verify per session.
    parallel_streams
        Concurrent file uploads within a session.
    dry_run
        Read the server's state and report what would be created and uploaded; write nothing.
    receipt
        JSON file updated after every verified session (history of runs, server ids).
    timeout
        Seconds per request (connect and read).
    backoff
        Overrides the retry policy (``retries`` sets only its number of attempts).
    dicom_verify
        ``checksum`` (default) or ``count`` (sizes and counts only, for servers that rewrite DICOM).
    download_verify_limit
        When XNAT lists no digest, files up to this many bytes are downloaded (streamed) and
        hashed; a larger file without a digest fails the deposit rather than pass on its size.
    prearchive_wait
        Seconds to wait for a prearchive entry to become READY.
    progress
        Called with an event dict after each created object, upload, import and archive.

    Returns
    -------
    DepositReport
        ``status`` is ``complete`` (everything verified), ``dry_run`` or ``failed``.

    Raises
    ------
    XnatDepositError
        After writing the receipt, when anything could not be verified; the message lists every
        problem with the XNAT object it concerns and XNAT's answer.
    """
    if dicom_verify not in {"checksum", "count"}:
        raise ConfigError("dicom_verify must be 'checksum' or 'count'")
    if isinstance(plan, (str, Path)):
        plan_path = Path(plan)
        plan_data = load_plan(plan_path)
        if staged is None:
            staged = plan_path.parent / str(plan_data.get("staged_dir", "."))
    else:
        plan_data = dict(plan)
        if staged is None:
            raise XnatDepositError("deposit_xnat: give `staged` with an in-memory plan")
    staged_p = Path(staged)
    if not project:
        raise ConfigError("deposit_xnat: the XNAT project is required")
    public = _public_url(url)
    creds = credentials or resolve_credentials(url, credentials_env)
    policy = backoff or RetryPolicy(attempts=max(1, retries))
    report = DepositReport(url=public, project=project, dry_run=dry_run)
    if plan_data.get("project") and plan_data["project"] != project:
        report.warnings.append(
            f"the plan was made for project {plan_data['project']!r}; depositing to {project!r}"
        )

    def count_retry(exc: BaseException, attempt: int, wait: float) -> None:
        report.retries += 1

    rec = _Receipt(Path(receipt), public, project, _plan_sha256(plan_data)) if receipt else None
    client = XnatClient(
        url,
        creds,
        policy=policy,
        timeout=timeout,
        pool_size=parallel_streams,
        verify=verify_tls,
        on_retry=count_retry,
    )
    depositor = _Depositor(
        client,
        plan_data,
        staged_p,
        project,
        report,
        rounds=retries,
        parallel_streams=parallel_streams,
        dry_run=dry_run,
        dicom_verify=dicom_verify,
        download_verify_limit=download_verify_limit,
        prearchive_wait=prearchive_wait,
        progress=progress,
        receipt=rec,
    )
    try:
        client.connect()
        report.server_version = client.server_version
        depositor.check_project()
        depositor.ensure_subjects()
        for subject in plan_data["subjects"]:
            for session in subject["sessions"]:
                try:
                    depositor.sync_session(subject["label"], session)
                except (XnatDepositError, RetryExhaustedError) as exc:
                    depositor.fail(f"session {session['label']}: {exc}")
            try:
                depositor.sync_subject_resources(subject)
            except (XnatDepositError, RetryExhaustedError) as exc:
                depositor.fail(f"subject {subject['label']}: {exc}")
        if dry_run:
            report.status = "dry_run"
        else:
            report.status = "failed" if report.problems else "complete"
    except BaseException as exc:
        report.status = "failed"
        if isinstance(exc, (XnatDepositError, RetryExhaustedError)):
            report.problems.append(str(exc))
        elif not isinstance(exc, Exception):
            report.status = "interrupted"
        raise
    finally:
        report.ended = now()
        client.close()
        if rec is not None:
            if not dry_run:
                rec.data["status"] = report.status
            rec.data["server_version"] = report.server_version
            rec.data["archive_mode"] = report.archive_mode
            rec.data["runs"].append(
                {
                    k: report.to_dict()[k]
                    for k in (
                        "started",
                        "ended",
                        "status",
                        "dry_run",
                        "uploaded_files",
                        "uploaded_bytes",
                        "dicom_imports",
                        "archived_from_prearchive",
                        "verified_files",
                        "retries",
                        "problems",
                    )
                }
            )
            rec.write()
    log.info(
        "xnat deposit %s: %d file(s) uploaded (%d bytes), %d DICOM import(s), %d verified, "
        "%d retries",
        report.status,
        report.uploaded_files,
        report.uploaded_bytes,
        report.dicom_imports,
        report.verified_files,
        report.retries,
    )
    if report.status == "failed":
        raise XnatDepositError("XNAT deposit incomplete:\n  " + "\n  ".join(report.problems))
    return report


def iter_plan_files(plan: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """Every file entry of a plan."""
    for subject in plan["subjects"]:
        for res in _all_resources(subject):
            yield from res["files"]


__all__ = [
    "Credentials",
    "DepositReport",
    "XnatClient",
    "XnatDepositError",
    "build_plan",
    "deposit_xnat",
    "iter_plan_files",
    "load_plan",
    "resolve_credentials",
    "stage_xnat",
    "xnat_label",
]
