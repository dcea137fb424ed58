"""``imagedepot validate``: check OME-Zarr, OME-TIFF and NIfTI outputs (exit 1 if any fails)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` verb."""
    p = sub.add_parser(
        "validate",
        help="check OME-Zarr, OME-TIFF and NIfTI outputs",
        description="Check each PATH: OME-Zarr against the ome-zarr-models spec models (every "
        "array readable, label images included), OME-TIFF by parsing its OME-XML with ome-types against the TIFF series, "
        "NIfTI with nibabel (shape, affine, scaling, data). Prints one line per path (or JSON with "
        "--json) and exits 1 if any is invalid.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="output to check")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate every path; 0 when all are valid, else 1."""
    from imagedepot.validate import validate_path

    results = [validate_path(p) for p in args.paths]
    if args.json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        for r in results:
            if r.valid:
                sys.stdout.write(f"valid   {r.kind:8} {r.path}\n")
            else:
                sys.stdout.write(f"INVALID {r.kind:8} {r.path}\n")
                for error in r.errors:
                    sys.stdout.write(f"    {error}\n")
    bad = [r.path for r in results if not r.valid]
    if bad:
        log.error("%d of %d invalid: %s", len(bad), len(results), ", ".join(bad))
        return 1
    return 0
