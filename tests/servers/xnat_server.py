"""A small XNAT server for tests: the REST subset that xnatpy and the deposit use, as a real HTTP process.

Run::

    python tests/servers/xnat_server.py --port 0 --data DIR --project DEMO:4 [--fail-rate 0.2]
        [--drop-rate 0.1] [--slow MS] [--seed 1] [--no-digest] [--prearchive-build-ms 200]

The first line on stdout is ``listening on http://127.0.0.1:PORT``. State lives in ``DIR/state.json``
(rewritten after each change) and file contents in ``DIR/blobs``, so a restarted server keeps its
archive while its login sessions are gone, as with a real restart.

What it implements, with XNAT's JSON shapes:

* login: ``GET /`` (302 to ``/app/template/Index.vm``), ``PUT|POST /data/services/auth`` (form
  ``username``/``password``; the JSESSION token as body and cookie), ``GET /data/auth``,
  ``GET|DELETE /data/JSESSION``; Basic auth is accepted too. ``--session-ttl`` expires idle sessions.
* ``/data/version``, ``/xapi/siteConfig/buildInfo``; for clients that parse the data model,
  ``/xapi/schemas`` (``["xnat"]``), ``/xapi/schemas/xnat`` (a minimal XSD of the core types, see
  :data:`XNAT_XSD`) and ``/data/search/elements[/{type}]``.
* ``/data/projects[/{p}[/prearchive_code]]``; subjects, experiments, scans, resources and files under
  ``/data[/archive]/projects/{p}/subjects/{s}/experiments/{e}/scans/{id}/resources/{r}/files/{path}``
  (labels or accession IDs; ``/data/experiments/{ID}/...`` and ``/data/subjects/{ID}/...`` too):
  ``GET`` listings as ``{"ResultSet": {"Result": [...]}}``, single objects as
  ``{"items": [{"data_fields": ..., "meta": ..., "children": ...}]}``, ``PUT`` to create (``xsiType``
  and ``<xsiType>/field`` query parameters), ``DELETE``. File listings carry ``Name``, ``Size``,
  ``URI``, ``collection``, ``cat_ID``, ``file_format``, ``file_content``, ``file_tags`` and ``digest``
  (MD5, unless ``--no-digest``). File ``PUT`` takes the body (``inbody=true``) or a multipart form,
  refuses to replace an existing file without ``overwrite=true`` (409) and creates a missing
  resource; resource ``PUT`` answers 409 when it exists.
* ``POST /data/services/import`` (``import-handler`` SI / DICOM-zip / gradual-DICOM; a zip of DICOM
  or one DICOM file in the body): files are parsed with pydicom and grouped by SeriesInstanceUID into
  scans whose ID is the SeriesNumber (``N-k`` when taken by another series, else an ordinal), named
  ``<StudyUID>-<SeriesNumber>-<InstanceNumber>-<hash>.dcm`` as XNAT does; ``project``, ``subject``,
  ``session``, ``dest`` and ``overwrite`` (none: 409 if the session exists; append: keep existing
  files; delete: replace them) are honoured. Without ``project``, the upload lands in the
  ``Unassigned`` prearchive. A project whose ``prearchive_code`` is 0 always goes to the prearchive.
* ``/data/prearchive/projects[/{p}[/{timestamp}/{session}]]`` (``GET``, ``DELETE``) and
  ``POST /data/services/archive`` (``src``, ``overwrite``, ``project``/``subject``/``session``).

Fault injection is deterministic: whether a request fails depends only on the seed, the request
(method, path and query) and how often that same request was seen, not on the order in which
concurrent requests arrive. ``--fail-rate`` answers 502, ``--drop-rate`` closes the connection
without an answer; a fraction ``--after-fraction`` of these faults happen *after* the request was
processed (the change is made, the answer lost). ``--max-consecutive`` bounds how often the same
request fails in a row, so a client with enough retries always gets through; ``--fault-only REGEX``
restricts faults to requests whose ``METHOD /path?query`` matches. ``--slow MS`` delays a
fraction ``--slow-rate`` of the answers. ``--prearchive-build-ms`` keeps new prearchive entries
in state BUILDING for a while. ``/_test/stats``, ``/_test/state``, ``POST /_test/reset`` and
``POST /_test/expire-sessions`` (never faulted, no login) let tests inspect and steer the server.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import email.parser
import email.policy
import hashlib
import io
import json
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

MODALITY_SESSION = {
    "MR": ("xnat:mrSessionData", "xnat:mrScanData"),
    "CT": ("xnat:ctSessionData", "xnat:ctScanData"),
    "PT": ("xnat:petSessionData", "xnat:petScanData"),
}
OTHER = ("xnat:otherDicomSessionData", "xnat:otherDicomScanData")

#: A minimal data model for clients that parse it (xnatpy without ``no_parse_model``): the core
#: types with the fields this server fills, written for this server (not XNAT's own xnat.xsd).
XNAT_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xnat="http://nrg.wustl.edu/xnat"
           targetNamespace="http://nrg.wustl.edu/xnat" elementFormDefault="qualified">
  <xs:element name="Project" type="xnat:projectData"/>
  <xs:element name="Subject" type="xnat:subjectData"/>
  <xs:element name="MRSession" type="xnat:mrSessionData"/>
  <xs:element name="CTSession" type="xnat:ctSessionData"/>
  <xs:element name="OtherDicomSession" type="xnat:otherDicomSessionData"/>
  <xs:complexType name="abstractResource">
    <xs:attribute name="label" type="xs:string"/>
    <xs:attribute name="file_count" type="xs:integer"/>
    <xs:attribute name="file_size" type="xs:integer"/>
  </xs:complexType>
  <xs:complexType name="resourceCatalog">
    <xs:complexContent>
      <xs:extension base="xnat:abstractResource">
        <xs:attribute name="format" type="xs:string"/>
        <xs:attribute name="content" type="xs:string"/>
      </xs:extension>
    </xs:complexContent>
  </xs:complexType>
  <xs:complexType name="projectData">
    <xs:sequence>
      <xs:element name="name" type="xs:string" minOccurs="0"/>
      <xs:element name="description" type="xs:string" minOccurs="0"/>
      <xs:element name="resources" minOccurs="0">
        <xs:complexType><xs:sequence>
          <xs:element name="resource" type="xnat:abstractResource" minOccurs="0" maxOccurs="unbounded"/>
        </xs:sequence></xs:complexType>
      </xs:element>
    </xs:sequence>
    <xs:attribute name="ID" type="xs:string" use="required"/>
  </xs:complexType>
  <xs:complexType name="subjectData">
    <xs:sequence>
      <xs:element name="experiments" minOccurs="0">
        <xs:complexType><xs:sequence>
          <xs:element name="experiment" type="xnat:subjectAssessorData" minOccurs="0" maxOccurs="unbounded"/>
        </xs:sequence></xs:complexType>
      </xs:element>
      <xs:element name="resources" minOccurs="0">
        <xs:complexType><xs:sequence>
          <xs:element name="resource" type="xnat:abstractResource" minOccurs="0" maxOccurs="unbounded"/>
        </xs:sequence></xs:complexType>
      </xs:element>
    </xs:sequence>
    <xs:attribute name="ID" type="xs:string"/>
    <xs:attribute name="project" type="xs:string"/>
    <xs:attribute name="label" type="xs:string"/>
  </xs:complexType>
  <xs:complexType name="experimentData">
    <xs:sequence>
      <xs:element name="date" type="xs:date" minOccurs="0"/>
      <xs:element name="resources" minOccurs="0">
        <xs:complexType><xs:sequence>
          <xs:element name="resource" type="xnat:abstractResource" minOccurs="0" maxOccurs="unbounded"/>
        </xs:sequence></xs:complexType>
      </xs:element>
    </xs:sequence>
    <xs:attribute name="ID" type="xs:string"/>
    <xs:attribute name="project" type="xs:string"/>
    <xs:attribute name="label" type="xs:string"/>
  </xs:complexType>
  <xs:complexType name="subjectAssessorData">
    <xs:complexContent><xs:extension base="xnat:experimentData">
      <xs:sequence><xs:element name="subject_ID" type="xs:string" minOccurs="0"/></xs:sequence>
    </xs:extension></xs:complexContent>
  </xs:complexType>
  <xs:complexType name="imageSessionData">
    <xs:complexContent><xs:extension base="xnat:subjectAssessorData">
      <xs:sequence>
        <xs:element name="scans" minOccurs="0">
          <xs:complexType><xs:sequence>
            <xs:element name="scan" type="xnat:imageScanData" minOccurs="0" maxOccurs="unbounded"/>
          </xs:sequence></xs:complexType>
        </xs:element>
      </xs:sequence>
    </xs:extension></xs:complexContent>
  </xs:complexType>
  <xs:complexType name="mrSessionData"><xs:complexContent><xs:extension base="xnat:imageSessionData"/></xs:complexContent></xs:complexType>
  <xs:complexType name="ctSessionData"><xs:complexContent><xs:extension base="xnat:imageSessionData"/></xs:complexContent></xs:complexType>
  <xs:complexType name="otherDicomSessionData"><xs:complexContent><xs:extension base="xnat:imageSessionData"/></xs:complexContent></xs:complexType>
  <xs:complexType name="imageScanData">
    <xs:sequence>
      <xs:element name="series_description" type="xs:string" minOccurs="0"/>
      <xs:element name="modality" type="xs:string" minOccurs="0"/>
      <xs:element name="frames" type="xs:integer" minOccurs="0"/>
      <xs:element name="file" type="xnat:abstractResource" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
    <xs:attribute name="ID" type="xs:string" use="required"/>
    <xs:attribute name="type" type="xs:string"/>
    <xs:attribute name="UID" type="xs:string"/>
  </xs:complexType>
  <xs:complexType name="mrScanData"><xs:complexContent><xs:extension base="xnat:imageScanData"/></xs:complexContent></xs:complexType>
  <xs:complexType name="ctScanData"><xs:complexContent><xs:extension base="xnat:imageScanData"/></xs:complexContent></xs:complexType>
  <xs:complexType name="otherDicomScanData"><xs:complexContent><xs:extension base="xnat:imageScanData"/></xs:complexContent></xs:complexType>
</xs:schema>
"""

