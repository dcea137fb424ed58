"""Microscopy images to OME-Zarr (NGFF 0.4 or 0.5) and to pyramidal OME-TIFF, streamed.

Readers (:class:`imagedepot.convert.ImageSource`):

* :class:`TiffSource` (tifffile, pure Python): plain TIFF, ImageJ hyperstacks and OME-TIFF,
  multi-file OME-TIFF filesets included (tifffile assembles the series across files).
* :class:`imagedepot.convert.bioformats.BioFormatsSource` (Bio-Formats through a JVM): every other
  format. ``reader="auto"`` picks tifffile for ``.tif``/``.tiff`` (and ``.ome.tif(f)``), Bio-Formats
  otherwise.

Writers stream: a plane is read as bands of rows (a whole number of the level-0 chunk or tile
rows, of ``2**(levels-1)`` and of the reader's strip or tile height), in a reader thread one band
ahead of the writer; each band is reduced by 2x2 block means for every pyramid level, and every
level is written whole chunk rows (whole shard rows when sharded) at a time, holding back the rows
of a part-filled one until the next band. So only a few bands of one plane are in memory, whatever
the image's height, plane count or series count. Zarr compresses the chunks of each write
concurrently; tifffile compresses tiles in threads. (Converting also asks glibc to keep freed
memory padded, see :func:`tune_allocator`.) Every image is five-dimensional, axes
``t, c, z, y, x``; RGB samples become channels. Physical sizes are in micrometres and seconds.
Dimensions a reader folds into Z, C or T (OME/Bio-Formats moduli: wavelength sweeps, lifetime
bins, phases, rotations) and Leica LIF line scans and wavelength sweeps that Bio-Formats reports
as other axes are written as described in :mod:`imagedepot.convert.axes` (each image's report
says how, under ``layout``).

OME-Zarr layout (bioformats2raw transitional layout of NGFF 0.4 / 0.5)::

    out.ome.zarr/
        .zattrs | zarr.json      {"bioformats2raw.layout": 3}
        OME/METADATA.ome.xml     the source's OME-XML, pixel references replaced by MetadataOnly
        OME/.zattrs | zarr.json  {"series": ["0", "1", ...]}
        0/                       image group: multiscales (levels 0..n-1) and omero metadata
        1/ ...
        0/labels/<name>/         label images given (NGFF image-label), on the first series

Outputs are written under a temporary name beside the target
(``.imagedepot-tmp-<name>.<host>.<pid>.<random>``) and renamed when complete, so an interrupted
conversion never leaves a complete-looking ``.ome.zarr`` or ``.ome.tif``; the next conversion to
the same output removes what a killed one left (:func:`imagedepot.io.remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import logging
import math
import os
import queue
import re
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from imagedepot.convert import AXES, ConvertReport, ImageSource, SeriesInfo
from imagedepot.convert.axes import (
    ModuloPlan,
    XmlRemap,
    expand_channels,
    parse_xml_moduli,
    plan_moduli,
    remap_for_moduli,
    remap_ome_xml,
)
from imagedepot.errors import ImagedepotError, InputError, ReaderError
from imagedepot.io import atomic_path, check_overwrite, temp_prefix

log = logging.getLogger(__name__)

READERS = ("auto", "tifffile", "bioformats")
TIFF_SUFFIXES = (".tif", ".tiff")
NGFF_VERSIONS = ("0.4", "0.5")
TIFF_COMPRESSIONS = ("zlib", "zstd", "lzw", "none")

#: Largest chunk (and band) edge used when the caller gives no chunks.
DEFAULT_CHUNK = 1024

# --------------------------------------------------------------------------- units

_MICRO = ("µ", "μ", "u")  # micro sign, Greek mu, ASCII
#: Length units of OME-XML (UnitsLength) to micrometres. "pixel" and "reference frame" have none.
LENGTH_TO_UM: dict[str, float] = {
    "Ym": 1e30, "Zm": 1e27, "Em": 1e24, "Pm": 1e21, "Tm": 1e18, "Gm": 1e15, "Mm": 1e12,
    "km": 1e9, "hm": 1e8, "dam": 1e7, "m": 1e6, "dm": 1e5, "cm": 1e4, "mm": 1e3, "µm": 1.0,
    "nm": 1e-3, "pm": 1e-6, "fm": 1e-9, "am": 1e-12, "zm": 1e-15, "ym": 1e-18, "Å": 1e-4,
    "thou": 25.4, "li": 2116.6666666666665, "in": 25400.0, "ft": 304800.0, "yd": 914400.0,
    "mi": 1609344000.0, "ua": 1.495978707e17, "ly": 9.4607304725808e21, "pc": 3.0856775814913673e22,
    "pt": 352.77777777777777,
}  # fmt: skip
#: Time units of OME-XML (UnitsTime) to seconds.
TIME_TO_S: dict[str, float] = {
    "Ys": 1e24, "Zs": 1e21, "Es": 1e18, "Ps": 1e15, "Ts": 1e12, "Gs": 1e9, "Ms": 1e6, "ks": 1e3,
    "hs": 1e2, "das": 10.0, "s": 1.0, "ds": 0.1, "cs": 1e-2, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9,
    "ps": 1e-12, "fs": 1e-15, "as": 1e-18, "zs": 1e-21, "ys": 1e-24, "min": 60.0, "h": 3600.0,
    "d": 86400.0,
}  # fmt: skip


def _micro(unit: str) -> str:
    unit = unit.strip()
    for m in _MICRO[1:]:
        if unit.startswith(m) and len(unit) > 1 and unit[1:] in ("m", "s"):
            return "µ" + unit[1:]
    return unit


def length_um(value: float | str | None, unit: str | None = "µm") -> float | None:
    """A length in micrometres, or None when missing, not positive or in a unit without size."""
    if value is None:
        return None
    factor = LENGTH_TO_UM.get(_micro(unit or "µm"))
    try:
        v = float(value) * factor if factor is not None else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) and v > 0 else None


def time_s(value: float | str | None, unit: str | None = "s") -> float | None:
    """A time increment in seconds, or None."""
    if value is None:
        return None
    factor = TIME_TO_S.get(_micro(unit or "s"))
    try:
        v = float(value) * factor if factor is not None else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) and v > 0 else None


def color_hex(value: int | str | None) -> str | None:
    """OME-XML Color (signed 32-bit RGBA integer) as ``RRGGBB``."""
    if value is None:
        return None
    try:
        v = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{(v >> 24) & 0xFF:02X}{(v >> 16) & 0xFF:02X}{(v >> 8) & 0xFF:02X}"


def color_int(hex_rgb: str) -> int:
    """``RRGGBB`` as the signed RGBA integer of OME-XML (alpha 255)."""
    v = (int(hex_rgb, 16) << 8) | 0xFF
    return v - (1 << 32) if v >= (1 << 31) else v


# --------------------------------------------------------------------------- OME-XML


def _parse_xml(text: str) -> ET.Element:
    # The OME-XML comes from the file being converted. Python's expat parser does not fetch external
    # entities, and expat >= 2.4.1 (bundled with supported Pythons) caps entity expansion.
    return ET.fromstring(text)  # noqa: S314


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_ome_xml(text: str) -> list[dict[str, Any]]:
    """Per OME Image: ``name``, sizes, ``physical_size`` (µm, s) and ``channels`` (name, colour)."""
    root = _parse_xml(text)
    images = []
    for image in (el for el in root if _local(el.tag) == "Image"):
        pixels = next((el for el in image if _local(el.tag) == "Pixels"), None)
        if pixels is None:
            continue
        a = pixels.attrib
        channels = [
            {
                "name": ch.get("Name"),
                "color": color_hex(ch.get("Color")),
                "samples": int(ch.get("SamplesPerPixel", "1") or 1),
            }
            for ch in pixels
            if _local(ch.tag) == "Channel"
        ]
        images.append(
            {
                "name": image.get("Name"),
                "size": {k: int(a.get(f"Size{k.upper()}", "1")) for k in "tczyx"},
                "physical_size": {
                    "x": length_um(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit", "µm")),
                    "y": length_um(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit", "µm")),
                    "z": length_um(a.get("PhysicalSizeZ"), a.get("PhysicalSizeZUnit", "µm")),
                    "t": time_s(a.get("TimeIncrement"), a.get("TimeIncrementUnit", "s")),
                },
                "channels": channels,
            }
        )
    return images


def register_namespaces(text: str) -> None:
    """Register the namespace prefixes of ``text`` so ElementTree writes them back as they were."""
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):  # noqa: S314
        with contextlib.suppress(ValueError):
            ET.register_namespace(prefix, uri)


def metadata_only_ome_xml(text: str) -> str:
    """The OME-XML with pixel references removed, as the bioformats2raw layout requires.

    ``TiffData``, ``BinData`` and ``BinaryOnly`` elements are dropped and each ``Pixels`` gets a
    ``MetadataOnly`` element (after its channels, where the schema puts it). Everything else is
    kept as it was.
    """
    namespaces: dict[str, str] = {}
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):  # noqa: S314
        namespaces.setdefault(prefix, uri)
    root = _parse_xml(text)
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    for prefix, uri in namespaces.items():
        with contextlib.suppress(ValueError):
            ET.register_namespace(prefix, uri)
    for child in list(root):
        if _local(child.tag) == "BinaryOnly":
            root.remove(child)
    for pixels in root.iter(f"{{{ns}}}Pixels" if ns else "Pixels"):
        for child in list(pixels):
            if _local(child.tag) in ("TiffData", "BinData"):
                pixels.remove(child)
        if not any(_local(c.tag) == "MetadataOnly" for c in pixels):
            position = sum(1 for c in pixels if _local(c.tag) == "Channel")
            pixels.insert(position, ET.Element(f"{{{ns}}}MetadataOnly" if ns else "MetadataOnly"))
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def ome_xml_from_series(series: list[SeriesInfo]) -> str:
    """Minimal OME-XML describing ``series`` (for sources that have none)."""
    import tifffile

    omexml = tifffile.OmeXml()
    for info in series:
        t, c, z, y, x = info.shape
        meta: dict[str, Any] = {"axes": "TCZYX", "Name": info.name or f"Image {info.index}"}
        meta.update(_ome_physical(info))
        channel = _ome_channels(info)
        if channel:
            meta["Channel"] = channel
        omexml.addimage(
            dtype=info.dtype, shape=info.shape, storedshape=(t * c * z, 1, 1, y, x, 1), **meta
        )
    return str(omexml.tostring())


def _ome_physical(info: SeriesInfo) -> dict[str, Any]:
    """tifffile OmeXml keywords for the physical sizes (µm, s) that are known."""
    keys = {"x": "PhysicalSizeX", "y": "PhysicalSizeY", "z": "PhysicalSizeZ", "t": "TimeIncrement"}
    return {keys[k]: v for k, v in info.physical_size.items() if v is not None and k in keys}


def _ome_channels(info: SeriesInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if info.channel_names and all(n is not None for n in info.channel_names):
        out["Name"] = list(info.channel_names)
    if info.channel_colors and all(c is not None for c in info.channel_colors):
        out["Color"] = [color_int(str(c)) for c in info.channel_colors]
    return out


# --------------------------------------------------------------------------- tifffile reader

#: Where tifffile's axis codes go in t, c, z, y, x: samples, spectral and lifetime axes become
#: channels; image sequences and other axes are stacked along z (as Bio-Formats does for plain
#: TIFF).
TIFF_AXIS_TARGET = {"T": "t", "C": "c", "S": "c", "E": "c", "H": "c", "Z": "z", "Y": "y", "X": "x"}


@dataclass
class _TiffSeries:
    array: Any  # zarr array over the TIFF series (tifffile's store, level 0, unsqueezed)
    axes: str
    groups: dict[str, list[int]]  # target axis -> positions of source axes, outer first
    sizes: dict[str, list[int]]  # target axis -> sizes of those source axes


def _looks_like_ome(tif: Any) -> bool:
    """Whether the first page's ImageDescription starts like an OME-XML document."""
    try:
        desc = tif.pages.first.description if len(tif.pages) else ""
    except Exception:  # an unreadable first page is reported elsewhere
        return False
    head = str(desc or "").lstrip()[:2048]
    return head.startswith("<") and ("<OME" in head or "openmicroscopy.org/Schemas/OME" in head)


