"""What :func:`imagedepot.deid.ome.deidentify_ome` did (:class:`OmeDeidReport`), and the
auxiliary-image step that OME-TIFF and OME-Zarr share (it records its decisions in the report)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError
from imagedepot.pixeltext.dicom import PixelTextSettings

log = logging.getLogger(__name__)


@dataclass
class OmeDeidReport:
    """What :func:`deidentify_ome` did (counts and pseudonymous names only)."""

    format: str
    output: str
    xml: dict[str, int] = field(default_factory=dict)
    xml_documents: int = 0
    zarr_names_replaced: int = 0
    zarr_fields_removed: int = 0
    zarr_dates: dict[str, int] = field(default_factory=dict)
    tiff_tags_cleaned: dict[str, int] = field(default_factory=dict)
    policy_options: list[str] = field(default_factory=list)
    auxiliary_images: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "format": self.format,
            "output": self.output,
            "xml": dict(self.xml),
            "xml_documents": self.xml_documents,
            "zarr_names_replaced": self.zarr_names_replaced,
            "zarr_fields_removed": self.zarr_fields_removed,
            "zarr_dates": dict(self.zarr_dates),
            "tiff_tags_cleaned": dict(self.tiff_tags_cleaned),
            "policy_options": list(self.policy_options),
            "auxiliary_images": [dict(d) for d in self.auxiliary_images],
        }

    def _add_xml(self, summary: dict[str, int]) -> None:
        merged = Counter(self.xml)
        merged.update(summary)
        self.xml = dict(sorted(merged.items()))
        self.xml_documents += 1


def _auxiliary_images(
    src: Path, tmp: Path, report: OmeDeidReport, settings: PixelTextSettings
) -> None:
    """Screen the auxiliary series of the copy ``tmp`` and remove those the policy removes
    (:mod:`imagedepot.deid.auxiliary`); what cannot be done safely raises :class:`InputError`."""
    from imagedepot.deid import auxiliary as aux

    try:
        entries = aux.list_series(tmp)
    except (ValueError, OSError) as exc:
        raise InputError(src, f"auxiliary images: series cannot be listed ({exc})") from exc
    decisions = aux.screen(tmp, entries, settings)
    drop = {d.series for d in decisions if d.removed}
    try:
        if drop and tmp.is_dir():
            aux.remove_zarr_series(tmp, entries, drop)
        elif drop:
            aux.remove_tiff_series(tmp, drop)
    except (ValueError, OSError) as exc:
        raise InputError(src, f"auxiliary images cannot be removed: {exc}") from exc
    for d in decisions:
        log.info("series %d: %s", d.series, d.message)
    report.auxiliary_images = [d.to_dict() for d in decisions]
