"""DICOM through XNAT's import service, and archiving what lands in the prearchive.

DICOM goes through the import service (``POST /data/services/import``) with ``project``,
``subject`` and ``session`` set and ``overwrite=append``, to ``/archive`` when the project
auto-archives (``prearchive_code`` 4 or 5), otherwise to ``/prearchive`` followed by an archive
request, so nothing is left unmatched in the prearchive.
"""

from __future__ import annotations

import logging
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from imagedepot.deposit.retry import describe_error, is_transient
from imagedepot.deposit.xnat.errors import XnatDepositError
from imagedepot.deposit.xnat.run import _q, _RunState

log = logging.getLogger(__name__)


class _Importer(_RunState):
    """Sends DICOM through the import service and archives prearchive entries."""

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
