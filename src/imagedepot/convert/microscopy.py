"""Microscopy images to OME-Zarr (NGFF 0.4 or 0.5) and to pyramidal OME-TIFF, streamed.

Readers (:class:`imagedepot.convert.ImageSource`):

* :class:`TiffSource` (tifffile, pure Python): plain TIFF, ImageJ hyperstacks and OME-TIFF,
  multi-file OME-TIFF filesets included (tifffile assembles the series across files).
* :class:`imagedepot.convert.bioformats.BioFormatsSource` (Bio-Formats through a JVM): every other
  format. ``reader="auto"`` picks tifffile for ``.tif``/``.tiff`` (and ``.ome.tif(f)``), Bio-Formats
  otherwise.

Writers stream: a plane is read as bands of rows (a band is a whole number of the writer's chunk
or tile rows times ``2**(levels-1)``, and of the reader's strip or tile height), each band is
written at full resolution and reduced by 2x2 block means for every pyramid level, so only a band
(at most a plane) of one series is in memory. Every image is five-dimensional, axes
``t, c, z, y, x``; RGB samples become channels. Physical sizes are in micrometres and seconds.

OME-Zarr layout (bioformats2raw transitional layout of NGFF 0.4 / 0.5)::

    out.ome.zarr/
        .zattrs | zarr.json      {"bioformats2raw.layout": 3}
        OME/METADATA.ome.xml     the source's OME-XML, pixel references replaced by MetadataOnly
        OME/.zattrs | zarr.json  {"series": ["0", "1", ...]}
        0/                       image group: multiscales (levels 0..n-1) and omero metadata
        1/ ...

Outputs are written under a temporary name beside the target and renamed when complete, so an
interrupted conversion never leaves a complete-looking ``.ome.zarr`` or ``.ome.tif``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from imagedepot.convert import AXES, ConvertReport, ImageSource, SeriesInfo
from imagedepot.errors import ImagedepotError, InputError
from imagedepot.io import TMP_PREFIX, atomic_path, check_overwrite

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


def metadata_only_ome_xml(text: str) -> str:
    """The OME-XML with pixel references removed, as the bioformats2raw layout requires.

    ``TiffData``, ``BinData`` and ``BinaryOnly`` elements are dropped and each ``Pixels`` gets a
    ``MetadataOnly`` element (after its channels, where the schema puts it). Everything else is
    kept as it was.
    """
    import io

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
            raise InputError(self.path, f"tifffile cannot read it: {exc}") from exc
        self._series: list[_TiffSeries] = []
        self.series: list[SeriesInfo] = []
        try:
            self._scan()
        except InputError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise InputError(self.path, f"tifffile cannot read it: {exc}") from exc
        if not self.series:
            self.close()
            raise InputError(self.path, "no image in this TIFF")

    def _scan(self) -> None:
        import zarr

        tif = self._tif
        ome = parse_ome_xml(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else []
        for index, s in enumerate(tif.series):
            axes = s.get_axes(False)
            shape = tuple(int(n) for n in s.get_shape(False))
            dtype = np.dtype(s.dtype)
            if dtype.kind not in "biuf" or dtype.itemsize > 8:
                raise InputError(self.path, f"series {index}: pixel type {dtype} is not supported")
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
                raise InputError(
                    self.path, f"series {index}: tifffile store shape {array.shape} != {shape}"
                )
            groups: dict[str, list[int]] = {k: [] for k in AXES}
            for i, code in enumerate(axes):
                groups[TIFF_AXIS_TARGET.get(code, "z")].append(i)
            if len(groups["y"]) != 1 or len(groups["x"]) != 1:
                raise InputError(self.path, f"series {index}: axes {axes} have no single Y and X")
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
            self._series.append(_TiffSeries(array, axes, groups, sizes))
            self.series.append(info)

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
            raise InputError(self.path, f"tifffile cannot decode series {series}: {exc}") from exc
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
            return str(tif.ome_metadata)
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
        The file is missing, unreadable, or needs Bio-Formats and Bio-Formats is not installed.
    """
    if reader not in READERS:
        raise ValueError(f"reader {reader!r}: use one of {', '.join(READERS)}")
    src = Path(src)
    use = reader if reader != "auto" else ("tifffile" if is_tiff_name(src) else "bioformats")
    if use == "tifffile":
        return TiffSource(src)
    from imagedepot.convert.bioformats import BioFormatsSource

    return BioFormatsSource(src, java_heap=java_heap)


