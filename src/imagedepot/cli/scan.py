"""``imagedepot scan``: find inputs, group them into items, write the manifest."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imagedepot.cli._common import add_config_options, get_config, load_policies
from imagedepot.io import check_overwrite

log = logging.getLogger(__name__)

#: Quarantined entries whose reason the console shows (the manifest lists them all).
QUARANTINE_SHOWN = 5


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``scan`` verb."""
    p = sub.add_parser(
        "scan",
        help="find inputs and group them into items (DICOM series, images, NIfTI files)",
        description=(
            "Scan an inbox: group DICOM files into studies and series by UID (files without extension "
            "too; DICOMDIR set aside), microscopy files into images (multi-file OME-TIFF counts once), "
            "NIfTI files with their sidecars. Records path, size and sha256 of every file. Symbolic "
            "links are followed once inside the inbox. Unreadable or non-image files, links out of "
            "the inbox and DICOM files of another patient than the dataset's subject are listed "
            "with the reason (the first five also on the console). With --config, the sample sheet "
            "assigns items to datasets and the policies exclude subjects without consent."
        ),
    )
    p.add_argument("inbox", nargs="?", help="inbox folder (default: `inbox` of the config)")
    p.add_argument("--out", required=True, metavar="MANIFEST", help="manifest JSON to write")
    p.add_argument("--items-dir", metavar="DIR", help="also write one JSON per item into DIR")
    p.add_argument(
        "--samples", metavar="SHEET", help="sample sheet (default: `samples` of the config)"
    )
    p.add_argument("--batch-size", type=int, help="items per batch (default: config or 50)")
    p.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the scan and write the manifest."""
    from imagedepot.ingest import scan
    from imagedepot.io import restrict_folder
    from imagedepot.progress import progress_for
    from imagedepot.samplesheet import load_samples

    check_overwrite(args.out, args.force)
    config = get_config(args, required=False)
    inbox = args.inbox or (config or {}).get("inbox")
    if inbox is None:
        raise SystemExit("imagedepot scan: give INBOX or --config")
    batch = args.batch_size or (config or {}).get("scan", {}).get("batch_size", 50)
    sheet = args.samples or (config or {}).get("samples")
    datasets = policies = None
    if sheet:
        datasets = load_samples(
            sheet,
            policies=(config or {}).get("policies"),
            destinations=(config or {}).get("destinations"),
        )
        if config is not None:
            policies = load_policies(config)
            for ds in datasets:
                for dest in ds.destinations:
                    policies[ds.policy].check_destination(
                        dest, config["destinations"][dest]["class"]
                    )
    with progress_for("scan") as progress:
        manifest = scan(
            inbox,
            datasets=datasets,
            sheet=sheet,
            policies=policies,
            batch_size=batch,
            progress=progress,
        )
    manifest.write(args.out, args.items_dir)
    # results/ingest is part of the trusted zone (original paths and folder names): owner only.
    restrict_folder(Path(args.out).parent)
    if args.items_dir:
        restrict_folder(Path(args.items_dir))
        restrict_folder(Path(args.items_dir).parent)
    c = manifest.counts()
    print(
        f"scan: {c['items']} item(s) ({c['items_pending']} to process, {c['items_excluded']} excluded), "
        f"{c['files_quarantined']} file(s) quarantined, {c['files']} file(s) in all -> {Path(args.out)}"
    )
    for line in manifest.quarantine_lines(QUARANTINE_SHOWN):
        print(line)
    return 0
