""":func:`convert_to_ome_tiff`: every series of a microscopy image to one tiled, pyramidal
OME-TIFF, keeping the source's OME-XML where it describes the series.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import logging
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.convert import ConvertReport, ImageSource, SeriesInfo
from imagedepot.convert.microscopy.ome_xml import (
    XML_DECLARATION,
    _local,
    _parse_xml,
    ome_xml_from_series,
)
from imagedepot.convert.microscopy.pyramid import Shape5, _plan, downsample_2x2
from imagedepot.convert.microscopy.readers import _convert_with_fallback
from imagedepot.convert.microscopy.report import _image_report, _start_report
from imagedepot.convert.microscopy.streaming import (
    _iter_blocks,
    _prefetched,
    _progress,
    _threads,
    tune_allocator,
)
from imagedepot.io import atomic_path, check_overwrite, temp_prefix

log = logging.getLogger(__name__)


TIFF_COMPRESSIONS = ("zlib", "zstd", "lzw", "none")


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