# --------------------------------------------------------------------------- pyramid


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


def _band_rows(row_block: int, base: int) -> int:
    """Band height: a multiple of ``base`` covering at least one reader block."""
    return base * max(1, math.ceil(max(1, row_block) / base))


def _iter_bands(
    source: ImageSource, s: int, info: SeriesInfo, levels: int, band: int
) -> Iterator[tuple[int, int, int, int, list[np.ndarray]]]:
    """Yield ``(t, c, z, y0, [band at level 0, level 1, ...])`` in t, c, z, y order."""
    t_n, c_n, z_n, y_n, x_n = info.shape
    for t, c, z in itertools.product(range(t_n), range(c_n), range(z_n)):
        for y0 in range(0, y_n, band):
            y1 = min(y_n, y0 + band)
            rows = source.read_rows(s, t, c, z, y0, y1)
            if rows.shape != (y1 - y0, x_n):
                expected = (y1 - y0, x_n)
                raise ImagedepotError(
                    f"{source.reader} returned rows of shape {rows.shape}, expected {expected}"
                )
            pyramid = [rows]
            for _ in range(1, levels):
                pyramid.append(downsample_2x2(pyramid[-1]))
            yield t, c, z, y0, pyramid


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


class NgffFormat:
    """Where one NGFF version puts its metadata (see the subclasses)."""

    version: ClassVar[str]
    zarr_format: ClassVar[Literal[2, 3]]

    def array_options(self) -> dict[str, Any]:
        """Keyword arguments of ``zarr.create_array`` for image levels."""
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


class NgffV04(NgffFormat):
    """NGFF 0.4: Zarr v2, metadata at the top of ``.zattrs``, nested chunk keys (``/``)."""

    version = "0.4"
    zarr_format = 2

    def array_options(self) -> dict[str, Any]:
        from numcodecs import Blosc

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


class NgffV05(NgffFormat):
    """NGFF 0.5: Zarr v3, metadata under ``attributes.ome`` with ``version``, dimension names."""

    version = "0.5"
    zarr_format = 3

    def array_options(self) -> dict[str, Any]:
        from zarr.codecs import BloscCodec

        return {
            "dimension_names": list(AXES),
            "compressors": BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
        }

    def wrap(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"ome": {"version": self.version, **attrs}}


NGFF_FORMATS: dict[str, NgffFormat] = {"0.4": NgffV04(), "0.5": NgffV05()}


# --------------------------------------------------------------------------- OME-Zarr writer


def _chunks5(
    chunks: tuple[int, ...] | None, shape: tuple[int, ...]
) -> tuple[int, int, int, int, int]:
    if chunks is None:
        full = (1, 1, 1, DEFAULT_CHUNK, DEFAULT_CHUNK)
    elif len(chunks) == 2:
        full = (1, 1, 1, int(chunks[0]), int(chunks[1]))
    elif len(chunks) == 5:
        full = tuple(int(n) for n in chunks)  # type: ignore[assignment]
    else:
        raise ValueError(f"chunks {chunks}: give (y, x) or (t, c, z, y, x)")
    if min(full) < 1:
        raise ValueError(f"chunks {chunks}: sizes must be positive")
    return tuple(max(1, min(c, n)) for c, n in zip(full, shape, strict=True))  # type: ignore[return-value]


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


def _image_report(info: SeriesInfo, levels: list[tuple[int, ...]], path: str) -> dict[str, Any]:
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
    }


