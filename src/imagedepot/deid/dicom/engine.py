"""The per-file engine: reads one file, runs the pixel checks, the profile, the recipe, sets
the conformance attributes and rebuilds the File Meta Information."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagedepot.deid.dicom.action_log import _FileLog
from imagedepot.deid.dicom.conformance import _method_elements
from imagedepot.deid.dicom.dataset import _DatasetCleaner, _old_bytes
from imagedepot.deid.dicom.pixel_cleaning import _PixelCleaner, _rule_fields
from imagedepot.deid.dicom.plan import _plan, safe_private_attributes
from imagedepot.deid.dicom.reading import (
    _MEDIA_STORAGE_DIRECTORY,
    _READ_ERRORS,
    DEFER_SIZE,
    _check_complete,
    _holds_dicom_attributes,
    _NotDicom,
    _Skip,
)
from imagedepot.deid.dicom.writing import _Done, _raw_pixel_span
from imagedepot.deid.pixels import PixelRule
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.deid.recipe import Recipe, ValueMismatch, apply_header
from imagedepot.errors import InputError
from imagedepot.pixeltext import identifiers as text_ids
from imagedepot.pixeltext.dicom import (
    PixelTextSettings,
)

_PATIENT_NAME = 0x00100010


_PATIENT_ID = 0x00100020


#: Options under which some attribute resolves to a free-text clean.
_TEXT_CLEAN_OPTIONS = frozenset(
    {
        "clean_descriptors",
        "clean_structured_content",
        "clean_graphics",
        "retain_patient_characteristics",
    }
)


_UID_NAME_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")


class _Engine(_PixelCleaner, _DatasetCleaner):
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


#: Cached values (UIDs, dates, rule decisions) kept per worker before the caches are emptied.
_CACHE_LIMIT = 50_000
