"""BagIt bags, checked by the Library of Congress ``bagit`` library: the declaration, every
payload and tag checksum, and completeness (no file missing, none added, Payload-Oxum)."""

from __future__ import annotations

from pathlib import Path

from imagedepot.validate.base import ValidationResult, need

#: Problems listed one by one (the count is always in ``info``).
MAX_LISTED = 20


def is_bag(path: Path) -> bool:
    """True for a folder with a BagIt declaration."""
    return path.is_dir() and (path / "bagit.txt").is_file()


def check_bag(path: Path, result: ValidationResult) -> None:
    """Validate the bag at ``path`` with ``bagit``."""
    try:
        bagit = need("bagit", "bagit")
    except RuntimeError as exc:
        result.errors.append(str(exc))
        return
    details: list[str] = []
    try:
        bag = bagit.Bag(str(path))
        result.info["bagit_version"] = bag.version
        result.info["payload_files"] = sum(1 for _ in bag.payload_files())
        try:
            bag.validate(processes=1)
        except bagit.BagValidationError as exc:
            found = [str(d) for d in getattr(exc, "details", None) or []]
            details += found or [str(exc)]
            if not found and "Payload-Oxum" in bag.info:
                # bagit stops at a wrong Payload-Oxum; check again without it to name the files
                del bag.info["Payload-Oxum"]
                bag.validate(processes=1)
    except bagit.BagValidationError as exc:
        details += [str(d) for d in getattr(exc, "details", None) or []] or [str(exc)]
    except bagit.BagError as exc:
        details.append(str(exc))
    if details:
        result.info["problems"] = len(details)
        result.errors += [f"bagit: {d}" for d in details[:MAX_LISTED]]
        if len(details) > MAX_LISTED:
            result.errors.append(f"bagit: ... {len(details) - MAX_LISTED} more problem(s)")


__all__ = ["check_bag", "is_bag"]
