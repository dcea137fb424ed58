"""Which reader opens a file (tifffile or Bio-Formats), the fall back from tifffile to
Bio-Formats with ``reader="auto"``, and the checks every opened image passes.
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from imagedepot.convert import AXES, ImageSource
from imagedepot.convert.microscopy.ome_xml import _local, _parse_xml
from imagedepot.convert.microscopy.tiff_source import TiffSource
from imagedepot.errors import InputError, ReaderError

log = logging.getLogger(__name__)


READERS = ("auto", "tifffile", "bioformats")
TIFF_SUFFIXES = (".tif", ".tiff")


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