class TiffSource:
    """Reads TIFF, ImageJ TIFF and (multi-file) OME-TIFF with tifffile, a band of rows at a time."""

    reader = "tifffile"

    def __init__(self, path: str | Path) -> None:
        import tifffile

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "no such file")
        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error...
            raise ReaderError(self.path, f"tifffile cannot read it: {exc}") from exc
        self._series: list[_TiffSeries] = []
        self.series: list[SeriesInfo] = []
        self.notes: list[str] = []
        self.fallback: dict[str, str] | None = None
        self._xml_remaps: dict[int, XmlRemap] = {}
        try:
            self._scan()
            if not self.series:
                raise ReaderError(self.path, "no image in this TIFF")
            self._probe()
        except InputError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise ReaderError(self.path, f"tifffile cannot read it: {exc}") from exc

    def _probe(self) -> None:
        """Decode one pixel of each series' first plane (once per distinct encoding).

        A compression tifffile cannot decode (no codec installed, an unsupported variant) is then
        found before anything is written, so ``reader="auto"`` can hand the file to Bio-Formats.
        """
        seen: set[tuple[Any, ...]] = set()
        for s, entry in enumerate(self._series):
            page = self._tif.series[s].keyframe
            key = (
                page.compression,
                page.predictor,
                page.photometric,
                page.bitspersample,
                page.sampleformat,
                page.is_tiled,
            )
            if key in seen:
                continue
            seen.add(key)
            index = tuple(slice(0, 1) for _ in entry.axes)
            try:
                np.asarray(entry.array[index])
            except Exception as exc:  # codec errors come as ValueError, RuntimeError, codec types
                raise ReaderError(
                    self.path,
                    f"tifffile cannot decode series {s} "
                    f"({getattr(page.compression, 'name', page.compression)}): {exc}",
                ) from exc

    def _scan(self) -> None:
        import zarr

        tif = self._tif
        ome = parse_ome_xml(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else []
        moduli = parse_xml_moduli(_parse_xml(str(tif.ome_metadata))) if ome else []
        if not (tif.is_ome and tif.ome_metadata) and _looks_like_ome(tif):
            # tifffile only accepts OME-XML that ends in "OME>": a truncated or damaged one is
            # ignored, and channel names, physical sizes... would vanish without a word.
            self.notes.append(
                "the OME-XML in the first page's ImageDescription is unreadable (damaged or "
                "truncated); the metadata was rebuilt from the TIFF structure (channel names, "
                "physical sizes and other OME metadata are lost)"
            )
        for index, s in enumerate(tif.series):
            axes = s.get_axes(False)
            shape = tuple(int(n) for n in s.get_shape(False))
            dtype = np.dtype(s.dtype)
            if dtype.kind not in "biuf" or dtype.itemsize > 8:
                raise ReaderError(self.path, f"series {index}: pixel type {dtype} is not supported")
            missing = sum(1 for page in s.pages if page is None)
            if missing:
                # tifffile would read them as zeros: refuse rather than invent pixels.
                raise InputError(
                    self.path,
                    f"series {index}: {missing} plane(s) described in the metadata are missing "
                    "(a file of the set absent or truncated?)",
                )
            array = zarr.open_array(s.aszarr(level=0, squeeze=False), mode="r")
            if tuple(array.shape) != shape:
                raise ReaderError(
                    self.path, f"series {index}: tifffile store shape {array.shape} != {shape}"
                )
            groups: dict[str, list[int]] = {k: [] for k in AXES}
            for i, code in enumerate(axes):
                groups[TIFF_AXIS_TARGET.get(code, "z")].append(i)
            plan = None
            if index < len(moduli) and index < len(ome) and moduli[index]:
                size = ome[index]["size"]
                plan = plan_moduli(moduli[index], (size["z"], size["c"], size["t"]))
            if plan is not None and (plan.moved or plan.kept):
                groups = self._modulo_groups(index, axes, groups, plan)
            if len(groups["y"]) != 1 or len(groups["x"]) != 1:
                raise ReaderError(self.path, f"series {index}: axes {axes} have no single Y and X")
            sizes = {k: [shape[i] for i in v] for k, v in groups.items()}
            full = tuple(int(np.prod(sizes[k], dtype=np.int64)) for k in AXES)
            keyframe = s.keyframe
            if keyframe.is_tiled:
                row_block = int(keyframe.tilelength)
            else:
                row_block = int(keyframe.rowsperstrip or full[3])
            info = SeriesInfo(
                index=index,
                name=s.name or None,
                shape=(full[0], full[1], full[2], full[3], full[4]),
                dtype=("uint8" if dtype.kind == "b" else dtype.newbyteorder("=").name),
                physical_size={"x": None, "y": None, "z": None, "t": None},
                channel_names=[None] * full[1],
                channel_colors=[None] * full[1],
                row_block=max(1, min(row_block, full[3])),
            )
            self._fill_metadata(info, ome[index] if index < len(ome) else None, keyframe)
            if plan is not None and plan.notes:
                self.notes.extend(f"series {index}: {note}" for note in plan.notes)
            if plan is not None and (plan.moved or plan.kept):
                self._apply_modulo_plan(info, plan, ome[index])
            self._series.append(_TiffSeries(array, axes, groups, sizes))
            self.series.append(info)

    def _modulo_groups(
        self, index: int, axes: str, groups: dict[str, list[int]], plan: ModuloPlan
    ) -> dict[str, list[int]]:
        """Axis groups of an OME series with moduli: every modulo axis (tifffile's codes after
        their parent, or in its place) goes to ``c``, inner to the channels, Z's before T's."""
        parents: dict[int, str] = {}
        absent = [
            m.along
            for m in (*plan.moved, *([plan.kept] if plan.kept else []))
            if m.along not in axes
        ]
        for i, code in enumerate(axes):
            if code in "TZCYXS":
                continue
            if i > 0 and axes[i - 1] in "TZC":
                parents[i] = axes[i - 1]
            elif absent:
                parents[i] = absent.pop(0)
            else:
                raise ReaderError(
                    self.path,
                    f"series {index}: cannot tell which axis modulo {code!r} of {axes} divides",
                )
        rank = {"C": 1, "Z": 2, "T": 3}
        out = {k: [i for i in v if i not in parents] for k, v in groups.items()}
        out["c"] = sorted(
            [*out["c"], *parents],
            key=lambda i: 0 if axes[i] == "C" else 4 if axes[i] == "S" else rank[parents[i]],
        )
        return out

    def _apply_modulo_plan(self, info: SeriesInfo, plan: ModuloPlan, ome: dict[str, Any]) -> None:
        """Channel names and wavelengths, the OME-XML rewrite and notes for moduli."""
        t, c, z = plan.shape
        if info.shape[:3] != (t, c, z):
            raise ReaderError(
                self.path,
                f"series {info.index}: tifffile's axes give {info.shape[:3]} (t, c, z), the "
                f"OME-XML's moduli {(t, c, z)}",
            )
        channels = ome["channels"]
        names = [ch["name"] for ch in channels] if len(channels) == plan.sizes[1] else []
        colors = [ch["color"] for ch in channels] if len(channels) == plan.sizes[1] else []
        info.channel_names, info.channel_colors, _ = expand_channels(plan, names, colors)
        self._xml_remaps[info.index] = remap_for_moduli(plan, info.index, names)
        info.layout = plan.describe()
        for m in plan.moved:
            self.notes.append(
                f"series {info.index}: {m.size} {m.type} positions that the OME-XML folds into "
                f"{m.along} are written as channels (inner to the source channels), not as "
                f"{'depth' if m.along == 'Z' else 'time'}"
            )

    def _fill_metadata(self, info: SeriesInfo, ome: dict[str, Any] | None, keyframe: Any) -> None:
        _, c, _, y, x = info.shape
        if ome is not None and ome["size"]["x"] == x and ome["size"]["y"] == y:
            info.name = ome["name"] or info.name
            info.physical_size = dict(ome["physical_size"])
            channels = ome["channels"]
            if len(channels) == c:
                info.channel_names = [ch["name"] for ch in channels]
                info.channel_colors = [ch["color"] for ch in channels]
            return
        tif = self._tif
        if tif.is_imagej and tif.imagej_metadata:
            ij = tif.imagej_metadata
            unit = str(ij.get("unit", "")).replace("\\u00B5", "µ")
            unit = {"micron": "µm", "microns": "µm", "um": "µm"}.get(unit, unit)
            if unit in LENGTH_TO_UM:
                try:
                    rx, ry = keyframe.get_resolution()
                except (TypeError, ValueError, ZeroDivisionError):
                    rx = ry = 0.0
                info.physical_size["x"] = length_um(1.0 / rx, unit) if rx else None
                info.physical_size["y"] = length_um(1.0 / ry, unit) if ry else None
                if ij.get("spacing") is not None:
                    info.physical_size["z"] = length_um(ij["spacing"], unit)
            if ij.get("finterval") is not None:
                info.physical_size["t"] = time_s(ij["finterval"], "s")
            return
        unit = {"INCH": "in", "CENTIMETER": "cm", "MILLIMETER": "mm", "MICROMETER": "µm"}.get(
            getattr(keyframe.resolutionunit, "name", ""), ""
        )
        if unit:
            try:
                rx, ry = keyframe.get_resolution()
            except (TypeError, ValueError, ZeroDivisionError):
                return
            info.physical_size["x"] = length_um(1.0 / rx, unit) if rx else None
            info.physical_size["y"] = length_um(1.0 / ry, unit) if ry else None

    def read_rows(self, series: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of plane ``(t, c, z)`` of ``series`` as ``(rows, x)``."""
        entry = self._series[series]
        index: list[Any] = [0] * len(entry.axes)
        for target, value in (("t", t), ("c", c), ("z", z)):
            positions = entry.groups[target]
            if positions:
                for pos, i in zip(
                    positions, np.unravel_index(value, entry.sizes[target]), strict=True
                ):
                    index[pos] = int(i)
        index[entry.groups["y"][0]] = slice(y0, y1)
        index[entry.groups["x"][0]] = slice(None)
        try:
            rows = np.asarray(entry.array[tuple(index)])
        except Exception as exc:
            raise ReaderError(self.path, f"tifffile cannot decode series {series}: {exc}") from exc
        if rows.dtype.kind == "b":
            rows = rows.astype(np.uint8)
        if not rows.dtype.isnative:
            rows = rows.astype(rows.dtype.newbyteorder("="))
        if entry.groups["y"][0] > entry.groups["x"][0]:
            rows = rows.T
        return rows

    def ome_xml(self) -> str:
        """The file's OME-XML, or one made from what tifffile found."""
        tif = self._tif
        if tif.is_ome and tif.ome_metadata:
            return remap_ome_xml(str(tif.ome_metadata), self._xml_remaps)
        return ome_xml_from_series(self.series)

    def used_files(self) -> list[str]:
        """The TIFF files holding the pixels (several for a multi-file OME-TIFF)."""
        files = {str(self.path.resolve())}
        for s in self._tif.series:
            for page in s.pages:
                if page is not None:
                    files.add(str(Path(page.parent.filehandle.path).resolve()))
        return sorted(files)

    def versions(self) -> dict[str, str]:
        """tifffile's version."""
        import tifffile

        return {"tifffile": str(tifffile.__version__)}

    def close(self) -> None:
        """Close the TIFF file(s)."""
        self._tif.close()


def is_tiff_name(path: str | Path) -> bool:
    """True for ``.tif``, ``.tiff``, ``.ome.tif`` and ``.ome.tiff`` names."""
    return Path(path).name.lower().endswith(TIFF_SUFFIXES)


def open_source(src: str | Path, reader: str = "auto", *, java_heap: str = "2g") -> ImageSource:
    """Open ``src`` with the reader asked for (``auto``, ``tifffile`` or ``bioformats``).

    Raises
    ------
    InputError
        The file is missing, unreadable, has no image or an image with a zero-size dimension, or
        needs Bio-Formats and Bio-Formats is not installed.
    """
    if reader not in READERS:
        raise ValueError(f"reader {reader!r}: use one of {', '.join(READERS)}")
    src = Path(src)
    use = reader if reader != "auto" else ("tifffile" if is_tiff_name(src) else "bioformats")
    companion = binary_only_metadata(src) if is_tiff_name(src) and src.is_file() else None
    if companion is not None:
        # Both readers would otherwise read the pixels alone, without the metadata.
        if not companion.is_file():
            raise InputError(
                src, f"binary-only OME-TIFF whose metadata file {companion.name} is missing"
            )
        if reader == "tifffile":
            raise InputError(
                src,
                f"binary-only OME-TIFF (metadata in {companion.name}): tifffile does not apply "
                "it; use the Bio-Formats reader",
            )
        use = "bioformats"
    source: ImageSource
    if use == "tifffile":
        try:
            source = TiffSource(src)
        except ReaderError as exc:
            if reader != "auto":
                raise
            source = open_fallback(src, exc, java_heap=java_heap)
    else:
        from imagedepot.convert.bioformats import BioFormatsSource

        source = BioFormatsSource(src, java_heap=java_heap)
    try:
        check_series(source)
    except InputError:
        source.close()
        raise
    return source


def open_fallback(src: str | Path, failure: ReaderError, *, java_heap: str = "2g") -> ImageSource:
    """Open ``src`` with Bio-Formats after tifffile failed with ``failure`` (``reader="auto"``).

    The returned source carries the fallback (``fallback``, and a note for the report).

    Raises
    ------
    InputError
        Bio-Formats cannot read the file either (or is not installed): the reason names what
        each reader said, so a quarantined item shows both.
    """
    from imagedepot.convert.bioformats import BioFormatsSource

    first = failure.reason
    try:
        source = BioFormatsSource(src, java_heap=java_heap)
    except InputError as exc:
        raise InputError(
            src, f"no reader can read it: tifffile: {first}; Bio-Formats: {exc.reason}"
        ) from exc
    log.warning("%s: tifffile failed (%s); reading it with Bio-Formats", src, first)
    source.fallback = {"from": "tifffile", "to": "bioformats", "reason": first}
    source.notes.insert(0, f"tifffile could not read this file ({first}); read with Bio-Formats")
    return source


def _convert_with_fallback(
    src: Path, reader: str, java_heap: str, run: Callable[[ImageSource], None]
) -> None:
    """Open ``src`` and ``run`` the conversion on it; with ``reader="auto"``, a tifffile failure
    while decoding pixels (after opening went well) runs the whole conversion again with
    Bio-Formats (the first attempt's partial output is discarded by its ``atomic_path``)."""
    source = open_source(src, reader, java_heap=java_heap)
    try:
        run(source)
        return
    except ReaderError as exc:
        if reader != "auto" or source.reader != "tifffile":
            raise
        failure = exc
    finally:
        source.close()
    with contextlib.closing(open_fallback(src, failure, java_heap=java_heap)) as second:
        try:
            run(second)
        except InputError as exc:
            raise InputError(
                src,
                f"no reader can read it: tifffile: {failure.reason}; Bio-Formats: {exc.reason}",
            ) from exc


def binary_only_metadata(path: str | Path) -> Path | None:
    """The metadata file a binary-only OME-TIFF names (``BinaryOnly/@MetadataFile``), or None.

    Only the first page's description is read. A file tifffile cannot open gives None (the reader
    reports it).
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description
    except Exception:  # tifffile raises several types for a damaged file
        return None
    if "BinaryOnly" not in description:
        return None
    try:
        root = _parse_xml(description)
    except ET.ParseError:
        return None
    for element in root:
        name = element.get("MetadataFile")
        if _local(element.tag) == "BinaryOnly" and name:
            return path.parent / name
    return None


def check_series(source: ImageSource) -> None:
    """Raise :class:`InputError` (naming the file) for a source without images or with a size 0."""
    if not source.series:
        raise InputError(source.path, "no image in this file")
    for info in source.series:
        if min(info.shape) < 1:
            sizes = ", ".join(f"{a}={n}" for a, n in zip(AXES, info.shape, strict=True))
            raise InputError(
                source.path, f"series {info.index} has a zero-size dimension ({sizes})"
            )


# --------------------------------------------------------------------------- pyramid

#: ``(t, c, z, y, x)`` sizes.
Shape5 = tuple[int, int, int, int, int]


def pyramid_level_count(y: int, x: int, requested: int) -> int:
    """Levels to write: as asked, but none smaller than one pixel in its shorter side."""
    most = 1 + math.floor(math.log2(max(1, min(y, x))))
    return max(1, min(int(requested), most))


def level_shape(y: int, x: int, level: int) -> tuple[int, int]:
    """Plane size at ``level`` (each level halves y and x, rounding up)."""
    for _ in range(level):
        y, x = (y + 1) // 2, (x + 1) // 2
    return y, x


def downsample_2x2(a: np.ndarray) -> np.ndarray:
    """Halve a ``(y, x)`` plane by 2x2 block means.

    An odd last row or column is repeated (edge blocks average what they cover). Integer results are
    rounded half to even and keep the input dtype.
    """
    if a.shape[0] % 2:
        a = np.concatenate([a, a[-1:, :]], axis=0)
    if a.shape[1] % 2:
        a = np.concatenate([a, a[:, -1:]], axis=1)
    work = np.float32 if a.dtype.itemsize <= 2 or a.dtype == np.float32 else np.float64
    acc: np.ndarray = a[0::2, 0::2].astype(work)
    np.add(acc, a[1::2, 0::2], out=acc)
    np.add(acc, a[0::2, 1::2], out=acc)
    np.add(acc, a[1::2, 1::2], out=acc)
    np.multiply(acc, 0.25, out=acc)
    if a.dtype.kind in "iu":
        np.rint(acc, out=acc)
    return acc.astype(a.dtype)


def subsample_2x2(a: np.ndarray) -> np.ndarray:
    """Halve a ``(y, x)`` plane by keeping the first pixel of each 2x2 block.

    For label images: no value appears that the full resolution does not hold.
    """
    return np.ascontiguousarray(a[0::2, 0::2])


def _chunks5(chunks: tuple[int, ...] | None) -> Shape5:
    """The chunk shape asked for as ``(t, c, z, y, x)`` (not yet clipped to an image)."""
    if chunks is None:
        full: tuple[int, ...] = (1, 1, 1, DEFAULT_CHUNK, DEFAULT_CHUNK)
    elif len(chunks) == 2:
        full = (1, 1, 1, int(chunks[0]), int(chunks[1]))
    elif len(chunks) == 5:
        full = tuple(int(n) for n in chunks)
    else:
        raise ValueError(f"chunks {chunks}: give (y, x) or (t, c, z, y, x)")
    if min(full) < 1:
        raise ValueError(f"chunks {chunks}: sizes must be positive")
    return full  # type: ignore[return-value]


def _shard5(shard: tuple[int, ...], chunk: Shape5) -> Shape5:
    """The shard shape as ``(t, c, z, y, x)``: ``(y, x)`` keeps the chunk's t, c and z."""
    if len(shard) == 2:
        full: tuple[int, ...] = (*chunk[:3], int(shard[0]), int(shard[1]))
    elif len(shard) == 5:
        full = tuple(int(n) for n in shard)
    else:
        raise ValueError(f"shard {shard}: give (y, x) or (t, c, z, y, x)")
    if min(full) < 1 or any(s % c for s, c in zip(full, chunk, strict=True)):
        raise ValueError(
            f"shard {shard}: every size must be a positive multiple of the chunk size {chunk}"
        )
    return full  # type: ignore[return-value]


def _clip(block: Shape5, shape: Shape5) -> Shape5:
    return tuple(max(1, min(b, n)) for b, n in zip(block, shape, strict=True))  # type: ignore[return-value]


def _clip_shard(shard: Shape5, chunk: Shape5, shape: Shape5) -> Shape5:
    """A shard no larger than needed to cover ``shape``, still a multiple of ``chunk``."""
    return tuple(
        s if s < n else c * math.ceil(n / c) for s, c, n in zip(shard, chunk, shape, strict=True)
    )  # type: ignore[return-value]


@dataclass(frozen=True)
class _Plan:
    """How one series is cut.

    ``shapes``, ``chunks`` and ``shards`` per level; ``units``: rows per write at each level (a
    chunk row, or a shard row when sharded, so no chunk or shard is written twice for one plane);
    ``band``: rows read at once (a multiple of ``2**(levels-1)``, so each band halves evenly, and of
    the level-0 write unit, covering at least one reader block).
    """

    shapes: list[Shape5]
    chunks: list[Shape5]
    shards: list[Shape5] | None
    units: list[int]
    band: int

    @property
    def levels(self) -> int:
        return len(self.shapes)


def _plan(
    shape: Shape5,
    chunks: tuple[int, ...] | None,
    shard: tuple[int, ...] | None,
    requested_levels: int,
    row_block: int,
) -> _Plan:
    t_n, c_n, z_n, y_n, x_n = shape
    n = pyramid_level_count(y_n, x_n, requested_levels)
    shapes: list[Shape5] = [(t_n, c_n, z_n, *level_shape(y_n, x_n, level)) for level in range(n)]
    chunk = _chunks5(chunks)
    level_chunks = [_clip(chunk, s) for s in shapes]
    level_shards = None
    if shard is not None:
        full_shard = _shard5(shard, chunk)
        level_shards = [
            _clip_shard(full_shard, c, s) for c, s in zip(level_chunks, shapes, strict=True)
        ]
    units = [block[3] for block in (level_shards or level_chunks)]
    base = math.lcm(units[0], 2 ** (n - 1))
    band = base * max(1, math.ceil(max(1, row_block) / base))
    return _Plan(shapes, level_chunks, level_shards, units, band)


Block = tuple[int, int, int, int, int, np.ndarray]


def _iter_blocks(
    source: ImageSource,
    s: int,
    info: SeriesInfo,
    plan: _Plan,
    reduce: Callable[[np.ndarray], np.ndarray],
    stats: _ChannelStats | None = None,
) -> Iterator[Block]:
    """Yield ``(t, c, z, level, y0, rows)`` plane after plane, ``rows`` being whole writes.

    Within a band, reduced levels come before full resolution. ``stats`` (if given) sees every
    band, in the thread that runs this generator.

    Each band read is reduced level by level with ``reduce``; each level holds back the rows that
    do not yet fill a write unit (``plan.units``) until the next band, and flushes the rest at the
    plane's end. In memory: one band and less than one write unit per level.
    """
    t_n, c_n, z_n, y_n, x_n = info.shape
    n = plan.levels
    for t, c, z in itertools.product(range(t_n), range(c_n), range(z_n)):
        held: list[np.ndarray | None] = [None] * n
        start = [0] * n
        for y0 in range(0, y_n, plan.band):
            y1 = min(y_n, y0 + plan.band)
            rows = source.read_rows(s, t, c, z, y0, y1)
            if rows.shape != (y1 - y0, x_n):
                expected = (y1 - y0, x_n)
                raise ImagedepotError(
                    f"{source.reader} returned rows of shape {rows.shape}, expected {expected}"
                )
            if stats is not None:
                stats.add(c, rows)
            ready_blocks: list[Block] = []
            for level in range(n):
                if level:
                    rows = reduce(rows)
                pending = held[level]
                block = rows if pending is None else np.concatenate([pending, rows])
                unit = plan.units[level]
                ready = block.shape[0] if y1 == y_n else block.shape[0] // unit * unit
                held[level] = block[ready:] if ready < block.shape[0] else None
                if ready:
                    ready_blocks.append((t, c, z, level, start[level], block[:ready]))
                    start[level] += ready
            # Reduced levels first: a consumer that stops after the last full-resolution rows
            # (tifffile, once it has every tile) has then received everything.
            yield from reversed(ready_blocks)


_END = object()


def _prefetched(items: Iterator[Block], depth: int) -> Iterator[Block]:
    """Run ``items`` in a reader thread, ``depth`` blocks ahead (``depth`` 0: in this thread).

    Reading (Bio-Formats releases the GIL in ``openBytes``, tifffile in its decoders) and
    downsampling then overlap with the caller's writing and compression. Errors of the reader
    thread are raised here; when the caller stops early, the thread stops after its current block.
    """
    if depth < 1:
        yield from items
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="imagedepot-reader", daemon=True)
    thread.start()
    try:
        while True:
            entry = q.get()
            if entry is _END:
                return
            if isinstance(entry, BaseException):
                raise entry
            yield entry
    finally:
        stop.set()
        thread.join()


#: Heap growth padding asked of glibc's allocator (``M_TOP_PAD``), see :func:`tune_allocator`.
TOP_PAD = 64 << 20
_allocator_tuned = False


def tune_allocator() -> None:
    """Ask glibc to keep 64 MiB of freed memory per heap instead of returning it at once.

    With a JVM in the process, glibc gives every zarr worker thread its own heap and trims it as
    soon as a chunk's buffers are freed, so the next chunk faults the same pages in again: two
    million page faults (seconds of system time, 25 % of the wall time) for a 2 GiB image; with
    the padding, a few ten thousand, and the same peak memory. Once per process, Linux with glibc
    only; an explicit ``MALLOC_TOP_PAD_`` in the environment is left to rule.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    if not sys.platform.startswith("linux") or "MALLOC_TOP_PAD_" in os.environ:
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):
        return
    m_top_pad = -2
    if mallopt(m_top_pad, TOP_PAD) != 1:
        log.debug("mallopt(M_TOP_PAD) refused; allocator left as it is")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. a batch job's allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _threads(threads: int | None) -> int:
    if threads is None:
        return available_cpus()
    if threads < 1:
        raise ValueError(f"threads {threads}: give a positive number")
    return int(threads)


def _progress(series: int, done: int, planes: int) -> None:
    """Log every tenth of the planes of a series (and the last)."""
    if done == planes or done % max(1, planes // 10) == 0:
        log.info("series %d: %d/%d planes written", series, done, planes)


class _ChannelStats:
    """Running per-channel minimum and maximum (finite values only) for display windows."""

    def __init__(self, channels: int) -> None:
        self.low = [math.inf] * channels
        self.high = [-math.inf] * channels

    def add(self, c: int, a: np.ndarray) -> None:
        if a.dtype.kind == "f":
            a = a[np.isfinite(a)]
        if a.size:
            self.low[c] = min(self.low[c], float(a.min()))
            self.high[c] = max(self.high[c], float(a.max()))

    def window(self, c: int, dtype: np.dtype) -> dict[str, float]:
        low, high = self.low[c], self.high[c]
        if not math.isfinite(low):
            low = high = 0.0
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return {"start": low, "end": high, "min": float(info.min), "max": float(info.max)}
        return {"start": low, "end": high, "min": low, "max": high}


DEFAULT_COLORS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")


def default_colors(channels: int) -> list[str]:
    """Display colours when the source gives none: white for one channel, else a fixed cycle."""
    if channels == 1:
        return ["FFFFFF"]
    if channels == 3:
        return ["FF0000", "00FF00", "0000FF"]
    return [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(channels)]


# --------------------------------------------------------------------------- NGFF versions

SHARDING_NEEDS_V3 = "shard: sharding needs NGFF 0.5 (Zarr v3)"


class NgffFormat:
    """Where one NGFF version puts its metadata (see the subclasses)."""

    version: ClassVar[str]
    zarr_format: ClassVar[Literal[2, 3]]
    #: Whether chunks can be grouped into shards (Zarr v3 sharding codec).
    sharding: ClassVar[bool] = False

    def array_options(self, shards: Shape5 | None = None) -> dict[str, Any]:
        """Keyword arguments of ``zarr.create_array`` for image levels (``shards``: 0.5 only)."""
        raise NotImplementedError

    def wrap(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Group attributes holding ``attrs`` as OME metadata."""
        raise NotImplementedError

    def multiscale(self, multiscale: dict[str, Any]) -> dict[str, Any]:
        """One ``multiscales`` entry."""
        return multiscale

    def omero(self, omero: dict[str, Any]) -> dict[str, Any]:
        """The ``omero`` block."""
        return omero

    def image_label(self, label: dict[str, Any]) -> dict[str, Any]:
        """The ``image-label`` block of a label image."""
        return label


class NgffV04(NgffFormat):
    """NGFF 0.4: Zarr v2, metadata at the top of ``.zattrs``, nested chunk keys (``/``)."""

    version = "0.4"
    zarr_format = 2

    def array_options(self, shards: Shape5 | None = None) -> dict[str, Any]:
        from numcodecs import Blosc

        if shards is not None:
            raise ValueError(SHARDING_NEEDS_V3)
        return {
            "chunk_key_encoding": {"name": "v2", "separator": "/"},
            "compressors": Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE),
        }

    def wrap(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs

    def multiscale(self, multiscale: dict[str, Any]) -> dict[str, Any]:
        return {**multiscale, "version": self.version}

    def omero(self, omero: dict[str, Any]) -> dict[str, Any]:
        return {**omero, "version": self.version}

    def image_label(self, label: dict[str, Any]) -> dict[str, Any]:
        return {"version": self.version, **label}


class NgffV05(NgffFormat):
    """NGFF 0.5: Zarr v3, metadata under ``attributes.ome`` with ``version``, dimension names.

    With ``shards``, chunks are stored inside shard files (Zarr v3 sharding codec): far fewer
    files for large images; each chunk stays separately readable.
    """

    version = "0.5"
    zarr_format = 3
    sharding = True

    def array_options(self, shards: Shape5 | None = None) -> dict[str, Any]:
        from zarr.codecs import BloscCodec

        options: dict[str, Any] = {
            "dimension_names": list(AXES),
            "compressors": BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
        }
        if shards is not None:
            options["shards"] = shards
        return options

    def wrap(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"ome": {"version": self.version, **attrs}}


NGFF_FORMATS: dict[str, NgffFormat] = {"0.4": NgffV04(), "0.5": NgffV05()}


# --------------------------------------------------------------------------- OME-Zarr writer


def _axes_metadata(info: SeriesInfo) -> list[dict[str, Any]]:
    ps = info.physical_size
    axes: list[dict[str, Any]] = []
    for name in AXES:
        if name == "c":
            axes.append({"name": "c", "type": "channel"})
            continue
        axis: dict[str, Any] = {"name": name, "type": "time" if name == "t" else "space"}
        if ps.get(name) is not None:
            axis["unit"] = "second" if name == "t" else "micrometer"
        axes.append(axis)
    return axes


def _scale(info: SeriesInfo, level: int) -> list[float]:
    ps = info.physical_size
    f = float(2**level)
    return [
        float(ps.get("t") or 1.0),
        1.0,
        float(ps.get("z") or 1.0),
        float(ps.get("y") or 1.0) * f,
        float(ps.get("x") or 1.0) * f,
    ]


def _multiscale(info: SeriesInfo, name: str, levels: int, labels: bool) -> dict[str, Any]:
    return {
        "name": name,
        "axes": _axes_metadata(info),
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": _scale(info, level)}],
            }
            for level in range(levels)
        ],
        "type": "nearest" if labels else "local_mean",
        "metadata": {
            "description": (
                "first pixel of each 2x2 block in y and x per level"
                if labels
                else "2x2 block mean in y and x per level; odd edges repeated"
            ),
            "method": "imagedepot.convert.microscopy."
            + ("subsample_2x2" if labels else "downsample_2x2"),
        },
    }


