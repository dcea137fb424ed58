"""DICOM files: the header attributes items are grouped by, and the check that a file is
the sample sheet's subject's (:class:`SubjectCheck`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagedepot.errors import ConfigError, InputError

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


_DICOM_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
    "SeriesNumber", "SeriesDescription", "InstanceNumber", "MediaStorageSOPClassUID",
    "PatientID", "OtherPatientIDs", "OtherPatientIDsSequence", "AccessionNumber",
]  # fmt: skip
#: Values of the policy key ``subject_id_check``: which DICOM attributes may name the sheet's subject.
SUBJECT_ID_CHECKS = ("patient_id", "other_patient_ids", "off")


def has_dicom_preamble(p: Path) -> bool:
    """True when bytes 128..131 are ``DICM`` (PS3.10 file)."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom_header(p: Path) -> dict[str, Any]:
    """Read the grouping attributes of a DICOM file; raise :class:`InputError` when unusable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = not has_dicom_preamble(p)
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=_DICOM_TAGS, force=force)
    except InvalidDicomError as exc:
        raise InputError(p, f"not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        raise InputError(p, f"unreadable DICOM ({type(exc).__name__}: {exc})") from exc
    meta = getattr(ds, "file_meta", None)
    ms_class = str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta else ""
    if ms_class == DICOMDIR_SOP_CLASS or p.name.upper() == "DICOMDIR":
        return {"dicomdir": True}
    missing = [
        k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if k not in ds
    ]
    if missing:
        if force and len(ds) == 0:
            raise InputError(p, "not a DICOM file (no preamble and no DICOM elements)")
        raise InputError(p, f"DICOM file lacks required attribute(s) {', '.join(missing)}")
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(key, ""))
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", value) or len(value) > 64:
            raise InputError(p, f"DICOM attribute {key} is not a valid UID")
    return {
        "dicomdir": False,
        "study_instance_uid": str(ds.StudyInstanceUID),
        "series_instance_uid": str(ds.SeriesInstanceUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "sop_class_uid": str(ds.get("SOPClassUID", "")),
        "modality": str(ds.get("Modality", "") or ""),
        "series_number": _int_or_none(ds.get("SeriesNumber")),
        "series_description": str(ds.get("SeriesDescription", "") or ""),
        "instance_number": _int_or_none(ds.get("InstanceNumber")),
        # Identity, for SubjectCheck only: never copied into an item or a quarantine reason.
        "patient_id": _text(ds.get("PatientID")),
        "other_patient_ids": _other_patient_ids(ds),
        "accession_number": _text(ds.get("AccessionNumber")),
    }


def _text(value: Any) -> str:
    """A DICOM string value without its padding (``""`` for a missing or empty value)."""
    return "" if value is None else str(value).strip().strip("\x00").strip()


def _other_patient_ids(ds: Any) -> list[str]:
    """Every value of OtherPatientIDs (multi-valued) and of OtherPatientIDsSequence's Patient IDs."""
    out: list[str] = []
    other = ds.get("OtherPatientIDs")
    if other is not None:
        out += [_text(v) for v in ([other] if isinstance(other, str) else list(other))]
    for entry in ds.get("OtherPatientIDsSequence") or []:
        out.append(_text(entry.get("PatientID")))
    return [v for v in out if v]


@dataclass(frozen=True)
class SubjectCheck:
    """Whose every DICOM file of a dataset must be: the sample sheet's subject (and studies).

    Parameters
    ----------
    subject
        The sheet's ``subject`` (the original identifier, as in the consent sheet).
    mode
        The policy's ``subject_id_check``: ``patient_id`` (PatientID must equal ``subject``),
        ``other_patient_ids`` (PatientID, a value of OtherPatientIDs or a Patient ID in
        OtherPatientIDsSequence must equal it) or ``off`` (no Patient ID check).
    study_uids, accession_numbers
        The sheet's ``study_instance_uid`` / ``accession_number`` values; when given, every file's
        StudyInstanceUID / AccessionNumber must be one of them (whatever ``mode`` says).

    Values are compared exactly after removing DICOM padding (leading and trailing spaces).
    """

    subject: str
    mode: str = "patient_id"
    study_uids: frozenset[str] = frozenset()
    accession_numbers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.mode not in SUBJECT_ID_CHECKS:
            raise ConfigError(
                f"subject_id_check: unknown value {self.mode!r} (known: {', '.join(SUBJECT_ID_CHECKS)})"
            )

    def problem(self, header: dict[str, Any]) -> str | None:
        """Why a file with this header (:func:`read_dicom_header`) is not the subject's, or None.

        The reason names attributes and sheet columns, never their values.
        """
        subject = self.subject.strip()
        patient_id = header.get("patient_id", "")
        if self.mode == "patient_id" and patient_id != subject:
            return (
                "Patient ID is empty, so the file cannot be matched to the sample sheet's subject"
                if not patient_id
                else "Patient ID differs from the sample sheet's subject"
            )
        if self.mode == "other_patient_ids":
            known = [patient_id, *header.get("other_patient_ids", [])]
            if subject not in known:
                return (
                    "Patient ID and Other Patient IDs differ from the sample sheet's subject"
                    if any(known)
                    else "Patient ID and Other Patient IDs are empty, so the file cannot be "
                    "matched to the sample sheet's subject"
                )
        study = header.get("study_instance_uid", "")
        if self.study_uids and study not in self.study_uids:
            return "StudyInstanceUID is not among the sample sheet's study_instance_uid values"
        accession = header.get("accession_number", "")
        if self.accession_numbers and accession not in self.accession_numbers:
            return "AccessionNumber is not among the sample sheet's accession_number values"
        return None


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None
