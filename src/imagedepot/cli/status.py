"""``imagedepot status``: where each dataset stands in deposition, per destination."""

from __future__ import annotations

import argparse
import json

from imagedepot.state import DEFAULT_DB


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``status`` verb."""
    p = sub.add_parser(
        "status",
        help="print the deposition state of every dataset (staged/uploaded/verified/submitted/failed)",
        description=(
            "Read the deposition state database (written by `imagedepot deposit ... --state-db` and "
            "`imagedepot schedule run`) and print one line per dataset and destination: state, "
            "attempts, accession, last change and, for failures, the reason. Read-only: safe while a "
            "run is in progress."
        ),
    )
    p.add_argument("--db", default=DEFAULT_DB, help=f"state database (default: {DEFAULT_DB})")
    p.add_argument("--destination", help="only this destination")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON); exit 1 when a dataset is in the failed state."""
    from imagedepot.state import StateDB, format_table

    with StateDB(args.db, readonly=True) as db:
        rows = db.rows(args.destination)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    elif rows:
        print(format_table(rows), end="")
    else:
        print(f"{args.db}: no deposition recorded yet")
    return 1 if any(r.state == "failed" for r in rows) else 0
