"""``imagedepot stage xnat`` (local plan) and ``imagedepot deposit xnat`` (network upload).

Two registration functions, wired in by the ``stage`` and ``deposit`` verbs::

    register_stage(stage_subparsers)      # adds `stage xnat STAGED OUT`
    register_deposit(deposit_subparsers)  # adds `deposit xnat STAGED --url --project ...`

Settings of a destination may come from the workflow configuration (``--config``/``--config-json``
with ``--destination NAME``: ``url``, ``project``, ``credentials_env``, ``retries``,
``parallel_streams``, ``dry_run``); command-line options override them. Credentials never come
from the command line or the configuration: ``<credentials_env>_USER``/``_PASSWORD`` or
``~/.netrc``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from imagedepot.cli._common import add_config_options, get_config
from imagedepot.errors import ConfigError


def register_stage(sub: argparse._SubParsersAction) -> None:
    """Add ``stage xnat`` to the subcommands of ``stage``."""
    s = sub.add_parser(
        "xnat",
        help="map a staged folder onto XNAT's model (xnat-plan.json); no network",
        description=(
            "Write the XNAT plan of a folder staged for an XNAT destination: project -> subject "
            "(pseudonym) -> session (one per de-identified study) -> scans (one per item) -> "
            "resources (DICOM, NIFTI, BIDS, OME-ZARR, OME-TIFF, PROVENANCE; FHIR on the subject) "
            "-> files with size, SHA-256 and MD5. Local and idempotent."
        ),
    )
    s.add_argument(
        "staged",
        help="folder written by `imagedepot stage local` for the destination (or its .tree.json)",
    )
    s.add_argument("out", help="plan JSON to write")
    s.add_argument("--project", help="XNAT project ID to record in the plan")
    s.add_argument("--destination", help="destination name in the config (for its project)")
    s.add_argument("--force", action="store_true", help="overwrite an existing plan")
    add_config_options(s)
    s.set_defaults(func=run_stage)


def register_deposit(sub: argparse._SubParsersAction) -> None:
    """Add ``deposit xnat`` to the subcommands of ``deposit``."""
    d = sub.add_parser(
        "xnat",
        help="upload a staged folder to XNAT, verify every file, write a receipt",
        description=(
            "First run the release check (`imagedepot validate STAGED`) and refuse, before any "
            "network call, when a file fails it. Then create the subjects and sessions of the "
            "plan in an existing XNAT project, send DICOM "
            "through the import service (archive or prearchive + archive request, as the project "
            "is set up), upload the other files as resources, and verify sizes and checksums "
            "against the plan (XNAT's MD5 digests; where it lists none, files are downloaded and "
            "hashed, and a file over download_verify_limit bytes fails the deposit). Re-runs transfer only what is missing or different. Credentials: "
            "<PREFIX>_USER/<PREFIX>_PASSWORD (see --credentials-env) or ~/.netrc."
        ),
    )
    d.add_argument(
        "staged",
        help="folder written by `imagedepot stage local` for the destination (or its .tree.json)",
    )
    d.add_argument("--plan", help="plan from `imagedepot stage xnat` (default: made from STAGED)")
    d.add_argument("--url", help="XNAT base URL (no credentials in it)")
    d.add_argument("--project", help="XNAT project ID (must exist)")
    d.add_argument("--destination", help="destination name in the config (url, project, ...)")
    d.add_argument(
        "--credentials-env",
        metavar="PREFIX",
        help="read <PREFIX>_USER and <PREFIX>_PASSWORD from the environment",
    )
    d.add_argument("--retries", type=int, help="attempts per request and upload rounds (5)")
    d.add_argument("--parallel-streams", type=int, help="concurrent uploads (2)")
    d.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")
    d.add_argument(
        "--dicom-verify",
        choices=("checksum", "count"),
        default="checksum",
        help="count: only sizes and counts for DICOM (sites whose anonymisation rewrites files)",
    )
    d.add_argument(
        "--download-verify-limit",
        type=int,
        metavar="BYTES",
        help="when XNAT lists no digest: largest file downloaded and hashed; larger files fail "
        "the deposit (default: the destination's download_verify_limit, 1 GiB)",
    )
    d.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="report what would be created and uploaded; write nothing",
    )
    d.add_argument("--receipt", metavar="JSON", help="receipt to write (history of runs)")
    add_config_options(d)
    d.set_defaults(func=run_deposit)


def _destination(args: argparse.Namespace) -> dict[str, Any]:
    """The destination's settings from the config (empty without ``--destination``)."""
    config = get_config(args, required=False)
    if not args.destination:
        return {}
    if config is None:
        raise ConfigError("--destination needs the configuration (--config or --config-json)")
    dest = config["destinations"].get(args.destination)
    if dest is None:
        raise ConfigError(f"unknown destination {args.destination!r}; add it under destinations:")
    if dest.get("type") != "xnat":
        raise ConfigError(
            f"destination {args.destination!r} is of type {dest.get('type')!r}, not xnat"
        )
    return dict(dest)