def _write_zarr_image(
    source: ImageSource,
    s: int,
    info: SeriesInfo,
    root: Any,
    fmt: NgffFormat,
    chunks: tuple[int, ...] | None,
    requested_levels: int,
) -> list[tuple[int, ...]]:
    t_n, c_n, z_n, y_n, x_n = info.shape
    n = pyramid_level_count(y_n, x_n, requested_levels)
    chunk = _chunks5(chunks, info.shape)
    group = root.create_group(str(s))
    arrays = []
    shapes: list[tuple[int, ...]] = []
    for level in range(n):
        ly, lx = level_shape(y_n, x_n, level)
        shape = (t_n, c_n, z_n, ly, lx)
        arrays.append(
            group.create_array(
                str(level),
                shape=shape,
                chunks=tuple(min(a, b) for a, b in zip(chunk, shape, strict=True)),
                dtype=info.dtype,
                fill_value=0,
                **fmt.array_options(),
            )
        )
        shapes.append(shape)
    band = _band_rows(info.row_block, chunk[3] * 2 ** (n - 1))
    stats = _ChannelStats(c_n)
    planes = t_n * c_n * z_n
    done = 0
    for t, c, z, y0, pyramid in _iter_bands(source, s, info, n, band):
        stats.add(c, pyramid[0])
        for level, rows in enumerate(pyramid):
            ly0 = y0 >> level
            arrays[level][t, c, z, ly0 : ly0 + rows.shape[0], :] = rows
        if y0 + band >= y_n:
            done += 1
            _progress(s, done, planes)
    multiscale = {
        "name": info.name or f"Image {s}",
        "axes": _axes_metadata(info),
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": _scale(info, level)}],
            }
            for level in range(n)
        ],
        "type": "local_mean",
        "metadata": {
            "description": "2x2 block mean in y and x per level; odd edges repeated",
            "method": "imagedepot.convert.microscopy.downsample_2x2",
        },
    }
    group.attrs.update(
        fmt.wrap(
            {"multiscales": [fmt.multiscale(multiscale)], "omero": fmt.omero(_omero(info, stats))}
        )
    )
    return shapes


def convert_to_ome_zarr(
    src: Path,
    out: Path,
    *,
    ngff_version: str = "0.4",
    chunks: tuple[int, ...] | None = None,
    pyramid_levels: int = 3,
    force: bool = False,
    reader: str = "auto",
    java_heap: str = "2g",
) -> ConvertReport:
    """Convert every series of a microscopy image to one OME-Zarr (bioformats2raw layout).

    Parameters
    ----------
    src
        Image file (any file of a multi-file OME-TIFF; a Bio-Formats ``.fake`` name needs no file).
    out
        ``.ome.zarr`` folder to create.
    ngff_version
        ``0.4`` (Zarr v2, the default: read by most viewers) or ``0.5`` (Zarr v3).
    chunks
        Chunk shape ``(y, x)`` or ``(t, c, z, y, x)``; default ``(1, 1, 1, 1024, 1024)`` clipped to
        the image.
    pyramid_levels
        Resolution levels including full resolution (each halves y and x); fewer when the image is
        too small.
    force
        Replace an existing ``out``.
    reader
        ``auto``, ``tifffile`` or ``bioformats``.
    java_heap
        Maximum Java heap (``-Xmx``) when Bio-Formats starts its JVM (first use in the process).

    Returns
    -------
    ConvertReport
        Per image: shape ``(t, c, z, y, x)``, dtype, physical sizes (µm, s), channel names, level
        shapes.
    """
    import zarr

    if ngff_version not in NGFF_FORMATS:
        raise ValueError(f"ngff_version {ngff_version!r}: use one of {', '.join(NGFF_VERSIONS)}")
    fmt = NGFF_FORMATS[ngff_version]
    out = Path(out)
    check_overwrite(out, force)
    report = ConvertReport(
        step="convert_ome_zarr",
        options={
            "ngff_version": ngff_version,
            "chunks": list(chunks) if chunks else None,
            "pyramid_levels": pyramid_levels,
            "reader": reader,
        },
    )
    with contextlib.closing(open_source(src, reader, java_heap=java_heap)) as source:
        report.tool = source.reader
        report.inputs = source.used_files()
        report.input_count = len(report.inputs)
        report.versions = {**source.versions(), "zarr": str(zarr.__version__)}
        with atomic_path(out, force=force, is_dir=True) as tmp:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=fmt.zarr_format)
            root.attrs.update(fmt.wrap({"bioformats2raw.layout": 3}))
            for s, info in enumerate(source.series):
                log.info("series %d/%d: %s %s", s + 1, len(source.series), info.shape, info.dtype)
                shapes = _write_zarr_image(source, s, info, root, fmt, chunks, pyramid_levels)
                report.images.append(_image_report(info, shapes, str(out / str(s))))
            names = [str(s) for s in range(len(source.series))]
            ome_group = root.create_group("OME")
            ome_group.attrs.update(fmt.wrap({"series": names}))
            xml, note = _metadata_xml(source)
            if note:
                report.messages.append(note)
            (tmp / "OME" / "METADATA.ome.xml").write_text(xml, encoding="utf-8")
    report.outputs = [str(out)]
    return report


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


