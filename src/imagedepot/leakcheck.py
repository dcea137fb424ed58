"""The leak gate: look for identifiers of the original inputs in de-identified outputs.

:func:`harvest` collects identifiers (names, IDs, dates, UIDs, addresses...) from the original
inputs; :func:`scan` looks for them in every output file and folder; :func:`leakcheck` does both.
The result is a :class:`LeakReport` that names the file, the place in the file and the *kind* of
identifier found, never the identifier itself: a hit carries at most ``token``, a 10-character
prefix of a SHA-256 salted with a random value drawn for each scan, which groups the hits of one
identifier inside one report but cannot be reversed (even for a date) nor linked across runs.

What is harvested
-----------------
* DICOM (every element, into sequences and private tags): person names (PN) and their family,
  given and middle parts; patient IDs, other patient IDs, issuer, accession number, study ID and
  other request/admission IDs; the birth date (kind ``birth_date``); every DA/DT value; patient
  and institution addresses; telephone numbers; institution name and department; station name and
  device serial number; every UID (UI) except SOP class and transfer syntax UIDs (keywords ending
  in ``ClassUID``, ``TransferSyntaxUID``, or values under ``1.2.840.10008.``).
* NIfTI: the text fields of the header (``descrip``, ``aux_file``, ``db_name``, ``intent_name``...)
  and the text of every extension (DICOM extensions are harvested as DICOM, JSON ones as JSON).
* JSON (BIDS sidecars, DICOM JSON model): the values of identifying keys (``PatientName``,
  ``PatientID``, ``PatientBirthDate``, ``InstitutionName``, ``StationName``, keys ending in
  ``Date``/``DateTime``/``UID``...).
* OME-XML (first ImageDescription of a TIFF, ``*.ome.xml`` files such as ``OME/METADATA.ome.xml``):
  experimenter names, e-mails, institutions and user names, group names, acquisition dates,
  timestamps, instrument serial and lot numbers, comments and descriptions; the TIFF ``Artist``,
  ``HostComputer`` and ``DateTime`` tags.
* ``extra`` strings given by the caller (the subject's original ID, clinical values...).

Free text (NIfTI ``descrip``, comments, descriptions) is harvested as a whole phrase plus the
dates, UIDs, e-mail addresses and identifier-like tokens (letters *and* digits, 5+ characters)
inside it, not word by word.

What is dropped (to keep false positives rare)
----------------------------------------------
A harvested value is dropped when, after folding case and accents and splitting into words on
anything that is not a letter or digit: it has fewer than 3 letters and digits in all; it is a
number of fewer than 6 digits (series numbers, ages, matrix sizes); every word of it is a common
word (:data:`STOPWORDS`, e.g. ``brain``, ``left``, ``unknown``), shorter than 3 characters or a
small number (but IDs, device names and extra values of 5+ characters mixing letters and digits,
such as ``S-4471-AB``, are kept); or it is a placeholder (``anonymous``, ``n/a``...). Dates
count only when they are valid calendar dates of the years 1900-2100. Name parts of fewer than 3
characters (``Li``) are only found as part of the full name.

How matching works
------------------
Matching is case- and accent-insensitive and ignores separators: a name harvested as
``DOE^JOHN`` is found as ``Doe, John``, ``john doe`` or ``doe_john``; a single-word identifier is
found as a whole word (``doe`` in ``sub-doe_T1w`` but not in ``does``); identifier-like values of
6+ characters with letters (patient IDs, user names, e-mail addresses) are also found inside
longer words. Dates are found in every common spelling (``20240131``, ``2024-01-31``,
``2024:01:31``, ``2024/01/31``, ``2024.01.31``, and at the start of a DICOM DT). UIDs are
found as whole UIDs only (``1.2.3`` does not match inside ``1.2.3.4``).

What is scanned
---------------
Every file and folder *name* under each output; the decoded headers of DICOM files (file meta,
sequences, private tags, short private binary values); JSON, TSV/CSV, XML, YAML and other text
files (anything without NUL bytes that decodes as UTF-8); NIfTI header text fields, extensions and
the original-name field of the gzip header; every ASCII tag of every page of a TIFF (OME-XML,
Micro-Manager JSON, Artist...); the metadata files of Zarr stores (``.zattrs``, ``.zgroup``,
``.zarray``, ``.zmetadata``, ``zarr.json``, ``*.xml``, ``*.json``). Binary pixel data, Zarr chunk
files (every other file inside a Zarr store) and binary files of other formats (PNG, HDF5...) are
not scanned: only their names are.

With the policy's ``pixel_text`` settings (the workflow's leak gate), the pixels of DICOM images
are read for burned-in text, and the auxiliary series of OME-Zarr stores and OME-TIFF files (slide
label, macro, overview, thumbnail, preview: :mod:`imagedepot.pixeltext.series`) are refused: each
one still present under ``auxiliary_images: remove``, and under ``ocr`` each one whose pixels hold
text (read as de-identification read it) or cannot be read, is a hit of kind ``pixel_text``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError, LeakError
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.pixeltext.identifiers import Identifiers as TextIdentifiers
from imagedepot.safeload import parse_xml

log = logging.getLogger(__name__)

#: Kinds of identifiers, in the order a hit reports them when a value has several kinds.
KINDS = (
    "person_name",
    "birth_date",
    "id",
    "extra",
    "email",
    "username",
    "address",
    "phone",
    "uid",
    "date",
    "institution",
    "device",
    "text",
    "pixel_text",
)

_STOPWORDS_TEXT = """
the and for with from not none null true false yes unknown other male female
anonymous anonymized anonymised removed deidentified redacted
patient subject study series image images scan scans sample slide data file files
brain head neck chest abdomen pelvis spine knee hand foot leg arm heart lung liver body
left right both axial sagittal coronal sag cor tra oblique
phantom test research clinic clinical hospital university department radiology imaging
center centre institute medical lab group default user admin root operator experimenter
name date time phase echo mri localizer scout primary original derived secondary
ortho dicom nifti tiff siemens philips toshiba canon hitachi zeiss leica nikon olympus
microscope volume function functional anat perf dwi fmap func bold flair mprage mosaic norm
here there this that these those what when where which who whose into onto over under about
above below after before again all any some each few more most such only own same than too very
can will just should now are was were has have had our your their its system systems
"""
#: Common words never identifiers on their own (values made only of them are dropped).
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

#: Whole values that mean "no value" and are never identifiers.
PLACEHOLDERS = frozenset(
    {
        "anonymous",
        "anonymized",
        "anonymised",
        "unknown",
        "n a",
        "na",
        "none",
        "null",
        "removed",
        "deidentified",
        "redacted",
    }
)

#: Maximum hits kept in a report (the counts stay exact).
MAX_HITS = 10_000
#: Private or unknown-VR DICOM binary values up to this size are scanned as text.
MAX_DICOM_BINARY = 1 << 20
#: JSON files larger than this are scanned line by line instead of parsed.
MAX_JSON_PARSE = 64 << 20
#: Bytes sniffed to tell text from binary.
SNIFF_BYTES = 8192

_WORD_RE = re.compile(r"[^\W_]+")
_UID_RE = re.compile(r"(?<![\d.])\d+(?:\.\d+)+(?!\.?\d)")
_DATE_RE = re.compile(r"(?<!\d)(\d{4})([-:/.]?)(\d{2})\2(\d{2})")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_WELL_KNOWN_UID = "1.2.840.10008."
#: Kinds whose short-worded values (``S-4471-AB``) are kept when they mix letters and digits.
_ID_KINDS = frozenset({"id", "extra", "device", "username", "email"})

_TEXT_SUFFIXES = frozenset(
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
_JSON_NAMES = frozenset({".zattrs", ".zgroup", ".zarray", ".zmetadata", "zarr.json"})
_TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".btf", ".tf8", ".tf2"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_CHUNK_NAME_RE = re.compile(r"[0-9.]{1,7}|c")


# --------------------------------------------------------------------------- normalisation


def _fold(text: str) -> str:
    """Case- and accent-folded text (``Müller`` -> ``muller``)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(_fold(text))


