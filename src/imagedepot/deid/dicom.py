"""De-identify DICOM files: PS3.15 Basic Application Level Confidentiality Profile plus options.

:func:`deidentify_dicom` reads DICOM Part 10 files (never modifying them), applies the profile
to every attribute, at every depth of every sequence and in the File Meta Information, and
writes new files named after their (remapped) SOP Instance UID, never after the input names.

What each resolved action (:func:`imagedepot.deid.profile.action_for`) does here:

Combination codes (``X/Z``, ``Z/D``, ``X/D``, ``X/Z/D``) are first resolved from the
attribute's type in the file's IOD (:func:`imagedepot.deid.profile.resolve_combination`,
types from :mod:`imagedepot.deid.iod`), so that no Type 1 attribute is emptied, no Type 2
removed and no Type 3 sequence left without items. ``X`` removed. ``Z`` emptied (an empty
sequence for a sequence the IOD has as Type 2 or that the tables do not know; removed where
it is Type 3 or not in the IOD, and logged as ``X``). ``D`` a dummy value of the VR
(``ANONYMIZED``, ``19000101``, ``0``...; a remapped UID for UIDs); for a sequence, the items
are kept and every value in them gets its own action, free text that the table does not list
becoming ``ANONYMIZED`` (Code Meaning too: code values and schemes stay, and name the concept),
so a Type 1 sequence such as Content Sequence or Verifying Observer Sequence keeps its structure
and none of its text.
``K`` kept; sequences are kept but every item is cleaned. ``U`` every UID value is
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

A deid recipe (:mod:`imagedepot.deid.recipe`), when the policy names one, runs next, on what
the profile left: it can remove, empty, replace, add or shift more, never keep what the profile
removed; its actions are logged like the profile's, with ``"rule": "recipe:<line>"``.

Then at the top level: Patient's Name and Patient ID become the subject's pseudonym, and
Patient Identity Removed, De-identification Method (+ Code Sequence, CID 7050; the recipe's
hash as one more value of the text) and Longitudinal Temporal Information Modified (MODIFIED
also when the recipe moved dates) are set, whatever the recipe said. The File Meta Information
is rebuilt from scratch (PS3.15 E.1.1): only class, instance (remapped) and transfer syntax UIDs
survive, and the 128-byte preamble is zeroed.

Pixel data (:mod:`imagedepot.deid.pixels`): a file that may carry burned-in text (Burned In
Annotation YES; or absent with modality US, XA, RF, SC or OT or a Secondary Capture SOP class;
or matched by a pixel-cleaning rule, which exists because that kind of image carries text) is
refused (:class:`InputError`) unless the policy has ``clean_pixel_data`` and a rule that cleans
matches it; matching rules blank their rectangles in every frame (decoding compressed data; the
output is then uncompressed) and Burned In Annotation is set to NO. Otherwise the pixel data
element is copied byte for byte from the input (no decoding, no re-encoding). Under
``clean_recognizable_visual_features`` a file flagged as recognisable (Recognizable Visual
Features YES, or external-camera photography, modality XC, without that attribute) is refused:
this module does not deface images.

Inputs are checked fail-closed (:class:`InputError` naming the file): not DICOM Part 10, no
transfer syntax, no SOP Instance or Class UID, no Study or Series Instance UID, truncated (the
last element shorter than its length, a partial element after it, an unclosed sequence, image
attributes without pixel data; a file cut exactly between two non-pixel elements cannot be told
from a complete one), a Patient ID differing from the other files of the call, a duplicate
instance, a UID unfit for a file name, a recipe value that does not fit its attribute. DICOMDIR
files are skipped, and so, with ``skip_bad_files``, are files that are not DICOM at all (a
README, a JSON export beside the images: no DICM prefix and no DICOM attributes). Reading uses ``defer_size`` (:data:`DEFER_SIZE`): large values (pixel data,
private blobs) are not read unless needed, so refused files and removed blobs cost little.

Files can be processed by several worker processes (``workers``): each file is read, cleaned
and written by one worker, into the same temporary output folder; results come back in input
order, so outputs, report and action log do not depend on the number of workers. Caches (UIDs,
dates, rule decisions) are bounded, so a worker's memory does not grow with the number of files.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import gc
import hashlib
import hmac
import io
import itertools
import json
import logging
import os
import re
import shutil
import struct
import sys
import tempfile
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from imagedepot import __version__
from imagedepot.deid import iod, profile
from imagedepot.deid.pixels import DatasetAttributes, PixelRule, blank_regions, burned_in_reason
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.deid.recipe import Recipe, ValueMismatch, apply_header
from imagedepot.errors import InputError
from imagedepot.io import atomic_path, check_overwrite, iter_files
from imagedepot.pixeltext import identifiers as text_ids
from imagedepot.pixeltext.dicom import (
    VOLUME_MODALITIES,
    PixelTextError,
    PixelTextResult,
    PixelTextSettings,
    clean_pixel_text,
    mask_boxes,
    write_thumbnails,
)
from imagedepot.pixeltext.engines import engine_info as text_engine_info
from imagedepot.pixeltext.render import Renderer, frames
from imagedepot.progress import Progress

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
#: VRs of raw elements emptied or remapped without decoding (explicit VR files only).
_RAW_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)
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
    #: Per file with text found in its pixels: boxes, engines, what was blanked, the encoding.
    pixel_text: list[dict[str, Any]] = field(default_factory=list)
    #: The pixel-text settings and engines (names, versions, model SHA-256).
    pixel_text_engine: dict[str, Any] = field(default_factory=dict)
    #: Files read by the text detector / files not read (``ocr_series: sample``).
    ocr_files: int = 0
    ocr_sampled_out: int = 0
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
            "pixel_text": [dict(r) for r in self.pixel_text],
            "pixel_text_engine": dict(self.pixel_text_engine),
            "ocr_files": self.ocr_files,
            "ocr_sampled_out": self.ocr_sampled_out,
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
    """What to do with each public tag under one option set, decided on first sight of the tag
    and remembered (a few hundred distinct tags in practice, shared by every file)."""

    options: frozenset[str]
    exact: Mapping[int, str]
    private: str
    wild: tuple[tuple[int, int, str], ...]
    memo: dict[int, str | None] = field(default_factory=dict)

    def decide(self, tag: int) -> str | None:
        """The operation for public ``tag``; ``None`` keeps it (and its value) as it is."""
        try:
            return self.memo[tag]
        except KeyError:
            op = self.memo[tag] = self._decide(tag)
            return op

    def _decide(self, tag: int) -> str | None:
        from pydicom.datadict import get_entry

        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 or group == 0x0002:
            return "X"  # group lengths (retired), file meta misplaced in the data set
        try:
            entry = get_entry(tag)  # includes repeating groups such as (60xx,0010)
        except KeyError:
            entry = None
        act = self.exact.get(tag)
        if act is not None:
            # listed but unknown to pydicom: applied per file, by the element's own VR
            return None if act == "K" and entry is not None and "SQ" not in entry[0] else act
        for mask, value, action in self.wild:
            if tag & mask == value:
                # curve data (retired) has no cleaner; overlay bitmaps are removed and overlay
                # comments cleaned by clean_value, per VR
                return "X" if action == "C" and group & 0xFF00 == 0x5000 else action
        if entry is None:
            return "X"  # unknown public attribute: cannot vouch for it
        act = _unlisted_action(entry[4], entry[0], self.options)
        return None if act == "K" and "SQ" not in entry[0] else act


@functools.cache
def _is_sequence(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


@functools.cache
def _plan(options: frozenset[str]) -> _Plan:
    return _Plan(
        options=options,
        exact=profile.tag_actions(options),
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

    def add(
        self, where: str, tag: int, action: str, old: bytes | None = None, rule: str | None = None
    ) -> None:
        self.counts[action] += 1
        if not self.keep_entries:
            return
        # keys in sorted order: the log line is written without re-sorting
        entry: dict[str, Any] = {"action": action, "keyword": _keyword(tag)}
        if old:
            digest = hmac.digest(self.key, b"action-log\x00" + old, "sha256")
            entry["old_sha256"] = digest.hex()[:ACTION_HASH_CHARS]
        if where:
            entry["path"] = where
        if rule:
            entry["rule"] = rule
        entry["tag"] = _tagstr(tag)
        self.entries.append(entry)


@functools.cache
def _keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    if (tag >> 16) & 1:
        return "(private)"
    return keyword_for_tag(tag) or ""


@functools.lru_cache(maxsize=4096)
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
        recipe: Recipe | None = None,
        pixel_text: PixelTextSettings | None = None,
        known: text_ids.Identifiers | None = None,
        thumbnails: Path | None = None,
        ocr_skip: frozenset[str] = frozenset(),
    ) -> None:
        self.options = options
        self.pixel_text = pixel_text
        self.known = known or text_ids.Identifiers()
        self.thumbnails = thumbnails
        self.ocr_skip = ocr_skip
        self.text_report: dict[str, Any] | None = None
        self.pz = pseudonymizer
        self.subject = subject
        self.pseudonym = pseudonymizer.subject_id(subject)
        self.pixel_rules = tuple(pixel_rules)
        self.keep_log = keep_log
        self.recipe = recipe
        self.rule_cache: dict[tuple[str, ...], tuple[str | None, tuple[PixelRule, ...]]] = {}
        self.rule_fields = _rule_fields(self.pixel_rules)
        self.plan = _plan(options)
        self.safe = safe_private_attributes() if self.plan.private == "C" else frozenset()
        self.uid_cache: dict[str, str] = {}
        self.date_cache: dict[tuple[str, str], str | None] = {}
        self.text_clean = bool(options & _TEXT_CLEAN_OPTIONS)
        if "retain_longitudinal_modified_dates" in options:
            self.temporal = "MODIFIED"
        elif "retain_longitudinal_full_dates" in options:
            self.temporal = "UNMODIFIED"
        else:
            self.temporal = "REMOVED"
        # per file
        self.flog = _FileLog(pseudonymizer.key, keep_log)
        self.sop_class = ""
        self.present: frozenset[int] = frozenset()
        self.scrubber: re.Pattern[str] | None = None

    def trim_caches(self) -> None:
        """Keep memory flat in the number of files: forget cached values past a bound."""
        for cache in (self.uid_cache, self.date_cache, self.rule_cache):
            if len(cache) > _CACHE_LIMIT:
                cache.clear()

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
                    if len(part) >= 2 or (part and _is_wide(part)):
                        tokens.add(part)  # one CJK character can be a whole family name
                if kw == "PatientBirthDate" and len(v) == 8 and v.isdigit():
                    y, m, d = v[:4], v[4:6], v[6:]
                    tokens.update({f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"})
        self.scrubber = _scrubber(frozenset(tokens)) if tokens else None

    # ---------------------------------------------------------------- datasets

    def clean(self, ds: Any, where: str, scrub: bool, dummy: bool = False) -> None:
        """Apply the plan to every element of ``ds`` (recursing into sequences).

        ``dummy``: inside a sequence replaced by a dummy (``D``), free text the table does not
        list becomes a dummy value too (Code Meaning included; code values stay)."""
        plan = self.plan
        memo, flog = plan.memo, self.flog
        drop_private = plan.private != "C"
        creators: dict[int, str] = {}  # private creator tag -> creator name (casefolded)
        used_blocks: set[int] = set()
        for tag in [int(t) for t in ds.keys()]:  # noqa: SIM118 - ints: fast lookups
            if (tag >> 16) & 1:
                if drop_private or not self.keep_private(ds, tag, creators, used_blocks):
                    flog.add(where, tag, "X")
                    del ds[tag]
                elif tag not in creators:
                    flog.add(where, tag, "K")
                continue
            op = memo[tag] if tag in memo else plan.decide(tag)
            if op is None:
                if dummy:
                    self.dummy_unlisted(ds, tag, where)
                elif scrub:
                    self.clean_text_in_sequence(ds, tag, where)
                elif ds.get_item(tag, keep_deferred=True).VR == "SQ":
                    self.recurse(ds, tag, where, scrub)  # mis-encoded sequence: clean it too
                continue
            self.apply(ds, tag, op, where, scrub, dummy)
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

    def recurse(self, ds: Any, tag: int, where: str, scrub: bool, dummy: bool = False) -> None:
        seq = ds[tag].value
        base = f"{where}{_tagstr(tag)}"
        for i, item in enumerate(seq or ()):
            self.clean(item, f"{base}[{i}].", scrub, dummy)

    def dummy_unlisted(self, ds: Any, tag: int, where: str) -> None:
        """Inside a dummied sequence (``D``): free text the table does not list is replaced."""
        elem = ds[tag]
        if elem.VR == "SQ":
            self.recurse(ds, tag, where, True, True)
        elif (
            elem.VR in _TEXT_VRS
            and elem.keyword not in _CODED_KEYWORDS
            and elem.value not in (None, "")
        ):
            self.flog.add(where, tag, "D", _old_bytes(elem))
            elem.value = "ANONYMIZED"

    def iod_type(self, tag: int, where: str) -> str | None:
        """Type of ``tag`` in this file's IOD (top level only; ``None`` when unknown)."""
        if where:
            return None
        return iod.attribute_type(self.sop_class, tag, self.present)

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

    def apply(
        self, ds: Any, tag: int, op: str, where: str, scrub: bool, dummy: bool = False
    ) -> None:
        from pydicom.dataelem import DataElement

        if profile.is_combination(op):
            op = profile.resolve_combination(
                op, self.iod_type(tag, where), sequence=_is_sequence(tag)
            )
        if op == "X":
            self.flog.add(where, tag, "X")
            del ds[tag]
            return
        if op in ("Z", "U") and self.apply_raw(ds, tag, op, where):
            return
        elem = ds[tag]
        vr = elem.VR
        if vr == "SQ":
            if op in ("K", "U"):
                self.recurse(ds, tag, where, scrub, dummy)
            elif op == "C":
                self.flog.add(where, tag, "C")
                self.recurse(ds, tag, where, True)
            elif op == "D":  # items kept, every value in them cleaned or dummied
                self.flog.add(where, tag, "D")
                self.recurse(ds, tag, where, scrub, True)
            elif self.iod_type(tag, where) in ("3", iod.NOT_IN_IOD):
                self.flog.add(where, tag, "X")  # Z: no empty sequence where items are due
                del ds[tag]
            else:  # Z: an empty sequence (no fabricated items)
                self.flog.add(where, tag, "Z")
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

    def apply_raw(self, ds: Any, tag: int, op: str, where: str) -> bool:
        """Empty (Z) or remap (U) an element still in its raw, undecoded form; False when it
        is not raw or its VR is not explicit and simple (the caller decodes it then)."""
        from pydicom.dataelem import DataElement, RawDataElement

        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.VR not in _RAW_VRS:
            return False
        value = raw.value
        if value is None:
            return False  # deferred: a large value, decoded the usual way
        if op == "Z":
            old = bytes(value).rstrip(b" \x00") or None
            if old is not None:
                self.flog.add(where, tag, "Z", old)
                ds[tag] = DataElement(tag, raw.VR, None)
            return True
        if raw.VR != "UI":
            return False
        text = bytes(value).decode("ascii", "replace")
        vals = text.split("\\")
        new = [self.uid(v) for v in vals]
        if new != [v.strip().rstrip("\x00").strip() for v in vals]:
            self.flog.add(where, tag, "U", bytes(value).rstrip(b" \x00") or None)
            ds[tag] = DataElement(tag, "UI", new[0] if len(new) == 1 else new)
        return True

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

    def process(self, path: Path) -> _Done:
        """Read and clean one file."""
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError

        self.trim_caches()
        self.flog = _FileLog(self.pz.key, self.keep_log)
        self.text_report = None
        try:
            ds = dcmread(os.fspath(path), defer_size=DEFER_SIZE)
        except InvalidDicomError as exc:
            if not _holds_dicom_attributes(path):
                raise _NotDicom(path, "not a DICOM Part 10 file (no DICM prefix)") from exc
            raise InputError(path, "not a DICOM Part 10 file (no DICM prefix)") from exc
        except _READ_ERRORS as exc:
            raise InputError(path, f"unreadable or truncated DICOM ({type(exc).__name__})") from exc
        try:
            return self._process(ds, path)
        except InputError:
            raise
        except _READ_ERRORS as exc:
            raise InputError(path, f"unreadable or truncated DICOM ({type(exc).__name__})") from exc

    def _process(self, ds: Any, path: Path) -> _Done:
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
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not str(ds.get(keyword) or "").strip(" \x00"):
                raise InputError(path, f"missing {keyword} (required in every instance)")
        pid = str(ds.get("PatientID") or "").strip()
        raw = _raw_pixel_span(ds, path, str(tsyntax))
        self.sop_class = sop_class
        self.present = frozenset(int(t) for t in ds.keys())  # noqa: SIM118 - for module presence

        # pixel checks first, on the original attributes
        claimed = [
            o
            for o in sorted(self.options)
            if o not in ("clean_pixel_data", "clean_recognizable_visual_features")
        ]
        rules_applied = self._pixels(ds, path)
        if self._text(ds, path, rules_applied):
            rules_applied = [*rules_applied, "pixel_text"]
        if rules_applied:
            claimed.append("clean_pixel_data")
            raw = None  # new pixel data, written by pydicom
            tsyntax = ds.file_meta.TransferSyntaxUID  # uncompressed if it was not
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
        temporal = self.temporal
        if self.recipe is not None and self._recipe(ds, path):
            temporal = "MODIFIED"

        ds.PatientName = self.pseudonym
        ds.PatientID = self.pseudonym
        ds.PatientIdentityRemoved = "YES"
        if rules_applied:
            ds.BurnedInAnnotation = "NO"
        ds.LongitudinalTemporalInformationModified = temporal
        self._method(ds, sorted(set(claimed)))

        new_sop = str(ds.get("SOPInstanceUID") or "").strip()
        if not _UID_NAME_RE.fullmatch(new_sop) or len(new_sop) > 64:
            raise InputError(
                path, "SOPInstanceUID is not a valid UID; refusing to name a file after it"
            )
        self._file_meta(ds, sop_class, new_sop, str(tsyntax))
        if raw is not None:
            del ds[0x7FE00010]  # copied byte for byte when written
        if self.text_report is not None:
            self.text_report["file"] = f"{new_sop}.dcm"
        return _Done(
            ds, f"{new_sop}.dcm", sorted(set(claimed)), rules_applied, pid, raw, self.text_report
        )

    def _recipe(self, ds: Any, path: Path) -> int:
        """Apply the deid recipe's header actions after the profile; returns dates moved."""
        assert self.recipe is not None
        flog = self.flog

        def record(where: str, tag: int, code: str, elem: Any, line: int) -> None:
            flog.add(
                where, tag, code, _old_bytes(elem) if elem is not None else None, f"recipe:{line}"
            )

        try:
            return apply_header(ds, self.recipe, record)
        except ValueMismatch as exc:
            raise InputError(path, f"deid recipe {exc}") from None

    def _method(self, ds: Any, claimed: list[str]) -> None:
        """Set De-identification Method and its Code Sequence (encoded once per option set)."""
        implicit, little = ds.original_encoding
        extra = self.recipe.method_text if self.recipe is not None else None
        text, codes = _method_elements(tuple(claimed), bool(implicit), little is not False, extra)
        ds[0x00120063] = text
        ds[0x00120064] = codes

    def _file_meta(self, ds: Any, sop_class: str, sop: str, tsyntax: str) -> None:
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import UID

        old = ds.file_meta
        for tag in [int(t) for t in old.keys()]:  # noqa: SIM118 - tags, not elements
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
        """Apply matching pixel-cleaning rules; refuse burned-in text that nothing cleans."""
        if not any(t in ds for t in _PIXEL_TAGS):
            return []
        attrs = DatasetAttributes(ds)
        key = tuple(str(attrs.get(f)) for f in self.rule_fields)
        cached = self.rule_cache.get(key)
        if cached is None:
            reason = burned_in_reason(attrs)
            matched = tuple(r for r in self.pixel_rules if r.matches(attrs))
            flag = str(attrs.get("BurnedInAnnotation") or "").strip().upper()
            if reason is None and matched and flag != "NO":
                reason = (
                    f"BurnedInAnnotation={flag or 'absent'}, "
                    f"pixel-cleaning rule {matched[0].name!r} matches"
                )
            cached = (reason, matched)
            self.rule_cache[key] = cached
        reason, matched = cached
        cleaning = [r for r in matched if r.cleans]
        if "clean_pixel_data" in self.options and cleaning:
            before = self._first_frame(ds) if self.thumbnails is not None else None
            try:
                blanked = blank_regions(ds, cleaning)
            except ValueError as exc:
                raise InputError(path, f"cannot clean pixel data: {exc}") from exc
            self.flog.add("", 0x7FE00010, "C")
            if before is not None:
                self._rule_thumbs(ds, *before, blanked)
            return [r.name for r in cleaning]
        if self.pixel_text is not None:
            # with text detection, the header's hints alone no longer refuse an image: the
            # detector reads it (:meth:`_text`); a rule of the policy that only flags (such as
            # a recipe's blacklist) still refuses what it names
            flagged = [r for r in matched if not r.cleans]
            if flagged and not cleaning:
                raise InputError(
                    path,
                    f"burned-in annotation possible (flagged by {flagged[0].name!r}) and no "
                    "pixel-cleaning rule cleans it",
                )
            return []
        if reason is None:
            return []
        if "clean_pixel_data" not in self.options:
            why = "clean_pixel_data is not in the policy"
        elif matched:
            why = f"no pixel-cleaning rule cleans it (flagged by {matched[0].name!r})"
        else:
            why = "no pixel-cleaning rule matches"
        raise InputError(path, f"burned-in annotation possible ({reason}) and {why}")

    def _text(self, ds: Any, path: Path, rules_applied: Sequence[str]) -> bool:
        """Burned-in text found by OCR: blank it as the policy says, verify, or refuse.

        Returns True when the pixel data were changed. Overlay planes (groups 60xx) go first
        (PS3.15: overlay data removed; the rest of the plane is meaningless without it).
        """
        if self.pixel_text is None or not any(t in ds for t in _PIXEL_TAGS):
            return False
        for tag in [int(t) for t in ds.keys()]:  # noqa: SIM118 - tags, not elements
            group = tag >> 16
            if 0x6000 <= group <= 0x601E and group % 2 == 0:
                self.flog.add("", tag, "X")
                del ds[tag]
        if str(path) in self.ocr_skip:
            self.text_report = {"sampled_out": True}
            return False
        flag = str(ds.get("BurnedInAnnotation") or "").strip().upper()
        known = text_ids.from_dataset(ds)
        known.update(self.known)
        try:
            result = clean_pixel_text(
                ds, self.pixel_text, known, may_blank="clean_pixel_data" in self.options
            )
        except PixelTextError as exc:
            self._thumbs(ds, PixelTextResult(found=exc.regions, before=exc.before, after=exc.after))
            boxes = "; ".join(
                f"frame {r.frame} box {list(r.box)} ({r.engine})" for r in exc.regions[:8]
            )
            raise InputError(path, f"burned-in text: {exc.reason}: {boxes}") from None
        except ValueError as exc:
            raise InputError(path, f"cannot check pixel data for burned-in text: {exc}") from None
        except RuntimeError as exc:  # an engine missing: fail closed
            raise InputError(path, f"burned-in text detector unavailable: {exc}") from None
        self.text_report = {"frames_read": result.frames, "found": len(result.found)}
        if result.found:
            self.text_report.update(result.to_dict())
        if not result.changed:
            if flag == "YES" and not rules_applied:
                raise InputError(
                    path,
                    "BurnedInAnnotation is YES but no text was detected and no pixel-cleaning "
                    "rule applies: cannot verify the annotation is gone",
                )
            return False
        self.text_report["encoding"] = result.encoding
        self.flog.add("", 0x7FE00010, "C")
        self._thumbs(ds, result)
        return True

    def _thumbs(self, ds: Any, result: PixelTextResult, suffix: str = "") -> None:
        if self.thumbnails is None:
            return
        name = self.uid(str(ds.get("SOPInstanceUID") or "image")) + suffix
        try:
            write_thumbnails(result, self.thumbnails, name)
        except OSError as exc:
            log.warning("cannot write thumbnails: %s", exc)

    @staticmethod
    def _first_frame(ds: Any) -> tuple[Renderer, Any] | None:
        """A renderer made from the original attributes and a copy of the first frame, kept
        before a pixel-cleaning rule blanks it (for the run report's thumbnails)."""
        try:
            return Renderer(ds), frames(ds)[0].copy()
        except ValueError:
            return None

    def _rule_thumbs(self, ds: Any, renderer: Renderer, before: Any, blanked: Any) -> None:
        """Before/after thumbnails of an image blanked by pixel-cleaning rules
        (``<uid>.rules.before.png``), the blanked areas outlined."""
        try:
            after = frames(ds)[0]
            result = PixelTextResult(
                blanked=mask_boxes(blanked),
                before=renderer.renderings(before)[0][1],
                after=renderer.renderings(after)[0][1],
            )
        except ValueError as exc:
            log.warning("cannot render thumbnails: %s", exc)
            return
        self._thumbs(ds, result, ".rules")

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


