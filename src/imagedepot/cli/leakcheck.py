"""``imagedepot leakcheck``: the leak gate between de-identification and staging.

Wraps :func:`imagedepot.leakcheck.leakcheck`. Exit codes: 0 clean, 3 leak (0 with ``--no-fail``,
the report then tells the workflow what to quarantine), 1 an input or output is missing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: Exit code when identifiers of the originals are found in the outputs.
EXIT_LEAK = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``leakcheck`` verb."""
    p = subparsers.add_parser(
        "leakcheck",
        help="check that no identifier of the originals is left in de-identified outputs",
        description=(
            "Harvest identifiers (names, IDs, dates, UIDs, addresses...) from the ORIGINAL inputs "
            "and look for them in every OUTPUT file and folder name, DICOM header, NIfTI header, "
            "JSON/TSV/XML/text file, OME-XML and Zarr metadata. Pixel data is not scanned. "
            "Usage: 'imagedepot leakcheck ORIGINAL OUTPUT', or 'imagedepot leakcheck ORIGINAL... "
            "--output OUTPUT [--output OUTPUT...]'. The report names files, places and kinds of "
            "identifier, never their values."
        ),
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="ORIGINAL [ORIGINAL...] OUTPUT; without --output the last PATH is the output",
    )
    p.add_argument(
        "--original",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="an original input file or folder (repeatable)",
    )
    p.add_argument(
        "--output",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="an output file or folder to check (repeatable); then every PATH is an original",
    )
    p.add_argument(
        "--identifier",
        action="append",
        default=[],
        metavar="VALUE",
        help=(
            "one more identifier to look for, e.g. the subject's original ID (repeatable; values "
            "on a command line are visible to other users of the machine: prefer "
            "--identifiers-file)"
        ),
    )
    p.add_argument(
        "--identifiers-file",
        type=Path,
        metavar="FILE",
        help="a UTF-8 text file of more identifiers, one per line (blank lines ignored)",
    )
    p.add_argument(
        "--allow-kind",
        action="append",
        default=[],
        metavar="KIND",
        help=(
            "a kind of identifier the policy keeps on purpose (date, institution, device, uid); "
            "its hits are not counted (repeatable)"
        ),
    )
    p.add_argument("--report", type=Path, metavar="JSON", help="write the report here")
    p.add_argument(
        "--no-fail",
        action="store_true",
        help="exit 0 even when identifiers are found (the report says so)",
    )
    p.add_argument(
        "--item",
        type=Path,
        metavar="ITEM.json",
        help=(
            "workflow mode: check one manifest item; PATH is its de-identified folder, the originals "
            "and the subject's original ID come from the item, kinds the item's policy keeps on "
            "purpose are allowed; writes --report (status clean, leak or quarantined) and exits 0"
        ),
    )
    p.set_defaults(func=run, _parser=p)


def _split_paths(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    parser: argparse.ArgumentParser = args._parser
    originals = list(args.original)
    outputs = list(args.output)
    paths = list(args.paths)
    if outputs:
        originals += paths
    elif paths:
        outputs = [paths[-1]]
        originals += paths[:-1]
    if not originals:
        parser.error("no original input given (ORIGINAL OUTPUT, or --original)")
    if not outputs:
        parser.error("no output given (ORIGINAL OUTPUT, or --output)")
    return originals, outputs


def run(args: argparse.Namespace) -> int:
    """Run the leak gate; return 0 (clean), 3 (leak) or 0 with ``--no-fail``."""
    from imagedepot.errors import InputError
    from imagedepot.io import write_json
    from imagedepot.leakcheck import KINDS, leakcheck

    if args.item is not None:
        return _run_item(args)
    originals, outputs = _split_paths(args)
    bad = sorted(set(args.allow_kind) - set(KINDS))
    if bad:
        args._parser.error(f"unknown --allow-kind {', '.join(bad)}; choose from {', '.join(KINDS)}")
    extra = list(args.identifier)
    if args.identifiers_file is not None:
        try:
            text = args.identifiers_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(args.identifiers_file, f"cannot read ({type(exc).__name__})") from exc
        extra += [line.strip() for line in text.splitlines() if line.strip()]
    report = leakcheck(originals, outputs, extra, allow_kinds=args.allow_kind)
    if args.report is not None:
        write_json(args.report, report.to_dict())
    if report.leaked:
        log.error("%s", report.summary())
        return 0 if args.no_fail else EXIT_LEAK
    for warning in report.warnings:
        log.warning("%s", warning)
    log.info("%s", report.summary())
    return 0


def _run_item(args: argparse.Namespace) -> int:
    from imagedepot.pipeline import leakcheck_item

    if len(args.paths) != 1 or args.report is None:
        args._parser.error(
            "--item needs exactly one PATH (the item's de-identified folder) and --report"
        )
    result = leakcheck_item(args.item, args.paths[0], args.report)
    log.info("item %s: %s", result["item"], result["status"])
    return 0
