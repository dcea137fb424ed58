"""``imagedepot stage bia`` and ``imagedepot deposit bia``: the BioImage Archive.

``stage bia`` is local (default run): PageTab + File List + checksums, validated, in a BagIt bag with an
RO-Crate. ``deposit bia`` talks to the network (a separate target): FTP upload to the secret directory,
content check (every remote file read back and compared by SHA-256; files over
``download_verify_limit`` bytes refused), BioStudies submission (or stop there with ``--dry-run``).

Secrets never go on the command line: the FTP URL comes from the environment variable named by the
destination's ``ftp_url_env`` (or its ``ftp_url``), API credentials from ``<credentials_env>_USER`` /
``_PASSWORD`` / ``_TOKEN`` or ``~/.netrc``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from imagedepot.cli._common import add_config_options, get_config, load_policies
from imagedepot.errors import ConfigError


def register_stage(ssub: argparse._SubParsersAction) -> None:
    """Add ``stage bia`` to the ``stage`` verb's subcommands."""
    s = ssub.add_parser(
        "bia",
        help="package staged outputs as BioImage Archive submissions (PageTab, File List, bag)",
        description=(
            "For each dataset staged for a `bia` destination, write a BioStudies PageTab submission "
            "(JSON, and TSV for people) with REMBI sections from the sample sheet's columns and the "
            "study metadata, a File List (`Files` column first), a checksum manifest and an RO-Crate, "
            "all in a BagIt bag per dataset under OUT. Validation errors name each missing field and "
            "where to set it. No network."
        ),
    )
    s.add_argument("destination", help="destination name (type bia) from the config")
    s.add_argument(
        "out",
        help="folder to create (replaced atomically), e.g. results/bia/<destination>, or its "
        ".tree.json marker",
    )
    s.add_argument(
        "--staged",
        required=True,
        help="the destination's staged folder (results/stage/<destination>) or its .tree.json marker",
    )
    s.add_argument(
        "--manifest",
        required=True,
        help="the scan's manifest (results/ingest/manifest.json) or its item JSON folder",
    )
    s.add_argument(
        "--study-metadata",
        metavar="YAML",
        help="study metadata (authors, license, release_date, ...); default: the destination's "
        "`study` mapping in the config",
    )
    add_config_options(s)
    s.set_defaults(func=run_stage)


def register_deposit(dsub: argparse._SubParsersAction) -> None:
    """Add ``deposit bia`` to the ``deposit`` verb's subcommands."""
    d = dsub.add_parser(
        "bia",
        help="upload BioImage Archive packages by FTP and submit them (network)",
        description=(
            "Run the release check (`imagedepot validate PACKAGES`: bags, PageTab, File Lists, "
            "RO-Crate, checksums, images) and refuse, before any network call, when a file "
            "fails it. Check each package's bag (a file changed after staging is refused) and "
            "its policy, "
            "upload its files to the secret FTP directory (parallel streams, resuming partial files), "
            "verify every remote file's content by reading it back and comparing its SHA-256 with "
            "the package's (a copy that differs is replaced; a file over download_verify_limit bytes "
            "is refused, not trusted on its size), then log in to the BioStudies submission API and submit the PageTab. "
            "With --state-db, datasets already submitted with the same content are skipped and every "
            "step is recorded; a failed dataset is retried by the next run."
        ),
    )
    d.add_argument("destination", help="destination name (type bia) from the config")
    d.add_argument(
        "packages",
        help="a package or the folder of packages (results/bia/<destination>), or the folder's "
        ".tree.json marker",
    )
    d.add_argument(
        "--state-db",
        metavar="PATH",
        help="deposition state database (SQLite; default: $IMAGEDEPOT_STATE_DB, set by "
        "`imagedepot schedule run`)",
    )
    d.add_argument("--dry-run", action="store_true", help="upload and verify, do not submit")
    d.add_argument("--report", metavar="JSON", help="write the deposit report here")
    d.add_argument("--parallel-streams", type=int, help="FTP streams (default: from the config)")
    d.add_argument("--retries", type=int, help="attempts per request (default: from the config)")
    d.add_argument(
        "--download-verify-limit",
        type=int,
        metavar="BYTES",
        help="largest file read back to verify its content; larger files fail the dataset "
        "(default: the destination's download_verify_limit, 1 GiB)",
    )
    add_config_options(d)
    d.set_defaults(func=run_deposit)


