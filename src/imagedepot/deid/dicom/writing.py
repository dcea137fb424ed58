"""Writing a cleaned data set, the input's pixel data element copied byte for byte when it can
be."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagedepot.deid.dicom.reading import _READ_ERRORS
from imagedepot.errors import InputError


@dataclass
class _Done:
    """A cleaned data set ready to write."""

    ds: Any
    name: str
    claimed: list[str]
    rules: list[str]
    pid: str
    raw: tuple[int, int, bytes] | None  # the input's pixel data element: start, end, tag bytes
    text: dict[str, Any] | None = None  # what the text detector found and did


def _raw_pixel_span(ds: Any, path: Path, tsyntax: str) -> tuple[int, int, bytes] | None:
    """Where the input's Pixel Data element lies, when it can be copied byte for byte.

    That is when it is the last element, was not read (deferred) and the data set is not
    deflated; then the output gets the very same bytes (no decode, no re-encode).
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

    if tsyntax == DeflatedExplicitVRLittleEndian or 0x7FE00010 not in ds:
        return None
    if max(int(t) for t in ds.keys()) != 0x7FE00010:  # noqa: SIM118
        return None
    elem = ds.get_item(0x7FE00010, keep_deferred=True)
    if not isinstance(elem, RawDataElement) or elem.value is not None:
        return None
    if elem.is_implicit_VR != UID(tsyntax).is_implicit_VR:
        return None  # encoded otherwise than its transfer syntax says: written anew, not copied
    header = 8 if elem.is_implicit_VR or elem.VR not in _LONG_HEADER_VRS else 12
    start = elem.value_tell - header
    size = os.path.getsize(path)
    end = size if elem.length == 0xFFFFFFFF else elem.value_tell + elem.length
    if start < 0 or end > size:
        return None
    return start, end, b"\xe0\x7f\x10\x00" if elem.is_little_endian else b"\x7f\xe0\x00\x10"


_LONG_HEADER_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)


def _write_header(fh: Any, ds: Any) -> None:
    """Preamble, File Meta Information and data set of ``ds`` (no pixel data; never deflated:
    the raw pixel path is not taken for the deflated syntax), as ``dcmwrite`` with
    ``enforce_file_format`` would write them, without its copy of the file meta."""
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset, write_file_meta_info

    meta = ds.file_meta
    tsyntax = meta.TransferSyntaxUID
    fp = DicomFileLike(fh)
    fp.write(ds.preamble or b"\x00" * 128)
    fp.write(b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_implicit_VR = tsyntax.is_implicit_VR
    fp.is_little_endian = tsyntax.is_little_endian
    write_dataset(fp, ds)


#: What pydicom's writer raises on a data set it cannot encode.
_WRITE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, struct.error, OverflowError)


def _unwritable(exc: BaseException) -> bool:
    """True for an error of encoding the data set (pydicom also raises a bare ``OSError``, with
    no error number, for a value it cannot encode), not of the disk."""
    return isinstance(exc, _WRITE_ERRORS) or (isinstance(exc, OSError) and exc.errno is None)


def _write_dataset(fh: Any, ds: Any, src: Path, *, header_only: bool) -> None:
    """``ds`` written to ``fh`` (without its pixel data when ``header_only``).

    A data set encoded otherwise than its transfer syntax says keeps the elements pydicom did
    not read without a VR, and the writer fails on them: each is then read in (with its
    dictionary VR) and the data set written again. What still cannot be encoded is an
    :class:`InputError` naming ``src``.
    """
    from pydicom import dcmwrite

    for attempt in (1, 2):
        try:
            if header_only:
                _write_header(fh, ds)
            else:
                dcmwrite(fh, ds, enforce_file_format=True)
            return
        except Exception as exc:
            if not _unwritable(exc):
                raise
            if attempt == 2:
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise InputError(
                    src, f"cannot write the de-identified data set ({type(exc).__name__}: {first})"
                ) from exc
        for _ in ds.iterall():
            pass
        fh.seek(0)
        fh.truncate()


def _write(done: _Done, src: Path, dest: Path, *, exclusive: bool) -> None:
    """Write the cleaned data set; append the input's pixel data element as is if it was kept
    out of the data set. ``exclusive`` refuses an existing file (a duplicate instance)."""
    try:
        fh = open(dest, "xb" if exclusive else "wb")  # noqa: SIM115 - closed below
    except FileExistsError:
        raise InputError(src, "duplicate SOPInstanceUID (the same instance twice)") from None
    try:
        with fh:
            _write_dataset(fh, done.ds, src, header_only=done.raw is not None)
            if done.raw is not None:
                start, end, tag = done.raw
                with open(src, "rb") as inp:
                    inp.seek(start)
                    if inp.read(4) != tag:
                        raise InputError(src, "pixel data is not where its header says")
                    fh.write(tag)
                    left = end - start - 4
                    while left > 0:
                        chunk = inp.read(min(left, 1 << 20))
                        if not chunk:
                            raise InputError(src, "truncated: pixel data ends early")
                        fh.write(chunk)
                        left -= len(chunk)
    except BaseException as exc:
        if exclusive:
            dest.unlink(missing_ok=True)
        if isinstance(exc, _READ_ERRORS) and not isinstance(exc, OSError | InputError):
            raise InputError(src, f"unreadable or truncated DICOM ({type(exc).__name__})") from exc
        raise
