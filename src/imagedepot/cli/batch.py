"""``imagedepot batch``: run one per-item step over a batch of items, as the workflow does.

A batch is the items of the manifest with the same ``batch`` number (``scan.batch_size`` items):
one Snakemake job per batch and step keeps a cohort of 10,000 files to a few dozen jobs. Each
item keeps its own folder inside the batch folder and its own provenance; a problem with one
item's data quarantines that item only (recorded, exit 0).

OUT and UPSTREAM are batch folders, or tree markers (``<folder>.tree.json``) as the workflow uses
them: the folder beside the marker is written and listed in the marker (file sizes and SHA-256),
and on a run with S3 storage uploaded to and read from the bucket (see ``imagedepot.storage``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from imagedepot.cli._common import add_config_options, get_config
from imagedepot.cli.convert import add_item_options, convert_options
from imagedepot.progress import Progress

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``batch`` verb and its steps."""
    p = sub.add_parser(
        "batch",
        help="run convert / deid / leakcheck over one batch of manifest items (workflow jobs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = p.add_subparsers(dest="batch_step", metavar="STEP")
    steps.required = True

    c = steps.add_parser(
        "convert",
        help="convert every item of a batch (DICOM -> NIfTI, microscopy -> OME-Zarr, NIfTI checked)",
        description="Convert the items of batch BATCH into OUT/<item>/ (atomically, with provenance).",
    )
    _common(c, upstream=False)
    add_item_options(c)
    c.set_defaults(func=run_convert)

    d = steps.add_parser(
        "deid",
        help="de-identify every item of a converted batch under its dataset's policy",
        description=(
            "De-identify the items of batch BATCH (originals and UPSTREAM, the converted batch) into "
            "OUT/<item>/. Policies, the key location and the linkage folder come from the config."
        ),
    )
    _common(d, upstream=True)
    add_config_options(d)
    d.set_defaults(func=run_deid)

    g = steps.add_parser(
        "leakcheck",
        help="run the leak gate on every item of a de-identified batch",
        description=(
            "Check each item of batch BATCH in UPSTREAM (the de-identified batch) against its "
            "originals; write OUT/<item>.json with status clean, leak or quarantined."
        ),
    )
    _common(g, upstream=True)
    g.set_defaults(func=run_leakcheck)


def _common(p: argparse.ArgumentParser, *, upstream: bool) -> None:
    p.add_argument(
        "manifest",
        type=Path,
        metavar="MANIFEST",
        help="the scan's manifest (or a folder of item JSONs from scan --items-dir)",
    )
    p.add_argument("batch", type=int, metavar="BATCH", help="batch number")
    if upstream:
        p.add_argument(
            "upstream",
            type=Path,
            metavar="UPSTREAM",
            help="previous step's batch folder (or its .tree.json marker)",
        )
    p.add_argument(
        "out",
        type=Path,
        metavar="OUT",
        help="batch folder (or .tree.json marker) to write (replaced)",
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")


def _restrict_stage_folder(out: Path) -> None:
    """The stage folder of a batch (``results/convert``, ``results/deid``...) is owner-only."""
    from imagedepot.io import restrict_folder

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    restrict_folder(Path(out).parent)


def _report(summary: dict) -> int:
    counts: dict[str, int] = {}
    for status in summary["items"].values():
        counts[status] = counts.get(status, 0) + 1
    print(f"batch {summary['batch']} {summary['step']}: {counts or 'no items'}")
    return 0


def _progress(args: argparse.Namespace) -> Progress:
    """The progress display of a batch step (a bar on a terminal, log lines otherwise)."""
    from imagedepot.progress import progress_for

    return progress_for(f"batch {args.batch} {args.batch_step}", "item")


def run_convert(args: argparse.Namespace) -> int:
    """Convert a batch."""
    from imagedepot.pipeline import run_batch

    opts = convert_options(args)
    _restrict_stage_folder(args.out)
    with _progress(args) as progress:
        summary = run_batch(
            "convert",
            args.manifest,
            args.batch,
            args.out,
            convert_options=opts,
            jobs=args.jobs,
            progress=progress,
        )
    return _report(summary)


def run_deid(args: argparse.Namespace) -> int:
    """De-identify a batch."""
    from imagedepot.pipeline import DeidSettings, run_batch

    config = get_config(args)
    assert config is not None
    ps = config["pseudonymisation"]
    settings = DeidSettings(
        policies={name: Path(p) for name, p in config["policies"].items()},
        key_env=ps.get("key_env", "IMAGEDEPOT_PSEUDONYM_KEY"),
        key_file=Path(ps["key_file"]) if ps.get("key_file") else None,
        linkage_dir=Path(ps["linkage_dir"]),
        key_permissions=ps.get("key_permissions", "warn"),
    )
    if settings.key_file is not None and not os.environ.get(settings.key_env or ""):
        from imagedepot.deid.pseudonym import check_key_file_mode

        if settings.key_file.is_file():  # refused here once, not per item
            check_key_file_mode(settings.key_file, settings.key_permissions)
    _restrict_stage_folder(args.out)
    with _progress(args) as progress:
        summary = run_batch(
            "deidentify",
            args.manifest,
            args.batch,
            args.out,
            upstream=args.upstream,
            deid_settings=settings,
            jobs=args.jobs,
            progress=progress,
        )
    return _report(summary)


def run_leakcheck(args: argparse.Namespace) -> int:
    """Leak-check a batch."""
    from imagedepot.pipeline import run_batch

    _restrict_stage_folder(args.out)
    with _progress(args) as progress:
        summary = run_batch(
            "leakcheck",
            args.manifest,
            args.batch,
            args.out,
            upstream=args.upstream,
            jobs=args.jobs,
            progress=progress,
        )
    return _report(summary)
