"""De-identification Method (0012,0063) and its Code Sequence (0012,0064), encoded once per
option set."""

from __future__ import annotations

import functools
import io
from typing import Any

from imagedepot import __version__
from imagedepot.deid import profile


@functools.lru_cache(maxsize=64)
def _method_elements(
    claimed: tuple[str, ...], implicit: bool, little: bool, extra: str | None = None
) -> tuple[Any, Any]:
    """De-identification Method (0012,0063) and its Code Sequence (0012,0064) for ``claimed``
    options, as encoded (raw) elements: built and encoded once, then shared by every file of
    the same encoding (raw elements are immutable and written byte for byte)."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset
    from pydicom.sequence import Sequence as DicomSequence

    codes = [profile.BASIC_PROFILE_CODE] + [profile.OPTION_CODES[o] for o in claimed]
    ds = Dataset()
    ds.DeidentificationMethod = (
        [f"imagedepot {__version__}", profile.EDITION_SHORT, profile.IOD_TYPES_SHORT]
        + [c.meaning for c in codes]
        + ([extra] if extra else [])
    )
    items = []
    for code in codes:
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = code.scheme
        item.CodeMeaning = code.meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(items)
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = implicit, little
    write_dataset(buf, ds)
    encoded = read_dataset(io.BytesIO(buf.getvalue()), implicit, little)
    return encoded.get_item(0x00120063), encoded.get_item(0x00120064)
