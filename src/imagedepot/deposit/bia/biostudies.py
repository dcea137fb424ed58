"""The BioStudies submission API and its credentials.

:class:`BioStudiesClient` logs in (``POST /auth/login`` -> session token, sent as
``X-Session-Token``) and submits the PageTab JSON (``POST /submissions``), which answers with the
accession.
"""

from __future__ import annotations

import json
import netrc
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagedepot.deposit.bia.errors import ApiError, DepositError
from imagedepot.deposit.retry import RetryPolicy, retry_call


@dataclass(frozen=True)
class Credentials:
    """Login for the BioStudies API (never printed)."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def credentials_from_env(prefix: str | None, api_url: str | None = None) -> Credentials:
    """``<PREFIX>_TOKEN``, or ``<PREFIX>_USER`` + ``<PREFIX>_PASSWORD``; else ``~/.netrc`` for the API host."""
    if prefix:
        token = os.environ.get(f"{prefix}_TOKEN")
        if token:
            return Credentials(token=token)
        user, pw = os.environ.get(f"{prefix}_USER"), os.environ.get(f"{prefix}_PASSWORD")
        if user and pw:
            return Credentials(user=user, password=pw)
    if api_url:
        host = urllib.parse.urlsplit(api_url).hostname
        try:
            auth = netrc.netrc().authenticators(host or "")
        except (OSError, netrc.NetrcParseError):
            auth = None
        if auth and auth[0] and auth[2]:
            return Credentials(user=auth[0], password=auth[2])
    return Credentials()


class BioStudiesClient:
    """The parts of the BioStudies submission API a deposit needs.

    ``POST /auth/login`` (JSON ``login``, ``password``) returns ``sessid``, sent back as the
    ``X-Session-Token`` header; ``POST /submissions`` takes the PageTab (``Submission_Type:
    application/json``) and answers with the submission and its ``accno``; ``GET /files/user/<path>``
    lists the user's upload area. Errors come as ``{"status": "FAIL", "log": {"message", "subnodes"}}``.
    """

    def __init__(
        self, api_url: str, *, retries: int = 5, backoff: float = 1.0, timeout: float = 120.0
    ) -> None:
        import requests

        self.api_url = api_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.http = requests.Session()
        self.token: str | None = None

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        url = f"{self.api_url}{path}"
        headers = dict(kwargs.pop("headers", {}))
        headers.setdefault("Accept", "application/json")
        if self.token:
            headers["X-Session-Token"] = self.token

        def once() -> Any:
            resp = self.http.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if resp.status_code >= 500 or resp.status_code == 429:
                message, details = _error_of(resp)
                raise ApiError(resp.status_code, message, details)
            return resp

        try:
            resp = retry_call(
                once,
                policy=RetryPolicy(attempts=self.retries, base_delay=self.backoff),
                what=f"{method} {path}",
            )
        except requests.RequestException as exc:
            raise DepositError(
                f"{method} {path}: {type(exc).__name__}: cannot reach the BioStudies API"
            ) from exc
        if resp.status_code >= 400:
            message, details = _error_of(resp)
            raise ApiError(resp.status_code, message, details)
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def login(self, credentials: Credentials) -> str:
        """Get a session token (or use the token given)."""
        if credentials.token:
            self.token = credentials.token
            return self.token
        if not (credentials.user and credentials.password):
            raise DepositError(
                "no BioStudies credentials: set <PREFIX>_USER and <PREFIX>_PASSWORD (credentials_env) "
                "or a ~/.netrc entry for the API host"
            )
        data = self._request(
            "POST",
            "/auth/login",
            json={"login": credentials.user, "password": credentials.password},
        )
        token = data.get("sessid") if isinstance(data, dict) else None
        if not token:
            raise DepositError("BioStudies login answered without a session token")
        self.token = str(token)
        return self.token

    def submit(self, pagetab: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a PageTab JSON document; returns the submission as the API echoes it."""
        data = self._request(
            "POST",
            "/submissions",
            data=json.dumps(pagetab).encode("utf-8"),
            headers={"Content-Type": "application/json", "Submission_Type": "application/json"},
        )
        if not isinstance(data, dict) or not data.get("accno"):
            raise DepositError("BioStudies answered the submission without an accession number")
        return data

    def user_files(self, path: str = "") -> list[dict[str, Any]]:
        """List a folder of the user's upload area."""
        data = self._request("GET", f"/files/user/{urllib.parse.quote(path)}".rstrip("/"))
        return list(data) if isinstance(data, list) else []


def _error_of(resp: Any) -> tuple[str, list[str]]:
    try:
        body = resp.json()
    except ValueError:
        return (f"HTTP {resp.status_code}", [])
    logn = body.get("log") if isinstance(body, dict) else None
    if not isinstance(logn, dict):
        return (str(body)[:200], [])
    details: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        for sub in node.get("subnodes") or []:
            if isinstance(sub, dict):
                if sub.get("message"):
                    details.append(str(sub["message"]))
                walk(sub)

    walk(logn)
    return (str(logn.get("message", "error")), details)