def _omero(info: SeriesInfo, stats: _ChannelStats) -> dict[str, Any]:
    dtype = np.dtype(info.dtype)
    defaults = default_colors(info.shape[1])
    channels = []
    for c in range(info.shape[1]):
        channels.append(
            {
                "active": True,
                "coefficient": 1.0,
                "color": info.channel_colors[c] or defaults[c],
                "family": "linear",
                "inverted": False,
                "label": info.channel_names[c] or f"Channel {c}",
                "window": stats.window(c, dtype),
            }
        )
    return {
        "name": info.name or f"Image {info.index}",
        "channels": channels,
        "rdefs": {
            "defaultT": 0,
            "defaultZ": info.shape[2] // 2,
            "model": "color" if info.shape[1] > 1 else "greyscale",
        },
    }


def _image_report(info: SeriesInfo, levels: list[Shape5], path: str) -> dict[str, Any]:
    return {
        "path": path,
        "series": info.index,
        "name": info.name,
        "axes": "".join(AXES),
        "shape": list(info.shape),
        "dtype": info.dtype,
        "physical_size": dict(info.physical_size),
        "channel_names": list(info.channel_names),
        "levels": [list(s) for s in levels],
        **({"layout": info.layout} if info.layout else {}),
    }


@dataclass(frozen=True)
class _ZarrOptions:
    fmt: NgffFormat
    chunks: tuple[int, ...] | None
    shard: tuple[int, ...] | None
    levels: int
    prefetch: int