#: Display fields per data type, as ``/data/search/elements/{type}`` lists them.
SEARCH_FIELDS = {
    "xnat:projectData": ["ID", "NAME", "DESCRIPTION"],
    "xnat:subjectData": ["SUBJECT_ID", "SUBJECT_LABEL", "PROJECT"],
    "xnat:mrSessionData": ["SESSION_ID", "LABEL", "PROJECT", "SUBJECT_ID"],
    "xnat:ctSessionData": ["SESSION_ID", "LABEL", "PROJECT", "SUBJECT_ID"],
    "xnat:otherDicomSessionData": ["SESSION_ID", "LABEL", "PROJECT", "SUBJECT_ID"],
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _result_set(rows: list[dict[str, Any]], title: str = "") -> dict[str, Any]:
    return {"ResultSet": {"Result": rows, "totalRecords": str(len(rows)), "title": title}}


def _item(xsi: str, fields: dict[str, Any], children: list[dict[str, Any]] | None = None) -> dict:
    return {
        "items": [
            {
                "data_fields": fields,
                "meta": {"xsi:type": xsi, "isHistory": False, "start_date": _now()},
                "children": children or [],
            }
        ]
    }


# --------------------------------------------------------------------------------------------
# State


class Store:
    """The archive: projects, subjects, experiments, scans, resources, files, prearchive."""

    def __init__(self, data: Path, projects: dict[str, int], *, digest: bool) -> None:
        self.data = data
        self.blobs = data / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.digest = digest
        state_file = data / "state.json"
        if state_file.is_file():
            self.s = json.loads(state_file.read_text())
        else:
            self.s = {"projects": {}, "prearchive": [], "ids": {"S": 0, "E": 0, "R": 0, "C": 0}}
        for pid, code in projects.items():
            self.s["projects"].setdefault(
                pid,
                {"ID": pid, "name": pid, "prearchive_code": code, "subjects": {}, "resources": {}},
            )
            self.s["projects"][pid]["prearchive_code"] = code
        self.save()

    def save(self) -> None:
        tmp = self.data / ".state.json.tmp"
        tmp.write_text(json.dumps(self.s, sort_keys=True))
        os.replace(tmp, self.data / "state.json")

    def next_id(self, kind: str) -> int:
        self.s["ids"][kind] += 1
        return int(self.s["ids"][kind])

    def put_blob(self, data: bytes) -> tuple[str, int, str]:
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        name = f"{md5}-{len(data)}"
        path = self.blobs / name
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.blobs)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return name, len(data), md5

    def read_blob(self, name: str) -> bytes:
        return (self.blobs / name).read_bytes()

    # lookups -------------------------------------------------------------------------------
    def project(self, pid: str) -> dict[str, Any]:
        p = self.s["projects"].get(pid)
        if p is None:
            raise HttpError(404, f"Unable to find project {pid}")
        return p

    def subject(self, project: dict, key: str, *, required: bool = True) -> dict | None:
        for subj in project["subjects"].values():
            if subj["label"] == key or subj["ID"] == key:
                return subj
        if required:
            raise HttpError(404, f"Unable to find subject {key}")
        return None

    def subject_by_id(self, sid: str) -> tuple[dict, dict]:
        for p in self.s["projects"].values():
            for subj in p["subjects"].values():
                if subj["ID"] == sid:
                    return p, subj
        raise HttpError(404, f"Unable to find subject {sid}")

    def experiment(self, subject: dict, key: str, *, required: bool = True) -> dict | None:
        for exp in subject["experiments"].values():
            if exp["label"] == key or exp["ID"] == key:
                return exp
        if required:
            raise HttpError(404, f"Unable to find experiment {key}")
        return None

    def experiment_anywhere(self, key: str, project: dict | None = None) -> tuple[dict, dict, dict]:
        projects = [project] if project is not None else list(self.s["projects"].values())
        for p in projects:
            for subj in p["subjects"].values():
                for exp in subj["experiments"].values():
                    if exp["ID"] == key or (project is not None and exp["label"] == key):
                        return p, subj, exp
        raise HttpError(404, f"Unable to find experiment {key}")

    # creation ------------------------------------------------------------------------------
    def new_subject(self, project: dict, label: str) -> dict:
        subj = {
            "ID": f"XNAT_S{self.next_id('S'):05d}",
            "label": label,
            "project": project["ID"],
            "insert_date": _now(),
            "insert_user": "admin",
            "experiments": {},
            "resources": {},
        }
        project["subjects"][label] = subj
        return subj

    def new_experiment(self, project: dict, subject: dict, label: str, xsi: str) -> dict:
        exp = {
            "ID": f"XNAT_E{self.next_id('E'):05d}",
            "label": label,
            "xsiType": xsi,
            "project": project["ID"],
            "subject_ID": subject["ID"],
            "date": "",
            "insert_date": _now(),
            "scans": {},
            "resources": {},
        }
        subject["experiments"][label] = exp
        return exp

    def new_scan(self, exp: dict, sid: str, xsi: str) -> dict:
        scan = {
            "ID": sid,
            "xsiType": xsi,
            "type": "",
            "series_description": "",
            "UID": "",
            "modality": "",
            "frames": 0,
            "quality": "usable",
            "note": "",
            "xnat_imagescandata_id": self.next_id("C"),
            "resources": {},
        }
        exp["scans"][sid] = scan
        return scan

    def new_resource(self, owner: dict, label: str, fmt: str = "", content: str = "") -> dict:
        res = {
            "xnat_abstractresource_id": self.next_id("R"),
            "label": label,
            "format": fmt,
            "content": content,
            "files": {},
        }
        owner["resources"][label] = res
        return res

    @staticmethod
    def resource(owner: dict, key: str, *, required: bool = True) -> dict | None:
        for res in owner["resources"].values():
            if res["label"] == key or str(res["xnat_abstractresource_id"]) == key:
                return res
        if required:
            raise HttpError(404, f"Unable to find resource {key}")
        return None

    # DICOM archiving -----------------------------------------------------------------------
    def archive_dicom(
        self,
        project: dict,
        subject_label: str,
        session_label: str,
        files: list[dict],
        overwrite: str,
    ) -> str:
        """Put parsed DICOM files into a session; returns the session's archive URI."""
        subj = self.subject(project, subject_label, required=False) or self.new_subject(
            project, subject_label
        )
        exp = self.experiment(subj, session_label, required=False)
        if exp is not None and overwrite not in {"append", "delete"}:
            raise HttpError(
                409,
                f"Session {session_label} already exists in project {project['ID']}; "
                "use overwrite=append or overwrite=delete",
            )
        modalities = Counter(f["modality"] for f in files)
        top = modalities.most_common(1)[0][0] if modalities else ""
        if exp is None:
            exp = self.new_experiment(
                project, subj, session_label, MODALITY_SESSION.get(top, OTHER)[0]
            )
        series: dict[str, list[dict]] = {}
        for f in files:
            series.setdefault(f["series_uid"], []).append(f)
        for uid, members in sorted(
            series.items(), key=lambda kv: (kv[1][0]["series_number"] or 0, kv[0])
        ):
            first = members[0]
            scan = next((s for s in exp["scans"].values() if s["UID"] == uid), None)
            if scan is None:
                number = first["series_number"]
                if number is not None:
                    sid, k = str(number), 1
                    while sid in exp["scans"]:
                        sid, k = f"{number}-{k}", k + 1
                else:
                    n = 1
                    while str(n) in exp["scans"]:
                        n += 1
                    sid = str(n)
                scan = self.new_scan(exp, sid, MODALITY_SESSION.get(first["modality"], OTHER)[1])
                scan.update(
                    UID=uid,
                    modality=first["modality"],
                    type=first["series_description"],
                    series_description=first["series_description"],
                )
            res = self.resource(scan, "DICOM", required=False) or self.new_resource(
                scan, "DICOM", "DICOM", "RAW"
            )
            for f in members:
                name = f["name"]
                old = res["files"].get(name)
                if old is not None and old["blob"] != f["blob"] and overwrite != "delete":
                    continue  # append: existing files are kept
                res["files"][name] = {"blob": f["blob"], "size": f["size"], "md5": f["md5"]}
            scan["frames"] = len(res["files"])
        return f"/data/archive/projects/{project['ID']}/subjects/{subj['label']}/experiments/{exp['label']}"


