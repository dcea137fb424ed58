"""A folder of many patients (a PACS export): :func:`find_patients`, :func:`infer_subject`,
:func:`deidentify_dicom_patients`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.deid.dicom.batch import _collect, _is_within, deidentify_dicom
from imagedepot.deid.dicom.reading import (
    _MEDIA_STORAGE_DIRECTORY,
    _READ_ERRORS,
    NOT_DICOM,
    _holds_dicom_attributes,
    _quiet_pydicom,
)
from imagedepot.deid.dicom.report import DeidReport, without_paths
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError
from imagedepot.io import atomic_path, check_overwrite
from imagedepot.progress import Progress

log = logging.getLogger(__name__)


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

        out: dict[str, Any] = {
            "output": self.output,
            "subjects": [r.to_dict(include_private=include_private) for r in self.subjects],
            "n_written": sum(len(r.files_written) for r in self.subjects),
            "skipped": without_paths(self.skipped, include_private=include_private),
            "errors": without_paths(self.errors, include_private=include_private),
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