def _write_levels(
    source: ImageSource,
    s: int,
    info: SeriesInfo,
    group: Any,
    options: _ZarrOptions,
    *,
    labels: bool = False,
) -> tuple[_Plan, _ChannelStats]:
    """Write the pyramid of series ``s`` as arrays ``0``, ``1``... of ``group``."""
    plan = _plan(info.shape, options.chunks, options.shard, options.levels, info.row_block)
    arrays = [
        group.create_array(
            str(level),
            shape=shape,
            chunks=plan.chunks[level],
            dtype=info.dtype,
            fill_value=0,
            **options.fmt.array_options(plan.shards[level] if plan.shards else None),
        )
        for level, shape in enumerate(plan.shapes)
    ]
    stats = _ChannelStats(info.shape[1])
    y_n = info.shape[3]
    planes = info.shape[0] * info.shape[1] * info.shape[2]
    done = 0
    reduce = subsample_2x2 if labels else downsample_2x2
    blocks = _iter_blocks(source, s, info, plan, reduce, None if labels else stats)
    for t, c, z, level, y0, rows in _prefetched(blocks, options.prefetch):
        arrays[level][t, c, z, y0 : y0 + rows.shape[0], :] = rows
        if level == 0 and y0 + rows.shape[0] == y_n:
            done += 1
            _progress(s, done, planes)
    return plan, stats


