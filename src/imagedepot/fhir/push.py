"""Push a transaction bundle to a FHIR server (:func:`push_bundle`), with retries."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot import __version__
from imagedepot.errors import ImagedepotError

log = logging.getLogger(__name__)


class FhirPushError(ImagedepotError):
    """A FHIR server refused a transaction (``issues`` from its OperationOutcome) or was not
    reachable after the retries."""

    def __init__(self, message: str, *, status: int | None = None, issues: Sequence[str] = ()):
        self.status = status
        self.issues = list(issues)
        super().__init__(message)


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
