"""The manifest of a scan: its items (:class:`Item`), quarantined files and counts
(:class:`Manifest`), item numbering, and the fingerprint of the originals.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.io import write_json
from imagedepot.provenance import now, tool_versions

MANIFEST_VERSION = 1


KIND_LETTER = {"dicom": "d", "microscopy": "m", "nifti": "n"}


@dataclass
class Item:
    """One unit of work: a DICOM series, a microscopy image or a NIfTI file (see docs/architecture.md)."""

    id: str
    kind: str
    format: str
    files: list[dict[str, Any]]
    dataset: str | None = None
    subject: str | None = None
    policy: str | None = None
    destinations: list[str] = field(default_factory=list)
    status: str = "pending"
    reason: str | None = None
    #: Latest modification time of the item's files (UTC): the timestamp of its staged records
    #: (:func:`imagedepot.provenance.data_time`), so reruns stage the same bytes.
    data_time: str | None = None
    batch: int = 0
    dicom: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as written to the manifest."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Manifest:
    """The result of a scan: items, quarantined files and the accounting of every file."""

    items: list[Item] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    inbox: str | None = None
    samples: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "manifest_version": MANIFEST_VERSION,
            "created": now(),
            "inbox": self.inbox,
            "samples": self.samples,
            "versions": tool_versions(),
            "counts": self.counts(),
            "items": [i.to_dict() for i in self.items],
            "quarantine": self.quarantine,
        }

    def counts(self) -> dict[str, int]:
        """Numbers of items by status and of quarantined loose files."""
        by: dict[str, int] = defaultdict(int)
        for i in self.items:
            by[i.status] += 1
        files = sum(len(i.files) for i in self.items) + len(self.quarantine)
        return {
            "items": len(self.items),
            "items_pending": by["pending"],
            "items_excluded": by["excluded"],
            "files_quarantined": len(self.quarantine),
            "files": files,
        }

    def quarantine_lines(self, limit: int = 5) -> list[str]:
        """The first ``limit`` quarantined entries as console lines (path relative to the inbox,
        reason), and a line counting the rest; empty when nothing is quarantined."""
        lines = []
        for q in self.quarantine[:limit]:
            path = q["path"]
            if self.inbox is not None:
                with contextlib.suppress(ValueError):
                    path = str(Path(path).relative_to(self.inbox))
            lines.append(f"  quarantined {path}: {q['reason']}")
        rest = len(self.quarantine) - limit
        if rest > 0:
            lines.append(f"  ... and {rest} more quarantined, each with its reason in the manifest")
        return lines

    def write(self, path: str | Path, items_dir: str | Path | None = None) -> None:
        """Write the manifest, and one JSON per item into ``items_dir`` when given."""
        if items_dir is not None:
            d = Path(items_dir)
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob("*.json"):
                stale.unlink()
            for item in self.items:
                write_json(d / f"{item.id}.json", item.to_dict())
        write_json(path, self.to_dict())


def _number(items: Iterable[Item], prefix: str) -> None:
    counters: dict[str, int] = defaultdict(int)
    for item in items:
        letter = "x" if item.format == "dicomdir" else KIND_LETTER[item.kind]
        counters[letter] += 1
        item.id = f"{prefix}-{letter}{counters[letter]:03d}"


def files_fingerprint(paths: Sequence[str | Path]) -> str:
    """A SHA-256 over path, size and modification time of each file (``missing`` for a file that is
    gone): cheap change detection for many originals without reading them."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()
