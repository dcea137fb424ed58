"""The series of OME outputs: which are auxiliary images, and their pixels as planes.

Whole-slide scanners store, beside the tissue pyramid, a photograph of the slide label (patient
names, IDs, barcodes), a macro (overview) photograph of the whole slide, label included, and
small thumbnails or previews. Bio-Formats gives them as series of their own (``label image``,
``macro image``, ``thumbnail image``, ``overview``...) and the conversion writes every series, so
they reach OME-Zarr stores (bioformats2raw layout) and OME-TIFF files as images like the others.

A series is auxiliary when one of its names (``Image/@Name`` in the OME-XML, the ``multiscales``
and ``omero`` names of its Zarr group, tifffile's series name) is such a name
(:func:`is_auxiliary_name`; ``Series 1`` or ``image_0`` are not). :func:`list_series` lists the
series of a store or file with their names; :func:`read_planes` reads one series for text at the
highest resolution level that holds at most :data:`MAX_PIXELS` pixels.

De-identification (:mod:`imagedepot.deid.auxiliary`, which decides and removes) and the leak gate
(:mod:`imagedepot.leakcheck`, which checks staged outputs again) both read series through this
module.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.safeload import parse_xml

#: Most pixels read from one auxiliary series for OCR (y x x x planes, channels aside): the
#: highest resolution level within it is read. A macro photograph of a slide is 1-10 Mpx.
MAX_PIXELS = 4096 * 4096
_CHANNEL_AXES = ("c", "s")

#: Names of the auxiliary images of slide scanners, as Bio-Formats and the scanners give them
#: ("label image", "macro image", "macro mask image", "thumbnail image", "overview", "slide
#: preview", "Label 2"...): matched whole, case-insensitively (see :func:`is_auxiliary_name`).
AUXILIARY_IMAGE_NAME = re.compile(
    r"(?i)(?:slide[\s_-]*)?(?:label|macro|overview|thumbnail|preview|barcode)"
    r"(?:[\s_-]*mask)?(?:[\s_-]*image)?(?:[\s_#:-]*\d+)?"
)


def is_auxiliary_name(name: object) -> bool:
    """True when ``name`` names a slide label, macro, overview, thumbnail, preview or barcode
    image (``label image``, ``Macro``, ``thumbnail_1``...), not a plain ``Series 1``."""
    return isinstance(name, str) and AUXILIARY_IMAGE_NAME.fullmatch(name.strip()) is not None


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


# --------------------------------------------------------------------------- listing


def read_json_object(path: Path) -> dict[str, Any]:
    """The top-level object of a JSON file (``{}`` when the file is absent or holds no object)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _group_attrs(folder: Path) -> dict[str, Any]:
    """The NGFF attributes of a Zarr group (v2 ``.zattrs``; v3 ``zarr.json``, ``ome`` unwrapped)."""
    attrs = read_json_object(folder / ".zattrs")
    if not attrs:
        attrs = read_json_object(folder / "zarr.json").get("attributes") or {}
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
