"""Auxiliary images of microscopy outputs: slide labels, macro photographs, thumbnails.

Whole-slide scanners store a photograph of the slide label (patient names, IDs, barcodes), a macro
photograph of the whole slide and small thumbnails or previews beside the tissue pyramid; they
reach OME-Zarr stores and OME-TIFF files as series of their own. Which series are auxiliary
(:func:`~imagedepot.pixeltext.series.is_auxiliary_name`) and how their pixels are read
(:func:`list_series`, :func:`read_planes`) is :mod:`imagedepot.pixeltext.series`, shared with the
leak gate.

The policy's ``deidentification.pixel_text.auxiliary_images`` says what happens (:func:`screen`):

``remove`` (the default)
    every auxiliary series is removed, whatever it shows: it has no scientific value and a slide
    label must never leave. Nothing is read.
``ocr``
    each auxiliary series is read for text (:func:`imagedepot.pixeltext.planes.find_text_in_planes`:
    the engines and settings of DICOM pixel text, every plane, channels as their maximum and
    minimum) at the highest resolution level that holds at most :data:`MAX_PIXELS` pixels (all
    planes together, channels aside; the detector tiles it). It is kept only when nothing but
    allowed tokens is found; text found, no level small enough, pixels that cannot be decoded
    or an OCR engine missing remove it (fail closed).

:func:`remove_zarr_series` and :func:`remove_tiff_series` remove series and keep the metadata
consistent. The leak gate (:mod:`imagedepot.leakcheck`) checks staged outputs again with
:func:`list_series` and :func:`read_planes`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagedepot.deid.omexml import remove_ome_images
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.pixeltext.series import (
    MAX_PIXELS,
    SeriesEntry,
    UnreadableSeries,
    list_series,
    read_json_object,
    read_planes,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuxiliaryDecision:
    """What :func:`screen` decided for one auxiliary series (no recognised text inside)."""

    series: int
    name: str
    removed: bool
    reason: str
    regions: int = 0

    @property
    def message(self) -> str:
        """``label image removed: text found (2 region(s))``..."""
        return f"{self.name} {'removed' if self.removed else 'kept'}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for the report and provenance."""
        return {
            "series": self.series,
            "name": self.name,
            "action": "removed" if self.removed else "kept",
            "reason": self.reason,
            "text_regions": self.regions,
        }


def _unreadable(exc: Exception) -> str:
    detail = str(exc) if isinstance(exc, UnreadableSeries) else type(exc).__name__
    return f"cannot be read for text: {detail}"


def screen(
    src: str | Path, entries: Sequence[SeriesEntry], settings: PixelTextSettings
) -> list[AuxiliaryDecision]:
    """Decide for every auxiliary series of ``src`` whether it is removed (see the module
    docstring). Other series are not looked at."""
    from imagedepot.pixeltext.planes import find_text_in_planes

    decisions = []
    for entry in entries:
        if not entry.auxiliary:
            continue
        if settings.auxiliary_images == "remove":
            decisions.append(
                AuxiliaryDecision(
                    entry.index, entry.name, True, "pixel_text.auxiliary_images is remove"
                )
            )
            continue
        try:
            regions = find_text_in_planes(read_planes(src, entry), settings)
        except Exception as exc:  # readers, decoders and engines raise many types: fail closed
            log.warning("auxiliary series %d (%s): %s", entry.index, entry.name, exc)
            decisions.append(AuxiliaryDecision(entry.index, entry.name, True, _unreadable(exc)))
            continue
        if regions:
            reason = f"text found ({len(regions)} region(s))"
            decisions.append(AuxiliaryDecision(entry.index, entry.name, True, reason, len(regions)))
        else:
            decisions.append(AuxiliaryDecision(entry.index, entry.name, False, "no text found"))
    return decisions


# --------------------------------------------------------------------------- removing


def _series_list_files(ome: Path) -> list[Path]:
    return [p for p in (ome / ".zattrs", ome / "zarr.json") if p.is_file()]


def _set_series_list(ome: Path, paths: list[str]) -> None:
    """Write ``series`` into the OME group's attributes (v2 ``.zattrs``, v3 ``zarr.json``)."""
    for file in _series_list_files(ome):
        data = read_json_object(file)
        holder = data
        if file.name == "zarr.json":
            holder = data.get("attributes") or {}
            if isinstance(holder.get("ome"), dict):
                holder = holder["ome"]
        if "series" in holder:
            holder["series"] = paths
            file.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")


def remove_zarr_series(
    store: str | Path, entries: Sequence[SeriesEntry], drop: Collection[int]
) -> list[str]:
    """Remove the series at positions ``drop`` from a bioformats2raw OME-Zarr store, in place.

    Their groups are deleted; when the image groups were ``0``, ``1``... in order, those left
    are renamed to stay consecutive from ``0``. ``OME/series`` is rewritten, the ``Image``
    elements of ``OME/METADATA.ome.xml`` removed (:func:`imagedepot.deid.omexml.remove_ome_images`)
    and consolidated metadata (``.zmetadata``, ``consolidated_metadata`` of ``zarr.json``),
    which would still describe them, dropped. Returns the image paths left, in order.
    Raises ``ValueError`` when no image would be left.
    """
    store = Path(store)
    drop = set(drop)
    if not drop:
        return [e.path for e in entries]
    kept = [e for e in entries if e.index not in drop]
    if not kept or any(e.path == "" for e in entries):
        raise ValueError("every image of the store is an auxiliary image to remove")
    xml_file = store / "OME" / "METADATA.ome.xml"
    if xml_file.is_file():
        xml = remove_ome_images(xml_file.read_text(encoding="utf-8"), drop)
        xml_file.write_text(xml, encoding="utf-8")
    for e in entries:
        if e.index in drop:
            shutil.rmtree(store / e.path)
    paths = [e.path for e in kept]
    if all(e.path == str(e.index) for e in entries):
        for new, e in enumerate(kept):
            if e.path != str(new):
                os.rename(store / e.path, store / str(new))
        paths = [str(n) for n in range(len(kept))]
    _set_series_list(store / "OME", paths)
    (store / ".zmetadata").unlink(missing_ok=True)
    root_json = store / "zarr.json"
    data = read_json_object(root_json)
    if data.pop("consolidated_metadata", None) is not None:
        root_json.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
    return paths


