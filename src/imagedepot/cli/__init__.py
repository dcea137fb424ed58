"""The ``imagedepot`` command line.

Each verb lives in its own module of this package with a ``register(subparsers)`` function that adds
its parser and sets ``func`` to a ``run(args) -> int`` callable; ``run`` calls one library function.
Heavy libraries are imported inside ``run`` so ``imagedepot --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from imagedepot import __version__
from imagedepot.errors import ImagedepotError

#: Verb modules, in the order ``--help`` lists them (the order of the pipeline).
VERBS = (
    "demo",
    "sheet",
    "scan",
    "convert",
    "deid",
    "leakcheck",
    "batch",
    "fhir",
    "stage",
    "deposit",
    "summary",
    "report",
    "status",
    "schedule",
    "validate",
)

#: Verbs that write the trusted zone (the draft sample sheet, results/ingest, convert, deid,
#: leakcheck, bids, fhir, report): their outputs hold original names, paths, MRNs, birth dates or
#: burned-in text, so they are created 0600 / 0700 (:func:`imagedepot.io.enter_trusted_zone`).
#: Staged output (``stage``) keeps the usual modes.
TRUSTED_VERBS = frozenset(
    {"sheet", "scan", "convert", "deid", "leakcheck", "batch", "fhir", "report"}
)

log = logging.getLogger("imagedepot")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every verb registered."""
    parser = argparse.ArgumentParser(
        prog="imagedepot",
        description=(
            "Take raw imaging data from instruments to open formats, de-identified, linked to FHIR "
            "and staged for deposit. Each verb is one stage of the Snakemake workflow."
        ),
    )
    parser.add_argument("--version", action="version", version=f"imagedepot {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in VERBS:
        module = importlib.import_module(f"imagedepot.cli.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 error the user can fix, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        if args.verb in TRUSTED_VERBS:
            from imagedepot.io import enter_trusted_zone

            enter_trusted_zone()
        return int(args.func(args) or 0)
    except ImagedepotError as exc:
        log.error("%s", exc)
        return 1
    finally:
        os.umask(umask)  # main() may be called in-process (tests): leave the umask as found
