"""``MANIFEST.sha256`` (``sha256sum -c`` format): every listed file present with its checksum,
and every file under the manifest's root listed.

The root is the manifest's folder when the listed paths are there (a staged folder), else the
first of its parent and the parent's ``upload/`` where they are (a BioImage Archive package,
whose ``submission/MANIFEST.sha256`` lists ``upload/``). A staged folder's own records
(``MANIFEST.sha256``, ``manifest.json``, ``summary.json``) need not be listed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from imagedepot.validate.base import ValidationResult

MANIFEST_NAME = "MANIFEST.sha256"
#: Files of a staged folder that describe it and are not in its manifest.
UNLISTED = frozenset({MANIFEST_NAME, "manifest.json", "summary.json"})
MAX_LISTED = 20

_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<path>.+)")


def _root(path: Path, listed: list[str]) -> Path | None:
    base = path.parent
    for root in (base, base.parent, base.parent / "upload"):
        if all((root / p).is_file() for p in listed[:3]):
            return root
    return None


def check_manifest(path: Path, result: ValidationResult) -> None:
    """Check ``path`` (a ``MANIFEST.sha256``) against the files it lists."""
    from imagedepot.io import iter_files, sha256_file

    entries: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            result.errors.append(f"line {n}: not '<sha256>  <path>'")
            continue
        entries[m.group("path")] = m.group("digest").lower()
    result.info["files"] = len(entries)
    root = _root(path, list(entries))
    if root is None:
        result.errors.append("the listed files are not beside the manifest or in its package")
        return
    result.info["root"] = os.path.relpath(root, path.parent)
    problems: list[str] = []
    for rel, digest in sorted(entries.items()):
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{rel}: checksum differs from the manifest")
    for p in iter_files(root):
        rel = p.relative_to(root).as_posix()
        if rel not in entries and not (root == path.parent and rel in UNLISTED):
            problems.append(f"{rel}: not in the manifest")
    result.errors += problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        result.errors.append(f"... {len(problems) - MAX_LISTED} more problem(s)")


__all__ = ["MANIFEST_NAME", "check_manifest"]
