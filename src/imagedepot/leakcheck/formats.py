"""Reading what the leak gate looks into: which files are which, DICOM elements as text, NIfTI
header text and extensions, gzip headers. Shared by :mod:`~imagedepot.leakcheck.harvesting`
(originals) and :mod:`~imagedepot.leakcheck.scanner` (outputs).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imagedepot.identifiers import as_text

log = logging.getLogger(__name__)

#: Private or unknown-VR DICOM binary values up to this size are scanned as text.
MAX_DICOM_BINARY = 1 << 20
#: JSON files larger than this are scanned line by line instead of parsed.
MAX_JSON_PARSE = 64 << 20
#: Bytes sniffed to tell text from binary.
SNIFF_BYTES = 8192


TEXT_SUFFIXES = frozenset(
    {
        ".tsv",
        ".csv",
        ".txt",
        ".xml",
        ".yaml",
        ".yml",
        ".md",
        ".html",
        ".htm",
        ".log",
        ".ini",
        ".cfg",
        ".toml",
        ".bval",
        ".bvec",
        ".rst",
        ".ttl",
        ".jsonld",
    }
)
JSON_NAMES = frozenset({".zattrs", ".zgroup", ".zarray", ".zmetadata", "zarr.json"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".btf", ".tf8", ".tf2"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
CHUNK_NAME_RE = re.compile(r"[0-9.]{1,7}|c")


_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "OB or OW", "US or OW"})
_SKIP_KEYWORDS = frozenset(
    {"PixelData", "FloatPixelData", "DoubleFloatPixelData", "OverlayData", "WaveformData"}
)
#: Code strings of a structured report's tree whose values the standard enumerates (PS3.3
#: C.17.3: Value Type, Relationship Type, Continuity Of Content): such a value is a word of the
#: standard and holds no one's identity, even when it equals part of a name ("Enter text" as an
#: observer's name and the Value Type TEXT). Any other value of these attributes is scanned.
_ENUMERATED = {
    "ValueType": frozenset(
        {
            "TEXT",
            "NUM",
            "CODE",
            "DATETIME",
            "DATE",
            "TIME",
            "UIDREF",
            "PNAME",
            "COMPOSITE",
            "IMAGE",
            "WAVEFORM",
            "SCOORD",
            "SCOORD3D",
            "TCOORD",
            "CONTAINER",
            "TABLE",
        }
    ),
    "RelationshipType": frozenset(
        {
            "CONTAINS",
            "HAS PROPERTIES",
            "HAS OBS CONTEXT",
            "HAS ACQ CONTEXT",
            "INFERRED FROM",
            "SELECTED FROM",
            "HAS CONCEPT MOD",
        }
    ),
    "ContinuityOfContent": frozenset({"SEPARATE", "CONTINUOUS"}),
}


def walk_dicom(ds: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(location, element)`` for every element, into sequences (location has no values)."""
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:  # undecodable value: fall back to the raw element
            elem = ds.get_item(tag)
        keyword = getattr(elem, "keyword", "") or ""
        name = keyword or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        location = f"{prefix}{name}"
        if getattr(elem, "VR", None) == "SQ" and not isinstance(elem.value, bytes | bytearray):
            for i, item in enumerate(elem.value or ()):
                yield from walk_dicom(item, f"{location}[{i}].")
        else:
            yield location, elem


def dicom_values(elem: Any) -> list[str]:
    """String values of an element; short private/unknown binary values decoded as Latin-1."""
    keyword = getattr(elem, "keyword", "") or ""
    vr = str(getattr(elem, "VR", "") or "")
    value = elem.value
    if value is None or keyword in _SKIP_KEYWORDS:
        return []
    if isinstance(value, bytes | bytearray):
        tag = elem.tag
        private = bool(tag.group & 1) if hasattr(tag, "group") else False
        if vr in _TEXT_VRS or ((private or vr in ("UN", "")) and len(value) <= MAX_DICOM_BINARY):
            return [bytes(value).decode("latin-1")]
        return []
    if vr and vr not in _TEXT_VRS and vr not in _BINARY_VRS:
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        values = [str(v) for v in value if v is not None]
    else:
        values = [str(value)]
    enumerated = _ENUMERATED.get(keyword)
    if enumerated is not None and vr == "CS":
        values = [v for v in values if v.strip() not in enumerated]
    return values


def read_dicom(path: Path, *, force: bool) -> Any | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises many types on damaged files
        log.debug("unreadable DICOM: %s", type(exc).__name__)
        return None
    if force and not any(k in ds for k in ("SOPClassUID", "PatientID", "StudyInstanceUID")):
        return None
    return ds


_NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name", "data_type", "unused_str")


def is_nifti_name(name: str) -> bool:
    return name.endswith((".nii", ".nii.gz", ".hdr"))


def load_nifti_header(path: Path) -> Any | None:
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for bad files
        log.debug("not a readable NIfTI: %s", type(exc).__name__)
        return None
    return img.header


def nifti_texts(hdr: Any) -> Iterator[tuple[str, str, Any]]:
    """Yield ``(location, kind_of_content, content)``: header text fields, then extensions."""
    for name in _NIFTI_TEXT_FIELDS:
        if name in hdr:
            yield f"header.{name}", "text", as_text(hdr[name].item())
    for i, ext in enumerate(getattr(hdr, "extensions", ()) or ()):
        code = ext.get_code()
        location = f"extension[{i}] (code {code})"
        if code == 2:
            try:
                yield location, "dicom", ext.get_content()
                continue
            except Exception:  # not a decodable DICOM extension: scan as text
                log.debug("undecodable DICOM extension in NIfTI")
        yield location, "raw", ext.content.decode("utf-8", errors="replace")


def sniff(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(SNIFF_BYTES)
    except OSError:
        return b""


def decodes(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed block is fine.
        return exc.start >= len(head) - 3
    return True


def gzip_header_texts(path: Path) -> list[tuple[str, str]]:
    """The original file name and comment stored in a gzip header (RFC 1952), if any."""
    out: list[tuple[str, str]] = []
    try:
        with open(path, "rb") as fh:
            head = fh.read(10)
            if len(head) < 10 or head[:2] != b"\x1f\x8b":
                return out
            flags = head[3]
            if flags & 4:  # FEXTRA
                xlen = int.from_bytes(fh.read(2), "little")
                fh.read(xlen)
            for bit, location in ((8, "gzip.filename"), (16, "gzip.comment")):
                if flags & bit:
                    raw = bytearray()
                    while (b := fh.read(1)) not in (b"", b"\x00") and len(raw) < 65536:
                        raw += b
                    out.append((location, raw.decode("latin-1")))
    except OSError:
        pass
    return out
