"""``imagedepot report``: the tables and figures of the run report (trusted zone)."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagedepot.cli._common import add_stage_root


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb."""
    p = sub.add_parser(
        "report",
        help="write the run report's tables and figures (for snakemake --report)",
        description=(
            "Read the run summary, the scan's manifest, the de-identification folders and "
            "Snakemake's benchmark files, and write into OUT_DIR: the accounting per dataset "
            "(found = processed + quarantined + excluded), every quarantine and exclusion reason, "
            "what each policy did (options, actions counted), before/after pictures of images "
            "whose burned-in text was blanked or refused, every level of every staged OME-Zarr "
            "image, mid-slices of every staged NIfTI file in three planes, and time and memory "
            "per step. The pictures show burned-in text: the report belongs to the trusted zone."
        ),
    )
    p.add_argument("--summary", required=True, type=Path, help="results/summary.json")
    p.add_argument("--manifest", required=True, type=Path, help="manifest from `imagedepot scan`")
    add_stage_root(p, "deid")
    p.add_argument(
        "--benchmarks",
        nargs="*",
        default=[],
        type=Path,
        metavar="TSV",
        help="Snakemake benchmark files, benchmarks/<rule>/<job>.tsv (rules in pipeline order)",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="folder to write the report into")
    p.add_argument(
        "--max-images",
        type=_positive,
        default=24,
        metavar="N",
        help="images (or files) drawn per gallery; the rest is counted (default: 24)",
    )
    p.add_argument("--force", action="store_true", help="replace existing report files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report's pieces."""
    from imagedepot.report import ReportOptions, build_report
    from imagedepot.storage import input_root

    record = build_report(
        args.summary,
        args.manifest,
        input_root(args.deid_root),
        args.benchmarks,
        args.out_dir,
        ReportOptions(max_images=args.max_images),
        force=args.force,
    )
    for path in record["files"].values():
        print(path)
    return 0
