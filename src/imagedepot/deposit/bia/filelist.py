"""The File List of a dataset: one row per uploaded file, ``Files`` column first.

An OME-Zarr image is one File List row (its folder), as the archive takes ``.zarr`` folders whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from imagedepot.deposit.bia.ome_metadata import _ome_xml_of, ome_summary
from imagedepot.io import file_record, iter_files

_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f\\*?\"<>|:]")


def _tree_digest(folder: Path) -> tuple[str, int, int]:
    """sha256 over the sorted ``<sha256>  <relative path>`` lines of a folder; total size; count."""
    lines = []
    total = 0
    for p in iter_files(folder):
        r = file_record(p, folder)
        lines.append(f"{r['sha256']}  {r['path']}\n")
        total += r["size"]
    return hashlib.sha256("".join(lines).encode()).hexdigest(), total, len(lines)


def _file_list_rows(
    dataset: str, upload_ds: Path, items: Sequence[str]
) -> tuple[list[str], list[list[str]], dict[str, dict[str, str]]]:
    """File List rows for the upload tree of one dataset; also the OME summaries per image."""
    header = [
        "Files",
        "Item",
        "Type",
        "Format",
        "Size (bytes)",
        "Files in folder",
        "Checksum",
        "Channels",
    ]
    rows: list[list[str]] = []
    summaries: dict[str, dict[str, str]] = {}
    for item in items:
        base = upload_ds / item
        for entry in sorted(base.iterdir()):
            rel = f"{dataset}/{item}/{entry.name}"
            if entry.is_dir() and entry.name.endswith(".zarr"):
                digest, size, count = _tree_digest(entry)
                xml = _ome_xml_of(entry)
                summary = ome_summary(xml) if xml else {}
                summaries[rel] = summary
                rows.append(
                    [
                        rel,
                        item,
                        "image",
                        "OME-Zarr",
                        str(size),
                        str(count),
                        f"sha256-tree:{digest}",
                        summary.get("channels", ""),
                    ]
                )
            elif entry.is_dir():
                for p in iter_files(entry):
                    r = file_record(p, upload_ds)
                    rows.append(
                        [
                            f"{dataset}/{r['path']}",
                            item,
                            "supporting file",
                            p.suffix.lstrip(".") or "file",
                            str(r["size"]),
                            "1",
                            f"sha256:{r['sha256']}",
                            "",
                        ]
                    )
            else:
                r = file_record(entry, upload_ds)
                if entry.name == "provenance.json":
                    kind, fmt = "provenance record", "JSON"
                elif entry.name.endswith((".ome.tif", ".ome.tiff")):
                    kind, fmt = "image", "OME-TIFF"
                else:
                    kind, fmt = "supporting file", entry.suffix.lstrip(".") or "file"
                rows.append(
                    [rel, item, kind, fmt, str(r["size"]), "1", f"sha256:{r['sha256']}", ""]
                )
    return header, rows, summaries


def validate_file_list(
    header: Sequence[str], rows: Sequence[Sequence[str]], upload_root: str | Path | None = None
) -> list[str]:
    """Check a File List table: ``Files`` first, one path per row, paths the archive accepts.

    With ``upload_root``, every path must exist under it (a file, or a ``.zarr`` folder).
    """
    problems: list[str] = []
    if not header or header[0] != "Files":
        problems.append("File List: the first column of the header must be 'Files'")
    if len(set(header)) != len(header) or any(not h.strip() for h in header):
        problems.append("File List: column names must be unique and non-empty")
    if not rows:
        problems.append("File List: no file listed")
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            problems.append(f"File List: row {n}: {len(row)} cells for {len(header)} columns")
            continue
        path = row[0]
        why = _path_problem(path)
        if why:
            problems.append(f"File List: row {n}: path {path!r} {why}")
            continue
        if path in seen:
            problems.append(f"File List: row {n}: path {path!r} listed twice")
        seen.add(path)
        if upload_root is not None and not (Path(upload_root) / path).exists():
            problems.append(f"File List: row {n}: {path!r} is not in the upload folder")
    return problems


def _path_problem(path: str) -> str | None:
    if not path:
        return "is empty"
    if _BAD_PATH_CHARS.search(path):
        return 'has a character the archive does not accept (control, \\ * ? " < > | :)'
    if path.startswith("/") or path.endswith("/") or "//" in path:
        return "must be relative, without leading, trailing or double '/'"
    if any(part in (".", "..") for part in path.split("/")):
        return "must not contain '.' or '..' parts"
    return None
