"""RO-Crate metadata, read by the ``rocrate`` library (ro-crate-py): the metadata descriptor
and root dataset parse, and every data entity with a local identifier exists in the crate."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from imagedepot.validate.base import ValidationResult, need

METADATA_NAME = "ro-crate-metadata.json"


def check_crate(path: Path, result: ValidationResult) -> None:
    """Check the crate whose ``ro-crate-metadata.json`` is ``path``."""
    try:
        need("rocrate", "rocrate")
        from rocrate.rocrate import ROCrate
    except RuntimeError as exc:
        result.errors.append(str(exc))
        return
    root = path.parent
    try:
        crate = ROCrate(str(root))
    except Exception as exc:  # the library raises many types for a malformed crate
        result.errors.append(f"rocrate cannot read the crate: {type(exc).__name__}: {exc}")
        return
    entities = list(crate.data_entities)
    result.info["data_entities"] = len(entities)
    result.info["name"] = crate.name
    for entity in entities:
        ident = str(entity.id)
        parsed = urllib.parse.urlparse(ident)
        if parsed.scheme or ident.startswith("#"):
            continue  # web resources and local identifiers need no file
        rel = urllib.parse.unquote(ident).rstrip("/")
        target = root / rel
        if not target.exists():
            result.errors.append(f"data entity {ident!r} is not in the crate")
        elif "File" in entity.type and not target.is_file():
            result.errors.append(f"data entity {ident!r} is a File but not a file")


__all__ = ["METADATA_NAME", "check_crate"]