def _write_zarr_image(
    source: ImageSource, s: int, info: SeriesInfo, root: Any, options: _ZarrOptions
) -> list[Shape5]:
    group = root.create_group(str(s))
    plan, stats = _write_levels(source, s, info, group, options)
    name = info.name or f"Image {s}"
    fmt = options.fmt
    group.attrs.update(
        fmt.wrap(
            {
                "multiscales": [fmt.multiscale(_multiscale(info, name, plan.levels, False))],
                "omero": fmt.omero(_omero(info, stats)),
            }
        )
    )
    return plan.shapes


LABEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def label_name(path: str | Path) -> str:
    """Default label name of a mask file: its name without ``.ome.tif``/``.tif``... suffixes."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _open_labels(
    labels: Mapping[str, str | Path],
    info: SeriesInfo,
    stack: contextlib.ExitStack[Any],
    java_heap: str,
) -> list[tuple[str, Path, ImageSource]]:
    """Open and check every label image against the image (series ``info``) before writing."""
    opened = []
    for name, path in labels.items():
        if not LABEL_NAME.fullmatch(name):
            raise ValueError(f"label name {name!r}: use letters, digits, '_', '.' and '-'")
        mask = open_source(path, "auto", java_heap=java_heap)
        stack.callback(mask.close)
        m = mask.series[0]
        t_n, _, z_n, y_n, x_n = info.shape
        expected = (t_n, 1, z_n, y_n, x_n)
        if m.shape != expected:
            raise InputError(
                path,
                f"label image is {m.shape} (t, c, z, y, x); the image needs {expected}",
            )
        if np.dtype(m.dtype).kind not in "iu":
            raise InputError(path, f"label image must hold integers, not {m.dtype}")
        if len(mask.series) > 1:
            log.warning("%s: only the first of %d series is used as labels", path, len(mask.series))
        opened.append((name, Path(path), mask))
    return opened


def _write_labels(
    group: Any,
    info: SeriesInfo,
    opened: list[tuple[str, Path, ImageSource]],
    options: _ZarrOptions,
) -> list[dict[str, Any]]:
    """Write label images into ``group/labels/<name>/`` (NGFF ``image-label``)."""
    fmt = options.fmt
    labels_group = group.create_group("labels")
    reports = []
    for name, path, mask in opened:
        m = mask.series[0]
        log.info("labels %s: %s %s", name, m.shape, m.dtype)
        label_group = labels_group.create_group(name)
        plan, _ = _write_levels(mask, 0, m, label_group, options, labels=True)
        label_info = SeriesInfo(
            index=info.index,
            name=name,
            shape=m.shape,
            dtype=m.dtype,
            physical_size=dict(info.physical_size),
            channel_names=[name],
            channel_colors=[None],
        )
        label_group.attrs.update(
            fmt.wrap(
                {
                    "multiscales": [
                        fmt.multiscale(_multiscale(label_info, name, plan.levels, True))
                    ],
                    "image-label": fmt.image_label({"source": {"image": "../../"}}),
                }
            )
        )
        reports.append(
            {
                "name": name,
                "source": str(path),
                "shape": list(m.shape),
                "dtype": m.dtype,
                "levels": [list(s) for s in plan.shapes],
            }
        )
    labels_group.attrs.update(fmt.wrap({"labels": [name for name, _, _ in opened]}))
    return reports


def convert_to_ome_zarr(
    src: Path,
    out: Path,
    *,
    ngff_version: str = "0.4",
    chunks: tuple[int, ...] | None = None,
    shard: tuple[int, ...] | None = None,
    pyramid_levels: int = 3,
    labels: Mapping[str, str | Path] | None = None,
    force: bool = False,
    reader: str = "auto",
    java_heap: str = "2g",
    threads: int | None = None,
) -> ConvertReport:
    """Convert every series of a microscopy image to one OME-Zarr (bioformats2raw layout).

    Pixels are streamed: a band of rows is read (in a reader thread), reduced for each pyramid
    level and written chunk row by chunk row (shard row by shard row), while zarr compresses the
    chunks of a write concurrently. Memory holds a few bands, whatever the height, plane count or
    series count of the image (a band is ``chunk rows x image width``).

    Parameters
    ----------
    src
        Image file (any file of a multi-file OME-TIFF; a Bio-Formats ``.fake`` name needs no file).
    out
        ``.ome.zarr`` folder to create.
    ngff_version
        ``0.4`` (Zarr v2, the default: read by most viewers) or ``0.5`` (Zarr v3).
    chunks
        Chunk shape ``(y, x)`` or ``(t, c, z, y, x)``; default ``(1, 1, 1, 1024, 1024)``; clipped
        to each level.
    shard
        NGFF 0.5 only: shard shape ``(y, x)`` (t, c, z as the chunks) or ``(t, c, z, y, x)``, each
        size a multiple of the chunk's; clipped to each level. Default: no sharding.
    pyramid_levels
        Resolution levels including full resolution (each halves y and x); fewer when the image is
        too small.
    labels
        Label images (segmentation masks) by name, written into ``0/labels/<name>/`` of the first
        series: integer images of shape ``(t, 1, z, y, x)`` equal to the image's (a 2-D mask for
        a 2-D image), any format the readers open.
    force
        Replace an existing ``out``.
    reader
        ``auto``, ``tifffile`` or ``bioformats``.
    java_heap
        Maximum Java heap (``-Xmx``) when Bio-Formats starts its JVM (first use in the process).
    threads
        Threads to use: the reader thread (when more than one) and zarr's concurrent chunk
        compression. Default: the CPUs this process may use.

    Returns
    -------
    ConvertReport
        Per image: shape ``(t, c, z, y, x)``, dtype, physical sizes (µm, s), channel names, level
        shapes, labels.

    Raises
    ------
    InputError
        The image or a label image is unreadable, has a zero-size dimension, misses files of its
        set, or a label image does not fit the image.
    """
    import zarr

    if ngff_version not in NGFF_FORMATS:
        raise ValueError(f"ngff_version {ngff_version!r}: use one of {', '.join(NGFF_VERSIONS)}")
    fmt = NGFF_FORMATS[ngff_version]
    n_threads = _threads(threads)
    full_chunk = _chunks5(chunks)
    if shard is not None:
        if not fmt.sharding:
            raise ValueError(SHARDING_NEEDS_V3)
        _shard5(shard, full_chunk)
    out = Path(out)
    check_overwrite(out, force)
    tune_allocator()
    options = _ZarrOptions(fmt, chunks, shard, pyramid_levels, 1 if n_threads > 1 else 0)
    report = ConvertReport(
        step="convert_ome_zarr",
        options={
            "ngff_version": ngff_version,
            "chunks": list(full_chunk),
            "shard": list(_shard5(shard, full_chunk)) if shard is not None else None,
            "pyramid_levels": pyramid_levels,
            "labels": sorted(labels) if labels else [],
            "reader": reader,
            "threads": n_threads,
        },
    )

    def run(source: ImageSource) -> None:
        _start_report(report, source, {"zarr": str(zarr.__version__)})
        with contextlib.ExitStack() as stack:
            opened = _open_labels(labels, source.series[0], stack, java_heap) if labels else []
            with (
                atomic_path(out, force=force, is_dir=True, remove_stale=True) as tmp,
                zarr.config.set({"async.concurrency": max(2, 2 * n_threads)}),
            ):
                root = zarr.open_group(str(tmp), mode="w", zarr_format=fmt.zarr_format)
                root.attrs.update(fmt.wrap({"bioformats2raw.layout": 3}))
                for s, info in enumerate(source.series):
                    log.info(
                        "series %d/%d: %s %s", s + 1, len(source.series), info.shape, info.dtype
                    )
                    shapes = _write_zarr_image(source, s, info, root, options)
                    entry = _image_report(info, shapes, str(out / str(s)))
                    if s == 0 and opened:
                        entry["labels"] = _write_labels(root[str(s)], info, opened, options)
                    report.images.append(entry)
                names = [str(s) for s in range(len(source.series))]
                ome_group = root.create_group("OME")
                ome_group.attrs.update(fmt.wrap({"series": names}))
                xml, note = _metadata_xml(source)
                if note:
                    report.messages.append(note)
                (tmp / "OME" / "METADATA.ome.xml").write_text(xml, encoding="utf-8")

    _convert_with_fallback(Path(src), reader, java_heap, run)
    report.outputs = [str(out)]
    return report


def _start_report(report: ConvertReport, source: ImageSource, versions: dict[str, str]) -> None:
    """Fill what the reader tells (again, when a conversion is retried with another reader)."""
    report.tool = source.reader
    report.reader_fallback = source.fallback
    report.inputs = source.used_files()
    report.input_count = len(report.inputs)
    report.versions = {**source.versions(), **versions}
    report.messages = list(source.notes)
    report.images = []


def _metadata_xml(source: ImageSource) -> tuple[str, str | None]:
    """OME-XML for ``OME/METADATA.ome.xml``: the source's, unless it does not match the series."""
    xml = source.ome_xml()
    try:
        images = parse_ome_xml(xml)
        if len(images) == len(source.series) and all(
            (img["size"]["y"], img["size"]["x"]) == info.shape[3:5]
            for img, info in zip(images, source.series, strict=True)
        ):
            return metadata_only_ome_xml(xml), None
        note = "source OME-XML does not match the series found; OME-XML rebuilt from the series"
    except ET.ParseError as exc:
        note = f"source OME-XML does not parse ({exc}); OME-XML rebuilt from the series"
    return metadata_only_ome_xml(ome_xml_from_series(source.series)), note