def run_stage(args: argparse.Namespace) -> int:
    """Write the plan."""
    from imagedepot.deposit.xnat import stage_xnat
    from imagedepot.errors import OutputExistsError

    dest = _destination(args)
    if Path(args.out).exists() and not args.force:
        raise OutputExistsError(args.out)
    from imagedepot.storage import input_folder

    plan = stage_xnat(
        input_folder(args.staged),
        args.out,
        project=args.project or dest.get("project") or None,
        force=True,
    )
    c = plan["counts"]
    print(
        f"stage xnat: {c['subjects']} subject(s), {c['sessions']} session(s), {c['scans']} "
        f"scan(s), {c['files']} file(s), {c['bytes']} bytes -> {args.out}"
    )
    return 0


class _Progress:
    """Progress lines on stderr: every created object, import and archive, every 100th upload."""

    def __init__(self) -> None:
        self.uploads = 0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "uploaded":
            self.uploads += 1
            if self.uploads % 100:
                return
            detail = f"{self.uploads} file(s) so far"
        else:
            detail = ", ".join(f"{k}={v}" for k, v in event.items() if k != "event")
        print(f"deposit xnat: {kind}: {detail}", file=sys.stderr, flush=True)


def run_deposit(args: argparse.Namespace) -> int:
    """Deposit and print a summary; exit 0 when everything is verified (or in a dry run)."""
    from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT
    from imagedepot.deposit.xnat import build_plan, deposit_xnat, load_plan

    dest = _destination(args)
    url = args.url or dest.get("url")
    project = args.project or dest.get("project")
    if not url:
        raise ConfigError("deposit xnat: give --url (or a destination with url in the config)")
    if not project:
        raise ConfigError(
            "deposit xnat: give --project (or a destination with project in the config)"
        )
    from imagedepot.storage import input_folder

    staged = input_folder(args.staged)
    from imagedepot.validate import require_valid

    require_valid(staged, "upload")  # the release check: nothing invalid leaves
    plan = load_plan(args.plan) if args.plan else build_plan(staged, project=project)
    dry_run = args.dry_run if args.dry_run is not None else bool(dest.get("dry_run", False))
    report = deposit_xnat(
        plan,
        url,
        project=project,
        staged=staged,
        credentials_env=args.credentials_env or dest.get("credentials_env") or None,
        retries=args.retries or int(dest.get("retries", 5)),
        parallel_streams=args.parallel_streams or int(dest.get("parallel_streams", 2)),
        dry_run=dry_run,
        receipt=args.receipt,
        timeout=args.timeout,
        dicom_verify=args.dicom_verify,
        download_verify_limit=args.download_verify_limit
        or int(dest.get("download_verify_limit", DOWNLOAD_VERIFY_LIMIT)),
        progress=_Progress(),
    )
    if report.dry_run:
        would = report.would_create
        print(
            f"deposit xnat (dry run) {report.url} project {project}: would create "
            f"{len(would['subjects'])} subject(s), {len(would['sessions'])} session(s), "
            f"{len(would['scans'])} scan(s), {len(would['resources'])} resource(s) and send "
            f"{len(report.would_upload)} file(s); {report.verified_files} already verified"
        )
        for line in report.would_upload[:50]:
            print(f"  would send {line}")
        if len(report.would_upload) > 50:
            print(f"  ... and {len(report.would_upload) - 50} more")
        return 0
    print(
        f"deposit xnat {report.url} project {project}: {report.status}: "
        f"{report.uploaded_files} file(s) uploaded ({report.uploaded_bytes} bytes), "
        f"{report.dicom_imports} DICOM import(s), {report.archived_from_prearchive} archived from "
        f"the prearchive, {report.verified_files} file(s) verified, {report.retries} retries"
        + (f" -> {args.receipt}" if args.receipt else "")
    )
    for warning in report.warnings:
        print(f"  warning: {warning}")
    return 0
