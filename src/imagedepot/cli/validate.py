"""``imagedepot validate``: check files and release folders by kind (exit 1 if any is invalid)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from imagedepot.validate import ValidationResult

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` verb."""
    p = sub.add_parser(
        "validate",
        help="check outputs and staged folders: DICOM, FHIR, PageTab, BagIt, RO-Crate, images",
        description="Check each PATH; folders are walked and every file is checked by kind, one "
        "line each: de-identified DICOM (PS3.15 markers, no private tags but the safe list when "
        "retained, IOD validity by dciodvfy from dicom3tools), FHIR bundles (fhir.resources, R5 "
        "or R4B as declared; references), PageTab JSON and TSV and their File Lists (every "
        "listed file present with its size), BagIt bags (bagit: checksums, completeness), "
        "RO-Crate metadata (rocrate), MANIFEST.sha256, OME-Zarr (ome-zarr-models), OME-TIFF "
        "(ome-types) and NIfTI (nibabel). Files of other kinds met in a folder are listed as "
        "skipped. `imagedepot validate results/stage/<destination>` is the release check run "
        "before upload. Exits 1 if any path is invalid.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file or folder to check")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def report(results: list[ValidationResult], stream: TextIO | None = None) -> None:
    """Write one line per result (errors indented below an invalid one)."""
    out = stream or sys.stdout
    for r in results:
        label = {"valid": "valid  ", "invalid": "INVALID", "skipped": "skipped"}[r.status]
        out.write(f"{label} {r.kind:11} {r.path}\n")
        for error in r.errors:
            out.write(f"    {error}\n")


def run(args: argparse.Namespace) -> int:
    """Validate every path; 0 when all are valid, else 1."""
    from imagedepot.validate import validate_paths

    results = validate_paths(args.paths)
    if args.json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        report(results)
    bad = [r.path for r in results if r.status == "invalid"]
    checked = sum(1 for r in results if r.status != "skipped")
    if bad:
        log.error("%d of %d checked invalid", len(bad), checked)
        return 1
    if not checked:
        log.error("nothing to check in %s", ", ".join(args.paths))
        return 1
    log.info("%d checked, all valid (%d skipped)", checked, len(results) - checked)
    return 0