# --------------------------------------------------------------------------- OME-TIFF writer

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: Pixels attributes that describe the stored pixels: taken from what was written.
_PIXELS_LAYOUT = ("DimensionOrder", "Type", "SizeX", "SizeY", "SizeZ", "SizeC", "SizeT")


def ome_tiff_xml(source_xml: str, series: list[SeriesInfo]) -> tuple[str, str | None]:
    """OME-XML for an OME-TIFF holding ``series`` as written here (XYZCT, one page per plane).

    The source's OME-XML is kept whole (instruments, objectives, channel acquisition settings,
    planes, annotations...; the OME de-identifier cleans it later), with what describes the stored
    pixels replaced by what was written: ``DimensionOrder``, ``Type``, sizes, byte order, the
    ``TiffData`` blocks (and channels when the source stores RGB samples in one channel). When the
    source's XML does not describe these series (another image count or plane size, another schema
    namespace) or the result does not parse as OME with ome-types, a minimal OME-XML made from the
    series is returned with a note saying why.
    """
    generated = ome_xml_from_series(series)
    try:
        merged = _with_written_pixels(source_xml, generated, series)
        import ome_types

        ome_types.from_xml(merged)
    except Exception as exc:  # ET.ParseError, ValueError, pydantic's ValidationError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        note = f"source OME-XML not kept in the OME-TIFF ({first}); OME-XML made from the series"
        return XML_DECLARATION + generated, note
    return merged, None