def _valid_date(year: str, month: str, day: str) -> str | None:
    try:
        d = dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    if not 1900 <= d.year <= 2100:
        return None
    return d.strftime("%Y%m%d")


def _is_small_number(word: str) -> bool:
    return word.isdigit() and len(word) < 6


def _weak_word(word: str) -> bool:
    return len(word) < 3 or _is_small_number(word) or word in STOPWORDS


def _salted(salt: bytes, key: str) -> str:
    return hashlib.sha256(salt + key.encode("utf-8")).hexdigest()[:10]


def allowed_kinds_for_options(options: Iterable[str]) -> frozenset[str]:
    """Kinds of identifiers a de-identification policy keeps on purpose.

    ``retain_longitudinal_full_dates`` keeps dates (not the birth date),
    ``retain_institution_identity`` institutions, ``retain_device_identity`` station names and
    serial numbers, ``retain_uids`` UIDs. Pass the result as ``allow_kinds`` to :func:`scan`.
    """
    mapping = {
        "retain_longitudinal_full_dates": "date",
        "retain_institution_identity": "institution",
        "retain_device_identity": "device",
        "retain_uids": "uid",
    }
    return frozenset(mapping[o] for o in options if o in mapping)


# --------------------------------------------------------------------------- identifiers


@dataclass
class _Index:
    uids: dict[str, frozenset[str]]
    dates: dict[str, frozenset[str]]
    single: dict[str, frozenset[str]]
    multi: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]]
    inner: re.Pattern[str] | None
    inner_kinds: dict[str, frozenset[str]]


