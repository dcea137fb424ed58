"""A protocol-faithful BioStudies submission API for tests (a real HTTP server process).

Run as a process::

    python tests/servers/biostudies_server.py --user-dir DIR [--login L --password P]
        [--fail-submit N] [--fail-login N]

It prints ``READY <port>`` once listening on 127.0.0.1. What it answers, as the BioStudies
submission API documents it (``docs/api`` of EBIBioStudies/biostudies-backend-services):

* ``POST /auth/login`` with JSON ``{"login", "password"}`` -> 200 ``{"sessid", "email", "username",
  "secret", ...}``; a wrong login -> 401 with the API's error envelope
  ``{"status": "FAIL", "log": {"level": "ERROR", "message": ..., "subnodes": []}}``.
* ``POST /auth/logout``, ``GET /auth/profile`` (``X-Session-Token``).
* ``GET /files/user/<path>`` -> ``[{"name", "path", "size", "type": "FILE" | "DIR"}]`` of the user's
  folder (``--user-dir``: the same folder the test FTP server writes the uploads to).
* ``POST /submissions`` (``X-Session-Token``; ``Submission_Type: application/json``; the PageTab as a
  JSON body or a form field ``submission``) -> 200 with the submission and its ``accno``
  (``S-BIAD<n>`` when ``AttachTo`` is ``BioImages``, else ``S-BSST<n>``); an ``accno`` already
  issued makes it a resubmission (an update). Validation errors -> 400 with the error envelope, one
  subnode per problem: missing title or release date, missing REMBI fields of a BioImages
  submission, and ``Submission contains invalid files <paths>`` for File List entries or files not
  in the user folder. No token -> 401.
* ``GET /submissions/<accno>.json`` -> the stored submission (for tests).

Fault injection: ``--fail-submit N`` / ``--fail-login N`` answer the first N such requests with 503.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import sys
import threading
import urllib.parse
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATE: dict[str, Any] = {}
LOCK = threading.Lock()


def fail(message: str, subnodes: list[str] | None = None) -> dict[str, Any]:
    return {
        "status": "FAIL",
        "log": {
            "level": "ERROR",
            "message": message,
            "subnodes": [
                {"level": "ERROR", "message": m, "subnodes": []} for m in (subnodes or [])
            ],
        },
    }


def attrs_of(node: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in node.get("attributes") or []:
        if isinstance(a, dict) and isinstance(a.get("name"), str):
            out.setdefault(a["name"].lower(), []).append(str(a.get("value", "")))
    return out


def walk(sec: dict[str, Any]):
    yield sec
    for sub in sec.get("subsections") or []:
        for s in sub if isinstance(sub, list) else [sub]:
            if isinstance(s, dict):
                yield from walk(s)


def read_file_list(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [str(e.get("path", "")) for e in json.loads(text)]
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows or rows[0][0] != "Files":
        raise ValueError("the first column of a file list must be 'Files'")
    return [r[0] for r in rows[1:] if r]


def validate(doc: Any, user_dir: Path) -> list[str]:
    if not isinstance(doc, dict) or not isinstance(doc.get("section"), dict):
        return ["Submission must have a root section"]
    problems: list[str] = []
    sub = attrs_of(doc)
    root = doc["section"]
    rattrs = attrs_of(root)
    if not (sub.get("title") or rattrs.get("title")):
        problems.append("Submission title is required")
    if sub.get("releasedate") is not None and not sub["releasedate"][0]:
        problems.append("Release date must not be empty")
    sections = list(walk(root))
    if "bioimages" in [v.lower() for v in sub.get("attachto", [])]:
        if not sub.get("releasedate"):
            problems.append("The attribute 'ReleaseDate' is required in section 'Submission'")
        for name in ("Description", "License"):
            if not [v for v in rattrs.get(name.lower(), []) if v]:
                problems.append(f"The attribute '{name}' is required in section 'Study'")
        required = {
            "author": ("Name",),
            "biosample": ("Biological entity",),
            "organism": ("Scientific name",),
            "specimen": ("Sample Preparation Protocol",),
            "image acquisition": ("Imaging Instrument", "Image Acquisition Parameters"),
            "imaging method": ("Ontology Value",),
            "study component": ("Name", "Description", "File List"),
        }
        for kind, names in required.items():
            found = [s for s in sections if str(s.get("type", "")).lower() == kind]
            if not found:
                problems.append(f"A section of type '{kind}' is required")
            for s in found:
                a = attrs_of(s)
                for name in names:
                    if not [v for v in a.get(name.lower(), []) if v]:
                        problems.append(f"The attribute '{name}' is required in section '{kind}'")
    invalid: list[str] = []
    for s in sections:
        for fl in attrs_of(s).get("file list", []):
            p = user_dir / fl
            if not p.is_file():
                invalid.append(fl)
                continue
            try:
                listed = read_file_list(p)
            except (ValueError, json.JSONDecodeError) as exc:
                problems.append(f"File list {fl}: {exc}")
                continue
            invalid += [x for x in listed if not x or not (user_dir / x).exists()]
        for f in s.get("files") or []:
            for ff in f if isinstance(f, list) else [f]:
                if not (user_dir / str(ff.get("path", ""))).exists():
                    invalid.append(str(ff.get("path", "")))
    if invalid:
        problems.append("Submission contains invalid files " + ", ".join(invalid))
    return problems


class Handler(BaseHTTPRequestHandler):
    server_version = "BioStudiesTest/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _user(self) -> str | None:
        token = self.headers.get("X-Session-Token")
        return STATE["sessions"].get(token) if token else None

    def _fault(self, key: str) -> bool:
        with LOCK:
            if STATE[key] > 0:
                STATE[key] -= 1
                return True
        return False

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        body = self._body()
        if path in ("/auth/login", "/auth/signin"):
            if self._fault("fail_login"):
                return self._send(503, fail("Service temporarily unavailable"))
            try:
                creds = json.loads(body or b"{}")
            except json.JSONDecodeError:
                return self._send(400, fail("Invalid login request"))
            if creds.get("login") != STATE["login"] or creds.get("password") != STATE["password"]:
                return self._send(
                    401,
                    fail(f"Could not find user with the provided email '{creds.get('login')}'."),
                )
            token = uuid.uuid4().hex
            STATE["sessions"][token] = STATE["login"]
            return self._send(
                200,
                {
                    "sessid": token,
                    "email": STATE["login"],
                    "username": STATE["login"].split("@")[0],
                    "secret": STATE["secret"],
                    "fullname": "Test Submitter",
                    "superuser": False,
                    "orcid": "",
                    "allow": [STATE["login"], "Public"],
                    "deny": [],
                },
            )
        if path == "/auth/logout":
            STATE["sessions"].pop(self.headers.get("X-Session-Token"), None)
            return self._send(200, {})
        if path == "/submissions":
            if self._user() is None:
                return self._send(401, fail("Authentication required"))
            if self._fault("fail_submit"):
                return self._send(503, fail("Service temporarily unavailable"))
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            sub_type = self.headers.get("Submission_Type") or ctype
            if sub_type != "application/json":
                return self._send(400, fail(f"Unsupported submission format {sub_type!r}"))
            try:
                if ctype == "application/x-www-form-urlencoded":
                    form = urllib.parse.parse_qs(body.decode())
                    doc = json.loads(form["submission"][0])
                else:
                    doc = json.loads(body)
            except (KeyError, ValueError):
                return self._send(400, fail("Submission could not be parsed as JSON page tab"))
            problems = validate(doc, STATE["user_dir"])
            accno = doc.get("accno") if isinstance(doc, dict) else None
            with LOCK:
                if accno and accno not in STATE["submissions"]:
                    problems.append(
                        f"The submission '{accno}' does not exist or the user can not update it"
                    )
                if problems:
                    return self._send(400, fail("Submission validation errors", problems))
                if not accno:
                    bia = "bioimages" in [v.lower() for v in attrs_of(doc).get("attachto", [])]
                    accno = f"{'S-BIAD' if bia else 'S-BSST'}{next(STATE['counter'])}"
                version = STATE["versions"].get(accno, 0) + 1
                STATE["versions"][accno] = version
                stored = dict(doc) | {"accno": accno, "type": "submission"}
                STATE["submissions"][accno] = stored
            return self._send(200, stored | {"version": version})
        return self._send(404, fail(f"No endpoint {path}"))

    def do_GET(self) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path == "/auth/profile":
            user = self._user()
            if user is None:
                return self._send(401, fail("Authentication required"))
            return self._send(200, {"email": user, "secret": STATE["secret"]})
        if path == "/files/user" or path.startswith("/files/user/"):
            if self._user() is None:
                return self._send(401, fail("Authentication required"))
            rel = path[len("/files/user") :].strip("/")
            folder = (STATE["user_dir"] / rel).resolve()
            if STATE["user_dir"].resolve() not in [folder, *folder.parents] or not folder.exists():
                return self._send(404, fail(f"Path {rel!r} not found"))
            entries = [folder] if folder.is_file() else sorted(folder.iterdir())
            return self._send(
                200,
                [
                    {
                        "name": e.name,
                        "path": str(e.relative_to(STATE["user_dir"])),
                        "size": e.stat().st_size if e.is_file() else 0,
                        "type": "FILE" if e.is_file() else "DIR",
                    }
                    for e in entries
                ],
            )
        if path.startswith("/submissions/") and path.endswith(".json"):
            accno = path[len("/submissions/") : -len(".json")]
            doc = STATE["submissions"].get(accno)
            if doc is None:
                return self._send(404, fail(f"The submission '{accno}' was not found"))
            return self._send(200, doc)
        return self._send(HTTPStatus.NOT_FOUND, fail(f"No endpoint {path}"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--user-dir", required=True, help="the user's folder (the FTP upload area)")
    ap.add_argument("--login", default="submitter@example.org")
    ap.add_argument("--password", default="secret-password")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--first-accession", type=int, default=1)
    ap.add_argument("--fail-submit", type=int, default=0)
    ap.add_argument("--fail-login", type=int, default=0)
    args = ap.parse_args(argv)
    STATE.update(
        user_dir=Path(args.user_dir),
        login=args.login,
        password=args.password,
        secret=uuid.uuid4().hex,
        sessions={},
        submissions={},
        versions={},
        counter=itertools.count(args.first_accession),
        fail_submit=args.fail_submit,
        fail_login=args.fail_login,
    )
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
