""":func:`convert_to_ome_zarr`: every series of a microscopy image to one OME-Zarr
(bioformats2raw layout, NGFF 0.4 or 0.5), with label images.
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from imagedepot.convert import ConvertReport, ImageSource
from imagedepot.convert.microscopy.labels import _open_labels, _write_labels
from imagedepot.convert.microscopy.ngff import NGFF_FORMATS, NGFF_VERSIONS, SHARDING_NEEDS_V3
from imagedepot.convert.microscopy.ome_xml import (
    metadata_only_ome_xml,
    ome_xml_from_series,
    parse_ome_xml,
)
from imagedepot.convert.microscopy.pyramid import _chunks5, _shard5
from imagedepot.convert.microscopy.readers import _convert_with_fallback
from imagedepot.convert.microscopy.report import _image_report, _start_report
from imagedepot.convert.microscopy.streaming import _threads, tune_allocator
from imagedepot.convert.microscopy.zarr_image import _write_zarr_image, _ZarrOptions
from imagedepot.io import atomic_path, check_overwrite

log = logging.getLogger(__name__)


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