class Identifiers:
    """A set of identifiers, each with one or more kinds, and a fast matcher over them.

    Values are stored normalised: UIDs as is, dates as ``YYYYMMDD`` (matched in every spelling,
    see :meth:`values`), everything else as its folded words. The values are PHI: never log them.
    """

    def __init__(self) -> None:
        self._uids: dict[str, set[str]] = {}
        self._dates: dict[str, set[str]] = {}
        self._seqs: dict[tuple[str, ...], set[str]] = {}
        self._index: _Index | None = None

    # -- adding

    def add(self, value: object, kind: str) -> int:
        """Add one value of ``kind`` (dates, UIDs and names get their dedicated parsing).

        Returns how many entries were added (0 when the value is dropped by the rules of the
        module docstring).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}")
        text = _as_text(value)
        if not text:
            return 0
        if kind in ("date", "birth_date"):
            return self.add_dates(text, kind)
        if kind == "uid":
            return self.add_uid(text)
        if kind == "person_name":
            return self.add_person_name(text)
        if kind == "text":
            return self.add_text(text)
        return self._add_seq(_words(text), kind)

    def add_uid(self, value: str) -> int:
        """Add a UID unless it is a well-known DICOM UID (``1.2.840.10008.*``)."""
        uid = value.strip().rstrip("\x00").strip()
        if not re.fullmatch(r"\d+(\.\d+)+", uid) or uid.startswith(_WELL_KNOWN_UID):
            return 0
        self._uids.setdefault(uid, set()).add("uid")
        self._index = None
        return 1

    def add_dates(self, value: str, kind: str = "date") -> int:
        """Add every valid date found in ``value`` (DA, DT, ISO 8601, ranges...)."""
        n = 0
        for m in _DATE_RE.finditer(value):
            key = _valid_date(m.group(1), m.group(3), m.group(4))
            if key is not None:
                self._dates.setdefault(key, set()).add(kind)
                n += 1
        if n:
            self._index = None
        return n

    def add_person_name(self, value: str) -> int:
        """Add a person name: DICOM PN (``Family^Given^Middle^Prefix^Suffix``, ``=`` groups),
        ``Family, Given`` or ``Given [Middle] Family``; the full name in usual orders, and each
        family/given/middle part of 3+ characters."""
        n = 0
        for group in value.split("="):
            if "^" in group:
                parts = [_words(p) for p in group.split("^")[:3]]
                family, given = parts[0], parts[1] if len(parts) > 1 else []
                middle = parts[2] if len(parts) > 2 else []
            elif "," in group:
                fam, _, rest = group.partition(",")
                family, rest_words = _words(fam), _words(rest)
                given, middle = rest_words[:1], rest_words[1:]
            else:
                words = _words(group)
                if not words:
                    continue
                family, given, middle = words[-1:], words[:1] if len(words) > 1 else [], words[1:-1]
            orders = [
                family + given + middle,
                family + given,
                given + middle + family,
                given + family,
            ]
            for seq in orders:
                if len(seq) > 1:
                    n += self._add_seq(seq, "person_name")
            for word in family + given + middle:
                n += self._add_seq([word], "person_name")
        return n

    def add_text(self, value: str) -> int:
        """Add free text: the whole phrase plus the dates, UIDs, e-mail addresses and
        identifier-like tokens (letters and digits, 5+ characters) inside it."""
        n = self.add_dates(value)
        for m in _UID_RE.finditer(value):
            if m.group().count(".") >= 3:
                n += self.add_uid(m.group())
        for m in _EMAIL_RE.finditer(value):
            n += self._add_seq(_words(m.group()), "email")
        words = _words(value)
        for w in words:
            if len(w) >= 5 and any(c.isdigit() for c in w) and any(c.isalpha() for c in w):
                n += self._add_seq([w], "text")
        if len(words) > 1:
            n += self._add_seq(words, "text")
        return n

    def _add_seq(self, words: list[str], kind: str) -> int:
        if not words:
            return 0
        compact = "".join(words)
        if len(compact) < 3 or _is_small_number(compact):
            return 0
        if " ".join(words) in PLACEHOLDERS:
            return 0
        if all(_weak_word(w) for w in words) and not (
            kind in _ID_KINDS
            and len(compact) >= 5
            and any(c.isdigit() for c in compact)
            and any(c.isalpha() for c in compact)
        ):
            return 0
        self._seqs.setdefault(tuple(words), set()).add(kind)
        self._index = None
        return 1

    def update(self, other: Identifiers) -> None:
        """Add every identifier of ``other``."""
        for uid, kinds in other._uids.items():
            self._uids.setdefault(uid, set()).update(kinds)
        for date, kinds in other._dates.items():
            self._dates.setdefault(date, set()).update(kinds)
        for seq, kinds in other._seqs.items():
            self._seqs.setdefault(seq, set()).update(kinds)
        self._index = None

    # -- inspecting (counts are safe to log; values are not)

    def __len__(self) -> int:
        return len(self._uids) + len(self._dates) + len(self._seqs)

    def counts(self) -> dict[str, int]:
        """Number of identifiers per kind (safe to log)."""
        c: Counter[str] = Counter()
        for table in (self._uids, self._dates, self._seqs):
            for kinds in table.values():
                c.update(kinds)
        return dict(sorted(c.items()))

    def values(self) -> Iterator[tuple[str, str]]:
        """Yield ``(value, kind)``; dates in both ``YYYYMMDD`` and ``YYYY-MM-DD`` forms.

        The values are PHI: for tests and in-memory use only, never for logs or reports.
        """
        for uid, kinds in self._uids.items():
            for k in sorted(kinds):
                yield uid, k
        for date, kinds in self._dates.items():
            for k in sorted(kinds):
                yield date, k
                yield f"{date[:4]}-{date[4:6]}-{date[6:]}", k
        for seq, kinds in self._seqs.items():
            for k in sorted(kinds):
                yield " ".join(seq), k

    def __contains__(self, value: object) -> bool:
        return bool(self.find(_as_text(value)))

    # -- matching

    def _build(self) -> _Index:
        single: dict[str, frozenset[str]] = {}
        multi: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]] = {}
        inner_kinds: dict[str, frozenset[str]] = {}
        for seq, kinds in self._seqs.items():
            fk = frozenset(kinds)
            if len(seq) == 1:
                single[seq[0]] = fk
            else:
                multi.setdefault(seq[0], []).append((seq, fk))
            compact = "".join(seq)
            if (
                kinds & {"id", "extra", "email", "username"}
                and len(compact) >= 6
                and not compact.isdigit()
            ):
                inner_kinds[compact] = inner_kinds.get(compact, frozenset()) | fk
        inner = None
        if inner_kinds:
            alternatives = sorted(inner_kinds, key=len, reverse=True)
            inner = re.compile("|".join(re.escape(a) for a in alternatives))
        return _Index(
            uids={k: frozenset(v) for k, v in self._uids.items()},
            dates={k: frozenset(v) for k, v in self._dates.items()},
            single=single,
            multi=multi,
            inner=inner,
            inner_kinds=inner_kinds,
        )

    def find(self, text: str) -> dict[str, frozenset[str]]:
        """Identifiers found in ``text``: a dict from an internal key (contains the value: do not
        log it) to the identifier's kinds."""
        if not text:
            return {}
        if self._index is None:
            self._index = self._build()
        idx = self._index
        found: dict[str, frozenset[str]] = {}
        if idx.uids and "." in text:
            for m in _UID_RE.finditer(text):
                kinds = idx.uids.get(m.group())
                if kinds:
                    found[f"uid:{m.group()}"] = kinds
        if idx.dates:
            for m in _DATE_RE.finditer(text):
                key = m.group(1) + m.group(3) + m.group(4)
                kinds = idx.dates.get(key)
                if kinds:
                    found[f"date:{key}"] = kinds
        if idx.single or idx.multi or idx.inner:
            words = _words(text)
            for i, w in enumerate(words):
                kinds = idx.single.get(w)
                if kinds:
                    found[f"w:{w}"] = kinds
                for seq, seq_kinds in idx.multi.get(w, ()):
                    if tuple(words[i : i + len(seq)]) == seq:
                        found["w:" + " ".join(seq)] = seq_kinds
            if idx.inner is not None:
                for m in idx.inner.finditer(" ".join(words)):
                    found[f"i:{m.group()}"] = idx.inner_kinds[m.group()]
        return found


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value).strip()


# --------------------------------------------------------------------------- DICOM helpers

_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "OB or OW", "US or OW"})
_SKIP_KEYWORDS = frozenset(
    {"PixelData", "FloatPixelData", "DoubleFloatPixelData", "OverlayData", "WaveformData"}
)

