"""``imagedepot fhir``: FHIR transaction bundles for de-identified datasets, and their push."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from imagedepot.cli._common import add_config_options, get_config


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fhir`` verb and its subcommands."""
    p = sub.add_parser("fhir", help="build FHIR bundles linking de-identified studies; push them")
    fsub = p.add_subparsers(dest="fhir_command", metavar="COMMAND")
    fsub.required = True
    b = fsub.add_parser(
        "bundle",
        help="build one dataset's transaction Bundle and run the leak gate on it",
        description=(
            "Build a FHIR transaction Bundle (Patient with the pseudonym only, ImagingStudy, "
            "Specimen, Endpoint, Consent, Device, Provenance, and the subject's de-identified "
            "clinical records as Encounter/Condition/Observation) from the dataset's "
            "de-identified, leak-checked items, validate it with fhir.resources, then scan it "
            "with the leak gate. Writes BUNDLE and BUNDLE's .status.json (clean, leak or empty; "
            "per-record clinical errors); a bundle that leaks is not written."
        ),
    )
    b.add_argument("dataset", help="dataset id of the sample sheet")
    b.add_argument("--items-dir", required=True, help="folder of item JSON files (from scan)")
    b.add_argument("--deid-root", required=True, help="folder of de-identified item folders")
    b.add_argument("--leak-root", required=True, help="folder of item leak reports")
    b.add_argument(
        "--convert-root",
        help="folder of converted item folders (adds a Provenance for each conversion)",
    )
    b.add_argument("--out", required=True, metavar="BUNDLE", help="bundle JSON to write")
    b.add_argument(
        "--clinical",
        metavar="PATH",
        help=(
            "clinical records keyed by the original patient ID: CSV/TSV, FHIR Bundle (.json) "
            "or NDJSON (default: fhir.clinical of the config)"
        ),
    )
    b.add_argument(
        "--key-env",
        help="environment variable holding the pseudonymisation key (default: config)",
    )
    b.add_argument("--key-file", help="file holding the pseudonymisation key (default: config)")
    b.add_argument("--force", action="store_true", help="overwrite an existing bundle")
    add_config_options(b)
    b.set_defaults(func=run_bundle)

    u = fsub.add_parser(
        "push",
        help="POST a transaction Bundle to a FHIR server",
        description=(
            "POST BUNDLE as a transaction to the FHIR server at URL (its base URL). The token, "
            "if any, is read from the environment variable named by --token-env and sent as "
            "a Bearer token. Connection errors, timeouts, 429 and 5xx answers are retried with "
            "exponential backoff; a refusal prints the server's OperationOutcome issues and "
            "exits with status 1. Loading is idempotent (conditional creates), so pushing the "
            "same bundle again creates nothing new. A bundle that the bundle step did not write "
            "(its .status.json says empty or leak) is skipped with exit status 0."
        ),
    )
    u.add_argument("bundle", metavar="BUNDLE", help="transaction Bundle JSON (from fhir bundle)")
    u.add_argument("--url", required=True, help="FHIR server base URL")
    u.add_argument(
        "--token-env",
        default="IMAGEDEPOT_FHIR_TOKEN",
        help="environment variable holding the Bearer token (default: %(default)s)",
    )
    u.add_argument(
        "--retries",
        type=int,
        default=4,
        help="retries after the first attempt on transient failures (default: %(default)s)",
    )
    u.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)"
    )
    u.add_argument("--report", metavar="JSON", help="write the server's answer per entry here")
    u.set_defaults(func=run_push)


def run_bundle(args: argparse.Namespace) -> int:
    """Build, gate and write the bundle."""
    from imagedepot.deid.pseudonym import load_key
    from imagedepot.fhir import ClinicalSettings, bundle_dataset
    from imagedepot.io import check_overwrite

    out = Path(args.out)
    check_overwrite(out, args.force)
    config = get_config(args)
    assert config is not None
    clinical_path = args.clinical or (config.get("fhir") or {}).get("clinical")
    clinical = None
    if clinical_path:
        pcfg = config.get("pseudonymisation") or {}
        key = load_key(
            args.key_env or pcfg.get("key_env", "IMAGEDEPOT_PSEUDONYM_KEY"),
            args.key_file or pcfg.get("key_file"),
        )
        clinical = ClinicalSettings(path=Path(clinical_path), key=key)
    status = bundle_dataset(
        args.dataset,
        items_dir=Path(args.items_dir),
        deid_root=Path(args.deid_root),
        leak_root=Path(args.leak_root),
        convert_root=Path(args.convert_root) if args.convert_root else None,
        out=out,
        config=config,
        clinical=clinical,
    )
    line = f"fhir bundle {args.dataset}: {status['status']} ({status.get('entries', 0)} entries)"
    if "clinical" in status:
        c = status["clinical"]
        line += (
            f"; clinical {c['source']}: {c['linked']} record(s) linked, "
            f"{c['rejected']} rejected, {len(c['warnings'])} warning(s)"
        )
    print(line)
    return 0


def run_push(args: argparse.Namespace) -> int:
    """Push the bundle; exit 1 with the server's issues when it refuses."""
    from imagedepot.fhir import push_bundle
    from imagedepot.io import read_json, write_json

    bundle = Path(args.bundle)
    status_file = bundle.with_name(bundle.name.removesuffix(".json") + ".status.json")
    if not bundle.exists() and status_file.is_file():
        # The bundle step wrote no bundle on purpose (no processed item, or a leak): nothing to push.
        status = read_json(status_file).get("status")
        if status != "clean":
            if args.report:
                write_json(
                    args.report, {"bundle": bundle.name, "status": "skipped", "reason": status}
                )
            print(f"fhir push {args.bundle}: nothing to push (bundle status: {status})")
            return 0
    token = os.environ.get(args.token_env) if args.token_env else None
    result = push_bundle(
        args.bundle, args.url, token=token, retries=args.retries, timeout=args.timeout
    )
    if args.report:
        write_json(args.report, {"bundle": Path(args.bundle).name} | result.to_dict())
    counts = result.counts()
    print(
        f"fhir push {args.bundle}: {len(result.entries)} entries -> {result.url} "
        f"({counts.get('201', 0)} created, {counts.get('200', 0)} already there or updated; "
        f"{result.attempts} attempt(s))"
    )
    return 0
