"""What a deposit run did (:class:`DepositReport`) and the local receipt.

The receipt JSON records what was verified, the server ids and a history of runs, and never holds
credentials.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.io import read_json, write_json
from imagedepot.provenance import now, tool_versions

RECEIPT_VERSION = 1


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
