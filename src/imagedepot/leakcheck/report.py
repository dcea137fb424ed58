"""The leak gate's report: :class:`LeakReport`, what :func:`imagedepot.leakcheck.scan` returns.

A report names the file, the place in the file and the *kind* of identifier found, never the
identifier itself: a hit carries at most ``token``, a 10-character prefix of a SHA-256 salted with
a random value drawn for each scan, which groups the hits of one identifier inside one report but
cannot be reversed (even for a date) nor linked across runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagedepot.errors import LeakError

#: Maximum hits kept in a report (the counts stay exact).
MAX_HITS = 10_000


@dataclass
class LeakReport:
    """Outcome of the leak gate. Holds no identifier values (see the module docstring).

    Attributes
    ----------
    status
        ``"clean"`` or ``"leak"``.
    hits
        One ``{"file", "location", "kind", "token"}`` dict per file, place and kind (``token``
        identifies the longest identifier found there): ``file`` relative to the output's parent
        folder (path parts that contain an identifier replaced by ``<redacted-…>``),
        ``location`` the place in the file (``PatientName``, ``a.b[0]``, ``line 12``,
        ``filename``...), ``kind`` the kind of identifier, ``token`` a salted hash prefix.
        At most :data:`MAX_HITS` are kept.
    counts
        ``hits`` (all, also those beyond :data:`MAX_HITS`), ``files_with_hits`` and hits per kind.
    """

    status: str = "clean"
    hits: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    files_scanned: int = 0
    files_names_only: int = 0
    folders_scanned: int = 0
    identifiers: dict[str, int] = field(default_factory=dict)
    allowed_kinds: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def leaked(self) -> bool:
        """True when at least one identifier was found."""
        return self.status == "leak"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "status": self.status,
            "counts": dict(self.counts),
            "hits": [dict(h) for h in self.hits],
            "files_scanned": self.files_scanned,
            "files_names_only": self.files_names_only,
            "folders_scanned": self.folders_scanned,
            "identifiers": dict(self.identifiers),
            "allowed_kinds": list(self.allowed_kinds),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line for logs (counts and kinds only)."""
        if not self.leaked:
            return f"clean: {self.files_scanned} files scanned, {self.folders_scanned} folders"
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.get("by_kind", {}).items()))
        return (
            f"leak: {self.counts.get('hits', 0)} hits in {self.counts.get('files_with_hits', 0)} "
            f"files ({kinds})"
        )

    def raise_for_leak(self) -> None:
        """Raise :class:`LeakError` (with counts only) when the status is ``leak``."""
        if self.leaked:
            raise LeakError(self.summary())