def _with_written_pixels(source_xml: str, generated_xml: str, series: list[SeriesInfo]) -> str:
    root = _parse_xml(source_xml)
    made = _parse_xml(generated_xml)
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    made_ns = made.tag[1:].split("}", 1)[0]
    if ns != made_ns:
        raise ValueError(f"source OME-XML uses schema {ns or 'without namespace'}")
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(source_xml), events=("start-ns",)):  # noqa: S314
        with contextlib.suppress(ValueError):
            ET.register_namespace(prefix, uri)
    images = [el for el in root if _local(el.tag) == "Image"]
    made_images = [el for el in made if _local(el.tag) == "Image"]
    if len(images) != len(series):
        raise ValueError(f"source OME-XML has {len(images)} images, {len(series)} series read")
    for attr in ("UUID", "Creator"):
        if made.get(attr):
            root.set(attr, str(made.get(attr)))
    for child in list(root):
        if _local(child.tag) == "BinaryOnly":
            root.remove(child)
    for info, image, made_image in zip(series, images, made_images, strict=True):
        pixels = next((el for el in image if _local(el.tag) == "Pixels"), None)
        made_pixels = next(el for el in made_image if _local(el.tag) == "Pixels")
        if pixels is None:
            raise ValueError(f"image {info.index} has no Pixels")
        if (pixels.get("SizeY"), pixels.get("SizeX")) != tuple(str(n) for n in info.shape[3:]):
            raise ValueError(f"image {info.index}: plane size differs from the series read")
        if pixels.get("Type") != made_pixels.get("Type"):
            pixels.attrib.pop("SignificantBits", None)
        for attr in _PIXELS_LAYOUT:
            pixels.set(attr, str(made_pixels.get(attr)))
        pixels.set("BigEndian", "true" if sys.byteorder == "big" else "false")
        if "Interleaved" in pixels.attrib:
            pixels.set("Interleaved", "false")
        channels = [el for el in pixels if _local(el.tag) == "Channel"]
        if len(channels) != info.shape[1] or any(
            ch.get("SamplesPerPixel", "1") != "1" for ch in channels
        ):
            for ch in channels:
                pixels.remove(ch)
            made_channels = [el for el in made_pixels if _local(el.tag) == "Channel"]
            for k, ch in enumerate(made_channels):
                pixels.insert(k, copy.deepcopy(ch))
        for child in list(pixels):
            if _local(child.tag) in ("TiffData", "BinData", "MetadataOnly"):
                pixels.remove(child)
        sizes = {"TheT": info.shape[0], "TheC": info.shape[1], "TheZ": info.shape[2]}
        planes = [el for el in pixels if _local(el.tag) == "Plane"]
        if any(int(p.get(k, "0")) >= n for p in planes for k, n in sizes.items()):
            for p in planes:
                pixels.remove(p)
        position = sum(1 for el in pixels if _local(el.tag) == "Channel")
        for k, block in enumerate(el for el in made_pixels if _local(el.tag) == "TiffData"):
            pixels.insert(position + k, copy.deepcopy(block))
    return XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n"