def _destination(config: dict[str, Any], name: str) -> dict[str, Any]:
    dest = config["destinations"].get(name)
    if dest is None:
        raise ConfigError(
            f"unknown destination {name!r} (configured: {', '.join(config['destinations'])})"
        )
    if dest.get("type") != "bia":
        raise ConfigError(f"destination {name!r} is of type {dest.get('type')!r}, not bia")
    return dict(dest)


def run_stage(args: argparse.Namespace) -> int:
    """Stage one bia destination."""
    from imagedepot.deposit.bia import StudyMetadata, load_study_metadata, stage_bia
    from imagedepot.storage import finish_output, input_folder, output_folder

    config = get_config(args)
    assert config is not None
    dest = _destination(config, args.destination)
    if args.study_metadata:
        study = load_study_metadata(args.study_metadata)
    else:
        study = StudyMetadata.from_mapping(
            dest.get("study"), f"destinations.{args.destination}.study"
        )
    report = stage_bia(
        input_folder(args.staged),
        args.manifest,
        output_folder(args.out),
        destination=args.destination,
        destination_class=dest["class"],
        study=study,
        policies=load_policies(config),
    )
    finish_output(args.out)
    print(
        f"stage bia {args.destination}: {len(report.packages)} package(s), "
        f"{len(report.skipped)} dataset(s) skipped -> {args.out}"
    )
    return 0


def run_deposit(args: argparse.Namespace) -> int:
    """Deposit one bia destination; exit 1 when any dataset failed."""
    from imagedepot.deposit.bia import credentials_from_env, deposit_bia
    from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT
    from imagedepot.io import write_json
    from imagedepot.state import DB_ENV, StateDB, lock_path_for, run_lock

    config = get_config(args)
    assert config is not None
    dest = _destination(config, args.destination)
    env_name = dest.get("ftp_url_env", "IMAGEDEPOT_BIA_FTP_URL")
    ftp_url = os.environ.get(env_name) or dest.get("ftp_url", "")
    if not ftp_url:
        raise ConfigError(
            f"destination {args.destination!r}: no FTP upload directory; set ${env_name} "
            "(ftp://user:password@host/<secret directory>)"
        )
    api_url = dest.get("url", "")
    dry_run = bool(args.dry_run or dest.get("dry_run", False))
    if not api_url and not dry_run:
        raise ConfigError(
            f"destination {args.destination!r}: set `url` (BioStudies submission API)"
        )
    kwargs: dict[str, Any] = {
        "ftp_url": ftp_url,
        "api_url": api_url,
        "credentials": credentials_from_env(dest.get("credentials_env"), api_url),
        "parallel_streams": args.parallel_streams or int(dest.get("parallel_streams", 2)),
        "retries": args.retries or int(dest.get("retries", 5)),
        "download_verify_limit": args.download_verify_limit
        or int(dest.get("download_verify_limit", DOWNLOAD_VERIFY_LIMIT)),
        "dry_run": dry_run,
        "destination": args.destination,
        "policies": load_policies(config),
    }
    from imagedepot.storage import input_folder

    packages = input_folder(args.packages)
    from imagedepot.validate import require_valid

    require_valid(packages, "upload")  # the release check: nothing invalid leaves
    state_db = args.state_db or os.environ.get(DB_ENV)
    if state_db:
        with run_lock(lock_path_for(state_db)), StateDB(state_db) as db:
            report = deposit_bia(packages, state=db, **kwargs)
    else:
        report = deposit_bia(packages, **kwargs)
    if args.report:
        write_json(args.report, report.to_dict())
    for d in report.datasets:
        extra = d.get("accession") or d.get("reason") or ""
        print(f"deposit bia {args.destination}/{d['dataset']}: {d['state']} {extra}".rstrip())
    if report.failed:
        print(json.dumps({"failed": [d["dataset"] for d in report.failed]}))
        return 1
    return 0


__all__ = ["register_deposit", "register_stage", "run_deposit", "run_stage"]