def _ifd_chain(fh: Any, byteorder: str, bigtiff: bool) -> tuple[int, list[tuple[int, int]]]:
    """The main IFD chain of an open TIFF: the header's pointer position and, per IFD, its
    offset and the position of its next-IFD pointer."""
    first, offset_fmt, count_fmt, entry = (8, "Q", "Q", 20) if bigtiff else (4, "I", "H", 12)
    fh.seek(first)
    (offset,) = struct.unpack(byteorder + offset_fmt, fh.read(struct.calcsize(offset_fmt)))
    chain: list[tuple[int, int]] = []
    seen: set[int] = set()
    while offset and offset not in seen:
        seen.add(offset)
        fh.seek(offset)
        (count,) = struct.unpack(byteorder + count_fmt, fh.read(struct.calcsize(count_fmt)))
        pointer = offset + struct.calcsize(count_fmt) + count * entry
        fh.seek(pointer)
        chain.append((offset, pointer))
        (offset,) = struct.unpack(byteorder + offset_fmt, fh.read(struct.calcsize(offset_fmt)))
    return first, chain


def remove_tiff_series(path: str | Path, drop: Collection[int]) -> int:
    """Remove the series at positions ``drop`` from a single-file OME-TIFF, in place.

    The IFDs of their planes are unlinked from the main IFD chain (reduced levels in SubIFDs go
    with them), the bytes of their pixel data (every level; not a tile that a series kept
    shares) are overwritten with zeros, and the
    OME-XML loses their ``Image`` elements while the ``TiffData/@IFD`` of the images left are
    renumbered (:func:`imagedepot.deid.omexml.remove_ome_images`). No pixel data are decoded or
    written again. Returns the number of IFDs unlinked. Raises ``ValueError`` when this cannot
    be done safely: the first IFD (which holds the OME-XML) or a plane of a series that stays
    belongs to a series to remove, or its planes are missing or not in the main chain.
    """
    import tifffile

    path = Path(path)
    drop = set(drop)
    if not drop:
        return 0
    with tifffile.TiffFile(path) as tif:
        if not tif.is_ome or not tif.ome_metadata or tif.is_ndpi:
            raise ValueError("not a single-file OME-TIFF")
        byteorder, bigtiff, n_pages = tif.byteorder, tif.is_bigtiff, len(tif.pages)
        xml = tif.ome_metadata
        removed: set[int] = set()
        kept_pages: set[int] = set()
        zero: list[tuple[int, int]] = []
        shared: set[int] = set()  # data offsets of the series kept (writers may share tiles)
        for i, s in enumerate(tif.series):
            for k, level in enumerate(s.levels):
                for page in level.pages:
                    if page is None and i in drop:
                        raise ValueError(f"series {i}: a plane named in the OME-XML is missing")
                    if page is None:
                        continue
                    if i not in drop:
                        if k == 0 and isinstance(page.index, int):
                            kept_pages.add(page.index)
                        shared.update(page.dataoffsets)
                        continue
                    if k == 0:
                        if not isinstance(page.index, int):
                            raise ValueError(f"series {i}: its planes are not in the IFD chain")
                        removed.add(page.index)
                    zero.extend(zip(page.dataoffsets, page.databytecounts, strict=True))
    if 0 in removed:
        raise ValueError("the first IFD, which holds the OME-XML, belongs to a series to remove")
    if removed & kept_pages:
        raise ValueError("a plane is shared by a series to remove and one to keep")
    kept = [i for i in range(n_pages) if i not in removed]
    xml = remove_ome_images(xml, drop, {old: new for new, old in enumerate(kept)})
    xml = xml.encode("ascii", "xmlcharrefreplace").decode("ascii")
    with open(path, "r+b") as fh:
        _, chain = _ifd_chain(fh, byteorder, bigtiff)
        if len(chain) != n_pages:
            raise ValueError(f"the IFD chain has {len(chain)} IFDs, tifffile read {n_pages}")
        fmt = byteorder + ("Q" if bigtiff else "I")
        for a, b in zip(kept, [*kept[1:], None], strict=True):
            fh.seek(chain[a][1])
            fh.write(struct.pack(fmt, 0 if b is None else chain[b][0]))
        for offset, count in zero:
            if offset and count and offset not in shared:
                fh.seek(offset)
                fh.write(b"\0" * count)
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages.first.tags[270].overwrite(xml)
    return len(removed)


__all__ = [
    "MAX_PIXELS",
    "AuxiliaryDecision",
    "SeriesEntry",
    "UnreadableSeries",
    "list_series",
    "read_planes",
    "remove_tiff_series",
    "remove_zarr_series",
    "screen",
]
