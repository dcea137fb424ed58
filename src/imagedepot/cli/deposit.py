"""``imagedepot deposit``: network uploads of staged packages (separate workflow targets)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``deposit`` verb with one subcommand per repository type."""
    from imagedepot.cli import bia, xnat

    p = sub.add_parser(
        "deposit",
        help="upload staged packages to XNAT or the BioImage Archive (network)",
        description=(
            "Upload what `imagedepot stage` prepared, verify it on the server and record it. "
            "Idempotent: a re-run transfers only what is missing or changed. Credentials come from "
            "the environment or ~/.netrc, never from config files, and are never logged."
        ),
    )
    dsub = p.add_subparsers(dest="deposit_command", metavar="REPOSITORY")
    dsub.required = True
    xnat.register_deposit(dsub)
    bia.register_deposit(dsub)
