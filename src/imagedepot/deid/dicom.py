"""De-identify DICOM files: PS3.15 Basic Application Level Confidentiality Profile plus options.

:func:`deidentify_dicom` reads DICOM Part 10 files (never modifying them), applies the profile
to every attribute, at every depth of every sequence and in the File Meta Information, and
writes new files named after their (remapped) SOP Instance UID, never after the input names.

What each resolved action (:func:`imagedepot.deid.profile.action_for`) does here:

``X`` removed. ``Z`` emptied (an empty sequence for sequences). ``D`` a dummy value of the VR
(``ANONYMIZED``, ``19000101``, ``0``...; an empty sequence for sequences, a remapped UID for
UIDs). ``K`` kept; sequences are kept but every item is cleaned. ``U`` every UID value is
replaced by :meth:`Pseudonymizer.uid` (the same original gives the same replacement in every
file, every run with the same key, so references across a series and inside sequences stay
consistent); well-known UIDs of the DICOM registry (transfer syntaxes, SOP classes, coding
schemes) are kept. ``C`` (clean) depends on the value representation:

* DA, DT: shifted back by the subject's offset (:meth:`Pseudonymizer.shift_date`); a value
  that is not a date is emptied. TM: kept (the shift is whole days, so the time of day stays).
* Free text (LO, SH, ST, LT, UT, UC): names, IDs, birth dates, addresses and similar values
  of the file itself (collected before cleaning) are cut out, as are date-like strings, runs
  of six or more digits and e-mail addresses.
* AE titles: replaced by a keyed pseudonym (``AE`` + 12 characters).
* Sequences: kept, every item cleaned, and free text anywhere inside cleaned as above
  (coded values such as Code Value are left alone).
* Anything else (binary values, overlay and curve bitmaps): removed, as no cleaner could
  vouch for it.

Attributes the table does not list:

* Standard attributes are kept, except person names (removed), dates and times (treated like
  the table's date attributes: removed, shifted or kept per the longitudinal options) and UIDs
  that are not class or transfer-syntax UIDs (remapped like ``U``).
* Public tags unknown to pydicom's data dictionary and retired group lengths are removed.
* Private attributes are removed; under ``retain_safe_private`` the curated list in
  ``imagedepot/data/safe_private.json`` is kept (with its private creators).

Then at the top level: Patient's Name and Patient ID become the subject's pseudonym, and
Patient Identity Removed, De-identification Method (+ Code Sequence, CID 7050) and
Longitudinal Temporal Information Modified are set. The File Meta Information is rebuilt from
scratch (PS3.15 E.1.1): only class, instance (remapped) and transfer syntax UIDs survive, and
the 128-byte preamble is zeroed.

Pixel data: a file flagged as having burned-in annotation (Burned In Annotation YES, or
modality US/SC/OT without that attribute) is refused (:class:`InputError`) unless the policy
has ``clean_pixel_data`` and a pixel-cleaning rule matches it; matching rules blank their
rectangles in every frame and Burned In Annotation is set to NO. Under
``clean_recognizable_visual_features`` a file flagged as recognisable (Recognizable Visual
Features YES, or external-camera photography, modality XC, without that attribute) is refused:
this module does not deface images.

Inputs are checked fail-closed (:class:`InputError` naming the file): not DICOM Part 10, no
transfer syntax, no SOP Instance or Class UID, truncated (the last element shorter than its
length, a partial element after it, an unclosed sequence, image attributes without pixel data;
a file cut exactly between two non-pixel elements cannot be told from a complete one), a Patient
ID differing from the other files of the call, a duplicate instance, or a UID unfit for a file
name. DICOMDIR files are skipped. Reading uses ``defer_size`` (:data:`DEFER_SIZE`): large
values (pixel data) are not read until the output is written, so refused files cost little.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import io
import json
import logging
import os
import re
import struct
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, MutableSequence, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from imagedepot import __version__
from imagedepot.deid import profile
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError
from imagedepot.io import atomic_path, check_overwrite, iter_files
from imagedepot.policy import PIXEL_MATCH_KEYS, PixelRule

log = logging.getLogger(__name__)

SAFE_PRIVATE_RESOURCE = "data/safe_private.json"

#: Hex characters of the keyed hash of an old value written to the action log.
ACTION_HASH_CHARS = 12

#: Inputs with more bytes than this are read lazily (pixel data mostly).
DEFER_SIZE = 1 << 16

_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
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

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV", "AT"})
_DUMMY_TEXT = {
    "AE": "ANONYMIZED",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "PN": "ANONYMIZED",
    "UR": "",
}
#: Keywords of coded values inside sequences that text cleaning must not touch.
_CODED_KEYWORDS = frozenset(
    {
        "CodeValue",
        "LongCodeValue",
        "URNCodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "ContextIdentifier",
        "ContextGroupVersion",
        "MappingResource",
        "MappingResourceName",
    }
)
#: Top-level attributes whose values are cut out of cleaned free text.
_IDENTIFYING_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
)
#: Options under which some attribute resolves to a free-text clean.
_TEXT_CLEAN_OPTIONS = frozenset(
    {
        "clean_descriptors",
        "clean_structured_content",
        "clean_graphics",
        "retain_patient_characteristics",
    }
)
_GENERIC_PHI = re.compile(
    r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b"  # 12/03/2020, 2020-03-12
    r"|\d{6,}"  # MRNs, phone numbers, YYYYMMDD
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
)
_UID_NAME_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_SPACES = re.compile(r"\s{2,}")


# --------------------------------------------------------------------------------------------
# Report


@dataclass
class DeidReport:
    """What :func:`deidentify_dicom` did.

    ``linkage`` holds ``(original subject, pseudonym)`` rows for the caller to store in the
    linkage table; it and the input paths in ``errors`` are left out of :meth:`to_dict`
    unless ``include_private`` is true, so the dict can go to provenance.
    """

    output: str
    files_written: list[str] = field(default_factory=list)
    n_inputs: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    options_claimed: list[str] = field(default_factory=list)
    edition: str = profile.EDITION
    pseudonym: str = ""
    pixel_cleaned: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    linkage: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self, *, include_private: bool = False) -> dict[str, Any]:
        """Plain-JSON form (without linkage and input paths unless ``include_private``)."""

        def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if include_private:
                return [dict(r) for r in rows]
            return [{k: v for k, v in r.items() if k != "path"} for r in rows]

        out: dict[str, Any] = {
            "output": self.output,
            "files_written": list(self.files_written),
            "n_inputs": self.n_inputs,
            "n_written": len(self.files_written),
            "actions": dict(sorted(self.actions.items())),
            "options": list(self.options),
            "options_claimed": list(self.options_claimed),
            "edition": self.edition,
            "pseudonym": self.pseudonym,
            "pixel_cleaned": [dict(r) for r in self.pixel_cleaned],
            "skipped": strip(self.skipped),
            "errors": strip(self.errors),
        }
        if include_private:
            out["linkage"] = [list(row) for row in self.linkage]
        return out


# --------------------------------------------------------------------------------------------
# Compiled plan: tag -> operation, per option set


@functools.cache
def safe_private_attributes() -> frozenset[tuple[str, int, int]]:
    """The curated safe-private list as ``(creator casefolded, group, element byte)``."""
    text = resources.files("imagedepot").joinpath(SAFE_PRIVATE_RESOURCE).read_text(encoding="utf-8")
    return frozenset(
        (a["creator"].strip().casefold(), int(a["group"], 16), int(a["element"], 16))
        for a in json.loads(text)["attributes"]
    )


_CLASS_UID_WORDS = ("ClassUID", "SOPClasses", "TransferSyntaxUID")
_KEEP_UID_KEYWORDS = frozenset(
    {"CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID", "ContextUID"}
)


def _unlisted_action(keyword: str, vr: str, options: frozenset[str]) -> str:
    """Action for a standard attribute that Table E.1-1 does not list."""
    if "SQ" in vr:
        return "K"
    if vr == "PN":
        return "X"
    if vr in _DATE_VRS:
        if "retain_longitudinal_modified_dates" in options:
            return "C"
        if "retain_longitudinal_full_dates" in options:
            return "K"
        return "X"
    if vr == "UI" and "retain_uids" not in options:
        if keyword in _KEEP_UID_KEYWORDS or any(w in keyword for w in _CLASS_UID_WORDS):
            return "K"
        return "U"
    return "K"


@dataclass(frozen=True)
class _Plan:
    ops: dict[int, str]
    keep: frozenset[int]
    private: str
    wild: tuple[tuple[int, int, str], ...]


@functools.cache
def _plan(options: frozenset[str]) -> _Plan:
    from pydicom.datadict import DicomDictionary

    exact = profile.tag_actions(options)
    ops: dict[int, str] = {}
    keep: set[int] = set()
    for tag, entry in DicomDictionary.items():
        if tag >> 16 == 0x0002:
            continue  # file meta: rebuilt, never copied
        vr, keyword = entry[0], entry[4]
        act = exact.get(tag) or _unlisted_action(keyword, vr, options)
        if act == "K" and "SQ" not in vr:
            keep.add(tag)
        else:
            ops[tag] = act
    for tag, act in exact.items():
        if tag not in ops and tag not in keep:
            ops[tag] = act  # listed but unknown to pydicom: VR decided per file
    for tag in [t for t in ops if t >> 16 == 0x0002]:
        del ops[tag]
    return _Plan(
        ops=ops,
        keep=frozenset(keep),
        private=profile.private_action(options),
        wild=profile.wildcard_actions(options),
    )


# --------------------------------------------------------------------------------------------
# One run


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


class _FileLog:
    """Actions taken on one file: counts always, entries only when an action log is wanted."""

    def __init__(self, key: bytes, keep_entries: bool) -> None:
        self.key = key
        self.keep_entries = keep_entries
        self.counts: Counter[str] = Counter()
        self.entries: list[dict[str, Any]] = []

    def add(self, where: str, tag: int, action: str, old: bytes | None = None) -> None:
        self.counts[action] += 1
        if not self.keep_entries:
            return
        entry: dict[str, Any] = {
            "tag": f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
            "keyword": _keyword(tag),
            "action": action,
        }
        if where:
            entry["path"] = where
        if old:
            digest = hmac.new(self.key, b"action-log\x00" + old, hashlib.sha256).hexdigest()
            entry["old_sha256"] = digest[:ACTION_HASH_CHARS]
        self.entries.append(entry)


@functools.cache
def _keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    if (tag >> 16) & 1:
        return "(private)"
    return keyword_for_tag(tag) or ""


def _tagstr(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _old_bytes(elem: Any) -> bytes | None:
    """The stored value of an element as bytes, for hashing (raw bytes when still raw)."""
    value = elem.value
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).rstrip(b" \x00") or None
    if isinstance(value, str):
        return value.strip().encode("utf-8") or None
    try:
        text = "\\".join(str(v) for v in value) if isinstance(value, list) else str(value)
    except TypeError:
        text = str(value)
    return text.encode("utf-8") or None


def _values(value: Any) -> list[str]:
    """The values of an element as strings (one per value of a multi-valued element)."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split("\\") if "\\" in value else [value]
    if isinstance(value, bytes | bytearray):
        return [bytes(value).decode("ascii", "replace")]
    if isinstance(value, MutableSequence | tuple):  # MultiValue
        return [str(v) for v in value]
    return [str(value)]


