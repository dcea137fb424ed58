"""``imagedepot fhir``: FHIR transaction bundles for de-identified datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagedepot.cli._common import add_config_options, get_config


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fhir`` verb and its subcommands."""
    p = sub.add_parser("fhir", help="build FHIR bundles linking de-identified studies")
    fsub = p.add_subparsers(dest="fhir_command", metavar="COMMAND")
    fsub.required = True
    b = fsub.add_parser(
        "bundle",
        help="build one dataset's transaction Bundle and run the leak gate on it",
        description=(
            "Build a FHIR transaction Bundle (Patient with the pseudonym only, ImagingStudy, Specimen, "
            "Consent, Device, Provenance) from the dataset's de-identified, leak-checked items, then scan "
            "it with the leak gate. Writes BUNDLE and BUNDLE's .status.json (clean, leak or empty); a "
            "bundle that leaks is not written."
        ),
    )
    b.add_argument("dataset", help="dataset id of the sample sheet")
    b.add_argument("--items-dir", required=True, help="folder of item JSON files (from scan)")
    b.add_argument("--deid-root", required=True, help="folder of de-identified item folders")
    b.add_argument("--leak-root", required=True, help="folder of item leak reports")
    b.add_argument("--out", required=True, metavar="BUNDLE", help="bundle JSON to write")
    add_config_options(b)
    b.set_defaults(func=run_bundle)


def run_bundle(args: argparse.Namespace) -> int:
    """Build, gate and write the bundle."""
    from imagedepot.fhir import bundle_dataset

    config = get_config(args)
    assert config is not None
    status = bundle_dataset(
        args.dataset,
        items_dir=Path(args.items_dir),
        deid_root=Path(args.deid_root),
        leak_root=Path(args.leak_root),
        out=Path(args.out),
        config=config,
    )
    print(f"fhir bundle {args.dataset}: {status['status']} ({status.get('entries', 0)} entries)")
    return 0