def _tiff_compression(name: str) -> str | None:
    if name not in TIFF_COMPRESSIONS:
        raise ValueError(f"compression {name!r}: use one of {', '.join(TIFF_COMPRESSIONS)}")
    if name == "none":
        return None
    if name in ("zstd", "lzw"):
        import importlib.util

        if importlib.util.find_spec("imagecodecs") is None:
            raise ImagedepotError(f"compression {name} needs imagecodecs: pip install imagecodecs")
    return name


def _tiles(rows: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Tiles of a band (its height a multiple of ``tile`` except at the image end), row-major."""
    for ty in range(0, rows.shape[0], tile):
        for tx in range(0, rows.shape[1], tile):
            yield rows[ty : ty + tile, tx : tx + tile]


def _write_tiff_series(
    tw: Any,
    source: ImageSource,
    s: int,
    info: SeriesInfo,
    scratch: Path,
    *,
    tile: int,
    compression: str | None,
    requested_levels: int,
) -> list[tuple[int, ...]]:
    import zarr

    t_n, c_n, z_n, y_n, x_n = info.shape
    n = pyramid_level_count(y_n, x_n, requested_levels)
    shapes: list[tuple[int, ...]] = [
        (t_n, c_n, z_n, *level_shape(y_n, x_n, level)) for level in range(n)
    ]
    # Reduced levels are kept on disk until full resolution is written: TIFF SubIFDs of a level
    # follow all pages of the series.
    reduced = [
        zarr.create_array(
            store=str(scratch / f"{s}-{level}"),
            shape=shapes[level],
            chunks=(1, 1, 1, min(tile, shapes[level][3]), min(tile, shapes[level][4])),
            dtype=info.dtype,
            fill_value=0,
            zarr_format=3,
        )
        for level in range(1, n)
    ]
    planes = t_n * c_n * z_n
    band = _band_rows(info.row_block, tile * 2 ** (n - 1))

    def full_resolution() -> Iterator[np.ndarray]:
        done = 0
        for t, c, z, y0, pyramid in _iter_bands(source, s, info, n, band):
            for level in range(1, n):
                ly0 = y0 >> level
                reduced[level - 1][t, c, z, ly0 : ly0 + pyramid[level].shape[0], :] = pyramid[level]
            yield from _tiles(pyramid[0], tile)
            if y0 + band >= y_n:
                done += 1
                _progress(s, done, planes)

    def reduced_level(array: Any) -> Iterator[np.ndarray]:
        _, _, _, ly, _ = array.shape
        for t, c, z in itertools.product(range(t_n), range(c_n), range(z_n)):
            for y0 in range(0, ly, tile):
                yield from _tiles(np.asarray(array[t, c, z, y0 : y0 + tile, :]), tile)

    ps = info.physical_size
    metadata: dict[str, Any] = {"axes": "TCZYX", "Name": info.name or f"Image {s}"}
    metadata.update(_ome_physical(info))
    channels = _ome_channels(info)
    if channels:
        metadata["Channel"] = channels
    common: dict[str, Any] = {
        "dtype": info.dtype,
        "tile": (tile, tile),
        "compression": compression,
        "photometric": "minisblack",
        # Tiles are compressed in threads (tifffile only does so unasked for large segments).
        "maxworkers": max(1, min(8, os.cpu_count() or 1)),
    }

    def resolution(level: int) -> dict[str, Any]:
        if ps.get("x") and ps.get("y"):
            f = 2**level
            return {
                "resolution": (1e4 / (float(ps["x"] or 1) * f), 1e4 / (float(ps["y"] or 1) * f)),
                "resolutionunit": "CENTIMETER",
            }
        return {}

    tw.write(
        full_resolution(),
        shape=shapes[0],
        subifds=n - 1,
        metadata=metadata,
        **common,
        **resolution(0),
    )
    for level in range(1, n):
        tw.write(
            reduced_level(reduced[level - 1]),
            shape=shapes[level],
            subfiletype=1,
            **common,
            **resolution(level),
        )
    return shapes


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
) -> ConvertReport:
    """Convert every series of a microscopy image to one tiled, pyramidal OME-TIFF.

    Each series is an OME Image with axes ``t, c, z, y, x`` (DimensionOrder ``XYZCT``), pages
    tiled ``tile x tile``, reduced levels in SubIFDs (each halving y and x), BigTIFF, physical
    sizes in µm and s, channel names and colours when the source has them.

    Parameters
    ----------
    src, out
        Input image and ``.ome.tif`` to create.
    tile
        Tile edge in pixels (a multiple of 16).
    compression
        ``zlib`` (default), ``none``, or ``zstd`` / ``lzw`` when imagecodecs is installed.
    pyramid_levels
        Resolution levels including full resolution.
    force, reader, java_heap
        As for :func:`convert_to_ome_zarr`.
    """
    import tifffile

    if tile < 16 or tile % 16:
        raise ValueError(f"tile {tile}: must be a positive multiple of 16")
    codec = _tiff_compression(compression)
    out = Path(out)
    check_overwrite(out, force)
    report = ConvertReport(
        step="convert_ome_tiff",
        options={
            "tile": tile,
            "compression": compression,
            "pyramid_levels": pyramid_levels,
            "reader": reader,
        },
    )
    with contextlib.closing(open_source(src, reader, java_heap=java_heap)) as source:
        report.tool = source.reader
        report.inputs = source.used_files()
        report.input_count = len(report.inputs)
        report.versions = {**source.versions(), "tifffile": str(tifffile.__version__)}
        with (
            atomic_path(out, force=force) as tmp,
            tempfile.TemporaryDirectory(prefix=TMP_PREFIX + "levels-", dir=out.parent) as scratch,
            tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tw,
        ):
            for s, info in enumerate(source.series):
                log.info("series %d/%d: %s %s", s + 1, len(source.series), info.shape, info.dtype)
                shapes = _write_tiff_series(
                    tw,
                    source,
                    s,
                    info,
                    Path(scratch),
                    tile=tile,
                    compression=codec,
                    requested_levels=pyramid_levels,
                )
                report.images.append(_image_report(info, shapes, str(out)))
    report.outputs = [str(out)]
    return report


__all__ = [
    "NGFF_FORMATS",
    "READERS",
    "NgffFormat",
    "NgffV04",
    "NgffV05",
    "TiffSource",
    "convert_to_ome_tiff",
    "convert_to_ome_zarr",
    "downsample_2x2",
    "metadata_only_ome_xml",
    "open_source",
    "parse_ome_xml",
]
