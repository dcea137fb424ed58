"""Ingest: find the inputs, group them into items, and account for every file.

DICOM files are grouped into studies and series by their UIDs (never by folder name), with or without a
file extension; DICOMDIR index files are set aside. Microscopy files count once per image (a multi-file
OME-TIFF set is one item). NIfTI files carry their JSON sidecar. Anything unreadable or not image data
is listed with the reason (the quarantine list): nothing is dropped silently, nothing is fatal.

Symbolic links are followed once when they point inside the inbox (:class:`InputWalk`); a link out of
the inbox, a dangling or looping link, or a second path to a file already found is a quarantined entry
of its own, so every entry of the inbox is counted.

Every DICOM file of a dataset must belong to the dataset's subject (:class:`SubjectCheck`): a file whose
Patient ID (or, where the sample sheet gives them, StudyInstanceUID / AccessionNumber) does not match is
quarantined, so another patient's file in a subject's folder is never staged under that subject's
pseudonym. Quarantine reasons never contain identifier values (they are written to ``results/``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import ConfigError, InputError
from imagedepot.io import TMP_PREFIX, file_record, write_json
from imagedepot.progress import Progress
from imagedepot.provenance import latest_mtime, now, tool_versions
from imagedepot.samplesheet import Dataset
from imagedepot.storage import Storage

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: Microscopy formats recognised by extension (read by tifffile or Bio-Formats).
MICROSCOPY_SUFFIXES = (
    ".ome.tif", ".ome.tiff", ".ome.btf", ".tif", ".tiff", ".btf", ".czi", ".lif", ".nd2", ".oib",
    ".oir", ".oif", ".dv", ".r3d", ".lsm", ".ims", ".vsi", ".svs", ".ndpi", ".scn", ".zvi",
    ".lei", ".stk", ".fake",
)  # fmt: skip
NIFTI_SUFFIXES = (".nii", ".nii.gz")
KIND_LETTER = {"dicom": "d", "microscopy": "m", "nifti": "n"}
_DICOM_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
    "SeriesNumber", "SeriesDescription", "InstanceNumber", "MediaStorageSOPClassUID",
    "PatientID", "OtherPatientIDs", "OtherPatientIDsSequence", "AccessionNumber",
]  # fmt: skip
#: Values of the policy key ``subject_id_check``: which DICOM attributes may name the sheet's subject.
SUBJECT_ID_CHECKS = ("patient_id", "other_patient_ids", "off")


@dataclass
class Item:
    """One unit of work: a DICOM series, a microscopy image or a NIfTI file (see docs/architecture.md)."""

    id: str
    kind: str
    format: str
    files: list[dict[str, Any]]
    dataset: str | None = None
    subject: str | None = None
    policy: str | None = None
    destinations: list[str] = field(default_factory=list)
    status: str = "pending"
    reason: str | None = None
    #: Latest modification time of the item's files (UTC): the timestamp of its staged records
    #: (:func:`imagedepot.provenance.data_time`), so reruns stage the same bytes.
    data_time: str | None = None
    batch: int = 0
    dicom: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as written to the manifest."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Manifest:
    """The result of a scan: items, quarantined files and the accounting of every file."""

    items: list[Item] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    inbox: str | None = None
    samples: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "manifest_version": MANIFEST_VERSION,
            "created": now(),
            "inbox": self.inbox,
            "samples": self.samples,
            "versions": tool_versions(),
            "counts": self.counts(),
            "items": [i.to_dict() for i in self.items],
            "quarantine": self.quarantine,
        }

    def counts(self) -> dict[str, int]:
        """Numbers of items by status and of quarantined loose files."""
        by: dict[str, int] = defaultdict(int)
        for i in self.items:
            by[i.status] += 1
        files = sum(len(i.files) for i in self.items) + len(self.quarantine)
        return {
            "items": len(self.items),
            "items_pending": by["pending"],
            "items_excluded": by["excluded"],
            "files_quarantined": len(self.quarantine),
            "files": files,
        }

    def quarantine_lines(self, limit: int = 5) -> list[str]:
        """The first ``limit`` quarantined entries as console lines (path relative to the inbox,
        reason), and a line counting the rest; empty when nothing is quarantined."""
        lines = []
        for q in self.quarantine[:limit]:
            path = q["path"]
            if self.inbox is not None:
                with contextlib.suppress(ValueError):
                    path = str(Path(path).relative_to(self.inbox))
            lines.append(f"  quarantined {path}: {q['reason']}")
        rest = len(self.quarantine) - limit
        if rest > 0:
            lines.append(f"  ... and {rest} more quarantined, each with its reason in the manifest")
        return lines

    def write(self, path: str | Path, items_dir: str | Path | None = None) -> None:
        """Write the manifest, and one JSON per item into ``items_dir`` when given."""
        if items_dir is not None:
            d = Path(items_dir)
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob("*.json"):
                stale.unlink()
            for item in self.items:
                write_json(d / f"{item.id}.json", item.to_dict())
        write_json(path, self.to_dict())


def _lower_name(p: Path) -> str:
    return p.name.lower()


def is_nifti(p: Path) -> bool:
    """Whether the name says NIfTI."""
    return _lower_name(p).endswith(NIFTI_SUFFIXES)


def is_microscopy(p: Path) -> bool:
    """Whether the name says a microscopy format."""
    return _lower_name(p).endswith(MICROSCOPY_SUFFIXES)


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


def _ome_companions(p: Path) -> set[Path]:
    """Other files of a multi-file OME-TIFF set named in this file's OME-XML (same folder)."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            xml = tif.ome_metadata or ""
    except Exception as exc:
        raise InputError(p, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    names = set(re.findall(r'FileName="([^"]+)"', xml))
    out = set()
    for name in names:
        if "/" in name or "\\" in name or name.startswith("."):
            continue  # never follow paths out of the folder
        q = p.parent / name
        if q != p:
            out.add(q)
    return out


def _check_nifti(p: Path) -> None:
    import nibabel as nib

    try:
        img = nib.load(str(p))
        shape = img.shape  # type: ignore[attr-defined]
    except Exception as exc:
        raise InputError(p, f"unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
    if not shape or min(shape) == 0:
        raise InputError(p, f"NIfTI has an empty dimension (shape {shape})")


def _check_microscopy(p: Path) -> None:
    if p.stat().st_size == 0 and not _lower_name(p).endswith(".fake"):
        raise InputError(p, "empty file")
    if _lower_name(p).endswith((".tif", ".tiff", ".btf")):
        import tifffile

        try:
            with tifffile.TiffFile(p) as tif:
                if not tif.series:
                    raise InputError(p, "TIFF holds no image series")
        except InputError:
            raise
        except Exception as exc:
            raise InputError(p, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc


def source_roots(source: str) -> list[Path]:
    """Where a sample-sheet source points: the file or folder itself, or the matches of a glob.

    A path that is a symbolic link is returned even when its target is missing (the walk lists it).
    """
    if any(ch in source for ch in "*?["):
        return sorted(Path(m) for m in glob.glob(source, recursive=True))
    return [Path(source)] if os.path.lexists(source) else []


def _source_base(source: str) -> Path:
    """The folder a source lies in: the source itself when it is a folder, else the folder above
    its first glob character (or above the file)."""
    parts = Path(source).parts
    plain: list[str] = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        plain.append(part)
    base = Path(*plain) if plain else Path(".")
    if len(plain) < len(parts) or base.is_dir():
        return base
    return base.parent


def _canon(p: Path) -> str:
    """A path with every folder above its last part resolved: the same entry, however it was
    reached (through a linked folder or not), has one form; a link itself stays a link."""
    return os.path.join(os.path.realpath(p.parent), p.name)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


class InputWalk:
    """The files under one or more roots, following symbolic links that stay inside a boundary.

    Plain folders and files are walked first and links after, so a file is found by its own path
    when it has one; each real folder is walked, and each real file taken, once (loop-safe). A link
    that points outside the boundary, dangles, loops, or leads to a folder or file already found
    is listed in :attr:`quarantine` with the reason instead of being followed, and so are folders
    that cannot be read and special files (devices, pipes, sockets): every entry is accounted for.

    Parameters
    ----------
    boundary
        Folder the links may point into (the inbox).
    where
        How reasons name the boundary, e.g. ``"the inbox"``.
    """

    def __init__(self, boundary: str | Path, where: str = "the inbox") -> None:
        self.boundary_path = Path(os.path.abspath(boundary))
        self.boundary = os.path.realpath(boundary)
        self.where = where
        #: Files found, in walk order, each real file once.
        self.files: list[Path] = []
        #: The real path of each file of :attr:`files`.
        self.real: dict[Path, str] = {}
        #: Files of :attr:`files` reached through a symbolic link.
        self.linked: set[Path] = set()
        #: Entries that are not followed, with the reason: ``{"path", "reason"}``.
        self.quarantine: list[dict[str, str]] = []
        #: :func:`_canon` forms of every link this walk followed or listed, and of every entry
        #: it quarantined: what it accounted for.
        self.handled: set[str] = set()
        self._real_files: set[str] = set()
        self._real_dirs: set[str] = set()
        self._paths: set[str] = set()
        self._links: list[Path] = []

    def add(self, root: str | Path) -> InputWalk:
        """Walk ``root`` (a file or a folder) without following links; the links met are queued
        for :meth:`finish`. A root reached through a link is queued like a link."""
        r = Path(root)
        if not os.path.lexists(r) or os.path.abspath(r) in self._paths:
            return self
        if self._redirected(r):
            self._links.append(r)
        elif r.is_dir():
            self._tree(r, linked=False)
        elif r.is_file():
            self._file(r, linked=False)
        else:
            self._problem(r, "not a regular file (a device, pipe or socket)")
        return self

    def finish(self) -> InputWalk:
        """Follow the queued links, and the links found behind them, once each."""
        while self._links:
            self._follow(self._links.pop(0))
        return self

    def _redirected(self, p: Path) -> bool:
        """Whether ``p`` is a link or lies below one (its real path is not where its name says)."""
        a = Path(os.path.abspath(p))
        try:
            expected = os.path.join(self.boundary, a.relative_to(self.boundary_path))
        except ValueError:
            expected = str(a)
        if os.path.realpath(a) == os.path.normpath(expected):
            return False
        q = a
        while self.boundary_path in q.parents:  # the links on the way in are used by this walk
            if q.is_symlink():
                self.handled.add(_canon(q))
            q = q.parent
        return True

    def _problem(self, p: Path, reason: str) -> None:
        self.handled.add(_canon(p))
        self.quarantine.append({"path": str(p), "reason": reason})

    def _file(self, p: Path, linked: bool) -> None:
        real = os.path.realpath(p)
        if real in self._real_files:
            if linked:
                self._problem(p, "symbolic link to a file already found by another path")
            return  # the same file named twice (overlapping glob matches)
        self._real_files.add(real)
        self._paths.add(os.path.abspath(p))
        self.files.append(p)
        self.real[p] = real
        if linked:
            self.linked.add(p)

    def _tree(self, top: Path, linked: bool) -> None:
        def unreadable(exc: OSError) -> None:
            where = Path(exc.filename) if exc.filename else top
            self._problem(
                where, f"folder cannot be read ({exc.strerror or type(exc).__name__}); not scanned"
            )

        for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable):
            here = Path(dirpath)
            real = os.path.realpath(here)
            if real in self._real_dirs:  # a root inside a folder already walked
                dirnames[:] = []
                continue
            self._real_dirs.add(real)
            keep = []
            for name in sorted(dirnames):
                if name.startswith(TMP_PREFIX):
                    continue
                if (here / name).is_symlink():
                    self._links.append(here / name)
                else:
                    keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                if name.startswith((TMP_PREFIX, ".snakemake_timestamp")):
                    continue
                f = here / name
                if f.is_symlink():
                    self._links.append(f)
                elif f.is_file():
                    self._file(f, linked)
                else:
                    self._problem(f, "not a regular file (a device, pipe or socket)")

    def _follow(self, link: Path) -> None:
        try:
            target = os.path.realpath(link, strict=True)
        except OSError:
            self._problem(link, "broken symbolic link (its target is missing or the links loop)")
            return
        if not _inside(target, self.boundary):
            self._problem(link, f"symbolic link pointing outside {self.where}")
            return
        if os.path.isdir(target):
            if target in self._real_dirs:
                self._problem(
                    link,
                    "symbolic link to a folder already scanned (by its own path or another link)",
                )
                return
            self.handled.add(_canon(link))
            self._tree(link, linked=True)
        elif os.path.isfile(target):
            self.handled.add(_canon(link))
            self._file(link, linked=True)
        else:
            self._problem(link, "not a regular file (a device, pipe or socket)")


@dataclass
class _Found:
    items: list[Item] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)


def group_files(
    files: Sequence[Path],
    kind_hint: str | None = None,
    check: SubjectCheck | None = None,
    progress: Progress | None = None,
) -> _Found:
    """Group files into items of one kind each; unusable files go to the quarantine list.

    ``kind_hint`` is the dataset's modality class: every file of a ``dicom`` dataset is tried as
    DICOM; otherwise the kind is told by the name (NIfTI, microscopy) or by the DICOM preamble.
    With ``check``, a DICOM file that is not the subject's (:meth:`SubjectCheck.problem`) is
    quarantined with the reason. ``progress`` advances by one per file looked at.
    """
    found = _Found()
    series: dict[tuple[str, str], list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    nifti: list[Path] = []
    micro: list[Path] = []
    sidecars: set[Path] = set()
    progress = progress if progress is not None else Progress()
    for p in files:
        progress.advance()
        name = _lower_name(p)
        if is_nifti(p) and kind_hint in (None, "nifti"):
            nifti.append(p)
        elif name.endswith(".json") and kind_hint in (None, "nifti"):
            sidecars.add(p)
        elif is_microscopy(p) and kind_hint in (None, "microscopy"):
            micro.append(p)
        elif kind_hint == "dicom" or (kind_hint is None and has_dicom_preamble(p)):
            try:
                hdr = read_dicom_header(p)
            except InputError as exc:
                found.quarantine.append({"path": str(p), "reason": exc.reason})
                continue
            if hdr["dicomdir"]:
                found.items.append(
                    Item(
                        id="",
                        kind="dicom",
                        format="dicomdir",
                        files=[{"path": str(p), "size": p.stat().st_size}],
                        status="excluded",
                        reason="DICOMDIR media index, not image data (the images it lists are scanned directly)",
                    )
                )
                continue
            why = check.problem(hdr) if check is not None else None
            if why is not None:
                found.quarantine.append({"path": str(p), "reason": why})
                continue
            series[(hdr["study_instance_uid"], hdr["series_instance_uid"])].append((p, hdr))
        else:
            expected = f" (dataset class {kind_hint})" if kind_hint else ""
            found.quarantine.append(
                {"path": str(p), "reason": f"not a recognised image file{expected}"}
            )

    # DICOM series, ordered by study, series number, series UID for stable ids.
    def series_key(k: tuple[str, str]) -> tuple[str, int, str]:
        first = series[k][0][1]
        return (k[0], first["series_number"] or 0, k[1])

    for key in sorted(series, key=series_key):
        members = sorted(
            series[key], key=lambda m: (m[1]["instance_number"] or 0, m[1]["sop_instance_uid"])
        )
        kept: list[tuple[Path, dict[str, Any]]] = []
        seen: set[str] = set()
        for m in members:
            if m[1]["sop_instance_uid"] in seen:
                found.quarantine.append(
                    {"path": str(m[0]), "reason": "duplicate SOPInstanceUID within its series"}
                )
                continue
            seen.add(m[1]["sop_instance_uid"])
            kept.append(m)
        first = kept[0][1]
        found.items.append(
            Item(
                id="",
                kind="dicom",
                format="dicom",
                files=[file_record(m[0]) for m in kept],
                dicom={
                    "study_instance_uid": key[0],
                    "series_instance_uid": key[1],
                    "modality": first["modality"],
                    "series_number": first["series_number"],
                    "series_description": first["series_description"],
                    "sop_class_uid": first["sop_class_uid"],
                    "instances": len(kept),
                },
            )
        )

    for p in sorted(nifti):
        try:
            _check_nifti(p)
        except InputError as exc:
            found.quarantine.append({"path": str(p), "reason": exc.reason})
            continue
        sidecar = nifti_sidecar(p)
        recs = [file_record(p)]
        if sidecar in sidecars:
            sidecars.discard(sidecar)
            recs.append(file_record(sidecar) | {"role": "sidecar"})
        found.items.append(Item(id="", kind="nifti", format="nifti", files=recs))
    for s in sorted(sidecars):
        found.quarantine.append(
            {"path": str(s), "reason": "JSON file with no NIfTI image beside it"}
        )

    # Microscopy: one item per image; multi-file OME-TIFF sets count once.
    claimed: set[Path] = set()
    micro_set = set(micro)
    for p in sorted(micro):
        if p in claimed:
            continue
        try:
            _check_microscopy(p)
            group = {p}
            if _lower_name(p).endswith((".ome.tif", ".ome.tiff", ".ome.btf")):
                group |= {q for q in _ome_companions(p) if q in micro_set}
        except InputError as exc:
            found.quarantine.append({"path": str(p), "reason": exc.reason})
            continue
        claimed |= group
        fmt = (
            "ome-tiff"
            if _lower_name(p).endswith((".ome.tif", ".ome.tiff", ".ome.btf"))
            else ("tiff" if _lower_name(p).endswith((".tif", ".tiff", ".btf")) else "bioformats")
        )
        recs = [file_record(p)] + [
            file_record(q) | {"role": "companion"} for q in sorted(group - {p})
        ]
        found.items.append(Item(id="", kind="microscopy", format=fmt, files=recs))
    return found


def nifti_sidecar(p: Path) -> Path:
    """The BIDS-style JSON sidecar path of a NIfTI file (``x.nii.gz`` -> ``x.json``)."""
    stem = p.name[: -len(".nii.gz")] if p.name.lower().endswith(".gz") else p.name[:-4]
    return p.with_name(stem + ".json")


def _add_sidecars(walk: InputWalk) -> None:
    """Add the JSON sidecar beside each NIfTI file found (a glob such as ``*.nii.gz`` names only
    the images); a sidecar that is a link is followed like any other."""
    for p in list(walk.files):
        if is_nifti(p):
            side = nifti_sidecar(p)
            if os.path.lexists(side):
                walk.add(side)
    walk.finish()


def _number(items: Iterable[Item], prefix: str) -> None:
    counters: dict[str, int] = defaultdict(int)
    for item in items:
        letter = "x" if item.format == "dicomdir" else KIND_LETTER[item.kind]
        counters[letter] += 1
        item.id = f"{prefix}-{letter}{counters[letter]:03d}"


def files_fingerprint(paths: Sequence[str | Path]) -> str:
    """A SHA-256 over path, size and modification time of each file (``missing`` for a file that is
    gone): cheap change detection for many originals without reading them."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def _dataset_roots(ds: Dataset, sheet: Path, source: str) -> list[Path]:
    """What a dataset's row points to: the matches of its source, or, with a ``file_list``,
    the listed paths inside the source folder (each must exist)."""
    if not ds.files:
        return source_roots(source)
    where = f"{sheet}: row {ds.row}"
    if any(ch in source for ch in "*?[") or not Path(source).is_dir():
        raise ConfigError(
            f"{where}, column 'source': {ds.source!r} must be a folder when 'file_list' is given "
            "(the listed paths are relative to it)"
        )
    roots = [Path(source) / entry for entry in ds.files]
    missing = [entry for entry, r in zip(ds.files, roots, strict=True) if not os.path.lexists(r)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigError(
            f"{where}, column 'file_list': {missing[0]!r}{more} listed in {ds.file_list!r} is "
            f"not in the source folder {ds.source!r}; fix the list (or write it again with "
            "imagedepot sheet)"
        )
    return roots


def _walk_dataset(ds: Dataset, sheet: Path, inbox: Path, storage: Storage) -> InputWalk:
    """Find the files of one dataset: its source walked with links followed inside the inbox (or,
    for a source outside the inbox, inside the source's folder)."""
    source = str(storage.local(ds.source_path(sheet)))
    base = _source_base(source)
    real_inbox = os.path.realpath(inbox)
    if _inside(os.path.realpath(base), real_inbox):
        walk = InputWalk(inbox, "the inbox")
    else:
        walk = InputWalk(base, "the source's folder")
    for root in _dataset_roots(ds, sheet, source):
        walk.add(root)
    walk.finish()
    if ds.modality_class == "nifti":
        _add_sidecars(walk)
    if not walk.files and not walk.quarantine:
        raise ConfigError(
            f"{sheet}: row {ds.row}, column 'source': {ds.source!r} matches no file; "
            "fix the path (relative to the sample sheet) or remove the row"
        )
    return walk


def _owners(
    datasets: Sequence[Dataset], walks: Sequence[InputWalk], sheet: Path
) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """Which dataset each real file belongs to, and the paths each dataset loses.

    A file named directly (not through a link) by two datasets is a sample-sheet error. A file a
    dataset reaches only through a symbolic link belongs to the dataset that names it directly,
    else to the first such dataset of the sheet; the other datasets' links to it are quarantined.
    """
    owner: dict[str, str] = {}
    lost: dict[str, list[dict[str, str]]] = {ds.dataset_id: [] for ds in datasets}
    for ds, walk in zip(datasets, walks, strict=True):
        for f in walk.files:
            if f in walk.linked:
                continue
            real = walk.real[f]
            if real in owner:
                raise ConfigError(
                    f"{sheet}: row {ds.row}, column 'source': {f} is already part of dataset "
                    f"{owner[real]!r}; each file must belong to one dataset"
                )
            owner[real] = ds.dataset_id
    for ds, walk in zip(datasets, walks, strict=True):
        for f in walk.files:
            if f not in walk.linked:
                continue
            real = walk.real[f]
            if real in owner:
                lost[ds.dataset_id].append(
                    {
                        "path": str(f),
                        "reason": f"symbolic link to a file of dataset {owner[real]!r}",
                    }
                )
            else:
                owner[real] = ds.dataset_id
    return owner, lost


def scan(
    inbox: str | Path,
    *,
    datasets: Sequence[Dataset] | None = None,
    sheet: str | Path | None = None,
    policies: dict[str, Any] | None = None,
    batch_size: int = 50,
    progress: Progress | None = None,
) -> Manifest:
    """Scan ``inbox`` (and the sources of ``datasets``) and return the manifest.

    Parameters
    ----------
    inbox
        Folder whose every file must be accounted for.
    datasets, sheet
        The validated sample sheet rows and the sheet's path (sources are relative to it). Without
        them, the inbox is inventoried with items not assigned to datasets.
    policies
        Loaded policies by name (objects with ``consented(subject) -> bool`` and ``name``); datasets whose
        subject has not consented become excluded items, and their files are not opened. A policy's
        ``subject_id_check`` (default ``patient_id``, also without policies) says how each DICOM file
        is matched to the dataset's subject (:class:`SubjectCheck`).
    batch_size
        Items per batch (cluster profiles run one batch per scheduler job).
    progress
        Advanced by one per file looked at (:mod:`imagedepot.progress`).
    """
    storage = Storage.from_env()
    inbox_p = storage.local(inbox)
    if not inbox_p.is_dir():
        raise ConfigError(f"{inbox_p}: inbox folder not found")
    manifest = Manifest(inbox=str(inbox_p), samples=str(sheet) if sheet else None)
    inbox_walk = InputWalk(inbox_p).add(inbox_p).finish()
    progress = progress if progress is not None else Progress()
    if datasets is None:
        progress.start(len(inbox_walk.files))
        found = group_files(inbox_walk.files, progress=progress)
        _number(found.items, "item")
        manifest.items = found.items
        manifest.quarantine = found.quarantine + inbox_walk.quarantine
    else:
        if sheet is None:
            raise ConfigError("scan: datasets given without the sample sheet path")
        walks = [_walk_dataset(ds, Path(sheet), inbox_p, storage) for ds in datasets]
        owner, lost = _owners(datasets, walks, Path(sheet))
        handled: set[str] = set()
        owned = [
            [f for f in walk.files if owner[walk.real[f]] == ds.dataset_id]
            for ds, walk in zip(datasets, walks, strict=True)
        ]
        progress.start(sum(len(files) for files in owned))
        for ds, walk, files in zip(datasets, walks, owned, strict=True):
            handled |= walk.handled
            policy = (policies or {}).get(ds.policy)
            if policy is not None and not policy.consented(ds.subject):
                excluded = Item(
                    id="",
                    kind=ds.modality_class,
                    format="unopened",
                    files=[{"path": str(f), "size": f.stat().st_size} for f in files],
                    status="excluded",
                    reason=f"no consent for this subject under policy {policy.name!r}",
                )
                found = _Found(items=[excluded] if files else [])
                progress.advance(len(files))
            else:
                check = SubjectCheck(
                    subject=ds.subject,
                    mode=str(getattr(policy, "subject_id_check", "patient_id")),
                    study_uids=frozenset(ds.study_uids),
                    accession_numbers=frozenset(ds.accession_numbers),
                )
                found = group_files(
                    files, kind_hint=ds.modality_class, check=check, progress=progress
                )
            _number(found.items, ds.dataset_id)
            for item in found.items:
                item.dataset = ds.dataset_id
                item.subject = ds.subject
                item.policy = ds.policy
                item.destinations = list(ds.destinations)
                item.metadata = dict(ds.metadata)
            manifest.items.extend(found.items)
            problems = walk.quarantine + lost[ds.dataset_id] + found.quarantine
            manifest.quarantine.extend(q | {"dataset": ds.dataset_id} for q in problems)
        loose = [
            {
                "path": str(f),
                "reason": "in the inbox but not part of any dataset of the sample sheet",
            }
            for f in inbox_walk.files
            if inbox_walk.real[f] not in owner
        ] + [q for q in inbox_walk.quarantine if _canon(Path(q["path"])) not in handled]
        manifest.quarantine.extend(sorted(loose, key=lambda q: q["path"]))
    pending = [i for i in manifest.items if i.status == "pending"]
    for n, item in enumerate(pending):
        item.batch = n // batch_size
    for item in manifest.items:
        item.data_time = latest_mtime(rec["path"] for rec in item.files)
    if storage.remote:
        # The job read Snakemake's local copies; the manifest names files by logical path.
        manifest.inbox = storage.logical(inbox_p)
        for item in manifest.items:
            for rec in item.files:
                rec["path"] = storage.logical(rec["path"])
        for q in manifest.quarantine:
            q["path"] = storage.logical(q["path"])
    log.info("scan: %s", manifest.counts())
    return manifest
