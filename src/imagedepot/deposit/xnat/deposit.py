"""Deposit an XNAT plan (network): read the server, act on the difference, verify, resume.

:func:`deposit_xnat` uses the ``xnat`` (xnatpy) client (:mod:`imagedepot.deposit.xnat.client`).
The project must exist (projects are created by an XNAT administrator); subjects and sessions are
created explicitly by label. DICOM goes through the import service
(:mod:`imagedepot.deposit.xnat.dicom_import`); everything else is uploaded file by file
(:mod:`imagedepot.deposit.xnat.upload`).

Every round reads the server's state first and acts only on what is missing or different, so a
re-run transfers nothing, a retried request never duplicates a subject, session, scan or file, and
an interrupted deposit resumes from what the server holds. The import service is not idempotent:
it is never retried blindly; the next round re-reads the session and re-sends only missing files.
Idempotent requests are retried with exponential backoff on connection errors, timeouts and 5xx
(:mod:`imagedepot.deposit.retry`). What is verified, and how:
:mod:`imagedepot.deposit.xnat.verification`; the receipt: :mod:`imagedepot.deposit.xnat.report`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from imagedepot.deposit.retry import RetryExhaustedError, RetryPolicy
from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT
from imagedepot.deposit.xnat.client import Credentials, XnatClient, _public_url, resolve_credentials
from imagedepot.deposit.xnat.dicom_import import _Importer
from imagedepot.deposit.xnat.errors import XnatDepositError
from imagedepot.deposit.xnat.plan import load_plan
from imagedepot.deposit.xnat.report import DepositReport, _plan_sha256, _Receipt
from imagedepot.deposit.xnat.run import _q
from imagedepot.deposit.xnat.upload import _Uploader
from imagedepot.deposit.xnat.verification import _ServerFile, _Verifier, _Work
from imagedepot.errors import ConfigError
from imagedepot.provenance import now

log = logging.getLogger(__name__)


class _Depositor(_Verifier, _Uploader, _Importer):
    """One deposit run: reads the server's state, acts on the difference, verifies."""

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