def _is_wide(text: str) -> bool:
    """True for East Asian wide characters (CJK ideographs, Hangul, kana)."""
    import unicodedata

    return all(unicodedata.east_asian_width(c) in ("W", "F") for c in text)


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
    recipe: Recipe | None = None,
    skip_bad_files: bool = False,
    workers: int = 1,
    pixel_text: PixelTextSettings | None = None,
    identifiers: Iterable[tuple[str, str]] = (),
    thumbnails: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
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
        Actions of a deid recipe carry ``"rule": "recipe:<line>"``.
    pixel_rules
        Pixel-cleaning rules (used with ``clean_pixel_data``; a matching rule also flags an
        image as carrying text). :meth:`imagedepot.policy.Policy.dicom_options` gives the
        policy's rules, its recipe's and deid's filter database's.
    recipe
        A deid recipe applied after the profile (:mod:`imagedepot.deid.recipe`).
    skip_bad_files
        If false (the default, fail closed), the first unusable file raises
        :class:`InputError` and nothing is written. If true, files that are not DICOM at all
        (no DICM prefix, no DICOM attributes: a README, a JSON) are listed in
        :attr:`DeidReport.skipped`, other unusable files in :attr:`DeidReport.errors`, and the
        others are written.
    workers
        Processes working on files in parallel (1: in this process). Each file is read,
        cleaned and written by one worker; memory per worker does not grow with the number of
        files. Outputs and report are the same for any number of workers.
    pixel_text
        Burned-in text detection (:mod:`imagedepot.pixeltext.dicom`); ``None`` means the
        defaults (``blank_all``, every frame of every file). Detection always runs.
    identifiers
        ``(value, kind)`` pairs of identifiers from outside the file (the sample and consent
        sheets' subject IDs...) that ``blank_phi`` looks for too (kinds: name, id, date...).
    thumbnails
        A folder (trusted zone only) for before/after PNGs of every image blanked or refused
        for its text.
    progress
        Advanced by one per input file done (:mod:`imagedepot.progress`); its total is set to
        the number of inputs unless the caller set it.

    Raises
    ------
    InputError
        Naming the file: not DICOM, truncated, no SOP Instance UID, burned-in annotation that
        no rule cleans, recognisable features under that option, several patients, duplicate
        instances, a recipe value that does not fit, or an output inside the input.
    OutputExistsError
        ``out`` exists and ``force`` is false.
    """
    options = profile.check_options(policy_options)
    files, single = _collect(src)
    progress = progress if progress is not None else Progress()
    progress.start(len(files))
    out_path = Path(out)
    if single:
        if out_path.resolve() == files[0].resolve():
            raise InputError(out_path, "output would overwrite the input")
    elif not isinstance(src, str | os.PathLike) or Path(src).is_dir():
        root = Path(src) if isinstance(src, str | os.PathLike) else None
        if root is not None and _is_within(out_path, root):
            raise InputError(out_path, "output folder lies inside the input folder")
    check_overwrite(out_path, force)
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (given {workers})")

    text = pixel_text if pixel_text is not None else PixelTextSettings()
    known = text_ids.Identifiers()
    known.add(subject, "id")
    for value, kind in identifiers:
        known.add(value, kind)
    ocr_skip, series_of = _ocr_plan(files, text) if not single else (frozenset(), {})
    setup = _Setup(
        options,
        pseudonymizer,
        subject,
        tuple(pixel_rules),
        action_log is not None,
        recipe,
        text,
        known,
        Path(thumbnails) if thumbnails is not None else None,
        ocr_skip,
    )
    pseudonym = pseudonymizer.subject_id(subject)
    report = DeidReport(
        output=out_path.name,
        n_inputs=len(files),
        options=sorted(options),
        pseudonym=pseudonym,
        linkage=[(subject, pseudonym)],
    )
    report.pixel_text_engine = {"settings": text.to_dict(), "engines": text_engine_info()}
    counts: Counter[str] = Counter()
    claimed_all: set[str] = set()

    with contextlib.ExitStack() as stack:
        log_fh = None
        if action_log is not None:
            log_fh = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
        if single:
            tmp = stack.enter_context(atomic_path(out_path, force=force))
            with _quiet_pydicom():
                (res,) = _run_chunk(setup.engine(), [(0, files[0])], None, tmp, out_path.name)
            progress.advance()
            if res.error is not None or res.skipped is not None:
                raise InputError(files[0], str(res.error or res.skipped))
            _accept(res, out_path.name, report, counts, claimed_all, log_fh)
        else:
            tmpdir = stack.enter_context(atomic_path(out_path, force=force, is_dir=True))
            expected_pid: str | None = None
            sampled = [(i, f) for i, f in enumerate(files) if str(f) not in ocr_skip]
            later = [(i, f) for i, f in enumerate(files) if str(f) in ocr_skip]
            with_text: set[str] = set()

            def passes() -> Iterator[_Result]:
                yield from _results(setup, sampled, tmpdir, workers)
                if later:  # ocr_series: sample. A series with text is read whole
                    still = frozenset(
                        str(f) for _, f in later if series_of[str(f)] not in with_text
                    )
                    again = dataclasses.replace(setup, ocr_skip=still)
                    yield from _results(again, later, tmpdir, workers)

            for res in passes():
                progress.advance()
                path = files[res.index]
                if res.text_found or res.error is not None:  # text, or refused: read it all
                    uid = series_of.get(str(path))
                    if uid:
                        with_text.add(uid)
                if res.skipped is not None:
                    report.skipped.append(
                        {"index": res.index, "path": str(path), "reason": res.skipped}
                    )
                    continue
                error = res.error
                if error is None and res.pid:
                    if expected_pid is None:
                        expected_pid = res.pid
                    elif res.pid != expected_pid:
                        error = "Patient ID differs from the other files of this call"
                        (tmpdir / res.name).unlink()
                if error is not None:
                    if not skip_bad_files:
                        raise InputError(path, error)
                    if res.not_dicom:
                        report.skipped.append(
                            {"index": res.index, "path": str(path), "reason": NOT_DICOM}
                        )
                    else:
                        report.errors.append(
                            {"index": res.index, "path": str(path), "reason": error}
                        )
                    continue
                _accept(res, res.name, report, counts, claimed_all, log_fh)
            if not report.files_written:
                raise InputError(
                    os.fspath(src) if isinstance(src, str | os.PathLike) else files[0],
                    "no DICOM instance could be de-identified",
                )
        if log_fh is not None and action_log is not None and report.files_written:
            log_path = Path(action_log)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_fh.seek(0)
            with open(log_path, "a", encoding="utf-8") as fh:
                shutil.copyfileobj(log_fh, fh)

    report.actions = dict(counts)
    report.options_claimed = sorted(claimed_all)
    log.info(
        "de-identified %d of %d DICOM files into %s",
        len(report.files_written),
        len(files),
        out_path,
    )
    return report


# --------------------------------------------------------------------------------------------
# Running files (in this process or in workers)


#: Cached values (UIDs, dates, rule decisions) kept per worker before the caches are emptied.
_CACHE_LIMIT = 50_000
#: Files handed to a worker at a time.
_CHUNK_FILES = 16


def _rule_fields(rules: Sequence[PixelRule]) -> tuple[str, ...]:
    """Every attribute the rules and the burned-in check read (the key of the rule cache)."""
    fields = {"BurnedInAnnotation", "Modality", "SOPClassUID"}
    for rule in rules:
        fields.update(rule.match)
        if rule.criteria is not None:
            for _, line in rule.criteria.lines:
                fields.update(c.field for _, c in line)
    return tuple(sorted(fields))


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


@dataclass(frozen=True)
class _Setup:
    """What a worker needs to build its engine (picklable)."""

    options: frozenset[str]
    pseudonymizer: Pseudonymizer
    subject: str
    pixel_rules: tuple[PixelRule, ...]
    keep_log: bool
    recipe: Recipe | None
    pixel_text: PixelTextSettings | None = None
    known: text_ids.Identifiers | None = None
    thumbnails: Path | None = None
    ocr_skip: frozenset[str] = frozenset()

    def engine(self) -> _Engine:
        return _Engine(
            self.options,
            self.pseudonymizer,
            self.subject,
            self.pixel_rules,
            self.keep_log,
            self.recipe,
            self.pixel_text,
            self.known,
            self.thumbnails,
            self.ocr_skip,
        )


@dataclass
class _Result:
    """What happened to one input file (sent back from a worker)."""

    index: int
    name: str = ""
    error: str | None = None
    skipped: str | None = None
    #: The error is that the file is not DICOM at all (skipped with ``skip_bad_files``).
    not_dicom: bool = False
    pid: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    claimed: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    log_line: str | None = None  # the file's action-log line (JSON), made by the worker
    text: dict[str, Any] | None = None

    @property
    def text_found(self) -> bool:
        """True when the detector found text in this file (blanked or not)."""
        return bool(self.text and self.text.get("found"))


_WORKER: dict[str, _Engine] = {}


def _init_worker(setup: _Setup) -> None:
    """Pool initializer: the worker's engine, built once (its caches serve every file)."""
    _WORKER.clear()
    _WORKER["engine"] = setup.engine()


def _run_chunk(
    engine: _Engine,
    chunk: Sequence[tuple[int, Path]],
    target_dir: Path | None,
    target: Path | None,
    shown: str | None = None,
) -> list[_Result]:
    """De-identify ``chunk`` into ``target_dir`` (or the single file ``target``, reported as
    ``shown``)."""
    out: list[_Result] = []
    for index, path in chunk:
        try:
            done = engine.process(path)
            dest = target if target is not None else (target_dir or Path()) / done.name
            if target is None and dest.parent != target_dir:
                raise InputError(path, "output name would leave the output folder")
            _write(done, path, dest, exclusive=target is None)
        except _Skip as skip:
            out.append(_Result(index, skipped=str(skip)))
            continue
        except InputError as exc:
            out.append(_Result(index, error=exc.reason, not_dicom=isinstance(exc, _NotDicom)))
            continue
        line = None
        if engine.keep_log:
            entry = {"actions": engine.flog.entries, "file": shown or done.name, "index": index}
            line = json.dumps(entry)  # keys already sorted (see _FileLog.add)
        out.append(
            _Result(
                index,
                name=done.name,
                pid=done.pid,
                counts=dict(engine.flog.counts),
                claimed=done.claimed,
                rules=done.rules,
                log_line=line,
                text=done.text,
            )
        )
    return out


def _worker_chunk(chunk: Sequence[tuple[int, Path]], target_dir: Path) -> list[_Result]:
    with _quiet_pydicom():
        return _run_chunk(_WORKER["engine"], chunk, target_dir, None)


def _results(
    setup: _Setup, indexed: Sequence[tuple[int, Path]], target_dir: Path, workers: int
) -> Iterator[_Result]:
    """Results in input order, from this process or from ``workers`` processes."""
    indexed = list(indexed)
    if not indexed:
        return
    size = max(1, min(_CHUNK_FILES, len(indexed) // (workers * 4) or 1))
    chunks = [indexed[i : i + size] for i in range(0, len(indexed), size)]
    if workers == 1 or len(chunks) == 1:
        engine = setup.engine()
        with _quiet_pydicom():
            for chunk in chunks:
                yield from _run_chunk(engine, chunk, target_dir, None)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import pydicom  # noqa: F401 - imported once here, inherited by forked workers

    setup.engine()  # compiles the profile plan here once: forked workers inherit it
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    # Objects that exist now are shared with forked workers: kept out of the workers' garbage
    # collections, which would otherwise touch (and so copy) every inherited page.
    gc.freeze()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(setup,),
    ) as pool:
        try:
            for batch in pool.map(_worker_chunk, chunks, itertools.repeat(target_dir)):
                yield from batch
        finally:  # stopped early (an error, fail closed): do not finish the others
            pool.shutdown(wait=True, cancel_futures=True)
            gc.unfreeze()


def _accept(
    res: _Result,
    shown: str,
    report: DeidReport,
    counts: Counter[str],
    claimed_all: set[str],
    log_fh: Any,
) -> None:
    report.files_written.append(shown)
    counts.update(res.counts)
    claimed_all.update(res.claimed)
    if res.rules:
        report.pixel_cleaned.append({"file": shown, "rules": res.rules})
    if res.text is not None and res.text.get("sampled_out"):
        report.ocr_sampled_out += 1
    elif res.text is not None:
        report.ocr_files += 1
        if res.text.get("found"):
            report.pixel_text.append(dict(res.text))
    if log_fh is not None and res.log_line is not None:
        log_fh.write(res.log_line + "\n")


def _raw_pixel_span(ds: Any, path: Path, tsyntax: str) -> tuple[int, int, bytes] | None:
    """Where the input's Pixel Data element lies, when it can be copied byte for byte.

    That is when it is the last element, was not read (deferred) and the data set is not
    deflated; then the output gets the very same bytes (no decode, no re-encode).
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    if tsyntax == DeflatedExplicitVRLittleEndian or 0x7FE00010 not in ds:
        return None
    if max(int(t) for t in ds.keys()) != 0x7FE00010:  # noqa: SIM118
        return None
    elem = ds.get_item(0x7FE00010, keep_deferred=True)
    if not isinstance(elem, RawDataElement) or elem.value is not None:
        return None
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


def _write(done: _Done, src: Path, dest: Path, *, exclusive: bool) -> None:
    """Write the cleaned data set; append the input's pixel data element as is if it was kept
    out of the data set. ``exclusive`` refuses an existing file (a duplicate instance)."""
    from pydicom import dcmwrite

    try:
        fh = open(dest, "xb" if exclusive else "wb")  # noqa: SIM115 - closed below
    except FileExistsError:
        raise InputError(src, "duplicate SOPInstanceUID (the same instance twice)") from None
    try:
        with fh:
            if done.raw is not None:
                _write_header(fh, done.ds)
            else:
                dcmwrite(fh, done.ds, enforce_file_format=True)
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


@dataclass
class PatientFiles:
    """The input files of a ``deid dicom`` call sorted by patient (:func:`find_patients`).

    ``skipped`` (not DICOM at all, DICOMDIR) and ``errors`` (DICOM whose header cannot be read)
    are rows ``{"index", "path", "reason"}``; ``index`` is the file's place in ``files``.
    """

    files: list[Path]
    #: Patient ID -> that patient's DICOM files, in input order.
    patients: dict[str, list[Path]] = field(default_factory=dict)
    #: DICOM files with an empty or missing Patient ID.
    no_patient_id: list[Path] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def check_bad_files(self, skip_bad_files: bool) -> None:
        """Fail closed on the first file set aside, unless ``skip_bad_files``."""
        if skip_bad_files:
            return
        bad = sorted(self.skipped + self.errors, key=lambda r: int(r["index"]))
        bad = [r for r in bad if "DICOMDIR" not in r["reason"]]
        if bad:
            raise InputError(
                bad[0]["path"],
                f"cannot read Patient ID: {bad[0]['reason']}; --skip-bad-files lists such "
                "files and goes on with the others",
            )

    def only_subject(self, skip_bad_files: bool = False) -> str:
        """The one Patient ID of the files; :class:`InputError` if there is none or several, or
        (unless ``skip_bad_files``) if a file is not DICOM or cannot be read."""
        self.check_bad_files(skip_bad_files)
        if len(self.patients) != 1:
            where = self.files[0] if len(self.files) == 1 else self.files[0].parent
            raise InputError(
                where,
                f"cannot infer the subject: {len(self.patients)} distinct Patient IDs; "
                "pass --subject",
            )
        return next(iter(self.patients))


def find_patients(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    progress: Progress | None = None,
) -> PatientFiles:
    """Read the Patient ID of every file of ``src`` (a file, a folder searched recursively, or
    a list of files); never fails on a single file, which is listed instead.

    ``progress`` advances by one per file.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    files, _ = _collect(src)
    found = PatientFiles(files=files)
    progress = progress if progress is not None else Progress()
    progress.start(len(files))
    with _quiet_pydicom():
        for index, f in enumerate(files):
            progress.advance()
            row = {"index": index, "path": str(f)}
            try:
                ds = dcmread(os.fspath(f), stop_before_pixels=True, specific_tags=["PatientID"])
            except InvalidDicomError:
                if _holds_dicom_attributes(f):
                    found.errors.append(
                        row | {"reason": "not a DICOM Part 10 file (no DICM prefix)"}
                    )
                else:
                    found.skipped.append(row | {"reason": NOT_DICOM})
                continue
            except _READ_ERRORS as exc:
                found.errors.append(row | {"reason": f"unreadable DICOM ({type(exc).__name__})"})
                continue
            meta = getattr(ds, "file_meta", None)
            if meta is not None and meta.get("MediaStorageSOPClassUID") == _MEDIA_STORAGE_DIRECTORY:
                found.skipped.append(row | {"reason": "DICOMDIR (media storage directory) skipped"})
                continue
            pid = str(ds.get("PatientID") or "").strip()
            if pid:
                found.patients.setdefault(pid, []).append(f)
            else:
                found.no_patient_id.append(f)
    return found


def infer_subject(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    skip_bad_files: bool = False,
) -> str:
    """The one Patient ID shared by every DICOM file of ``src`` (for a CLI without ``--subject``).

    Raises :class:`InputError` if the files hold no Patient ID or more than one, or, unless
    ``skip_bad_files``, if a file is not DICOM or cannot be read.
    """
    return find_patients(src).only_subject(skip_bad_files)


@dataclass
class PatientsReport:
    """What :func:`deidentify_dicom_patients` did: one :class:`DeidReport` per patient (its
    ``output`` is the patient's folder, named by the pseudonym), and the files set aside."""

    output: str
    subjects: list[DeidReport] = field(default_factory=list)
    #: Files that are not DICOM (and DICOMDIRs): ``{"index", "path", "reason"}``.
    skipped: list[dict[str, Any]] = field(default_factory=list)
    #: Files that could not be used (only with ``skip_bad_files``).
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Patients left out by the consent check: ``{"pseudonym", "files", "reason"}``.
    excluded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def linkage(self) -> list[tuple[str, str]]:
        """``(original subject, pseudonym)`` of every patient de-identified."""
        return [row for r in self.subjects for row in r.linkage]

    def to_dict(self, *, include_private: bool = False) -> dict[str, Any]:
        """Plain-JSON form; without linkage and input paths unless ``include_private``."""

        def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if include_private:
                return [dict(r) for r in rows]
            return [{k: v for k, v in r.items() if k != "path"} for r in rows]

        out: dict[str, Any] = {
            "output": self.output,
            "subjects": [r.to_dict(include_private=include_private) for r in self.subjects],
            "n_written": sum(len(r.files_written) for r in self.subjects),
            "skipped": strip(self.skipped),
            "errors": strip(self.errors),
            "excluded": [dict(r) for r in self.excluded],
        }
        if include_private:
            out["linkage"] = [list(row) for row in self.linkage]
        return out


def deidentify_dicom_patients(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    pseudonymizer: Pseudonymizer,
    consented: Callable[[str], bool] | None = None,
    force: bool = False,
    skip_bad_files: bool = False,
    found: PatientFiles | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> PatientsReport:
    """De-identify the DICOM files of several patients (a PACS export): each patient is its
    own subject, written to ``out/<pseudonym>/`` by :func:`deidentify_dicom`.

    Parameters
    ----------
    src
        A folder (searched recursively) or a list of files.
    out
        Folder to create; written atomically (complete or not at all).
    pseudonymizer
        Keyed pseudonyms (one per Patient ID).
    consented
        ``consented(patient_id)``: a patient for whom it is false is not de-identified and is
        listed in :attr:`PatientsReport.excluded` (by pseudonym).
    force
        Replace an existing ``out``.
    skip_bad_files
        If false (fail closed), a file that is not DICOM, cannot be read, has no Patient ID or
        fails to de-identify raises :class:`InputError` and nothing is written. If true, such
        files are listed (``skipped``: not DICOM; ``errors``: the others) and the rest written.
    found
        The result of :func:`find_patients` for ``src``, when the caller has it already.
    progress
        Advanced by one per DICOM file de-identified (its total: every patient's files).
    options
        Passed on to :func:`deidentify_dicom` (``policy_options``, ``pixel_rules``, ``recipe``,
        ``pixel_text``, ``action_log``, ``workers``...).
    """
    out_path = Path(out)
    if (
        isinstance(src, str | os.PathLike)
        and Path(src).is_dir()
        and _is_within(out_path, Path(src))
    ):
        raise InputError(out_path, "output folder lies inside the input folder")
    check_overwrite(out_path, force)
    found = found if found is not None else find_patients(src)
    found.check_bad_files(skip_bad_files)
    report = PatientsReport(
        output=out_path.name, skipped=list(found.skipped), errors=list(found.errors)
    )
    for f in found.no_patient_id:
        reason = "no Patient ID: cannot tell which patient the file belongs to"
        if not skip_bad_files:
            raise InputError(f, reason)
        report.errors.append({"index": found.files.index(f), "path": str(f), "reason": reason})
    todo: list[tuple[str, str, list[Path]]] = []
    for pid, files in found.patients.items():
        pseudonym = pseudonymizer.subject_id(pid)
        if consented is not None and not consented(pid):
            report.excluded.append(
                {"pseudonym": pseudonym, "files": len(files), "reason": "no recorded consent"}
            )
        else:
            todo.append((pseudonym, pid, files))
    if not todo:
        raise InputError(
            os.fspath(src) if isinstance(src, str | os.PathLike) else found.files[0],
            "no patient to de-identify (no DICOM file with a Patient ID and consent)",
        )
    progress = progress if progress is not None else Progress()
    progress.start(sum(len(files) for _, _, files in todo))
    with atomic_path(out_path, force=force, is_dir=True) as tmp:
        for pseudonym, pid, files in sorted(todo):
            try:
                one = deidentify_dicom(
                    files,
                    tmp / pseudonym,
                    pseudonymizer=pseudonymizer,
                    subject=pid,
                    skip_bad_files=skip_bad_files,
                    progress=progress,
                    **options,
                )
            except InputError as exc:
                if not skip_bad_files:
                    raise
                report.errors.append(
                    {"pseudonym": pseudonym, "path": exc.path, "reason": exc.reason}
                )
                continue
            one.output = pseudonym
            report.subjects.append(one)
        if not report.subjects:
            raise InputError(out_path, "no DICOM instance could be de-identified")
    log.info(
        "de-identified %d patient(s) into %s (%d excluded, %d file(s) skipped, %d error(s))",
        len(report.subjects),
        out_path,
        len(report.excluded),
        len(report.skipped),
        len(report.errors),
    )
    return report


def _header(path: Path) -> Any:
    from pydicom import dcmread

    try:
        return dcmread(
            os.fspath(path),
            stop_before_pixels=True,
            specific_tags=["SeriesInstanceUID", "Modality", "InstanceNumber", "NumberOfFrames"],
        )
    except Exception:  # unreadable files are refused later, by the real read
        return None


def _ocr_plan(
    files: Sequence[Path], settings: PixelTextSettings
) -> tuple[frozenset[str], dict[str, str]]:
    """Files the text detector does not read at first under ``ocr_series: sample``, and the
    Series Instance UID of every file of the sampled series (headers read once).

    Only single-frame series of volume modalities (CT, MR, PT, NM) are sampled: the first,
    middle and last slice and every ``sample_every``-th (by Instance Number) are read; when any
    of them has text (or is refused), the whole series is read (see :func:`deidentify_dicom`).
    """
    if settings.ocr_series != "sample":
        return frozenset(), {}
    series: dict[str, list[tuple[int, str]]] = {}
    for path in files:
        ds = _header(path)
        if ds is None:
            continue
        modality = str(ds.get("Modality") or "").strip().upper()
        if modality not in VOLUME_MODALITIES or int(ds.get("NumberOfFrames") or 1) > 1:
            continue
        try:
            number = int(ds.get("InstanceNumber") or 0)
        except (TypeError, ValueError):
            number = 0
        series.setdefault(str(ds.get("SeriesInstanceUID") or ""), []).append((number, str(path)))
    skip: set[str] = set()
    series_of: dict[str, str] = {}
    for uid, members in series.items():
        if not uid or len(members) < 4:
            continue
        members.sort()
        n = len(members)
        keep = {0, n // 2, n - 1, *range(0, n, settings.sample_every)}
        skip.update(p for i, (_, p) in enumerate(members) if i not in keep)
        series_of.update((p, uid) for _, p in members)
    return frozenset(skip), series_of