def _tiff_compression(name: str) -> str | None:
    if name not in TIFF_COMPRESSIONS:
        raise ValueError(f"compression {name!r}: use one of {', '.join(TIFF_COMPRESSIONS)}")
    if name == "none":
        return None
    return name


def _tiles(rows: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Tiles of a band (its height a multiple of ``tile`` except at the image end), row-major."""
    for ty in range(0, rows.shape[0], tile):
        for tx in range(0, rows.shape[1], tile):
            yield rows[ty : ty + tile, tx : tx + tile]


@dataclass(frozen=True)
class _TiffOptions:
    tile: int
    compression: str | None
    levels: int
    threads: int


def _write_tiff_series(
    tw: Any,
    source: ImageSource,
    s: int,
    info: SeriesInfo,
    scratch: Path,
    options: _TiffOptions,
    description: str | None,
) -> list[Shape5]:
    import zarr

    tile = options.tile
    plan = _plan(info.shape, (tile, tile), None, options.levels, info.row_block)
    n = plan.levels
    t_n, c_n, z_n, y_n, _ = info.shape
    # Reduced levels are kept on disk until full resolution is written: TIFF SubIFDs of a level
    # follow all pages of the series.
    reduced = [
        zarr.create_array(
            store=str(scratch / f"{s}-{level}"),
            shape=plan.shapes[level],
            chunks=plan.chunks[level],
            dtype=info.dtype,
            fill_value=0,
            zarr_format=3,
        )
        for level in range(1, n)
    ]
    planes = t_n * c_n * z_n

    def full_resolution() -> Iterator[np.ndarray]:
        done = 0
        blocks = _iter_blocks(source, s, info, plan, downsample_2x2)
        for t, c, z, level, y0, rows in _prefetched(blocks, 1 if options.threads > 1 else 0):
            if level:
                reduced[level - 1][t, c, z, y0 : y0 + rows.shape[0], :] = rows
                continue
            yield from _tiles(rows, tile)
            if y0 + rows.shape[0] == y_n:
                done += 1
                _progress(s, done, planes)

    def reduced_level(array: Any) -> Iterator[np.ndarray]:
        _, _, _, ly, _ = array.shape
        for t, c, z in itertools.product(range(t_n), range(c_n), range(z_n)):
            for y0 in range(0, ly, tile):
                yield from _tiles(np.asarray(array[t, c, z, y0 : y0 + tile, :]), tile)

    ps = info.physical_size
    common: dict[str, Any] = {
        "dtype": info.dtype,
        "tile": (tile, tile),
        "compression": options.compression,
        "photometric": "minisblack",
        "metadata": None,
        # Tiles are compressed in threads (tifffile only does so unasked for large segments).
        "maxworkers": options.threads,
    }

    def resolution(level: int) -> dict[str, Any]:
        if ps.get("x") and ps.get("y"):
            f = 2**level
            return {
                "resolution": (1e4 / (float(ps["x"] or 1) * f), 1e4 / (float(ps["y"] or 1) * f)),
                "resolutionunit": "CENTIMETER",
            }
        return {}

    # UTF-8 bytes: OME-XML may hold non-ASCII text (µm units, names); tifffile writes bytes as is.
    first: dict[str, Any] = {}
    if description is not None:
        first["description"] = description.encode("utf-8")
    tw.write(
        full_resolution(), shape=plan.shapes[0], subifds=n - 1, **first, **common, **resolution(0)
    )
    for level in range(1, n):
        tw.write(
            reduced_level(reduced[level - 1]),
            shape=plan.shapes[level],
            subfiletype=1,
            **common,
            **resolution(level),
        )
    return plan.shapes


def convert_to_ome_tiff(
    src: Path,
    out: Path,
    *,
    tile: int = 512,
    compression: str = "zlib",
    pyramid_levels: int = 3,
    force: bool = False,
    reader: str = "auto",
    java_heap: str = "2g",
    threads: int | None = None,
) -> ConvertReport:
    """Convert every series of a microscopy image to one tiled, pyramidal OME-TIFF.

    Each series is an OME Image with axes ``t, c, z, y, x`` (DimensionOrder ``XYZCT``), pages
    tiled ``tile x tile``, reduced levels in SubIFDs (each halving y and x), BigTIFF, physical
    sizes in µm and s, channel names and colours when the source has them. The source's OME-XML
    (instrument, objectives, channel acquisition settings...) is kept where it describes the
    series (see :func:`ome_tiff_xml`).

    Parameters
    ----------
    src, out
        Input image and ``.ome.tif`` to create.
    tile
        Tile edge in pixels (a multiple of 16).
    compression
        ``zlib`` (default), ``none``, ``zstd`` or ``lzw``.
    pyramid_levels
        Resolution levels including full resolution.
    force, reader, java_heap, threads
        As for :func:`convert_to_ome_zarr` (``threads`` also compress tiles).
    """
    import tifffile

    if tile < 16 or tile % 16:
        raise ValueError(f"tile {tile}: must be a positive multiple of 16")
    codec = _tiff_compression(compression)
    n_threads = _threads(threads)
    out = Path(out)
    check_overwrite(out, force)
    tune_allocator()
    options = _TiffOptions(tile, codec, pyramid_levels, n_threads)
    report = ConvertReport(
        step="convert_ome_tiff",
        options={
            "tile": tile,
            "compression": compression,
            "pyramid_levels": pyramid_levels,
            "reader": reader,
            "threads": n_threads,
        },
    )

    def run(source: ImageSource) -> None:
        _start_report(report, source, {"tifffile": str(tifffile.__version__)})
        xml, note = ome_tiff_xml(source.ome_xml(), source.series)
        if note:
            report.messages.append(note)
        with (
            atomic_path(out, force=force, remove_stale=True) as tmp,
            tempfile.TemporaryDirectory(prefix=temp_prefix(out), dir=out.parent) as scratch,
            tifffile.TiffWriter(tmp, bigtiff=True, ome=False) as tw,
        ):
            for s, info in enumerate(source.series):
                log.info("series %d/%d: %s %s", s + 1, len(source.series), info.shape, info.dtype)
                shapes = _write_tiff_series(
                    tw, source, s, info, Path(scratch), options, xml if s == 0 else None
                )
                report.images.append(_image_report(info, shapes, str(out)))

    _convert_with_fallback(Path(src), reader, java_heap, run)
    report.outputs = [str(out)]
    return report


__all__ = [
    "NGFF_FORMATS",
    "READERS",
    "NgffFormat",
    "NgffV04",
    "NgffV05",
    "TiffSource",
    "available_cpus",
    "check_series",
    "convert_to_ome_tiff",
    "convert_to_ome_zarr",
    "downsample_2x2",
    "label_name",
    "metadata_only_ome_xml",
    "ome_tiff_xml",
    "open_source",
    "parse_ome_xml",
    "subsample_2x2",
]
