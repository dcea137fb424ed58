"""``imagedepot fhir``: FHIR transaction bundles for de-identified datasets, and their push."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from imagedepot.cli._common import add_config_options, add_stage_root, get_config


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
    b.add_argument(
        "datasets",
        nargs="*",
        metavar="DATASET",
        help="dataset ids of the sample sheet (default: every dataset with items to process)",
    )
    b.add_argument(
        "--manifest",
        required=True,
        help="the scan's manifest (or the item JSON folder written by scan --items-dir)",
    )
    add_stage_root(b, "deid")
    add_stage_root(b, "leak")
    add_stage_root(b, "convert", required=False, note=" (adds a Provenance for each conversion)")
    out = b.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", metavar="BUNDLE", help="bundle JSON to write (one DATASET)")
    out.add_argument(
        "--out-dir",
        metavar="DIR",
        help=(
            "write DIR/<dataset>/bundle.json (+ bundle.status.json) for every DATASET; "
            "DIR may be a .tree.json marker (the folder beside it is written and listed)"
        ),
    )
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
    b.add_argument("--jobs", type=int, default=1, help="worker processes for --out-dir (default 1)")
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
    u.add_argument(
        "--tree",
        metavar="MARKER",
        help="BUNDLE is a path inside the tree of this .tree.json marker (fhir bundle --out-dir)",
    )
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
    """Build, gate and write the bundles."""
    from imagedepot.deid.pseudonym import load_key
    from imagedepot.fhir import ClinicalSettings
    from imagedepot.io import atomic_path, check_overwrite
    from imagedepot.pipeline import manifest_items
    from imagedepot.storage import Storage, finish_output, input_root, output_folder

    config = get_config(args)
    assert config is not None
    items = manifest_items(Path(args.manifest))
    datasets = args.datasets or sorted(
        {str(i["dataset"]) for i in items if i["status"] == "pending" and i.get("dataset")}
    )
    if args.out and len(datasets) != 1:
        raise SystemExit("imagedepot fhir bundle: --out takes one DATASET; use --out-dir")
    clinical_path = args.clinical or (config.get("fhir") or {}).get("clinical")
    clinical = None
    if clinical_path:
        pcfg = config.get("pseudonymisation") or {}
        key = load_key(
            args.key_env or pcfg.get("key_env", "IMAGEDEPOT_PSEUDONYM_KEY"),
            args.key_file or pcfg.get("key_file"),
            key_permissions=pcfg.get("key_permissions", "warn"),
        )
        clinical = ClinicalSettings(path=Storage.from_env().local(clinical_path), key=key)
    roots = {
        "manifest": {"items": items},
        "deid_root": input_root(args.deid_root),
        "leak_root": input_root(args.leak_root),
        "convert_root": input_root(args.convert_root) if args.convert_root else None,
        "config": config,
        "clinical": clinical,
    }
    if args.out:
        check_overwrite(args.out, args.force)
        _bundle_one(datasets[0], Path(args.out), roots)
        return 0
    from imagedepot.pipeline import run_parallel

    folder = output_folder(args.out_dir)
    with atomic_path(folder, force=True, is_dir=True) as tmp:
        # Forked workers inherit the inputs (the manifest may list 10,000 files): only names travel.
        _SHARED.update(roots=roots, out=tmp)
        try:
            run_parallel(
                _bundle_task, datasets, args.jobs, preload=("pydicom", "imagedepot.leakcheck")
            )
        finally:
            _SHARED.clear()
    finish_output(args.out_dir)
    return 0


_SHARED: dict = {}


def _bundle_task(dataset: str) -> tuple[str, str]:
    return dataset, _bundle_one(dataset, _SHARED["out"] / dataset / "bundle.json", _SHARED["roots"])


def _bundle_one(dataset: str, out: Path, roots: dict) -> str:
    from imagedepot.fhir import bundle_dataset

    out.parent.mkdir(parents=True, exist_ok=True)
    status = bundle_dataset(dataset, out=out, **roots)
    line = f"fhir bundle {dataset}: {status['status']} ({status.get('entries', 0)} entries)"
    if "clinical" in status:
        c = status["clinical"]
        line += (
            f"; clinical {c['source']}: {c['linked']} record(s) linked, "
            f"{c['rejected']} rejected, {len(c['warnings'])} warning(s)"
        )
    print(line, flush=True)
    return str(status["status"])


def run_push(args: argparse.Namespace) -> int:
    """Push the bundle; exit 1 with the server's issues when it refuses."""
    from imagedepot.fhir import push_bundle
    from imagedepot.io import read_json, write_json

    bundle = Path(args.bundle)
    if args.tree:
        from imagedepot.storage import open_tree

        bundle = open_tree(args.tree) / bundle
        args.bundle = str(bundle)
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