class _Engine:
    """Cleans datasets for one call of :func:`deidentify_dicom` (caches shared across files)."""

    def __init__(
        self,
        options: frozenset[str],
        pseudonymizer: Pseudonymizer,
        subject: str,
        pixel_rules: Sequence[PixelRule],
        keep_log: bool,
    ) -> None:
        self.options = options
        self.pz = pseudonymizer
        self.subject = subject
        self.pseudonym = pseudonymizer.subject_id(subject)
        self.pixel_rules = tuple(pixel_rules)
        self.keep_log = keep_log
        self.plan = _plan(options)
        self.safe = safe_private_attributes() if self.plan.private == "C" else frozenset()
        self.uid_cache: dict[str, str] = {}
        self.date_cache: dict[tuple[str, str], str | None] = {}
        self.fallback_cache: dict[int, str | None] = {}
        self.text_clean = bool(options & _TEXT_CLEAN_OPTIONS)
        if "retain_longitudinal_modified_dates" in options:
            self.temporal = "MODIFIED"
        elif "retain_longitudinal_full_dates" in options:
            self.temporal = "UNMODIFIED"
        else:
            self.temporal = "REMOVED"
        self.patient_ids: set[str] = set()
        # per file
        self.flog = _FileLog(pseudonymizer.key, keep_log)
        self.scrubber: re.Pattern[str] | None = None

    # ---------------------------------------------------------------- values

    def uid(self, value: str) -> str:
        v = value.strip().rstrip("\x00").strip()
        if not v:
            return v
        new = self.uid_cache.get(v)
        if new is None:
            from pydicom.uid import UID

            new = v if UID(v).name != v else self.pz.uid(v)
            self.uid_cache[v] = new
        return new

    def shift(self, vr: str, value: str) -> str | None:
        key = (vr, value)
        if key in self.date_cache:
            return self.date_cache[key]
        out: list[str] = []
        result: str | None
        try:
            for part in value.split("\\"):
                p = part.strip()
                if not p:
                    out.append("")
                elif vr == "DA":
                    out.append(self.pz.shift_date(p, self.subject))
                else:
                    out.append(self.pz.shift_datetime(p, self.subject))
            result = "\\".join(out)
        except ValueError:
            result = None
        self.date_cache[key] = result
        return result

    def ae(self, value: str) -> str:
        v = value.strip()
        if not v:
            return v
        digest = hmac.new(self.pz.key, b"ae\x00" + v.encode(), hashlib.sha256).digest()
        return "AE" + base64.b32encode(digest).decode()[:12]

    def scrub(self, text: str) -> str:
        out = text
        if self.scrubber is not None:
            out = self.scrubber.sub("", out)
        out = _GENERIC_PHI.sub("", out)
        return _SPACES.sub(" ", out).strip()

    def _collect_identifiers(self, ds: Any) -> None:
        tokens: set[str] = set()
        for kw in _IDENTIFYING_KEYWORDS:
            elem = ds.get(kw)
            if elem is None:
                continue
            for v in _values(elem):
                v = v.strip()
                if not v:
                    continue
                if len(v) >= 2:
                    tokens.add(v)
                for part in re.split(r"[\^=\s,]+", v):
                    if len(part) >= 2:
                        tokens.add(part)
                if kw == "PatientBirthDate" and len(v) == 8 and v.isdigit():
                    y, m, d = v[:4], v[4:6], v[6:]
                    tokens.update({f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"})
        self.scrubber = _scrubber(frozenset(tokens)) if tokens else None

    # ---------------------------------------------------------------- datasets

    def fallback(self, tag: int) -> str | None:
        """Operation for a public tag outside the compiled plan (repeating groups, group
        lengths, tags unknown to the dictionary); ``None`` means keep."""
        if tag in self.fallback_cache:
            return self.fallback_cache[tag]
        op: str | None
        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 or group == 0x0002:
            op = "X"  # group lengths (retired), file meta misplaced in the data set
        else:
            op = None
            for mask, value, action in self.plan.wild:
                if tag & mask == value:
                    # curve data (retired) has no cleaner; overlay bitmaps are removed and
                    # overlay comments cleaned by clean_value, per VR
                    op = "X" if action == "C" and group & 0xFF00 == 0x5000 else action
                    break
            if op is None:
                from pydicom.datadict import get_entry

                try:
                    entry = get_entry(tag)  # includes repeating groups such as (60xx,0010)
                except KeyError:
                    op = "X"  # unknown public attribute: cannot vouch for it
                else:
                    act = _unlisted_action(entry[4], entry[0], self.options)
                    op = None if act == "K" and "SQ" not in entry[0] else act
        self.fallback_cache[tag] = op
        return op

    def clean(self, ds: Any, where: str, scrub: bool) -> None:
        """Apply the plan to every element of ``ds`` (recursing into sequences)."""
        plan = self.plan
        ops, keep, flog = plan.ops, plan.keep, self.flog
        drop_private = plan.private != "C"
        creators: dict[int, str] = {}  # private creator tag -> creator name (casefolded)
        used_blocks: set[int] = set()
        for tag in list(ds.keys()):
            if tag in keep:
                if scrub:
                    self.clean_text_in_sequence(ds, tag, where)
                elif ds.get_item(tag, keep_deferred=True).VR == "SQ":
                    self.recurse(ds, tag, where, scrub)  # mis-encoded sequence: clean it too
                continue
            if (tag >> 16) & 1:
                if drop_private or not self.keep_private(ds, tag, creators, used_blocks):
                    flog.add(where, tag, "X")
                    del ds[tag]
                elif tag not in creators:
                    flog.add(where, tag, "K")
                continue
            op = ops.get(tag)
            if op is None:
                op = self.fallback(tag)
                if op is None:
                    if scrub:
                        self.clean_text_in_sequence(ds, tag, where)
                    continue
            self.apply(ds, tag, op, where, scrub)
        for ctag in creators:
            if ctag not in used_blocks:
                flog.add(where, ctag, "X")
                del ds[ctag]

    def keep_private(self, ds: Any, tag: int, creators: dict[int, str], used: set[int]) -> bool:
        """Under retain_safe_private: keep a private element if it is on the safe list.

        Private creators are kept for now (and removed at the end if no element of their block
        was kept); elements outside a creator's block are removed.
        """
        group, elem = tag >> 16, tag & 0xFFFF
        if 0x0010 <= elem <= 0x00FF:
            value = ds.get_item(tag).value
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            creators[tag] = str(value or "").strip(" \x00").casefold()
            return True
        if elem < 0x1000:
            return False
        ctag = (group << 16) | (elem >> 8)
        name = creators.get(ctag)
        if name is not None and (name, group, elem & 0xFF) in self.safe:
            used.add(ctag)
            return True
        return False

    def recurse(self, ds: Any, tag: int, where: str, scrub: bool) -> None:
        seq = ds[tag].value
        base = f"{where}{_tagstr(tag)}"
        for i, item in enumerate(seq or ()):
            self.clean(item, f"{base}[{i}].", scrub)

    def clean_text_in_sequence(self, ds: Any, tag: int, where: str) -> None:
        """Inside a sequence being cleaned (``C``): clean free text of kept attributes."""
        elem = ds[tag]
        if elem.VR == "SQ":
            self.recurse(ds, tag, where, True)
        elif elem.VR in _TEXT_VRS and elem.keyword not in _CODED_KEYWORDS:
            self.set_clean_text(ds, tag, elem, where)

    def set_clean_text(self, ds: Any, tag: int, elem: Any, where: str) -> None:
        old = _values(elem.value)
        new = [self.scrub(v) for v in old]
        if new != [v.strip() for v in old]:
            self.flog.add(where, tag, "C", _old_bytes(elem))
            elem.value = new[0] if len(new) == 1 else new

    def apply(self, ds: Any, tag: int, op: str, where: str, scrub: bool) -> None:
        from pydicom.dataelem import DataElement

        if op == "X":
            self.flog.add(where, tag, "X")
            del ds[tag]
            return
        elem = ds[tag]
        vr = elem.VR
        if vr == "SQ":
            if op in ("K", "U"):
                self.recurse(ds, tag, where, scrub)
            elif op == "C":
                self.flog.add(where, tag, "C")
                self.recurse(ds, tag, where, True)
            else:  # Z and D: an empty sequence (no fabricated items)
                self.flog.add(where, tag, op)
                ds[tag] = DataElement(tag, "SQ", [])
            return
        if op == "K":
            if scrub and vr in _TEXT_VRS and elem.keyword not in _CODED_KEYWORDS:
                self.set_clean_text(ds, tag, elem, where)
            return
        old = _old_bytes(elem)
        if op == "Z":
            if old is not None:
                self.flog.add(where, tag, "Z", old)
                ds[tag] = DataElement(tag, vr, None)
            return
        if op == "U":
            if vr != "UI":
                self.flog.add(where, tag, "X")
                del ds[tag]
                return
            vals = _values(elem.value)
            new = [self.uid(v) for v in vals]
            if new != [v.strip().rstrip("\x00").strip() for v in vals]:
                self.flog.add(where, tag, "U", old)
                elem.value = new[0] if len(new) == 1 else new
            return
        if op == "D":
            self.flog.add(where, tag, "D", old)
            ds[tag] = DataElement(tag, vr, self.dummy(vr, elem.value))
            return
        # op == "C"
        self.clean_value(ds, tag, elem, vr, old, where)

    def dummy(self, vr: str, value: Any) -> Any:
        if vr == "UI":
            vals = [self.uid(v) for v in _values(value)]
            return vals[0] if len(vals) == 1 else (vals or None)
        if vr in _TEXT_VRS:
            return "ANONYMIZED"
        if vr in _DUMMY_TEXT:
            return _DUMMY_TEXT[vr] or None
        if vr in ("DS", "IS"):
            return "0"
        if vr in _NUMBER_VRS:
            return 0
        return b"\x00\x00"

    def clean_value(
        self, ds: Any, tag: int, elem: Any, vr: str, old: bytes | None, where: str
    ) -> None:
        from pydicom.dataelem import DataElement

        if vr in ("DA", "DT"):
            if "retain_longitudinal_modified_dates" not in self.options:
                self.flog.add(where, tag, "X")
                del ds[tag]
                return
            if old is None:
                return
            raw = "\\".join(_values(elem.value))
            shifted = self.shift(vr, raw)
            if shifted is None:
                self.flog.add(where, tag, "Z", old)
                ds[tag] = DataElement(tag, vr, None)
            else:
                self.flog.add(where, tag, "C", old)
                elem.value = shifted
            return
        if vr == "TM":
            if "retain_longitudinal_modified_dates" not in self.options:
                self.flog.add(where, tag, "X")
                del ds[tag]
            return
        if vr in _TEXT_VRS:
            self.set_clean_text(ds, tag, elem, where)
            return
        if vr == "AE":
            if old is not None:
                new = [self.ae(v) for v in _values(elem.value)]
                self.flog.add(where, tag, "C", old)
                elem.value = new[0] if len(new) == 1 else new
            return
        if vr == "CS":
            return  # coded values: defined terms, kept
        self.flog.add(where, tag, "X")
        del ds[tag]

    # ---------------------------------------------------------------- one file

    def process(self, path: Path) -> tuple[Any, str, list[str], list[str]]:
        """Read and clean one file. Returns (dataset, output name, claimed options, rules)."""
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError

        self.flog = _FileLog(self.pz.key, self.keep_log)
        try:
            ds = dcmread(os.fspath(path), defer_size=DEFER_SIZE)
        except InvalidDicomError as exc:
            raise InputError(path, "not a DICOM Part 10 file (no DICM prefix)") from exc
        except _READ_ERRORS as exc:
            raise InputError(path, f"unreadable or truncated DICOM ({type(exc).__name__})") from exc
        try:
            return self._process(ds, path)
        except InputError:
            raise
        except _READ_ERRORS as exc:
            raise InputError(path, f"unreadable or truncated DICOM ({type(exc).__name__})") from exc

    def _process(self, ds: Any, path: Path) -> tuple[Any, str, list[str], list[str]]:
        meta = getattr(ds, "file_meta", None)
        tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if meta is None or not tsyntax:
            raise InputError(path, "no File Meta Information transfer syntax")
        sop_class = str(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID") or "").strip()
        if sop_class == _MEDIA_STORAGE_DIRECTORY:
            raise _Skip("DICOMDIR (media storage directory) skipped")
        _check_complete(ds, path, str(tsyntax))
        sop = str(ds.get("SOPInstanceUID") or "").strip().rstrip("\x00")
        if not sop:
            raise InputError(path, "missing SOPInstanceUID")
        if not sop_class:
            raise InputError(path, "missing SOPClassUID")
        pid = str(ds.get("PatientID") or "").strip()
        if pid:
            if self.patient_ids and pid not in self.patient_ids:
                raise InputError(path, "Patient ID differs from the other files of this call")
            self.patient_ids.add(pid)

        # pixel checks first, on the original attributes
        claimed = [
            o
            for o in sorted(self.options)
            if o not in ("clean_pixel_data", "clean_recognizable_visual_features")
        ]
        rules_applied = self._pixels(ds, path)
        if rules_applied:
            claimed.append("clean_pixel_data")
        self._visual_features(ds, path)

        if self.text_clean:
            self._collect_identifiers(ds)
        else:
            self.scrubber = None
        for tag in (_PATIENT_NAME, _PATIENT_ID):
            if tag in ds:
                self.flog.add("", tag, "D", _old_bytes(ds[tag]))
                del ds[tag]
        self.clean(ds, "", False)

        ds.PatientName = self.pseudonym
        ds.PatientID = self.pseudonym
        ds.PatientIdentityRemoved = "YES"
        if rules_applied:
            ds.BurnedInAnnotation = "NO"
        ds.LongitudinalTemporalInformationModified = self.temporal
        self._method(ds, sorted(set(claimed)))

        new_sop = str(ds.get("SOPInstanceUID") or "").strip()
        if not _UID_NAME_RE.fullmatch(new_sop) or len(new_sop) > 64:
            raise InputError(
                path, "SOPInstanceUID is not a valid UID; refusing to name a file after it"
            )
        self._file_meta(ds, sop_class, new_sop, str(tsyntax))
        return ds, f"{new_sop}.dcm", sorted(set(claimed)), rules_applied

    def _method(self, ds: Any, claimed: list[str]) -> None:
        """Set De-identification Method and its Code Sequence (encoded once per option set)."""
        implicit, little = ds.original_encoding
        text, codes = _method_elements(tuple(claimed), bool(implicit), little is not False)
        ds[0x00120063] = text
        ds[0x00120064] = codes

    def _file_meta(self, ds: Any, sop_class: str, sop: str, tsyntax: str) -> None:
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import UID

        old = ds.file_meta
        for tag in list(old.keys()):
            if tag in (0x00020002, 0x00020010, 0x00020001):
                continue
            if tag == 0x00020003:
                self.flog.add("meta.", tag, "U", _old_bytes(old[tag]))
            else:
                self.flog.add("meta.", tag, "X")
        meta = FileMetaDataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        meta.MediaStorageSOPClassUID = UID(sop_class)
        meta.MediaStorageSOPInstanceUID = UID(sop)
        meta.TransferSyntaxUID = UID(tsyntax)
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128

    def _pixels(self, ds: Any, path: Path) -> list[str]:
        """Apply matching pixel-cleaning rules; refuse burned-in text nothing cleans."""
        has_pixels = any(t in ds for t in _PIXEL_TAGS)
        if not has_pixels:
            return []
        burned = str(ds.get("BurnedInAnnotation") or "").strip().upper()
        modality = str(ds.get("Modality") or "").strip().upper()
        flagged = burned == "YES" or (not burned and modality in ("US", "SC", "OT"))
        rules: list[PixelRule] = []
        if "clean_pixel_data" in self.options and self.pixel_rules:
            attrs = {k: ds.get(k) for k in PIXEL_MATCH_KEYS}
            rules = [r for r in self.pixel_rules if r.matches(attrs)]
        if flagged and not rules:
            why = (
                "clean_pixel_data is not in the policy"
                if "clean_pixel_data" not in self.options
                else "no pixel-cleaning rule matches"
            )
            raise InputError(
                path,
                f"burned-in annotation possible (BurnedInAnnotation={burned or 'absent'}, "
                f"Modality={modality or 'absent'}) and {why}",
            )
        if rules:
            _blank(ds, path, rules)
            self.flog.add("", 0x7FE00010, "C")
        return [r.name for r in rules]

    def _visual_features(self, ds: Any, path: Path) -> None:
        if "clean_recognizable_visual_features" not in self.options:
            return
        flag = str(ds.get("RecognizableVisualFeatures") or "").strip().upper()
        modality = str(ds.get("Modality") or "").strip().upper()
        if flag == "YES" or (not flag and modality == "XC"):
            raise InputError(
                path,
                "recognizable visual features possible and clean_recognizable_visual_features "
                "is in the policy (this package does not deface DICOM images)",
            )


@functools.lru_cache(maxsize=64)
def _method_elements(claimed: tuple[str, ...], implicit: bool, little: bool) -> tuple[Any, Any]:
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
    ds.DeidentificationMethod = [f"imagedepot {__version__}", profile.EDITION_SHORT] + [
        c.meaning for c in codes
    ]
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


@functools.lru_cache(maxsize=64)
def _scrubber(tokens: frozenset[str]) -> re.Pattern[str]:
    """One regex matching any of ``tokens`` as whole words, longest first, ignoring case."""
    alternatives = "|".join(re.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t)))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _check_complete(ds: Any, path: Path, tsyntax: str) -> None:
    """Raise :class:`InputError` for a file cut short.

    Elements are read in file order, so a truncated file ends in an element whose value is
    shorter than its declared length (or, when read lazily, would end past the end of the
    file). A file cut exactly between elements is caught when it has image attributes but no
    pixel data.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    keys = list(ds.keys())
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


def _blank(ds: Any, path: Path, rules: Sequence[PixelRule]) -> None:
    """Set every region of every rule to zero in every frame (decompressing if needed)."""
    try:
        bits = int(ds.get("BitsAllocated") or 0)
        if bits not in (8, 16):
            raise InputError(path, f"cannot clean pixel data with BitsAllocated {bits}")
        photometric = str(ds.get("PhotometricInterpretation") or "").strip()
        arr = ds.pixel_array.copy()
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
        if photometric.startswith("YBR") and samples == 3:
            photometric = "RGB"  # pydicom converts YBR to RGB when decoding
        for rule in rules:
            for x0, y0, x1, y1 in rule.regions:
                if frames > 1:
                    arr[:, y0:y1, x0:x1, ...] = 0
                else:
                    arr[y0:y1, x0:x1, ...] = 0
        ds.set_pixel_data(arr, photometric, int(ds.BitsStored), generate_instance_uid=False)
    except InputError:
        raise
    except (AttributeError, ValueError, RuntimeError, NotImplementedError, TypeError) as exc:
        raise InputError(
            path, f"cannot decode pixel data to clean it ({type(exc).__name__})"
        ) from exc


# --------------------------------------------------------------------------------------------
# Public API


def _collect(
    src: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], bool]:
    if isinstance(src, str | os.PathLike):
        p = Path(src)
        if p.is_file():
            return [p], True
        if p.is_dir():
            files = list(iter_files(p))
            if not files:
                raise InputError(p, "folder holds no files")
            return files, False
        raise InputError(p, "no such file or folder")
    files = [Path(s) for s in src]
    if not files:
        raise InputError("(empty list)", "no input files")
    for f in files:
        if not f.is_file():
            raise InputError(f, "not a file")
    return files, False


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def deidentify_dicom(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    policy_options: Iterable[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    force: bool = False,
    action_log: str | os.PathLike[str] | None = None,
    pixel_rules: Sequence[PixelRule] = (),
    skip_bad_files: bool = False,
) -> DeidReport:
    """De-identify DICOM files with the PS3.15 Basic Profile and ``policy_options``.

    Parameters
    ----------
    src
        A DICOM file, a folder (searched recursively) or a list of files. Inputs are opened
        read-only and never modified.
    out
        For a single file: the output file. Otherwise a folder that receives one file per
        instance, named ``<remapped SOPInstanceUID>.dcm`` (flat: input names and sub-folders,
        which may carry identifying information, are not reproduced). Written atomically:
        it appears complete or not at all.
    policy_options
        PS3.15 option names (see :data:`imagedepot.deid.profile.OPTIONS`).
    pseudonymizer
        Keyed pseudonyms: subject ID, UIDs, date offset.
    subject
        The subject's original identifier (pseudonymised as Patient's Name and Patient ID).
    force
        Replace an existing ``out``.
    action_log
        If given, one JSON line per written file is appended: output name and, per action,
        tag, keyword, action and, for replaced values, a 12-hex-character keyed hash
        (HMAC-SHA256 with the pseudonymisation key) of the old value, never the value. A plain
        hash would let anyone with the log recover low-entropy values such as birth dates.
    pixel_rules
        Pixel-cleaning rules of the policy (used with ``clean_pixel_data``).
    skip_bad_files
        If false (the default, fail closed), the first unusable file raises
        :class:`InputError` and nothing is written. If true, unusable files are listed in
        :attr:`DeidReport.errors` and the others are written.

    Raises
    ------
    InputError
        Naming the file: not DICOM, truncated, no SOP Instance UID, burned-in annotation that
        no rule cleans, recognisable features under that option, several patients, duplicate
        instances, or an output inside the input.
    OutputExistsError
        ``out`` exists and ``force`` is false.
    """
    options = profile.check_options(policy_options)
    files, single = _collect(src)
    out_path = Path(out)
    if single:
        if out_path.resolve() == files[0].resolve():
            raise InputError(out_path, "output would overwrite the input")
    elif not isinstance(src, str | os.PathLike) or Path(src).is_dir():
        root = Path(src) if isinstance(src, str | os.PathLike) else None
        if root is not None and _is_within(out_path, root):
            raise InputError(out_path, "output folder lies inside the input folder")
    check_overwrite(out_path, force)

    engine = _Engine(options, pseudonymizer, subject, pixel_rules, action_log is not None)
    report = DeidReport(
        output=out_path.name,
        n_inputs=len(files),
        options=sorted(options),
        pseudonym=engine.pseudonym,
        linkage=[(subject, engine.pseudonym)],
    )
    counts: Counter[str] = Counter()
    claimed_all: set[str] = set()
    lines: list[str] = []

    def one(path: Path, index: int, target_dir: Path | None, target: Path | None) -> None:
        ds, name, claimed, rules = engine.process(path)
        dest = target if target is not None else (target_dir / name if target_dir else None)
        assert dest is not None
        if target_dir is not None:
            if dest.exists():
                raise InputError(path, "duplicate SOPInstanceUID (the same instance twice)")
            if dest.parent != target_dir:
                raise InputError(path, "output name would leave the output folder")
        from pydicom import dcmwrite

        dcmwrite(dest, ds, enforce_file_format=True)
        shown = name if target_dir is not None else out_path.name
        report.files_written.append(shown)
        counts.update(engine.flog.counts)
        claimed_all.update(claimed)
        if rules:
            report.pixel_cleaned.append({"file": shown, "rules": rules})
        if action_log is not None:
            lines.append(
                json.dumps(
                    {"file": shown, "index": index, "actions": engine.flog.entries}, sort_keys=True
                )
            )

    with _quiet_pydicom():
        if single:
            with atomic_path(out_path, force=force) as tmp:
                try:
                    one(files[0], 0, None, tmp)
                except _Skip as skip:
                    raise InputError(files[0], str(skip)) from None
        else:
            with atomic_path(out_path, force=force, is_dir=True) as tmpdir:
                for i, path in enumerate(files):
                    try:
                        one(path, i, tmpdir, None)
                    except _Skip as skip:
                        report.skipped.append({"index": i, "path": str(path), "reason": str(skip)})
                    except InputError as exc:
                        if not skip_bad_files:
                            raise
                        report.errors.append({"index": i, "path": exc.path, "reason": exc.reason})
                if not report.files_written:
                    raise InputError(
                        os.fspath(src) if isinstance(src, str | os.PathLike) else files[0],
                        "no DICOM instance could be de-identified",
                    )

    report.actions = dict(counts)
    report.options_claimed = sorted(claimed_all)
    if action_log is not None and lines:
        log_path = Path(action_log)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    log.info(
        "de-identified %d of %d DICOM files into %s",
        len(report.files_written),
        len(files),
        out_path,
    )
    return report


def infer_subject(src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> str:
    """The one Patient ID shared by every DICOM file of ``src`` (for a CLI without ``--subject``).

    Raises :class:`InputError` if the files hold no Patient ID or more than one.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    files, _ = _collect(src)
    seen: set[str] = set()
    with _quiet_pydicom():
        for f in files:
            try:
                ds = dcmread(os.fspath(f), stop_before_pixels=True, specific_tags=["PatientID"])
            except (InvalidDicomError, *_READ_ERRORS) as exc:
                raise InputError(f, f"cannot read Patient ID ({type(exc).__name__})") from exc
            pid = str(ds.get("PatientID") or "").strip()
            if pid:
                seen.add(pid)
    if len(seen) != 1:
        where = os.fspath(src) if isinstance(src, str | os.PathLike) else files[0]
        raise InputError(
            where, f"cannot infer the subject: {len(seen)} distinct Patient IDs; pass --subject"
        )
    return seen.pop()
