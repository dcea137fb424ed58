"""A small FHIR server for tests (R5 or R4B), run as a real HTTP process.

    python tests/servers/fhir_server.py --port 8080 [--fhir-version R5|R4B] [--token T]
        [--fail-rate 0.2] [--fail-first N] [--fail-status 503] [--lose-responses N] [--seed S]

It keeps resources in memory and follows the FHIR REST specification where the pipeline relies
on it:

* ``POST [base]`` with a ``transaction`` Bundle: all or nothing (any failing entry leaves the
  store untouched); entries processed in the specified order (POST, then PUT, then GET);
  conditional create by ``request.ifNoneExist`` (no match: create, ``201 Created``; one match:
  nothing created, ``200 OK`` with the existing location; several: ``412 Precondition Failed``);
  update-as-create by ``PUT Type/id`` (client ids allowed); ``urn:uuid`` full URLs replaced by
  the assigned ``Type/id`` in every reference and every string equal to them, conditional
  references (``Patient?identifier=...``) resolved, unresolvable placeholders refused; every
  resource validated with the ``fhir.resources`` models of the release (``400`` with an
  ``OperationOutcome`` naming ``Bundle.entry[n]``); a ``transaction-response`` Bundle with
  ``response.status``, ``location`` (``Type/id/_history/v``), ``etag`` and ``lastModified``.
* ``POST [base]/Type`` (``If-None-Exist`` header), ``PUT [base]/Type/id``, ``GET [base]/Type/id``,
  ``GET [base]/Type?identifier=system|value`` (also ``|value``, ``system|``, ``value``, comma = or;
  ``_id``; ``_count``; unknown parameters are refused), ``GET [base]/metadata``.
* Errors are ``OperationOutcome`` resources with the usual status codes (400, 401, 404, 405,
  412, 415).
* Faults for retry tests: ``--fail-first N`` answers the first N writes with ``--fail-status``
  (default 503, ``Retry-After: 0``) before doing anything; ``--fail-rate P`` does so at random;
  ``--lose-responses N`` commits the first N transactions and then answers 502 (the reply is
  "lost"), so a client retry must not create duplicates.

Prints ``listening on http://HOST:PORT/`` when ready. Test-only: no persistence, no security.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import itertools
import json
import random
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
TYPE_RE = re.compile(r"[A-Z][A-Za-z]+")
SEARCH_CONTROL = {"_count", "_format", "_summary", "_pretty"}
METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


class Problem(Exception):
    """An error answered as an OperationOutcome."""

    def __init__(self, status: int, code: str, message: str, expression: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.expression = expression

    def outcome(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": "error",
            "code": self.code,
            "diagnostics": self.message,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return {"resourceType": "OperationOutcome", "issue": [issue]}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Validator:
    """Validation with the fhir.resources models of one release (skipped when not installed)."""

    def __init__(self, version: str, enabled: bool) -> None:
        self.version = version
        self.get = None
        if enabled:
            try:
                if version == "R4B":
                    from fhir.resources.R4B import get_fhir_model_class
                else:
                    from fhir.resources import get_fhir_model_class
            except ImportError:
                print("fhir.resources not installed: resources are not validated", file=sys.stderr)
            else:
                self.get = get_fhir_model_class

    def known(self, rtype: str) -> None:
        """Refuse an unknown resource type in a URL (404, as servers do)."""
        if self.get is None:
            return
        try:
            self.get(rtype)
        except (KeyError, ValueError):
            raise Problem(404, "not-supported", f"unknown resource type {rtype}") from None

    def check(self, resource: dict[str, Any], where: str) -> None:
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not TYPE_RE.fullmatch(rtype):
            raise Problem(400, "invalid", "resource has no valid resourceType", where)
        if self.get is None:
            return
        try:
            model = self.get(rtype)
        except (KeyError, ValueError):
            raise Problem(400, "not-supported", f"unknown resource type {rtype}", where) from None
        try:
            model.model_validate(resource)
        except Exception as exc:  # pydantic.ValidationError
            first = str(exc).splitlines()
            raise Problem(
                400,
                "invalid",
                f"{rtype} is not valid FHIR {self.version}: {' '.join(first[:3])}",
                where,
            ) from None


# --------------------------------------------------------------------------- store


def _identifier_matches(resource: dict[str, Any], token: str) -> bool:
    """Token search on ``identifier``: ``value``, ``|value``, ``system|`` or ``system|value``."""
    system, sep, value = token.partition("|")
    for ident in resource.get("identifier") or []:
        have_system, have_value = ident.get("system") or "", ident.get("value")
        if not sep:
            ok = have_value == token  # any system
        elif not system:
            ok = not have_system and have_value == value  # no system
        else:
            ok = have_system == system and value in ("", have_value)
        if ok:
            return True
    return False


class Store:
    """Resources by type and id, each with ``meta.versionId`` and ``meta.lastUpdated``."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.ids = itertools.count(1)

    def search(self, rtype: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        for name in params:
            if name not in ("identifier", "_id") and name not in SEARCH_CONTROL:
                raise Problem(
                    400, "not-supported", f"unknown search parameter {name!r} for {rtype}"
                )
        found = []
        for res in self.data.get(rtype, {}).values():
            ok = True
            for value in params.get("identifier", []):
                ok = ok and any(_identifier_matches(res, t) for t in value.split(","))
            for value in params.get("_id", []):
                ok = ok and res["id"] in value.split(",")
            if ok:
                found.append(res)
        return found

    def search_url(self, url: str) -> list[dict[str, Any]]:
        """Resources matching ``Type?query`` (or a bare query with ``Type`` given by the caller)."""
        rtype, _, query = url.partition("?")
        if not TYPE_RE.fullmatch(rtype):
            raise Problem(400, "invalid", f"bad search URL {url!r}")
        params = parse_qs(query, keep_blank_values=True)
        if not any(k not in SEARCH_CONTROL for k in params):
            raise Problem(400, "invalid", f"conditional search {url!r} has no criteria")
        return self.search(rtype, params)

    def new_id(self) -> str:
        return str(next(self.ids))

    def put(self, resource: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store ``resource`` (which has an id); return it and whether it was created."""
        rtype, rid = resource["resourceType"], resource["id"]
        old = self.data.get(rtype, {}).get(rid)
        version = int(old["meta"]["versionId"]) + 1 if old else 1
        stored = copy.deepcopy(resource)
        stored["meta"] = dict(stored.get("meta") or {}) | {
            "versionId": str(version),
            "lastUpdated": now(),
        }
        self.data.setdefault(rtype, {})[rid] = stored
        return stored, old is None


def _response(status: str, res: dict[str, Any]) -> dict[str, Any]:
    meta = res["meta"]
    return {
        "status": status,
        "location": f"{res['resourceType']}/{res['id']}/_history/{meta['versionId']}",
        "etag": f'W/"{meta["versionId"]}"',
        "lastModified": meta["lastUpdated"],
    }


def _walk_strings(obj: Any, fn: Any, path: str = "") -> Any:
    if isinstance(obj, dict):
        return {k: _walk_strings(v, fn, f"{path}.{k}" if path else k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk_strings(v, fn, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str):
        return fn(obj, path)
    return obj


class Server:
    """The FHIR logic, independent of HTTP."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.store = Store()
        self.lock = threading.Lock()
        self.validator = Validator(args.fhir_version, not args.no_validate)
        self.version = args.fhir_version
        self.token = args.token
        self.fail_first = args.fail_first
        self.fail_rate = args.fail_rate
        self.fail_status = args.fail_status
        self.lose = args.lose_responses
        self.rng = random.Random(args.seed)

    # -- faults

    def injected_fault(self) -> bool:
        with self.lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return True
            return self.fail_rate > 0 and self.rng.random() < self.fail_rate

    def lose_response(self) -> bool:
        with self.lock:
            if self.lose > 0:
                self.lose -= 1
                return True
            return False

    # -- interactions

    def capability(self) -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": now()[:10],
            "kind": "instance",
            "fhirVersion": {"R5": "5.0.0", "R4B": "4.3.0"}[self.version],
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "interaction": [{"code": "transaction"}],
                    "resource": [
                        {
                            "type": t,
                            "interaction": [
                                {"code": c} for c in ("read", "create", "update", "search-type")
                            ],
                            "conditionalCreate": True,
                            "searchParam": [{"name": "identifier", "type": "token"}],
                        }
                        for t in ("Patient", "ImagingStudy", "Observation", "Condition")
                    ],
                }
            ],
        }

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        self.validator.known(rtype)
        res = self.store.data.get(rtype, {}).get(rid)
        if res is None:
            raise Problem(404, "not-found", f"{rtype}/{rid} is not known")
        return res

    def searchset(self, rtype: str, params: dict[str, list[str]], base: str) -> dict[str, Any]:
        self.validator.known(rtype)
        found = self.store.search(rtype, params)
        count = int(params.get("_count", ["100"])[0] or 100)
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [
                {
                    "fullUrl": f"{base}{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in found[:count]
            ],
        }

    def create(
        self, resource: dict[str, Any], rtype: str, if_none_exist: str | None
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        if resource.get("resourceType") != rtype:
            raise Problem(400, "invalid", f"resource type is not {rtype}")
        self.validator.check(resource, rtype)
        if if_none_exist:
            found = self.store.search_url(f"{rtype}?{if_none_exist.split('?', 1)[-1]}")
            if len(found) > 1:
                raise Problem(
                    412, "multiple-matches", f"{len(found)} {rtype} match {if_none_exist}"
                )
            if found:
                return 200, found[0], _response("200 OK", found[0])
        stored, _ = self.store.put(resource | {"id": self.store.new_id()})
        return 201, stored, _response("201 Created", stored)

    def update(
        self, resource: dict[str, Any], rtype: str, rid: str
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        if resource.get("resourceType") != rtype:
            raise Problem(400, "invalid", f"resource type is not {rtype}")
        if resource.get("id") != rid:
            raise Problem(400, "invalid", f"resource id must be {rid} (the id in the URL)")
        self.validator.check(resource, rtype)
        stored, created = self.store.put(resource)
        return (
            (201 if created else 200),
            stored,
            _response("201 Created" if created else "200 OK", stored),
        )

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        if bundle.get("type") != "transaction":
            raise Problem(
                400, "not-supported", "only transaction Bundles are processed at the base"
            )
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise Problem(400, "structure", "Bundle.entry must be a list")
        snapshot = copy.deepcopy(self.store.data)
        try:
            return self._transaction(entries)
        except BaseException:
            self.store.data = snapshot  # all or nothing
            raise

    def _transaction(self, entries: list[Any]) -> dict[str, Any]:
        full_urls: set[str] = set()
        for i, e in enumerate(entries):
            where = f"Bundle.entry[{i}]"
            if not isinstance(e, dict) or not isinstance(e.get("request"), dict):
                raise Problem(400, "structure", "entry has no request", where)
            method = e["request"].get("method")
            if method not in ("POST", "PUT", "GET"):
                raise Problem(400, "not-supported", f"method {method!r} not supported", where)
            if method in ("POST", "PUT") and not isinstance(e.get("resource"), dict):
                raise Problem(400, "structure", f"{method} entry has no resource", where)
            url = e.get("fullUrl")
            if url:
                if url in full_urls:
                    raise Problem(400, "duplicate", f"fullUrl {url} appears twice", where)
                full_urls.add(url)
        order = sorted(
            range(len(entries)), key=lambda i: (METHOD_ORDER[entries[i]["request"]["method"]], i)
        )
        mapping: dict[str, str] = {}
        plan: dict[int, tuple[str, str, bool]] = {}  # index -> (type, id, create?)
        pending: dict[str, str] = {}  # conditional create key -> id assigned in this transaction
        for i in order:
            e, req = entries[i], entries[i]["request"]
            where = f"Bundle.entry[{i}]"
            if req["method"] == "GET":
                continue
            res = e["resource"]
            rtype = str(req.get("url", "")).split("?")[0].split("/")[0]
            if res.get("resourceType") != rtype:
                raise Problem(
                    400,
                    "invalid",
                    f"request.url {req.get('url')!r} does not match the resource type",
                    where,
                )
            if req["method"] == "POST":
                cond = req.get("ifNoneExist")
                rid, create = self.store.new_id(), True
                if cond:
                    key = f"{rtype}?{cond.split('?', 1)[-1]}"
                    found = self.store.search_url(key)
                    if len(found) > 1:
                        raise Problem(
                            412, "multiple-matches", f"{len(found)} {rtype} match {cond}", where
                        )
                    if found:
                        rid, create = found[0]["id"], False
                    elif key in pending:
                        rid, create = pending[key], False
                    else:
                        pending[key] = rid
            else:
                url = str(req.get("url", ""))
                if "?" in url:
                    found = self.store.search_url(url)
                    if len(found) > 1:
                        raise Problem(
                            412, "multiple-matches", f"{len(found)} {rtype} match {url}", where
                        )
                    rid = found[0]["id"] if found else self.store.new_id()
                else:
                    parts = url.split("/")
                    if len(parts) != 2 or not ID_RE.fullmatch(parts[1]):
                        raise Problem(400, "invalid", f"PUT url {url!r} is not Type/id", where)
                    rid = parts[1]
                    if res.get("id") != rid:
                        raise Problem(
                            400,
                            "invalid",
                            f"resource id must be {rid} (the id in request.url)",
                            where,
                        )
                create = True
            plan[i] = (rtype, rid, create)
            if e.get("fullUrl"):
                mapping[e["fullUrl"]] = f"{rtype}/{rid}"

        def rewrite(value: str, path: str, where: str) -> str:
            if value in mapping:
                return mapping[value]
            if path.endswith("reference"):
                if value.startswith("urn:uuid:"):
                    raise Problem(
                        400,
                        "processing",
                        f"reference {value} is not the fullUrl of an entry",
                        f"{where}.resource.{path}",
                    )
                if "?" in value:
                    found = self.store.search_url(value)
                    if len(found) != 1:
                        raise Problem(
                            412,
                            "multiple-matches" if found else "not-found",
                            f"conditional reference {value} matches {len(found)} resources",
                            f"{where}.resource.{path}",
                        )
                    return f"{found[0]['resourceType']}/{found[0]['id']}"
            return value

        responses: dict[int, dict[str, Any]] = {}
        for i in order:
            e, req = entries[i], entries[i]["request"]
            where = f"Bundle.entry[{i}]"
            if req["method"] == "GET":
                continue
            rtype, rid, create = plan[i]
            res = _walk_strings(e["resource"], lambda v, p, w=where: rewrite(v, p, w))
            res["id"] = rid
            self.validator.check(res, f"{where}.resource")
            if req["method"] == "POST" and not create:
                existing = self.store.data.get(rtype, {}).get(rid)
                if existing is not None:
                    responses[i] = {"response": _response("200 OK", existing)}
                    continue
                # matched an entry created earlier in this same transaction
                responses[i] = {"response": {"status": "200 OK", "location": f"{rtype}/{rid}"}}
                continue
            stored, created = self.store.put(res)
            responses[i] = {
                "fullUrl": f"{rtype}/{rid}",
                "response": _response("201 Created" if created else "200 OK", stored),
            }
        for i in order:
            req = entries[i]["request"]
            if req["method"] != "GET":
                continue
            url = str(req.get("url", ""))
            path, _, query = url.partition("?")
            parts = path.split("/")
            if len(parts) == 2:
                responses[i] = {"resource": self.read(*parts), "response": {"status": "200 OK"}}
            else:
                bundle = self.searchset(parts[0], parse_qs(query, keep_blank_values=True), "")
                responses[i] = {"resource": bundle, "response": {"status": "200 OK"}}
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "transaction-response",
            "entry": [responses[i] for i in range(len(entries))],
        }


# --------------------------------------------------------------------------- HTTP


def make_handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "imagedepot-test-fhir/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # -- plumbing

        def send_json(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype not in ("application/fhir+json", "application/json"):
                raise Problem(
                    415, "not-supported", f"Content-Type {ctype or '(none)'} is not FHIR JSON"
                )
            try:
                return json.loads(raw)
            except ValueError:
                raise Problem(400, "structure", "body is not JSON") from None

        def parts(self) -> tuple[list[str], dict[str, list[str]]]:
            u = urlsplit(self.path)
            return [p for p in u.path.split("/") if p], parse_qs(u.query, keep_blank_values=True)

        def authorised(self) -> None:
            if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
                raise Problem(401, "login", "a valid Bearer token is required")

        def handle_errors(self, fn: Any) -> None:
            try:
                fn()
            except Problem as p:
                self.send_json(p.status, p.outcome())
            except Exception as exc:  # a bug of this test server: say so
                self.send_json(
                    500, Problem(500, "exception", f"{type(exc).__name__}: {exc}").outcome()
                )

        # -- verbs

        def do_GET(self) -> None:
            def run() -> None:
                parts, params = self.parts()
                if parts == ["metadata"]:
                    self.send_json(200, server.capability())
                    return
                self.authorised()
                with server.lock:
                    if len(parts) == 1 and TYPE_RE.fullmatch(parts[0]):
                        base = f"http://{self.headers.get('Host', 'localhost')}/"
                        self.send_json(200, server.searchset(parts[0], params, base))
                    elif len(parts) == 2:
                        res = server.read(*parts)
                        self.send_json(200, res, {"ETag": f'W/"{res["meta"]["versionId"]}"'})
                    else:
                        raise Problem(404, "not-found", f"no such endpoint {self.path}")

            self.handle_errors(run)

        def fault(self) -> bool:
            if server.injected_fault():
                self.send_json(
                    server.fail_status,
                    Problem(server.fail_status, "transient", "injected fault: try again").outcome(),
                    {"Retry-After": "0"},
                )
                return True
            return False

        def do_POST(self) -> None:
            def run() -> None:
                self.authorised()
                parts, _ = self.parts()
                body = self.body()
                if self.fault():
                    return
                if not isinstance(body, dict):
                    raise Problem(400, "structure", "body is not a FHIR resource")
                if not parts:
                    if body.get("resourceType") != "Bundle":
                        raise Problem(400, "invalid", "POST to the base takes a Bundle")
                    with server.lock:
                        result = server.transaction(body)
                    if server.lose_response():
                        raise Problem(
                            502, "transient", "injected fault: response lost after commit"
                        )
                    self.send_json(200, result)
                elif len(parts) == 1 and TYPE_RE.fullmatch(parts[0]):
                    with server.lock:
                        status, res, resp = server.create(
                            body, parts[0], self.headers.get("If-None-Exist")
                        )
                    self.send_json(
                        status, res, {"Location": resp["location"], "ETag": resp["etag"]}
                    )
                else:
                    raise Problem(405, "not-supported", f"POST {self.path} is not supported")

            self.handle_errors(run)

        def do_PUT(self) -> None:
            def run() -> None:
                self.authorised()
                parts, _ = self.parts()
                body = self.body()
                if self.fault():
                    return
                if len(parts) != 2 or not isinstance(body, dict):
                    raise Problem(405, "not-supported", f"PUT {self.path} is not supported")
                with server.lock:
                    status, res, resp = server.update(body, parts[0], parts[1])
                self.send_json(status, res, {"Location": resp["location"], "ETag": resp["etag"]})

            self.handle_errors(run)

        def do_DELETE(self) -> None:
            self.send_json(405, Problem(405, "not-supported", "DELETE is not supported").outcome())

    return Handler


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--fhir-version", choices=("R5", "R4B"), default="R5")
    p.add_argument("--token", help="require this Bearer token")
    p.add_argument("--no-validate", action="store_true", help="do not validate with fhir.resources")
    p.add_argument(
        "--fail-first", type=int, default=0, help="answer the first N writes with a fault"
    )
    p.add_argument(
        "--fail-rate", type=float, default=0.0, help="answer writes with a fault at this rate"
    )
    p.add_argument("--fail-status", type=int, default=503, help="status of injected faults")
    p.add_argument("--lose-responses", type=int, default=0, help="commit, then answer 502, N times")
    p.add_argument("--seed", type=int, default=0, help="seed of --fail-rate")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(Server(args)))
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    print(f"listening on http://{host}:{port}/", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