_DICOM_ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "IssuerOfAdmissionID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "MedicalRecordLocator",
        "ServiceEpisodeID",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
    }
)
_DICOM_INSTITUTION_KEYWORDS = frozenset(
    {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName"}
)
#: UIDs that name a syntax or a coding scheme, not an instance: kept by de-identification.
_DICOM_NON_INSTANCE_UIDS = frozenset(
    {
        "TransferSyntaxUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "ContextUID",
    }
)
_DICOM_DEVICE_KEYWORDS = frozenset({"StationName", "DeviceSerialNumber", "DetectorID", "DeviceID"})


def _dicom_kind(keyword: str, vr: str) -> str | None:
    """Kind of identifier a DICOM element holds, from its keyword and VR (None: not harvested)."""
    if keyword == "PatientBirthDate":
        return "birth_date"
    if vr == "PN":
        return "person_name"
    if vr in ("DA", "DT"):
        return "date"
    if vr == "UI":
        if keyword.endswith("ClassUID") or keyword in _DICOM_NON_INSTANCE_UIDS:
            return None
        return "uid"
    if keyword in _DICOM_ID_KEYWORDS:
        return "id"
    if keyword in _DICOM_INSTITUTION_KEYWORDS:
        return "institution"
    if keyword in _DICOM_DEVICE_KEYWORDS:
        return "device"
    if keyword.endswith("Address"):
        return "address"
    if keyword.endswith(("TelephoneNumbers", "TelecomInformation")):
        return "phone"
    return None


def _walk_dicom(ds: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
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
                yield from _walk_dicom(item, f"{location}[{i}].")
        else:
            yield location, elem


def _dicom_values(elem: Any) -> list[str]:
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
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _read_dicom(path: Path, *, force: bool) -> Any | None:
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


def _harvest_dicom_dataset(ds: Any, ids: Identifiers) -> None:
    for _location, elem in _walk_dicom(ds):
        vr = str(getattr(elem, "VR", "") or "")
        kind = _dicom_kind(getattr(elem, "keyword", "") or "", vr)
        if kind is None:
            continue
        for v in _dicom_values(elem):
            if kind == "uid":
                for part in v.split("\\"):
                    ids.add_uid(part)
            else:
                for part in v.split("\\") if kind != "address" else [v]:
                    ids.add(part, kind)


# --------------------------------------------------------------------------- JSON helpers


def _norm_key(key: str) -> str:
    return re.sub(r"[^0-9a-z]", "", key.lower())


_JSON_KEY_KINDS: dict[str, str] = {
    _norm_key(k): v
    for k, v in {
        "PatientName": "person_name",
        "OtherPatientNames": "person_name",
        "PatientBirthName": "person_name",
        "PatientMotherBirthName": "person_name",
        "ReferringPhysicianName": "person_name",
        "PerformingPhysicianName": "person_name",
        "OperatorsName": "person_name",
        "OperatorName": "person_name",
        "PhysiciansOfRecord": "person_name",
        "NameOfPhysiciansReadingStudy": "person_name",
        "RequestingPhysician": "person_name",
        "Experimenter": "person_name",
        "Author": "person_name",
        "PatientID": "id",
        "OtherPatientIDs": "id",
        "IssuerOfPatientID": "id",
        "AccessionNumber": "id",
        "StudyID": "id",
        "MedicalRecordLocator": "id",
        "PatientBirthDate": "birth_date",
        "InstitutionName": "institution",
        "InstitutionAddress": "institution",
        "InstitutionalDepartmentName": "institution",
        "PatientAddress": "address",
        "PatientTelephoneNumbers": "phone",
        "StationName": "device",
        "DeviceSerialNumber": "device",
        "ComputerName": "device",
        "HostComputer": "device",
        "UserName": "username",
        "User": "username",
        "Email": "email",
    }.items()
}


def _json_key_kind(key: str) -> str | None:
    nk = _norm_key(key)
    if nk in _JSON_KEY_KINDS:
        return _JSON_KEY_KINDS[nk]
    if nk.endswith("birthdate"):
        return "birth_date"
    if nk.endswith(("date", "datetime")):
        return "date"
    if nk.endswith("uid") and not nk.endswith(("classuid", "transfersyntaxuid")):
        return "uid"
    return None


def harvest_json(obj: Any, ids: Identifiers | None = None) -> Identifiers:
    """Add the identifying values of a parsed JSON document (sidecar, DICOM JSON model) to
    ``ids`` (a new :class:`Identifiers` when None) and return it."""
    ids = Identifiers() if ids is None else ids
    _harvest_json(obj, ids)
    return ids


def _harvest_json(obj: Any, ids: Identifiers) -> None:
    from pydicom.datadict import keyword_for_tag

    if isinstance(obj, dict):
        for key, value in obj.items():
            key = str(key)
            # DICOM JSON model: {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "..."}]}}
            if re.fullmatch(r"[0-9A-Fa-f]{8}", key) and isinstance(value, dict) and "vr" in value:
                tag = int(key, 16)
                kind = _dicom_kind(keyword_for_tag(tag) or "", str(value["vr"]))
                for v in value.get("Value", []) or []:
                    if isinstance(v, dict) and kind == "person_name":
                        for group in v.values():
                            ids.add(group, kind)
                    elif isinstance(v, dict):
                        _harvest_json(v, ids)
                    elif kind is not None:
                        ids.add(v, kind)
                continue
            kind = _json_key_kind(key)
            if kind is not None and isinstance(value, str | int):
                ids.add(value, kind)
            elif kind is not None and isinstance(value, list):
                for v in value:
                    if isinstance(v, str | int):
                        ids.add(v, kind)
            else:
                _harvest_json(value, ids)
    elif isinstance(obj, list):
        for v in obj:
            _harvest_json(v, ids)


# --------------------------------------------------------------------------- OME-XML helpers


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _harvest_ome_xml(text: str, ids: Identifiers) -> None:
    try:
        root = parse_xml(text)
    except ValueError:
        ids.add_dates(text)
        return
    for el in root.iter():
        name = _local(el.tag)
        a = el.attrib
        if name == "Experimenter":
            parts = [a.get(k, "") for k in ("FirstName", "MiddleName", "LastName")]
            if any(parts):
                given, middle, family = parts
                ids.add_person_name(f"{family}^{given}^{middle}")
            if a.get("Email"):
                ids.add(a["Email"], "email")
            if a.get("Institution"):
                ids.add(a["Institution"], "institution")
            if a.get("UserName"):
                ids.add(a["UserName"], "username")
        elif name in ("ExperimenterGroup", "Project", "Dataset", "Screen", "Plate", "Folder"):
            if a.get("Name") and name == "ExperimenterGroup":
                ids.add(a["Name"], "text")
        elif name in ("AcquisitionDate",) or name == "TimestampAnnotation":
            ids.add_dates("".join(el.itertext()))
        elif name in ("Description", "CommentAnnotation", "RightsHolder"):
            ids.add_text("".join(el.itertext()))
        elif name == "M":
            key = _fold(a.get("K", ""))
            value = (el.text or "").strip()
            if any(w in key for w in ("user", "operator", "experimenter", "owner", "author")):
                ids.add_person_name(value)
                ids.add(value, "username")
            elif "date" in key or "time" in key:
                ids.add_dates(value)
        for attr in ("SerialNumber", "LotNumber"):
            if a.get(attr):
                ids.add(a[attr], "device")
        if name == "WellSample" and a.get("Timepoint"):
            ids.add_dates(a["Timepoint"])


def _harvest_tiff(path: Path, ids: Identifiers) -> None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            for tag in page.tags.values():
                value = tag.value
                if not isinstance(value, str | bytes):
                    continue
                text = _as_text(value)
                if tag.code == 270 and "<OME" in text[:2048]:
                    _harvest_ome_xml(text, ids)
                elif tag.code == 315:  # Artist
                    ids.add_person_name(text)
                    ids.add(text, "username")
                elif tag.code == 316:  # HostComputer
                    ids.add(text, "device")
                elif tag.code == 306:  # DateTime
                    ids.add_dates(text)
                elif tag.code == 51123:  # Micro-Manager metadata (JSON)
                    with contextlib.suppress(ValueError):
                        _harvest_json(json.loads(text), ids)
    except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as exc:
        log.debug("not a readable TIFF, skipped in harvest: %s", type(exc).__name__)


# --------------------------------------------------------------------------- NIfTI helpers

_NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name", "data_type", "unused_str")


def _is_nifti_name(name: str) -> bool:
    return name.endswith((".nii", ".nii.gz", ".hdr"))


def _load_nifti_header(path: Path) -> Any | None:
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for bad files
        log.debug("not a readable NIfTI: %s", type(exc).__name__)
        return None
    return img.header


def _nifti_texts(hdr: Any) -> Iterator[tuple[str, str, Any]]:
    """Yield ``(location, kind_of_content, content)``: header text fields, then extensions."""
    for name in _NIFTI_TEXT_FIELDS:
        if name in hdr:
            yield f"header.{name}", "text", _as_text(hdr[name].item())
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


def _harvest_nifti(path: Path, ids: Identifiers) -> None:
    hdr = _load_nifti_header(path)
    if hdr is None:
        return
    for _location, content_kind, content in _nifti_texts(hdr):
        if content_kind == "dicom":
            _harvest_dicom_dataset(content, ids)
            continue
        text = content.strip("\x00 ")
        if not text:
            continue
        if content_kind == "raw" and text[:1] in "{[":
            try:
                _harvest_json(json.loads(text), ids)
                continue
            except ValueError:
                pass
        if content_kind == "raw" and text.lstrip().startswith("<") and "<OME" in text[:2048]:
            _harvest_ome_xml(text, ids)
            continue
        ids.add_text(text)


# --------------------------------------------------------------------------- harvest


def _sniff(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(SNIFF_BYTES)
    except OSError:
        return b""


def _iter_input_files(paths: Sequence[Path]) -> Iterator[Path]:
    """Every file of the inputs, skipping Zarr chunk files (only Zarr metadata files are read)."""
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(p, "original input not found")
        if p.is_file():
            yield p
            continue
        zarr_dirs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            in_zarr = (
                os.path.dirname(dirpath) in zarr_dirs
                or dirpath.lower().endswith(".zarr")
                or bool({"zarr.json", ".zgroup", ".zarray"} & set(filenames))
            )
            if in_zarr:
                zarr_dirs.add(dirpath)
            for name in sorted(filenames):
                if in_zarr and not (
                    name in _JSON_NAMES or name.lower().endswith((".json", ".xml"))
                ):
                    continue
                yield Path(dirpath) / name


def harvest(originals: Sequence[Path], extra: Iterable[str] = ()) -> Identifiers:
    """Collect the identifiers of the original inputs.

    Parameters
    ----------
    originals
        Files or folders (searched recursively): DICOM, NIfTI (+ JSON sidecars), OME-TIFF,
        OME-Zarr (``OME/METADATA.ome.xml``) and any JSON file.
    extra
        More identifiers given by the caller (the subject's original ID, clinical values...),
        kind ``extra``; person-name parsing is not applied to them.

    Returns
    -------
    Identifiers
        See the module docstring for what is harvested and the rules that drop values.
    """
    ids = Identifiers()
    n_files = 0
    for path in _iter_input_files(list(originals)):
        n_files += 1
        name = path.name.lower()
        suffix = path.suffix.lower()
        if _is_nifti_name(name):
            _harvest_nifti(path, ids)
        elif suffix == ".json" or name in _JSON_NAMES:
            try:
                _harvest_json(json.loads(path.read_text(encoding="utf-8")), ids)
            except (ValueError, UnicodeDecodeError, OSError):
                log.debug("unreadable JSON skipped in harvest")
        elif name.endswith(".xml"):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if "<OME" in text[:4096]:
                _harvest_ome_xml(text, ids)
        else:
            head = _sniff(path)
            is_tiff = suffix in _TIFF_SUFFIXES or head[:4] in _TIFF_MAGIC
            if is_tiff:
                _harvest_tiff(path, ids)
            if head[128:132] == b"DICM":
                # also when it looks like a TIFF: a DICOM preamble may hold a TIFF header
                ds = _read_dicom(path, force=False)
                if ds is not None:
                    _harvest_dicom_dataset(ds, ids)
            elif is_tiff:
                pass
            elif suffix in _DICOM_SUFFIXES or suffix == "":
                ds = _read_dicom(path, force=True)
                if ds is not None:
                    _harvest_dicom_dataset(ds, ids)
    for value in extra:
        ids.add(value, "extra")
    log.info("harvested %d identifiers from %d original files: %s", len(ids), n_files, ids.counts())
    return ids


# --------------------------------------------------------------------------- report


@dataclass
class LeakReport:
    """Outcome of the leak gate. Holds no identifier values (see the module docstring).

    Attributes
    ----------
    status
        ``"clean"`` or ``"leak"``.
    hits
        One ``{"file", "location", "kind", "token"}`` dict per file, place and kind (``token``
        identifies the longest identifier found there): ``file`` relative to the output's parent
        folder (path parts that contain an identifier replaced by ``<redacted-…>``),
        ``location`` the place in the file (``PatientName``, ``a.b[0]``, ``line 12``,
        ``filename``...), ``kind`` the kind of identifier, ``token`` a salted hash prefix.
        At most :data:`MAX_HITS` are kept.
    counts
        ``hits`` (all, also those beyond :data:`MAX_HITS`), ``files_with_hits`` and hits per kind.
    """

    status: str = "clean"
    hits: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    files_scanned: int = 0
    files_names_only: int = 0
    folders_scanned: int = 0
    identifiers: dict[str, int] = field(default_factory=dict)
    allowed_kinds: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def leaked(self) -> bool:
        """True when at least one identifier was found."""
        return self.status == "leak"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "status": self.status,
            "counts": dict(self.counts),
            "hits": [dict(h) for h in self.hits],
            "files_scanned": self.files_scanned,
            "files_names_only": self.files_names_only,
            "folders_scanned": self.folders_scanned,
            "identifiers": dict(self.identifiers),
            "allowed_kinds": list(self.allowed_kinds),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line for logs (counts and kinds only)."""
        if not self.leaked:
            return f"clean: {self.files_scanned} files scanned, {self.folders_scanned} folders"
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.get("by_kind", {}).items()))
        return (
            f"leak: {self.counts.get('hits', 0)} hits in {self.counts.get('files_with_hits', 0)} "
            f"files ({kinds})"
        )

    def raise_for_leak(self) -> None:
        """Raise :class:`LeakError` (with counts only) when the status is ``leak``."""
        if self.leaked:
            raise LeakError(self.summary())


# --------------------------------------------------------------------------- scan


class _Scanner:
    def __init__(
        self,
        ids: Identifiers,
        allow: frozenset[str],
        pixel_text: PixelTextSettings | None = None,
        text_ids: TextIdentifiers | None = None,
    ) -> None:
        self.ids = ids
        self.allow = allow
        self.pixel_text = pixel_text
        self.text_ids = text_ids or TextIdentifiers()
        self.images_read = 0
        self.salt = secrets.token_bytes(16)
        self.report = LeakReport(allowed_kinds=sorted(allow), identifiers=ids.counts())
        self.n_hits = 0
        self.by_kind: Counter[str] = Counter()
        self.files_with_hits: set[str] = set()
        self._seen: set[tuple[str, str, str]] = set()
        self._safe_parts: dict[str, str] = {}

    # -- helpers

    def _kind(self, kinds: frozenset[str]) -> str | None:
        for k in KINDS:
            if k in kinds and k not in self.allow:
                return k
        return None

    def safe(self, part: str) -> str:
        """A path part or location segment, redacted when it contains an identifier."""
        cached = self._safe_parts.get(part)
        if cached is None:
            cached = part
            if self.ids.find(part):
                cached = f"<redacted-{_salted(self.salt, part)[:8]}>"
            self._safe_parts[part] = cached
        return cached

    def check(self, text: str, file: str, location: str) -> None:
        """Record one hit per kind of identifier found in ``text`` (token of the longest match)."""
        if not text:
            return
        best: dict[str, str] = {}
        for key, kinds in self.ids.find(text).items():
            kind = self._kind(kinds)
            if kind is not None and len(key) > len(best.get(kind, "")):
                best[kind] = key
        for kind, key in best.items():
            self.hit(file, location, kind, key)

    def hit(self, file: str, location: str, kind: str, key: str) -> None:
        """Record one hit (once per file, location and kind)."""
        sig = (file, location, kind)
        if sig in self._seen:
            return
        self._seen.add(sig)
        self.n_hits += 1
        self.by_kind[kind] += 1
        self.files_with_hits.add(file)
        if len(self.report.hits) < MAX_HITS:
            token = _salted(self.salt, key)
            self.report.hits.append(
                {"file": file, "location": location, "kind": kind, "token": token}
            )

    def rel(self, path: Path, base: Path) -> str:
        parts = path.relative_to(base).parts
        return "/".join(self.safe(p) for p in parts)

    # -- walking

    def scan_root(self, root: Path) -> None:
        root = Path(root)
        if not os.path.lexists(root):
            raise InputError(root, "output to scan not found")
        base = root.parent
        if root.is_file():
            self.scan_file(root, self.rel(root, base), in_zarr=False)
            return
        self._scan_dir(root, base, in_zarr=False)

    def _scan_dir(self, folder: Path, base: Path, *, in_zarr: bool) -> None:
        rel = self.rel(folder, base)
        self.report.folders_scanned += 1
        self.check(folder.name, rel, "dirname")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self.report.warnings.append(f"{rel}: cannot list folder ({type(exc).__name__})")
            return
        names = {e.name for e in entries}
        store_root = not in_zarr and (
            folder.name.lower().endswith(".zarr")
            or bool(names & {"zarr.json", ".zgroup", ".zarray"})
        )
        in_zarr = in_zarr or store_root
        if store_root and self.pixel_text is not None:
            self._scan_auxiliary(folder, rel)
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                self._scan_dir(path, base, in_zarr=in_zarr)
            elif entry.is_file():
                self.scan_file(path, self.rel(path, base), in_zarr=in_zarr)

    def scan_file(self, path: Path, rel: str, *, in_zarr: bool) -> None:
        name = path.name
        if not (in_zarr and _CHUNK_NAME_RE.fullmatch(name)):
            self.check(name, rel, "filename")
        if self._scan_content(path, rel, in_zarr=in_zarr):
            self.report.files_scanned += 1
        else:
            self.report.files_names_only += 1

    def _scan_content(self, path: Path, rel: str, *, in_zarr: bool) -> bool:
        """Scan what the file holds; False when only its name was checked (binary data)."""
        lname = path.name.lower()
        suffix = path.suffix.lower()
        if in_zarr and not (lname in _JSON_NAMES or suffix in (".json", ".xml")):
            return False
        if lname in _JSON_NAMES or suffix in (".json", ".jsonld"):
            self._scan_json_file(path, rel)
        elif _is_nifti_name(lname):
            self._scan_nifti(path, rel)
        elif suffix == ".xml":
            self._scan_xml_file(path, rel)
        elif suffix in _TEXT_SUFFIXES:
            self._scan_text_file(path, rel)
        elif suffix in _TIFF_SUFFIXES:
            self._scan_tiff(path, rel)
            if _sniff(path)[128:132] == b"DICM":  # a DICOM file with a TIFF preamble
                self._scan_dicom(path, rel, force=False)
        else:
            head = _sniff(path)
            is_dicm = head[128:132] == b"DICM"
            if is_dicm or suffix in _DICOM_SUFFIXES:
                return self._scan_dicom(path, rel, force=not is_dicm)
            if head[:4] in _TIFF_MAGIC:
                self._scan_tiff(path, rel)
            elif head[:2] == b"\x1f\x8b":
                self._scan_gzip_header(path, rel)
                return False
            elif head and b"\x00" not in head and _decodes(head):
                self._scan_text_file(path, rel)
            elif suffix == "" and head:
                return self._scan_dicom(path, rel, force=True)
            else:
                return False
        return True

    # -- formats

    def _scan_text_file(self, path: Path, rel: str) -> None:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    self.check(line, rel, f"line {n}")
        except OSError as exc:
            self.report.warnings.append(f"{rel}: unreadable ({type(exc).__name__})")

    def _scan_json_file(self, path: Path, rel: str) -> None:
        try:
            if path.stat().st_size > MAX_JSON_PARSE:
                raise ValueError("too large to parse")
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            self._scan_text_file(path, rel)
            return
        except OSError as exc:
            self.report.warnings.append(f"{rel}: unreadable ({type(exc).__name__})")
            return
        self._scan_json(obj, rel, "")

    def _scan_json(self, obj: Any, rel: str, location: str) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                key = str(key)
                here = f"{location}.{self.safe(key)}" if location else self.safe(key)
                self.check(key, rel, f"{here} (key)")
                self._scan_json(value, rel, here)
        elif isinstance(obj, list):
            for i, value in enumerate(obj):
                self._scan_json(value, rel, f"{location}[{i}]")
        elif isinstance(obj, str):
            if obj.lstrip().startswith("<") and "<OME" in obj[:2048]:
                self._scan_xml(obj, rel, location or "$")
            else:
                self.check(obj, rel, location or "$")
        elif isinstance(obj, int | float) and not isinstance(obj, bool):
            self.check(str(obj), rel, location or "$")

    def _scan_xml_file(self, path: Path, rel: str) -> None:
        try:
            if path.stat().st_size > MAX_JSON_PARSE:
                raise ValueError("too large to parse")
            text = path.read_text(encoding="utf-8")
            parse_xml(text)
        except (ValueError, UnicodeDecodeError):
            self._scan_text_file(path, rel)
            return
        except OSError as exc:
            self.report.warnings.append(f"{rel}: unreadable ({type(exc).__name__})")
            return
        self._scan_xml(text, rel, "")

    def _scan_xml(self, text: str, rel: str, base: str) -> None:
        def at(where: str) -> str:
            return f"{base} {where}" if base else where

        try:
            root = parse_xml(text)
        except ValueError:
            for n, line in enumerate(text.splitlines(), 1):
                self.check(line, rel, at(f"line {n}"))
            return
        for el in root.iter():
            name = self.safe(_local(el.tag))
            self.check(_local(el.tag), rel, at(f"<{name}>"))
            for attr, value in el.attrib.items():
                self.check(value, rel, at(f"{name}@{self.safe(_local(attr))}"))
            if el.text and el.text.strip():
                self.check(el.text, rel, at(f"{name} text"))
            if el.tail and el.tail.strip():
                self.check(el.tail, rel, at(f"{name} tail"))

    def _scan_dicom(self, path: Path, rel: str, *, force: bool) -> bool:
        ds = _read_dicom(path, force=force)
        if ds is None:
            return False
        self._scan_dicom_dataset(ds, rel)
        if self.pixel_text is not None and "Rows" in ds:  # an image (pixels not read yet)
            self._scan_pixel_text(path, rel)
        return True

    def _scan_pixel_text(self, path: Path, rel: str) -> None:
        """Read the text in every frame; identifiers in it, or text the policy's mode would
        have blanked, are hits of kind ``pixel_text`` (undecodable pixel data too: fail closed)."""
        import pydicom

        from imagedepot.pixeltext.dicom import find_text, would_blank

        assert self.pixel_text is not None
        try:
            ds = pydicom.dcmread(path)
            regions, _ = find_text(ds, self.pixel_text)
        except Exception as exc:  # decoders and engines raise many types: fail closed
            self.hit(rel, "PixelData (cannot read for text)", "pixel_text", type(exc).__name__)
            return
        self.images_read += 1
        for r in regions:
            where = f"PixelData frame {r.frame} box {list(r.box)}"
            if r.text:
                self.check(r.text, rel, where)
                if self.text_ids.match(r.text):
                    self.hit(rel, where, "pixel_text", r.text)
            if would_blank(r, self.pixel_text, self.text_ids):
                self.hit(rel, where, "pixel_text", f"{r.frame}:{r.box}")

    def _scan_dicom_dataset(self, ds: Any, rel: str, prefix: str = "") -> None:
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for location, elem in _walk_dicom(meta, prefix + "file_meta."):
                for v in _dicom_values(elem):
                    self.check(v, rel, location)
        for location, elem in _walk_dicom(ds, prefix):
            for v in _dicom_values(elem):
                self.check(v, rel, location)

    def _scan_nifti(self, path: Path, rel: str) -> None:
        if path.name.lower().endswith(".gz"):
            self._scan_gzip_header(path, rel)
        hdr = _load_nifti_header(path)
        if hdr is None:
            self.report.warnings.append(f"{rel}: unreadable NIfTI header")
            return
        for location, content_kind, content in _nifti_texts(hdr):
            if content_kind == "dicom":
                self._scan_dicom_dataset(content, rel, prefix=f"{location}.")
                continue
            text = content.strip("\x00 ")
            if content_kind == "raw" and text[:1] in "{[":
                try:
                    self._scan_json(json.loads(text), rel, location)
                    continue
                except ValueError:
                    pass
            self.check(text, rel, location)

    def _scan_gzip_header(self, path: Path, rel: str) -> None:
        for location, text in _gzip_header_texts(path):
            self.check(text, rel, location)

    def _scan_tiff(self, path: Path, rel: str) -> None:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                for i, page in enumerate(tif.pages):
                    tags = getattr(page, "tags", None)
                    if tags is None:
                        continue
                    for tag in tags.values():
                        if int(tag.dtype) != 2 and tag.code != 270:
                            continue
                        value = tag.value
                        if not isinstance(value, str | bytes):
                            continue
                        text = _as_text(value)
                        location = f"page {i} {tag.name}"
                        if text.lstrip().startswith("<"):
                            self._scan_xml(text, rel, location)
                        elif text[:1] in "{[":
                            try:
                                self._scan_json(json.loads(text), rel, location)
                            except ValueError:
                                self.check(text, rel, location)
                        else:
                            self.check(text, rel, location)
        except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as exc:
            self.report.warnings.append(f"{rel}: unreadable TIFF ({type(exc).__name__})")
        if self.pixel_text is not None:
            self._scan_auxiliary(path, rel)

    def _scan_auxiliary(self, src: Path, rel: str) -> None:
        """Auxiliary series (slide label, macro, overview, thumbnail, preview) of an OME-Zarr
        store or OME-TIFF file: under ``pixel_text.auxiliary_images: remove`` each one present is
        a hit of kind ``pixel_text``; under ``ocr`` each is read for text, and text that is not
        an allowed token (or that cannot be read) is a hit (:mod:`imagedepot.pixeltext.series`)."""
        from imagedepot.pixeltext.planes import find_text_in_planes
        from imagedepot.pixeltext.series import list_series, read_planes

        assert self.pixel_text is not None
        try:
            entries = list_series(src)
        except Exception as exc:  # metadata that cannot be read: fail closed
            self.hit(rel, "OME series (cannot be listed)", "pixel_text", type(exc).__name__)
            return
        for entry in entries:
            if not entry.auxiliary:
                continue
            where = f"series {entry.index} ({self.safe(entry.name)})"
            if self.pixel_text.auxiliary_images == "remove":
                self.hit(
                    rel,
                    f"{where}: auxiliary image present under auxiliary_images remove",
                    "pixel_text",
                    f"auxiliary:{entry.index}",
                )
                continue
            try:
                regions = find_text_in_planes(read_planes(src, entry), self.pixel_text)
            except Exception as exc:  # readers and engines raise many types: fail closed
                self.hit(rel, f"{where} (cannot read for text)", "pixel_text", type(exc).__name__)
                continue
            self.images_read += 1
            for r in regions:
                location = f"{where} plane {r.frame} box {list(r.box)}"
                if r.text:
                    self.check(r.text, rel, location)
                self.hit(rel, location, "pixel_text", f"{entry.index}:{r.frame}:{r.box}")

    def finish(self) -> LeakReport:
        r = self.report
        r.status = "leak" if self.n_hits else "clean"
        r.counts = {
            "hits": self.n_hits,
            "files_with_hits": len(self.files_with_hits),
            "by_kind": dict(sorted(self.by_kind.items())),
        }
        if self.n_hits > len(r.hits):
            r.warnings.append(f"only the first {len(r.hits)} of {self.n_hits} hits are listed")
        return r


def _decodes(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed block is fine.
        return exc.start >= len(head) - 3
    return True


def _gzip_header_texts(path: Path) -> list[tuple[str, str]]:
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


def scan(
    identifiers: Identifiers,
    outputs: Sequence[Path],
    *,
    allow_kinds: Iterable[str] = (),
    pixel_text: PixelTextSettings | None = None,
    text_ids: TextIdentifiers | None = None,
) -> LeakReport:
    """Look for ``identifiers`` in every output file and folder (recursively).

    Parameters
    ----------
    identifiers
        From :func:`harvest`.
    outputs
        Files or folders to check.
    allow_kinds
        Kinds the policy keeps on purpose (see :func:`allowed_kinds_for_options`): hits of only
        these kinds are not counted.
    pixel_text
        When given, the pixels of every DICOM image are read for text with the same detector as
        de-identification (:mod:`imagedepot.pixeltext`): the recognised text is searched for
        the identifiers, and text that the policy's mode would have blanked is a hit of kind
        ``pixel_text``. The auxiliary series of OME-Zarr stores and OME-TIFF files (slide
        label, macro, overview, thumbnail, preview) are hits too: every one present under
        ``auxiliary_images: remove``; under ``ocr``, those with text that is not an allowed
        token (or that cannot be read).
    text_ids
        Identifiers for the OCR-tolerant matching of recognised text
        (:func:`imagedepot.pixeltext.identifiers.from_dataset` of the originals).

    Returns
    -------
    LeakReport
        ``status`` is ``"leak"`` when anything was found. No identifier values inside.
    """
    scanner = _Scanner(identifiers, frozenset(allow_kinds), pixel_text, text_ids)
    if len(identifiers) == 0:
        scanner.report.warnings.append("no identifiers harvested from the originals")
        log.warning("no identifiers harvested from the originals: the leak gate checks nothing")
    for out in outputs:
        scanner.scan_root(Path(out))
    report = scanner.finish()
    log.info("leakcheck %s", report.summary())
    return report


def leakcheck(
    originals: Sequence[Path],
    outputs: Sequence[Path],
    extra: Iterable[str] = (),
    *,
    allow_kinds: Iterable[str] = (),
    pixel_text: PixelTextSettings | None = None,
) -> LeakReport:
    """Harvest identifiers from ``originals`` (plus ``extra``) and scan ``outputs`` for them
    (with ``pixel_text``, also the text in every DICOM image's pixels)."""
    extra = list(extra)
    text_ids = None
    if pixel_text is not None:
        text_ids = text_identifiers(originals, extra)
    return scan(
        harvest(originals, extra),
        outputs,
        allow_kinds=allow_kinds,
        pixel_text=pixel_text,
        text_ids=text_ids,
    )


def text_identifiers(originals: Sequence[Path], extra: Iterable[str] = ()) -> TextIdentifiers:
    """OCR-tolerant identifiers of the original DICOM headers and ``extra`` values."""
    from imagedepot.pixeltext.identifiers import from_dataset

    out = TextIdentifiers()
    for value in extra:
        out.add(value, "id")
    for path in _iter_input_files(list(originals)):
        if _sniff(path)[128:132] != b"DICM":
            continue
        ds = _read_dicom(path, force=False)
        if ds is not None:
            out.update(from_dataset(ds))
    return out
