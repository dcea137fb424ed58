"""What :func:`~imagedepot.deid.dicom.deidentify_dicom` did: :class:`DeidReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagedepot.deid import profile


def without_paths(rows: list[dict[str, Any]], *, include_private: bool) -> list[dict[str, Any]]:
    """Copies of report rows (skipped files, errors), their input ``path`` left out unless
    ``include_private`` (paths name the originals: trusted zone only)."""
    if include_private:
        return [dict(r) for r in rows]
    return [{k: v for k, v in r.items() if k != "path"} for r in rows]


@dataclass
class DeidReport:
    """What :func:`deidentify_dicom` did.

    ``linkage`` holds ``(original subject, pseudonym)`` rows for the caller to store in the
    linkage table; it and the input paths in ``errors`` are left out of :meth:`to_dict`
    unless ``include_private`` is true, so the dict can go to provenance.
    """

    output: str
    files_written: list[str] = field(default_factory=list)
    n_inputs: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    options_claimed: list[str] = field(default_factory=list)
    edition: str = profile.EDITION
    pseudonym: str = ""
    pixel_cleaned: list[dict[str, Any]] = field(default_factory=list)
    #: Per file with text found in its pixels: boxes, engines, what was blanked, the encoding.
    pixel_text: list[dict[str, Any]] = field(default_factory=list)
    #: The pixel-text settings and engines (names, versions, model SHA-256).
    pixel_text_engine: dict[str, Any] = field(default_factory=dict)
    #: Files read by the text detector / files not read (``ocr_series: sample``).
    ocr_files: int = 0
    ocr_sampled_out: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    linkage: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self, *, include_private: bool = False) -> dict[str, Any]:
        """Plain-JSON form (without linkage and input paths unless ``include_private``)."""

        out: dict[str, Any] = {
            "output": self.output,
            "files_written": list(self.files_written),
            "n_inputs": self.n_inputs,
            "n_written": len(self.files_written),
            "actions": dict(sorted(self.actions.items())),
            "options": list(self.options),
            "options_claimed": list(self.options_claimed),
            "edition": self.edition,
            "pseudonym": self.pseudonym,
            "pixel_cleaned": [dict(r) for r in self.pixel_cleaned],
            "pixel_text": [dict(r) for r in self.pixel_text],
            "pixel_text_engine": dict(self.pixel_text_engine),
            "ocr_files": self.ocr_files,
            "ocr_sampled_out": self.ocr_sampled_out,
            "skipped": without_paths(self.skipped, include_private=include_private),
            "errors": without_paths(self.errors, include_private=include_private),
        }
        if include_private:
            out["linkage"] = [list(row) for row in self.linkage]
        return out
