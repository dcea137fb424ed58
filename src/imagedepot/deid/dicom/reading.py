"""Reading inputs: the read options, the checks for truncated files and for files that are not
DICOM at all, DICOMDIR files skipped."""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError

#: Inputs with more bytes than this are read lazily (pixel data mostly).
DEFER_SIZE = 1 << 16


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


_SEQ_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


_SEQ_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"


#: What pydicom raises on malformed or truncated input (parsing is partly lazy, so these can
#: come from cleaning and writing too).
_READ_ERRORS = (
    EOFError,
    OSError,
    ValueError,
    struct.error,
    OverflowError,
    NotImplementedError,
    zlib.error,
)


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Stop pydicom from echoing (possibly identifying) invalid values in warnings."""
    from pydicom import config

    settings = config.settings
    old = settings.reading_validation_mode
    settings.reading_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode = old


def _check_complete(ds: Any, path: Path, tsyntax: str) -> None:
    """Raise :class:`InputError` for a file cut short.

    Elements are read in file order, so a truncated file ends in an element whose value is
    shorter than its declared length (or, when read lazily, would end past the end of the
    file). A file cut exactly between elements is caught when it has image attributes but no
    pixel data.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    keys = [int(t) for t in ds.keys()]  # noqa: SIM118 - ints compare fast
    if not keys:
        raise InputError(path, "empty data set")
    last = ds.get_item(max(keys), keep_deferred=True)
    undefined = getattr(last, "is_undefined_length", False) or (
        isinstance(last, RawDataElement) and last.length == 0xFFFFFFFF
    )
    if undefined:
        # An undefined-length value closes with a Sequence Delimitation Item: the file's
        # last 8 bytes (pydicom tolerates its absence when parsing sequences).
        if tsyntax != DeflatedExplicitVRLittleEndian:
            with open(path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(path) - 8))
                tail = fh.read(8)
            if tail not in (_SEQ_DELIMITER_LE, _SEQ_DELIMITER_BE):
                raise InputError(path, "truncated: the last sequence is not closed")
    elif isinstance(last, RawDataElement):
        if last.value is not None and len(last.value) < last.length:
            raise InputError(path, "truncated: the last element is shorter than its length")
        if tsyntax != DeflatedExplicitVRLittleEndian:
            # Parsing stops quietly inside a cut element header: the last complete element
            # must end where the file ends (trailing zero padding is tolerated).
            end, size = last.value_tell + last.length, os.path.getsize(path)
            if end > size:
                raise InputError(path, "truncated: the last element ends past the end of file")
            if end < size:
                with open(path, "rb") as fh:
                    fh.seek(end)
                    trailing = fh.read(size - end)
                if trailing.strip(b"\x00"):
                    raise InputError(path, "truncated: a partial element follows the last one")
    image = all(t in ds for t in (0x00280010, 0x00280011, 0x00280100))
    if image and not any(t in ds for t in _PIXEL_TAGS):
        raise InputError(path, "image attributes but no pixel data (truncated?)")


class _Skip(Exception):
    """A file that is not an instance to de-identify (e.g. a DICOMDIR)."""


class _NotDicom(InputError):
    """A file that is not DICOM at all: refused, or skipped with ``skip_bad_files``."""


#: Reason given for a file skipped as not DICOM (see :func:`_holds_dicom_attributes`).
NOT_DICOM = "not a DICOM file (no DICM prefix, no DICOM attributes)"


def _holds_dicom_attributes(path: Path) -> bool:
    """Whether a file without the DICM prefix still reads as a DICOM data set (a "raw" file
    with SOP Instance UID or Study Instance UID): such a file is DICOM data the profile cannot
    handle, an error, not a stray file to skip."""
    from pydicom import dcmread

    try:
        with _quiet_pydicom():
            ds = dcmread(
                os.fspath(path),
                force=True,
                stop_before_pixels=True,
                specific_tags=["SOPInstanceUID", "StudyInstanceUID"],
            )
            return "SOPInstanceUID" in ds or "StudyInstanceUID" in ds
    except Exception:  # anything pydicom cannot parse as a data set is not DICOM data
        return False
