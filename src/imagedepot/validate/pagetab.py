"""BioStudies PageTab submissions (JSON and TSV) and their File Lists (TSV and JSON).

* PageTab JSON: the structure of the PageTab specification and, for BioImage Archive
  submissions, the REMBI sections and fields (:func:`imagedepot.deposit.bia.validate_pagetab`);
  the root section must be a ``Study``; every ``File List`` a section names must exist.
* PageTab TSV: the first line is ``Submission``, a ``Study`` section follows, every ``File List``
  named exists.
* File List (TSV with ``Files`` as the first column, or the JSON form): the table's structure
  (:func:`imagedepot.deposit.bia.validate_file_list`), and every listed path present with the
  size its ``Size (bytes)`` column gives (a folder such as an OME-Zarr counts the bytes of all
  its files). Paths are relative to the File List's upload root: the nearest folder above the
  File List under which the listed paths exist.

A File List named by a PageTab is looked up beside the PageTab, in the folder above it, and in
that folder's ``upload/`` (the layout of a BioImage Archive package).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagedepot.validate.base import ValidationResult

#: Names of the File List column that gives the size in bytes.
SIZE_COLUMNS = ("Size (bytes)", "size", "Size")


def is_pagetab(doc: Any) -> bool:
    """True for a JSON document shaped like a PageTab submission."""
    if not isinstance(doc, dict):
        return False
    if doc.get("type") == "submission":
        return True
    return "type" not in doc and "section" in doc and ("attributes" in doc or "accno" in doc)


def is_file_list_json(doc: Any) -> bool:
    """True for the JSON form of a File List: a list of ``{"path": ..., "attributes": [...]}``."""
    return (
        isinstance(doc, list)
        and bool(doc)
        and all(
            isinstance(r, dict) and "path" in r and set(r) <= {"path", "attributes", "type"}
            for r in doc
        )
    )


def read_tsv(path: Path) -> list[list[str]]:
    """Rows of a TSV file (blank lines kept as empty rows)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [list(r) for r in csv.reader(fh, delimiter="\t")]


def tsv_kind(path: Path) -> str | None:
    """``file-list`` or ``pagetab-tsv`` from the first cell of a TSV file, else ``None``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().split("\t", 1)[0].strip()
    except OSError:
        return None
    return {"Files": "file-list", "Submission": "pagetab-tsv"}.get(first)


def _file_list_places(doc_path: Path, ref: str) -> list[Path]:
    base = doc_path.parent
    return [base / ref, base.parent / ref, base.parent / "upload" / ref]


def _check_file_list_refs(path: Path, refs: Sequence[str], result: ValidationResult) -> None:
    result.info["file_lists"] = list(refs)
    for ref in refs:
        if not any(p.is_file() for p in _file_list_places(path, ref)):
            result.errors.append(f"File List {ref!r} is not beside the PageTab or in its package")


def _file_list_attrs(sec: Any, out: list[str]) -> None:
    if isinstance(sec, list):
        for s in sec:
            _file_list_attrs(s, out)
        return
    if not isinstance(sec, dict):
        return
    for a in sec.get("attributes") or []:
        if isinstance(a, dict) and a.get("name") == "File List" and a.get("value"):
            out.append(str(a["value"]))
    for sub in sec.get("subsections") or []:
        _file_list_attrs(sub, out)


def check_pagetab(path: Path, result: ValidationResult, doc: Any) -> None:
    """Check a PageTab JSON submission read from ``path``."""
    from imagedepot.deposit.bia import validate_pagetab

    result.errors += validate_pagetab(doc)
    root = doc.get("section") if isinstance(doc, dict) else None
    if isinstance(root, dict) and root.get("type") != "Study":
        problem = "Study: the root section must have type 'Study'"
        if problem not in result.errors:
            result.errors.append(problem)
    refs: list[str] = []
    _file_list_attrs(root, refs)
    _check_file_list_refs(path, refs, result)


def check_pagetab_tsv(path: Path, result: ValidationResult) -> None:
    """Check a PageTab TSV submission."""
    rows = read_tsv(path)
    firsts = [r[0].strip() for r in rows if r and r[0].strip()]
    if not firsts or firsts[0] != "Submission":
        result.errors.append("PageTab TSV: the first line must start with 'Submission'")
    if "Study" not in firsts:
        result.errors.append("PageTab TSV: no 'Study' section")
    refs = [r[1].strip() for r in rows if len(r) > 1 and r[0].strip() == "File List"]
    _check_file_list_refs(path, refs, result)


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _upload_root(path: Path, listed: Sequence[str]) -> Path | None:
    """The folder above ``path`` under which most listed paths exist (the nearest on a tie)."""
    best, found = None, 0
    for root in [path.parent, *path.parent.parents][:6]:
        n = sum(1 for p in listed if (root / p).exists())
        if n > found:
            best, found = root, n
    return best


def _check_rows(
    path: Path, header: list[str], rows: list[list[str]], result: ValidationResult
) -> None:
    from imagedepot.deposit.bia import validate_file_list

    result.errors += validate_file_list(header, rows)
    result.info["files"] = len(rows)
    listed = [r[0] for r in rows if r and len(r) == len(header)]
    root = _upload_root(path, listed)
    if root is None:
        result.errors.append("File List: the listed files are not under any folder above it")
        return
    result.info["upload_root"] = os.path.relpath(root, path.parent)
    size_col = next((header.index(c) for c in SIZE_COLUMNS if c in header), None)
    for n, row in enumerate(rows, start=2):
        if not row or len(row) != len(header):
            continue
        target = root / row[0]
        if not target.exists():
            result.errors.append(f"File List: row {n}: {row[0]!r} is missing")
            continue
        if size_col is None or not row[size_col].strip():
            continue
        size = _tree_size(target) if target.is_dir() else target.stat().st_size
        if row[size_col].strip() != str(size):
            result.errors.append(
                f"File List: row {n}: {row[0]!r} has {size} bytes, the list says "
                f"{row[size_col].strip()}"
            )


def check_file_list_tsv(path: Path, result: ValidationResult) -> None:
    """Check a File List TSV."""
    rows = [r for r in read_tsv(path) if any(c.strip() for c in r)]
    if not rows:
        result.errors.append("File List: empty file")
        return
    _check_rows(path, rows[0], rows[1:], result)


def check_file_list_json(path: Path, result: ValidationResult, doc: list[dict[str, Any]]) -> None:
    """Check the JSON form of a File List (its attributes as columns)."""
    header = ["Files"]
    for entry in doc:
        for a in entry.get("attributes") or []:
            if isinstance(a, dict) and a.get("name") not in header:
                header.append(str(a.get("name")))
    rows = []
    for entry in doc:
        values = {
            str(a.get("name")): str(a.get("value", ""))
            for a in entry.get("attributes") or []
            if isinstance(a, dict)
        }
        rows.append([str(entry["path"]), *(values.get(h, "") for h in header[1:])])
    _check_rows(path, header, rows, result)


def read_json(path: Path) -> Any:
    """The JSON document in ``path``, or ``None`` when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


__all__ = [
    "check_file_list_json",
    "check_file_list_tsv",
    "check_pagetab",
    "check_pagetab_tsv",
    "is_file_list_json",
    "is_pagetab",
    "read_json",
    "tsv_kind",
]
