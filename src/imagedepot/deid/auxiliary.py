"""Auxiliary images of microscopy outputs: slide labels, macro photographs, thumbnails.

Whole-slide scanners store, beside the tissue pyramid, a photograph of the slide label (patient
names, IDs, barcodes), a macro (overview) photograph of the whole slide, label included, and
small thumbnails or previews. Bio-Formats gives them as series of their own (``label image``,
``macro image``, ``thumbnail image``, ``overview``...) and the conversion writes every series, so
they reach OME-Zarr stores (bioformats2raw layout) and OME-TIFF files as images like the others.

A series is auxiliary when one of its names (``Image/@Name`` in the OME-XML, the ``multiscales``
and ``omero`` names of its Zarr group, tifffile's series name) is such a name
(:func:`imagedepot.deid.ome.is_auxiliary_name`; ``Series 1`` or ``image_0`` are not).
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
import math
import os
import shutil
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.deid.ome import is_auxiliary_name, parse_xml, remove_ome_images
from imagedepot.pixeltext.dicom import PixelTextSettings

log = logging.getLogger(__name__)

#: Most pixels read from one auxiliary series for OCR (y x x x planes, channels aside): the
#: highest resolution level within it is read. A macro photograph of a slide is 1-10 Mpx.
MAX_PIXELS = 4096 * 4096
_CHANNEL_AXES = ("c", "s")


class UnreadableSeries(ValueError):
    """An auxiliary series that cannot be read for text (the reason names no value)."""


@dataclass(frozen=True)
class SeriesEntry:
    """One image (series) of an OME output.

    Attributes
    ----------
    index
        Position among the OME-XML ``Image`` elements (and tifffile's series, and the
        ``OME/series`` list of a Zarr store).
    path
        The image group inside a Zarr store (``"0"``...; ``""`` for a store that is one image,
        and for a TIFF file).
    names
        Every name the series has (OME-XML, Zarr ``multiscales`` and ``omero``, tifffile).
    """

    index: int
    path: str
    names: tuple[str, ...]

    @property
    def auxiliary(self) -> bool:
        """True when a name says it is a label, macro, overview, thumbnail or preview image."""
        return any(is_auxiliary_name(n) for n in self.names)

    @property
    def name(self) -> str:
        """The auxiliary name (a generic word, safe to report), else ``""``."""
        return next((n.strip() for n in self.names if is_auxiliary_name(n)), "")


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


# --------------------------------------------------------------------------- listing


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _group_attrs(folder: Path) -> dict[str, Any]:
    """The NGFF attributes of a Zarr group (v2 ``.zattrs``; v3 ``zarr.json``, ``ome`` unwrapped)."""
    attrs = _read_json(folder / ".zattrs")
    if not attrs:
        attrs = _read_json(folder / "zarr.json").get("attributes") or {}
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) else attrs


def _image_names(attrs: dict[str, Any]) -> list[str]:
    names = []
    for ms in attrs.get("multiscales") or []:
        if isinstance(ms, dict) and isinstance(ms.get("name"), str):
            names.append(ms["name"])
    omero = attrs.get("omero")
    if isinstance(omero, dict) and isinstance(omero.get("name"), str):
        names.append(omero["name"])
    return names


def _xml_image_names(xml: str) -> list[str]:
    root = parse_xml(xml)
    return [el.get("Name") or "" for el in root if el.tag.rsplit("}", 1)[-1] == "Image"]


def _check_match(entries: list[SeriesEntry], xml_names: list[str], what: str) -> None:
    """Refuse a mismatch of OME-XML images and series when any of them is auxiliary."""
    if len(xml_names) != len(entries) and (
        any(e.auxiliary for e in entries) or any(is_auxiliary_name(n) for n in xml_names)
    ):
        raise UnreadableSeries(
            f"the OME-XML has {len(xml_names)} images and the {what} {len(entries)} series: "
            "auxiliary images cannot be matched to their series"
        )


def _zarr_series(store: Path) -> list[SeriesEntry]:
    root = _group_attrs(store)
    if "bioformats2raw.layout" not in root:
        if "multiscales" in root:
            return [SeriesEntry(0, "", tuple(_image_names(root)))]
        return []
    listed = _group_attrs(store / "OME").get("series")
    if isinstance(listed, list) and all(isinstance(p, str) for p in listed):
        paths = list(listed)
    else:
        paths = []
        while (store / str(len(paths))).is_dir():
            paths.append(str(len(paths)))
    xml_file = store / "OME" / "METADATA.ome.xml"
    xml_names = (
        _xml_image_names(xml_file.read_text(encoding="utf-8")) if xml_file.is_file() else None
    )
    entries = []
    for i, path in enumerate(paths):
        names = _image_names(_group_attrs(store / path))
        if xml_names is not None and i < len(xml_names):
            names.insert(0, xml_names[i])
        entries.append(SeriesEntry(i, path, tuple(names)))
    if xml_names is not None:
        _check_match(entries, xml_names, "store")
    return entries


def _tiff_series(path: Path) -> list[SeriesEntry]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.is_ome or not tif.ome_metadata:
            return []
        xml_names = _xml_image_names(tif.ome_metadata)
        series = list(tif.series)
        entries = []
        for i, s in enumerate(series):
            names = [xml_names[i]] if i < len(xml_names) else []
            if isinstance(s.name, str) and s.name:
                names.append(s.name)
            entries.append(SeriesEntry(i, "", tuple(names)))
        _check_match(entries, xml_names, "TIFF file")
        return entries


def list_series(src: str | Path) -> list[SeriesEntry]:
    """The series of an OME-Zarr store or an OME-TIFF file, with their names.

    A bioformats2raw store lists the groups of ``OME/series`` (or ``0``, ``1``... when it has
    none); a store that is one image gives one entry with path ``""``; a plate, a plain TIFF
    or a folder that is no store gives none. Raises :class:`UnreadableSeries` when an auxiliary
    image cannot be matched to a series (the OME-XML counts another number of images), and
    ``ValueError``/``OSError`` for metadata that cannot be read.
    """
    src = Path(src)
    if src.is_dir():
        return _zarr_series(src)
    return _tiff_series(src)


# --------------------------------------------------------------------------- reading


def _to_planes(data: np.ndarray, axes: Sequence[str]) -> np.ndarray:
    """``data`` with named ``axes`` as ``(n, c, y, x)`` (c: channels and samples together)."""
    axes = [a.lower() for a in axes]
    if len(axes) != data.ndim or "y" not in axes or "x" not in axes:
        raise UnreadableSeries(f"axes {''.join(axes)} do not name y and x")
    chans = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    other = [i for i, a in enumerate(axes) if a not in (*_CHANNEL_AXES, "y", "x")]
    order = [*other, *chans, axes.index("y"), axes.index("x")]
    moved = np.transpose(data, order)
    c = math.prod(data.shape[i] for i in chans)
    return moved.reshape(-1, c, data.shape[axes.index("y")], data.shape[axes.index("x")])


def _plane_pixels(shape: Sequence[int], axes: Sequence[str]) -> int:
    return math.prod(n for n, a in zip(shape, axes, strict=True) if a.lower() not in _CHANNEL_AXES)


def _zarr_planes(store: Path, entry: SeriesEntry, max_pixels: int) -> np.ndarray:
    import zarr

    root: Any = zarr.open_group(str(store), mode="r")
    group: Any = root[entry.path] if entry.path else root
    attrs: dict[str, Any] = dict(group.attrs.asdict())
    meta: dict[str, Any] = attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs
    multiscale: dict[str, Any] = meta["multiscales"][0]
    names = [a["name"] if isinstance(a, dict) else str(a) for a in multiscale.get("axes") or []]
    smallest = 0
    for ds in multiscale["datasets"]:
        arr = group[ds["path"]]
        axes = names or list("tczyx"[-arr.ndim :])
        smallest = _plane_pixels(arr.shape, axes)
        if smallest <= max_pixels:
            return _to_planes(np.asarray(arr[...]), axes)
    raise UnreadableSeries(
        f"too large to read for text ({smallest} pixels at its smallest level, most {max_pixels})"
    )


def _tiff_planes(path: Path, entry: SeriesEntry, max_pixels: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[entry.index]
        smallest = 0
        for level in series.levels:
            axes = list(level.axes)
            smallest = _plane_pixels(level.shape, axes)
            if smallest <= max_pixels:
                return _to_planes(np.asarray(level.asarray()), axes)
    raise UnreadableSeries(
        f"too large to read for text ({smallest} pixels at its smallest level, most {max_pixels})"
    )


def read_planes(src: str | Path, entry: SeriesEntry, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The pixels of one series as ``(n, c, y, x)``, from its highest resolution level that
    holds at most ``max_pixels`` pixels (y x x x planes); :class:`UnreadableSeries` when none
    does."""
    src = Path(src)
    if src.is_dir():
        return _zarr_planes(src, entry, max_pixels)
    return _tiff_planes(src, entry, max_pixels)


# --------------------------------------------------------------------------- policy


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
        data = _read_json(file)
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
    elements of ``OME/METADATA.ome.xml`` removed (:func:`imagedepot.deid.ome.remove_ome_images`)
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
    data = _read_json(root_json)
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
    renumbered (:func:`imagedepot.deid.ome.remove_ome_images`). No pixel data are decoded or
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
