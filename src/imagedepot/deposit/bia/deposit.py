"""Deposit staged BioImage Archive packages (network, a separate target).

:func:`deposit_bia` refuses a package changed after staging (:func:`verify_bag`), uploads
``data/upload/`` to the secret FTP directory and verifies it
(:mod:`imagedepot.deposit.bia.ftp`), then logs in to the BioStudies submission API and submits the
PageTab JSON (:mod:`imagedepot.deposit.bia.biostudies`), reporting the accession. ``dry_run``
stops after the verified upload. Only packages whose policy allows a public archive get this far:
the policy is checked when staging and again before any upload.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.deposit.bia.bag import _read_manifest, verify_bag
from imagedepot.deposit.bia.biostudies import BioStudiesClient, Credentials
from imagedepot.deposit.bia.errors import BagError, DepositError
from imagedepot.deposit.bia.ftp import FtpTarget, UploadFile, upload_files, verify_remote_sizes
from imagedepot.deposit.bia.package import SUBMISSION_DIR, content_hash, find_packages
from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT
from imagedepot.errors import ImagedepotError, PolicyError
from imagedepot.io import iter_files, read_json

log = logging.getLogger(__name__)


@dataclass
class DepositReport:
    """What :func:`deposit_bia` did, per dataset (``state``: submitted, verified (dry run),
    up-to-date or failed)."""

    destination: str
    dry_run: bool = False
    datasets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The datasets that failed."""
        return [d for d in self.datasets if d["state"] == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (no secrets)."""
        return {"destination": self.destination, "dry_run": self.dry_run, "datasets": self.datasets}


def _check_policy(
    pkg: dict[str, Any], destination: str, policies: Mapping[str, Any] | None
) -> None:
    pol = pkg.get("policy") or {}
    if pkg.get("destination_class") != "public_archive" or "public_archive" not in pol.get(
        "allowed_classes", []
    ):
        raise PolicyError(
            f"dataset {pkg.get('dataset')}: policy {pol.get('name')!r} does not allow a public archive"
        )
    if policies is not None:
        current = policies.get(pol.get("name", ""))
        if current is None:
            raise PolicyError(
                f"dataset {pkg.get('dataset')}: policy {pol.get('name')!r} is no longer configured"
            )
        current.check_destination(destination, "public_archive")
        if current.sha256 != pol.get("sha256"):
            raise PolicyError(
                f"dataset {pkg.get('dataset')}: policy {pol.get('name')!r} changed since staging; re-stage"
            )


def _upload_files_of(pkg_dir: Path, upload_root: str) -> list[UploadFile]:
    """The files of a package's upload folder with their SHA-256 from the bag manifest."""
    root = pkg_dir / "data" / upload_root
    digests = _read_manifest(pkg_dir / "manifest-sha256.txt")
    files = []
    for p in iter_files(root):
        digest = digests.get(str(p.relative_to(pkg_dir)))
        if digest is None:
            raise BagError(pkg_dir, [f"{p.relative_to(pkg_dir)}: not in the manifest"])
        files.append(UploadFile(p, str(p.relative_to(root)), p.stat().st_size, digest))
    return files


def deposit_bia(
    staged: str | Path,
    *,
    ftp_url: str,
    api_url: str,
    credentials: Credentials,
    parallel_streams: int = 2,
    dry_run: bool = False,
    state: Any = None,
    destination: str | None = None,
    policies: Mapping[str, Any] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    download_verify_limit: int = DOWNLOAD_VERIFY_LIMIT,
) -> DepositReport:
    """Deposit staged BioImage Archive packages: FTP upload, content check, then PageTab submission.

    Parameters
    ----------
    staged
        One package (a bag from :func:`stage_bia`) or the folder holding them
        (``results/bia/<destination>``).
    ftp_url
        The secret upload directory, ``ftp://[user[:password]@]host[:port]/<directory>``.
    api_url
        BioStudies submission API base URL (e.g. ``https://www.ebi.ac.uk/biostudies/submissions/api``).
    credentials
        API login (:func:`credentials_from_env`).
    parallel_streams
        Parallel FTP connections.
    dry_run
        Upload and verify, but do not submit.
    state
        A :class:`imagedepot.state.StateDB`: datasets already submitted with the same content are
        skipped; every step is recorded; a failure records its reason and the next run retries it.
    policies
        Loaded policies: re-checked before any upload (the package records the policy it was staged
        under; a changed or stricter policy stops the deposit).
    download_verify_limit
        Largest file (bytes) that is read back from the upload area to verify its content
        (:func:`upload_files`); a dataset with a larger file fails before anything is sent.

    Each dataset is independent: one failing is recorded and the others go on. Check
    :attr:`DepositReport.failed`.
    """
    packages = find_packages(staged)
    target = FtpTarget.parse(ftp_url)
    report = DepositReport(destination or "", dry_run)
    client: BioStudiesClient | None = None
    goal = "verified" if dry_run else "submitted"
    for pkg_dir in packages:
        pkg = read_json(pkg_dir / SUBMISSION_DIR / "package.json")
        dest = destination or pkg["destination"]
        report.destination = dest
        dataset = pkg["dataset"]
        entry: dict[str, Any] = {"dataset": dataset, "files": pkg["files"], "bytes": pkg["bytes"]}
        try:
            chash = content_hash(pkg_dir)
            if state is not None and not state.needs_work(dest, dataset, chash, goal=goal):
                row = state.get(dest, dataset)
                entry |= {"state": "up-to-date", "accession": row.accession if row else None}
                report.datasets.append(entry)
                log.info("%s/%s: already %s with this content; nothing to do", dest, dataset, goal)
                continue
            previous = state.get(dest, dataset) if state is not None else None
            if state is not None:
                state.start(dest, dataset, chash, files=pkg["files"], bytes=pkg["bytes"])
            problems = verify_bag(pkg_dir)
            if problems:
                raise BagError(pkg_dir, problems)
            if chash != pkg["content_hash"]:
                raise BagError(pkg_dir, ["content hash differs from package.json"])
            _check_policy(pkg, dest, policies)
            files = _upload_files_of(pkg_dir, pkg["upload_root"])
            log.info("%s/%s: uploading %d file(s) to %s", dest, dataset, len(files), target)
            results = upload_files(
                files,
                target,
                streams=parallel_streams,
                retries=retries,
                backoff=backoff,
                download_verify_limit=download_verify_limit,
            )
            entry["sent_bytes"] = sum(r.sent for r in results)
            entry["resumed"] = [r.path for r in results if r.resumed_from]
            entry["replaced"] = [r.path for r in results if r.replaced]
            entry["verified_by_sha256"] = len(results)
            if state is not None:
                state.set_state(dest, dataset, "uploaded")
            bad = verify_remote_sizes(files, target, retries=retries, backoff=backoff)
            if bad:
                raise DepositError("sizes differ after upload: " + "; ".join(bad[:5]))
            if state is not None:
                state.set_state(dest, dataset, "verified")
            if dry_run:
                entry["state"] = "verified"
                log.info("%s/%s: uploaded and verified; dry run, not submitting", dest, dataset)
                report.datasets.append(entry)
                continue
            if client is None:
                client = BioStudiesClient(api_url, retries=retries, backoff=backoff)
                client.login(credentials)
            doc = read_json(pkg_dir / "data" / pkg["pagetab"])
            accession = previous.accession if previous is not None else None
            if accession:
                doc["accno"] = accession
            answer = client.submit(doc)
            entry |= {"state": "submitted", "accession": answer["accno"]}
            if state is not None:
                state.set_state(dest, dataset, "submitted", accession=answer["accno"])
            log.info("%s/%s: submitted as %s", dest, dataset, answer["accno"])
        except (ImagedepotError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if target.directory:
                reason = reason.replace(target.directory, "<secret directory>")
            entry |= {"state": "failed", "reason": reason}
            log.error("%s/%s: %s", dest, dataset, reason)
            if state is not None and state.get(dest, dataset) is not None:
                state.set_state(dest, dataset, "failed", reason=reason)
        report.datasets.append(entry)
    return report