def parse_dicom(data: bytes) -> dict | None:
    """Header fields the importer needs, or None when ``data`` is not DICOM."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:
        return None
    if "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
        return None

    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "").strip()

    try:
        number = int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") else None
    except (TypeError, ValueError):
        number = None
    instance = text("InstanceNumber") or "0"
    tag = hashlib.sha1(
        (text("SOPClassUID") + text("SOPInstanceUID")).encode(), usedforsecurity=False
    ).hexdigest()[:8]
    return {
        "study_uid": text("StudyInstanceUID"),
        "series_uid": text("SeriesInstanceUID"),
        "series_number": number,
        "modality": text("Modality").upper(),
        "series_description": text("SeriesDescription"),
        "patient_name": text("PatientName"),
        "patient_id": text("PatientID"),
        "name": f"{text('StudyInstanceUID')}-{number if number is not None else 0}-{instance}-{tag}.dcm",
    }


# --------------------------------------------------------------------------------------------
# Fault injection


class Faults:
    """Deterministic faults: the decision for a request depends on (seed, request, repetition)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.seed = args.seed
        self.fail = args.fail_rate
        self.drop = args.drop_rate
        self.after = args.after_fraction
        self.slow_ms = args.slow
        self.slow_rate = args.slow_rate
        self.max_consecutive = args.max_consecutive
        self.only = re.compile(args.fault_only) if args.fault_only else None
        self.seen: Counter[str] = Counter()
        self.streak: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _u(self, *parts: object) -> float:
        h = hashlib.sha256("|".join(str(p) for p in (self.seed, *parts)).encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    def decide(self, key: str) -> tuple[str | None, str, float]:
        """(fault kind or None, 'before'|'after', delay seconds)."""
        with self.lock:
            n = self.seen[key]
            self.seen[key] += 1
            u = self._u(key, n, "fault")
            kind = None
            if self.only is not None and not self.only.search(key):
                u = 1.0
            if u < self.fail:
                kind = "502"
            elif u < self.fail + self.drop:
                kind = "drop"
            if kind is not None and self.streak[key] >= self.max_consecutive:
                kind = None
            self.streak[key] = self.streak[key] + 1 if kind else 0
            when = "after" if self._u(key, n, "when") < self.after else "before"
            delay = self.slow_ms / 1000 if self._u(key, n, "slow") < self.slow_rate else 0.0
        return kind, when, delay


# --------------------------------------------------------------------------------------------
# HTTP


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], args: argparse.Namespace) -> None:
        super().__init__(addr, Handler)
        self.args = args
        projects = {}
        for spec in args.project:
            pid, _, code = spec.partition(":")
            projects[pid] = int(code or 4)
        self.store = Store(Path(args.data), projects, digest=not args.no_digest)
        self.faults = Faults(args)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.stats_lock = threading.Lock()
        self.reset_stats()

    def reset_stats(self) -> None:
        with self.stats_lock:
            self.stats: dict[str, Any] = {
                "requests": 0,
                "processed": Counter(),
                "writes": [],
                "bytes_received": 0,
                "uploads": 0,
                "imports": 0,
                "archives": 0,
                "faults": Counter(),
                "logins": 0,
            }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small writes otherwise wait for delayed ACKs (~40 ms each)
    server: Server
    server_version = "XNAT-test/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.args.verbose:
            super().log_message(format, *args)

    # plumbing ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _read_body(self) -> bytes:
        if getattr(self, "_body", None) is not None:
            return self._body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self._body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def _send(
        self,
        status: int,
        body: bytes | str = b"",
        ctype: str = "text/plain;charset=UTF-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, data: Any) -> tuple[int, bytes, str]:
        return status, json.dumps(data).encode(), "application/json"

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self, method: str) -> None:
        self._body = None
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        srv = self.server
        if path.startswith("/_test/"):
            self._test_route(method, path)
            return
        with srv.stats_lock:
            srv.stats["requests"] += 1
        key = f"{method} {path}?{'&'.join(f'{k}={v}' for k, v in sorted(query.items()))}"
        kind, when, delay = srv.faults.decide(key)
        if delay:
            with srv.stats_lock:
                srv.stats["faults"]["slow"] += 1
            time.sleep(delay)
        if kind is not None and when == "before":
            self._fault(kind, read=kind == "502")
            return
        extra_headers: dict[str, str] = {}
        try:
            route_method = "GET" if method == "HEAD" else method
            status, body, ctype = self._route(route_method, path, query, extra_headers)
        except HttpError as exc:
            status, body, ctype = exc.status, exc.message.encode(), "text/plain;charset=UTF-8"
        except Exception as exc:  # a bug in the test server: answer 500 and say why
            status, body, ctype = 500, f"test server error: {exc!r}".encode(), "text/plain"
        if method in {"PUT", "POST", "DELETE"} and not path.startswith(
            ("/data/services/auth", "/data/JSESSION")
        ):
            with srv.stats_lock:
                srv.stats["writes"].append(f"{method} {path} -> {status}")
                srv.stats["bytes_received"] += len(self._body or b"")
        with srv.stats_lock:
            srv.stats["processed"][method] += 1
        if kind is not None:
            self._fault(kind, read=True)
            return
        self._send(status, body, ctype, extra_headers)

    def _fault(self, kind: str, *, read: bool) -> None:
        with self.server.stats_lock:
            self.server.stats["faults"][kind] += 1
        if kind == "502":
            if read:
                self._read_body()
            self.close_connection = True
            self._send(
                502,
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
                "text/html",
                {"Connection": "close"},
            )
        else:
            self._drop()

    def _test_route(self, method: str, path: str) -> None:
        srv = self.server
        self._read_body()
        if path == "/_test/stats":
            with srv.stats_lock:
                data = dict(srv.stats)
                data["processed"] = dict(data["processed"])
                data["faults"] = dict(data["faults"])
                data["writes"] = list(data["writes"])
            self._send(200, json.dumps(data), "application/json")
        elif path == "/_test/state":
            with srv.store.lock:
                data = json.loads(json.dumps(srv.store.s))
            self._send(200, json.dumps(data), "application/json")
        elif path == "/_test/reset" and method == "POST":
            srv.reset_stats()
            self._send(200, "ok")
        elif path == "/_test/expire-sessions" and method == "POST":
            srv.sessions.clear()
            self._send(200, "ok")
        else:
            self._send(404, "no such test route")

    # auth ----------------------------------------------------------------------------------
    def _cookie_token(self) -> str | None:
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "JSESSIONID":
                return value
        return None

    def _basic_user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        args = self.server.args
        return user if (user, password) == (args.user, args.password) else None

    def _new_session(self, user: str | None) -> tuple[str, dict[str, str]]:
        token = secrets.token_hex(16).upper()
        self.server.sessions[token] = {"user": user, "seen": time.monotonic()}
        return token, {"Set-Cookie": f"JSESSIONID={token}; Path=/; HttpOnly"}

    def _user(self) -> str | None:
        token = self._cookie_token()
        sess = self.server.sessions.get(token or "")
        ttl = self.server.args.session_ttl
        if sess is not None:
            if ttl and time.monotonic() - sess["seen"] > ttl:
                self.server.sessions.pop(token or "", None)
                sess = None
            else:
                sess["seen"] = time.monotonic()
                if sess["user"]:
                    return str(sess["user"])
        return self._basic_user()

    # routes --------------------------------------------------------------------------------
    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, bytes, str]:
        srv = self.server
        args = srv.args
        if path in {"", "/"}:
            headers["Location"] = "/app/template/Index.vm"
            return 302, b"", "text/plain"
        if path.startswith("/app/"):
            user = self._user()
            who = (
                f'<a id="username-link" href="/app/template/XDATScreen_UpdateUser.vm">{user}</a>'
                if user
                else '<span style="color:red;">Guest</span>'
            )
            html = f'<html><body><span id="user_info">Logged in as: {"&nbsp;" if user else ""}{who}</span></body></html>'
            return 200, html.encode(), "text/html"
        if path == "/data/services/auth" and method in {"PUT", "POST"}:
            form = {
                k: v[-1]
                for k, v in parse_qs(self._read_body().decode(), keep_blank_values=True).items()
            }
            if (form.get("username"), form.get("password")) != (args.user, args.password):
                return (
                    401,
                    b"<html><body><h3>Login attempt failed. Please try again.</h3></body></html>",
                    "text/html",
                )
            token, cookie = self._new_session(form["username"])
            headers.update(cookie)
            with srv.stats_lock:
                srv.stats["logins"] += 1
            return 200, token.encode(), "text/plain"
        if path == "/data/JSESSION":
            token = self._cookie_token()
            if method == "DELETE":
                srv.sessions.pop(token or "", None)
                return 200, b"", "text/plain"
            user = self._user()
            if token and token in srv.sessions:
                return 200, token.encode(), "text/plain"
            token, cookie = self._new_session(user)
            headers.update(cookie)
            return 200, token.encode(), "text/plain"
        user = self._user()
        if user is None:
            return 401, b"<html><body><h3>Unauthorized</h3></body></html>", "text/html"
        if path == "/data/auth":
            return 200, f"User '{user}' is logged in".encode(), "text/plain"
        if path == "/data/version":
            return 200, args.xnat_version.encode(), "text/plain"
        if path == "/xapi/siteConfig/buildInfo":
            return self._json(
                200, {"version": args.xnat_version, "buildNumber": "1", "commit": "test"}
            )
        if path == "/data/search/elements":
            return self._json(200, self._elements())
        if path.startswith("/data/search/elements/"):
            datatype = path.rsplit("/", 1)[1]
            rows = [
                {"FIELD_ID": f, "HEADER": f.lower(), "TYPE": "string", "SUMMARY": "", "DESC": ""}
                for f in SEARCH_FIELDS.get(datatype, [])
            ]
            return self._json(200, _result_set(rows, datatype))
        if path == "/xapi/schemas":
            return self._json(200, ["xnat"])
        if path == "/xapi/schemas/xnat":
            return 200, XNAT_XSD.encode(), "application/xml"
        with srv.store.lock:
            result = self._data_route(method, path, query)
            if method in {"PUT", "POST", "DELETE"}:
                srv.store.save()
            return result

    def _elements(self) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        for p in self.server.store.s["projects"].values():
            counts["xnat:projectData"] += 1
            for subj in p["subjects"].values():
                counts["xnat:subjectData"] += 1
                for exp in subj["experiments"].values():
                    counts[exp["xsiType"]] += 1
        rows = [
            {"ELEMENT_NAME": k, "COUNT": str(v), "PLURAL": "", "SINGULAR": "", "SECURED": "true"}
            for k, v in sorted(counts.items())
        ]
        return _result_set(rows, "Elements")

    def _data_route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes, str]:
        store = self.server.store
        segs = [s for s in path.split("/") if s]
        if segs[:1] != ["data"]:
            raise HttpError(404, "Not Found")
        segs = segs[1:]
        if segs[:1] == ["archive"]:
            segs = segs[1:]
        if segs[:2] == ["services", "import"] and method == "POST":
            return self._import(query)
        if segs[:2] == ["services", "archive"] and method == "POST":
            return self._archive(query)
        if segs[:1] == ["prearchive"]:
            return self._prearchive(method, segs[1:])
        if not segs:
            raise HttpError(404, "Not Found")
        if segs == ["projects"] and method == "GET":
            rows = [
                {
                    "ID": p["ID"],
                    "name": p["name"],
                    "secondary_ID": p["ID"],
                    "description": "",
                    "URI": f"/data/projects/{p['ID']}",
                }
                for p in store.s["projects"].values()
            ]
            return self._json(200, _result_set(rows, "Projects"))
        project = subject = exp = None
        if segs[0] == "projects":
            project = store.project(segs[1])
            rest = segs[2:]
            if not rest:
                if method != "GET":
                    raise HttpError(405, "projects are created by an administrator")
                return self._json(
                    200,
                    _item(
                        "xnat:projectData",
                        {
                            "ID": project["ID"],
                            "name": project["name"],
                            "secondary_ID": project["ID"],
                        },
                    ),
                )
            if rest == ["prearchive_code"] and method == "GET":
                return 200, str(project["prearchive_code"]).encode(), "text/plain"
            if rest[0] == "subjects":
                return self._subjects(method, project, rest[1:], query)
            if rest[0] == "experiments" and len(rest) >= 2:
                project, subject, exp = store.experiment_anywhere(rest[1], project)
                return self._experiment(method, project, subject, exp["label"], rest[2:], query)
            if rest[0] == "experiments":
                rows = [
                    self._exp_row(e)
                    for s in project["subjects"].values()
                    for e in s["experiments"].values()
                ]
                return self._json(200, _result_set(rows, "Experiments"))
            raise HttpError(404, "Not Found")
        if segs[0] == "subjects" and len(segs) >= 2:
            project, subject = store.subject_by_id(segs[1])
            return self._subjects(method, project, [subject["label"], *segs[2:]], query)
        if segs[0] == "experiments" and len(segs) >= 2:
            project, subject, exp = store.experiment_anywhere(segs[1])
            return self._experiment(method, project, subject, exp["label"], segs[2:], query)
        raise HttpError(404, "Not Found")

    # subjects and experiments --------------------------------------------------------------
    def _subj_row(self, s: dict) -> dict:
        return {
            "ID": s["ID"],
            "label": s["label"],
            "project": s["project"],
            "insert_date": s["insert_date"],
            "insert_user": s["insert_user"],
            "URI": f"/data/subjects/{s['ID']}",
        }

    def _exp_row(self, e: dict) -> dict:
        return {
            "ID": e["ID"],
            "label": e["label"],
            "xsiType": e["xsiType"],
            "project": e["project"],
            "date": e["date"],
            "insert_date": e["insert_date"],
            "URI": f"/data/experiments/{e['ID']}",
        }

    def _subjects(
        self, method: str, project: dict, rest: list[str], query: dict[str, str]
    ) -> tuple[int, bytes, str]:
        store = self.server.store
        if not rest:
            if method != "GET":
                raise HttpError(405, "Method Not Allowed")
            rows = [self._subj_row(s) for s in project["subjects"].values()]
            return self._json(200, _result_set(rows, "Subjects"))
        key, tail = rest[0], rest[1:]
        subject = store.subject(project, key, required=False)
        if not tail:
            if method == "PUT":
                if subject is not None:
                    return 200, subject["ID"].encode(), "text/plain"
                subject = store.new_subject(project, key)
                return 201, subject["ID"].encode(), "text/plain"
            if subject is None:
                raise HttpError(404, f"Unable to find subject {key}")
            if method == "GET":
                return self._json(
                    200,
                    _item(
                        "xnat:subjectData",
                        {"ID": subject["ID"], "label": subject["label"], "project": project["ID"]},
                    ),
                )
            if method == "DELETE":
                del project["subjects"][subject["label"]]
                return 200, b"", "text/plain"
            raise HttpError(405, "Method Not Allowed")
        if subject is None:
            raise HttpError(404, f"Unable to find subject {key}")
        if tail[0] == "experiments":
            if len(tail) == 1:
                if method != "GET":
                    raise HttpError(405, "Method Not Allowed")
                rows = [self._exp_row(e) for e in subject["experiments"].values()]
                return self._json(200, _result_set(rows, "Experiments"))
            return self._experiment(method, project, subject, tail[1], tail[2:], query)
        if tail[0] == "resources":
            return self._resources(
                method, subject, tail[1:], query, f"/data/subjects/{subject['ID']}"
            )
        raise HttpError(404, "Not Found")

    def _experiment(
        self,
        method: str,
        project: dict,
        subject: dict,
        key: str,
        rest: list[str],
        query: dict[str, str],
    ) -> tuple[int, bytes, str]:
        store = self.server.store
        exp = store.experiment(subject, key, required=False)
        if not rest:
            if method == "PUT":
                if exp is not None:
                    return 200, exp["ID"].encode(), "text/plain"
                xsi = query.get("xsiType")
                if not xsi:
                    raise HttpError(400, "xsiType is required to create an experiment")
                exp = store.new_experiment(project, subject, key, xsi)
                return 201, exp["ID"].encode(), "text/plain"
            if exp is None:
                raise HttpError(404, f"Unable to find experiment {key}")
            if method == "GET":
                fields = {k: exp[k] for k in ("ID", "label", "project", "subject_ID", "date")}
                return self._json(200, _item(exp["xsiType"], fields))
            if method == "DELETE":
                del subject["experiments"][exp["label"]]
                return 200, b"", "text/plain"
            raise HttpError(405, "Method Not Allowed")
        if exp is None:
            raise HttpError(404, f"Unable to find experiment {key}")
        base = f"/data/experiments/{exp['ID']}"
        if rest[0] == "resources":
            return self._resources(method, exp, rest[1:], query, base)
        if rest[0] != "scans":
            raise HttpError(404, "Not Found")
        if len(rest) == 1:
            if method != "GET":
                raise HttpError(405, "Method Not Allowed")
            rows = [
                {
                    k: s[k]
                    for k in (
                        "ID",
                        "xsiType",
                        "type",
                        "series_description",
                        "quality",
                        "note",
                        "xnat_imagescandata_id",
                    )
                }
                | {"URI": f"{base}/scans/{s['ID']}"}
                for s in exp["scans"].values()
            ]
            return self._json(200, _result_set(rows, "Scans"))
        sid, tail = rest[1], rest[2:]
        scan = exp["scans"].get(sid)
        if not tail:
            if method == "PUT":
                created = scan is None
                xsi = query.get("xsiType") or (scan or {}).get("xsiType")
                if not xsi:
                    raise HttpError(400, "xsiType is required to create a scan")
                if scan is None:
                    scan = store.new_scan(exp, sid, xsi)
                for field in ("type", "series_description", "UID", "quality", "note"):
                    for key_ in (field, f"{xsi}/{field}", f"xnat:imageScanData/{field}"):
                        if key_ in query:
                            scan[field] = query[key_]
                return (201 if created else 200), b"", "text/plain"
            if scan is None:
                raise HttpError(404, f"Unable to find scan {sid}")
            if method == "GET":
                fields = {
                    k: scan[k]
                    for k in (
                        "ID",
                        "type",
                        "series_description",
                        "UID",
                        "modality",
                        "frames",
                        "quality",
                        "note",
                        "xnat_imagescandata_id",
                    )
                }
                fields["image_session_ID"] = exp["ID"]
                children = [
                    {
                        "field": "file",
                        "items": [
                            {
                                "data_fields": self._res_row(r),
                                "meta": {"xsi:type": "xnat:resourceCatalog"},
                            }
                            for r in scan["resources"].values()
                        ],
                    }
                ]
                return self._json(200, _item(scan["xsiType"], fields, children))
            if method == "DELETE":
                del exp["scans"][sid]
                return 200, b"", "text/plain"
            raise HttpError(405, "Method Not Allowed")
        if scan is None:
            raise HttpError(404, f"Unable to find scan {sid}")
        if tail[0] == "resources":
            return self._resources(method, scan, tail[1:], query, f"{base}/scans/{sid}")
        raise HttpError(404, "Not Found")

    # resources and files -------------------------------------------------------------------
    def _res_row(self, r: dict) -> dict:
        return {
            "xnat_abstractresource_id": str(r["xnat_abstractresource_id"]),
            "label": r["label"],
            "element_name": "xnat:resourceCatalog",
            "category": "",
            "cat_id": "",
            "cat_desc": "",
            "format": r["format"],
            "content": r["content"],
            "tags": "",
            "file_count": str(len(r["files"])),
            "file_size": str(sum(f["size"] for f in r["files"].values())),
        }

    def _resources(
        self, method: str, owner: dict, rest: list[str], query: dict[str, str], base: str
    ) -> tuple[int, bytes, str]:
        store = self.server.store
        if not rest:
            if method != "GET":
                raise HttpError(405, "Method Not Allowed")
            return self._json(
                200,
                _result_set([self._res_row(r) for r in owner["resources"].values()], "Resources"),
            )
        key, tail = rest[0], rest[1:]
        res = store.resource(owner, key, required=False)
        if not tail:
            if method == "PUT":
                if res is not None:
                    raise HttpError(409, f"Specified resource already exists: {key}")
                store.new_resource(owner, key, query.get("format", ""), query.get("content", ""))
                return 200, b"", "text/plain"
            if res is None:
                raise HttpError(404, f"Unable to find resource {key}")
            if method == "DELETE":
                del owner["resources"][res["label"]]
                return 200, b"", "text/plain"
            if method == "GET":
                return self._json(200, _result_set([self._res_row(res)], "Resources"))
            raise HttpError(405, "Method Not Allowed")
        if tail[0] != "files":
            raise HttpError(404, "Not Found")
        fpath = "/".join(tail[1:])
        if not fpath:
            if method != "GET":
                raise HttpError(405, "Method Not Allowed")
            if res is None:
                raise HttpError(404, f"Unable to find resource {key}")
            rbase = f"{base}/resources/{res['xnat_abstractresource_id']}/files"
            rows = []
            for name, f in sorted(res["files"].items()):
                rows.append(
                    {
                        "Name": name.rsplit("/", 1)[-1],
                        "Size": str(f["size"]),
                        "URI": f"{rbase}/{quote(name)}",
                        "collection": res["label"],
                        "file_tags": "",
                        "file_format": f.get("format", ""),
                        "file_content": f.get("content", ""),
                        "cat_ID": str(res["xnat_abstractresource_id"]),
                        "digest": f["md5"] if store.digest else "",
                    }
                )
            return self._json(200, _result_set(rows, "Files"))
        if method == "PUT" or method == "POST":
            data = self._upload_body()
            if res is None:
                res = store.new_resource(
                    owner, key, query.get("format", ""), query.get("content", "")
                )
            if fpath in res["files"] and query.get("overwrite", "").lower() != "true":
                raise HttpError(409, f"File already exists: {fpath}")
            blob, size, md5 = store.put_blob(data)
            res["files"][fpath] = {
                "blob": blob,
                "size": size,
                "md5": md5,
                "format": query.get("format", ""),
                "content": query.get("content", ""),
            }
            with self.server.stats_lock:
                self.server.stats["uploads"] += 1
            return 200, b"", "text/plain"
        if res is None or fpath not in res["files"]:
            raise HttpError(404, f"Unable to find file {fpath}")
        if method == "GET":
            return 200, store.read_blob(res["files"][fpath]["blob"]), "application/octet-stream"
        if method == "DELETE":
            del res["files"][fpath]
            return 200, b"", "text/plain"
        raise HttpError(405, "Method Not Allowed")

    def _upload_body(self) -> bytes:
        body = self._read_body()
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + body
            )
            for part in msg.iter_parts():
                if part.get_filename() is not None:
                    return bytes(part.get_payload(decode=True) or b"")
            raise HttpError(400, "multipart upload without a file part")
        return body

    # import, prearchive, archive -----------------------------------------------------------
    def _parse_upload(self, query: dict[str, str]) -> list[dict]:
        handler = query.get("import-handler", "SI")
        if handler not in {"SI", "DICOM-zip", "gradual-DICOM"}:
            raise HttpError(400, f"Unknown import handler: {handler}")
        data = self._upload_body()
        store = self.server.store
        members: list[bytes]
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = [zf.read(i) for i in zf.infolist() if not i.is_dir()]
        else:
            members = [data]
        files = []
        for raw in members:
            meta = parse_dicom(raw)
            if meta is None:
                continue
            blob, size, md5 = store.put_blob(raw)
            files.append(meta | {"blob": blob, "size": size, "md5": md5})
        if not files:
            raise HttpError(400, "The uploaded content contains no DICOM files")
        return files

    def _import(self, query: dict[str, str]) -> tuple[int, bytes, str]:
        store = self.server.store
        files = self._parse_upload(query)
        with self.server.stats_lock:
            self.server.stats["imports"] += 1
        pid = query.get("project")
        project = store.s["projects"].get(pid or "")
        subject = query.get("subject") or files[0]["patient_name"] or "Unknown"
        session = query.get("session") or files[0]["patient_id"] or "Unknown"
        dest = query.get("dest", "")
        overwrite = query.get("overwrite", "none")
        if overwrite not in {"none", "append", "delete"}:
            raise HttpError(400, f"invalid overwrite value {overwrite}")
        to_archive = (
            project is not None
            and project["prearchive_code"] != 0
            and (dest.startswith("/archive") or (not dest and project["prearchive_code"] in (4, 5)))
        )
        if to_archive:
            assert project is not None
            uri = store.archive_dicom(project, subject, session, files, overwrite)
            return 200, f"{uri}\r\n".encode(), "text/plain"
        entry = self._new_prearchive(
            project["ID"] if project else "Unassigned", subject, session, files
        )
        return 200, f"/data{entry['url']}\r\n".encode(), "text/plain"

    def _new_prearchive(self, pid: str, subject: str, session: str, files: list[dict]) -> dict:
        store = self.server.store
        stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S%f")[:-3]
        while any(e["timestamp"] == stamp and e["project"] == pid for e in store.s["prearchive"]):
            stamp = str(int(stamp.replace("_", "")) + 1)
            stamp = f"{stamp[:8]}_{stamp[8:]}"
        ready_at = time.time() + self.server.args.prearchive_build_ms / 1000
        entry = {
            "project": pid,
            "timestamp": stamp,
            "lastmod": _now(),
            "uploaded": _now(),
            "scan_date": "",
            "scan_time": "",
            "subject": subject,
            "folderName": session,
            "name": session,
            "tag": "",
            "status": "READY",
            "url": f"/prearchive/projects/{pid}/{stamp}/{session}",
            "autoarchive": "Manual",
            "prevent_anon": "false",
            "prevent_auto_commit": "false",
            "SOURCE": "",
            "VISIT": "",
            "PROTOCOL": "",
            "TIMEZONE": "",
            "_ready_at": ready_at,
            "_files": files,
        }
        store.s["prearchive"].append(entry)
        return entry

    def _pre_row(self, e: dict) -> dict:
        row = {k: v for k, v in e.items() if not k.startswith("_")}
        if e["status"] == "READY" and time.time() < e["_ready_at"]:
            row["status"] = "BUILDING"
        return row

    def _prearchive(self, method: str, rest: list[str]) -> tuple[int, bytes, str]:
        store = self.server.store
        entries = store.s["prearchive"]
        if rest[:1] != ["projects"]:
            raise HttpError(404, "Not Found")
        if len(rest) <= 2 and method == "GET":
            rows = [self._pre_row(e) for e in entries if len(rest) == 1 or e["project"] == rest[1]]
            return self._json(200, _result_set(rows, "Prearchive"))
        if len(rest) >= 4:
            url = "/prearchive/" + "/".join(rest[:4])
            entry = next((e for e in entries if e["url"] == url), None)
            if entry is None:
                raise HttpError(404, f"Unable to find prearchive session {url}")
            if method == "GET":
                return self._json(200, _result_set([self._pre_row(entry)], "Prearchive"))
            if method == "DELETE":
                entries.remove(entry)
                return 200, b"", "text/plain"
        raise HttpError(405, "Method Not Allowed")

    def _archive(self, query: dict[str, str]) -> tuple[int, bytes, str]:
        store = self.server.store
        form = {k: v[-1] for k, v in parse_qs(self._read_body().decode(errors="replace")).items()}
        q = form | query
        src = q.get("src", "").removeprefix("/data")
        entry = next((e for e in store.s["prearchive"] if e["url"] == src), None)
        if entry is None:
            raise HttpError(404, f"Unable to find prearchive session {src}")
        if time.time() < entry["_ready_at"]:
            raise HttpError(409, f"Session {src} is still being built")
        pid = q.get("project") or entry["project"]
        subject, session = q.get("subject") or entry["subject"], q.get("session") or entry["name"]
        dest = q.get("dest", "")
        if dest.startswith("/archive/projects/"):
            parts = dest.split("/")
            pid = parts[3]
            if len(parts) > 5:
                subject = parts[5]
            if len(parts) > 7:
                session = parts[7]
        project = store.s["projects"].get(pid)
        if project is None:
            raise HttpError(400, f"Invalid project {pid}")
        try:
            uri = store.archive_dicom(
                project, subject, session, entry["_files"], q.get("overwrite", "none")
            )
        except HttpError:
            entry["status"] = "CONFLICT"
            raise
        store.s["prearchive"].remove(entry)
        with self.server.stats_lock:
            self.server.stats["archives"] += 1
        return 200, f"{uri}\r\n".encode(), "text/plain"


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="XNAT test server (REST subset, fault injection)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: pick a free port")
    p.add_argument("--data", required=True, help="folder for state.json and file contents")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="admin")
    p.add_argument(
        "--project", action="append", default=[], help="ID[:prearchive_code] (code 4 by default)"
    )
    p.add_argument("--xnat-version", default="1.8.10")
    p.add_argument("--no-digest", action="store_true", help="list files without MD5 digests")
    p.add_argument("--prearchive-build-ms", type=float, default=0.0)
    p.add_argument("--session-ttl", type=float, default=0.0, help="expire idle sessions (seconds)")
    p.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 502")
    p.add_argument("--drop-rate", type=float, default=0.0, help="fraction dropped without answer")
    p.add_argument("--after-fraction", type=float, default=0.5, help="faults after processing")
    p.add_argument("--max-consecutive", type=int, default=2, help="max faults in a row per request")
    p.add_argument(
        "--fault-only", default="", help="regex: faults only for matching 'METHOD /path?query'"
    )
    p.add_argument("--slow", type=float, default=0.0, help="delay in ms")
    p.add_argument("--slow-rate", type=float, default=1.0, help="fraction of answers delayed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    Path(args.data).mkdir(parents=True, exist_ok=True)
    server = Server((args.host, args.port), args)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
