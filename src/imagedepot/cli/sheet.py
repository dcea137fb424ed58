"""``imagedepot sheet``: draft a sample sheet from a folder (:func:`imagedepot.sheet.draft_sheet`)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sheet`` verb."""
    p = sub.add_parser(
        "sheet",
        help="draft a sample sheet from a folder (DICOM grouped per patient and study)",
        description=(
            "Scan INBOX and write a draft sample sheet: DICOM files grouped per Patient ID and "
            "study into datasets named without identifiers (dcm-001, dcm-002...), their subject "
            "the Patient ID; microscopy and NIfTI per image or per folder (--per), their subject "
            "left to fill. A dataset whose folder holds other datasets' files (a flat PACS "
            "export) gets a file_list beside the sheet (<sheet name>.files/). Policy and "
            "destinations are left to fill unless given. Prints what it grouped and what it left "
            "out; then point the config's `samples` at the sheet and `inbox` at INBOX, and run "
            "the workflow. The sheet names patients: keep it in the trusted zone."
        ),
    )
    p.add_argument("inbox", help="folder to scan (the workflow's inbox)")
    p.add_argument("-o", "--out", required=True, metavar="SHEET", help="sheet to write (.tsv/.csv)")
    p.add_argument("--policy", default="", help="policy name for every row (default: to fill)")
    p.add_argument(
        "--destination",
        action="append",
        default=[],
        metavar="NAME",
        help="destination for every row (repeat for several; default: to fill)",
    )
    p.add_argument(
        "--per",
        choices=("file", "folder"),
        default="file",
        help="microscopy and NIfTI: one dataset per image (default) or per folder",
    )
    p.add_argument("--force", action="store_true", help="replace an existing sheet and its lists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draft the sheet, write it, print what was grouped."""
    from imagedepot.io import check_overwrite
    from imagedepot.progress import progress_for
    from imagedepot.sheet import draft_sheet, summary_lines

    check_overwrite(args.out, args.force)
    with progress_for("sheet") as progress:
        draft = draft_sheet(
            args.inbox,
            args.out,
            policy=args.policy,
            destinations=args.destination,
            per=args.per,
            progress=progress,
        )
    draft.write(force=args.force)
    for line in summary_lines(draft):
        print(line)
    return 0
