"""Writing to XNAT: resources and scans created by label, files uploaded in parallel.

Everything but DICOM is uploaded file by file
(``PUT .../resources/<label>/files/<path>?inbody=true&overwrite=true``); OME-Zarr is uploaded
per chunk rather than zipped so that a resumed run re-sends only the chunks that are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from imagedepot.deposit.retry import RetryExhaustedError
from imagedepot.deposit.xnat.errors import XnatDepositError
from imagedepot.deposit.xnat.run import _q, _qpath, _RunState
from imagedepot.deposit.xnat.verification import _ServerScan


class _Uploader(_RunState):
    """Creates resources and scans, and uploads files."""

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
