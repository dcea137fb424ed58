"""Draft a sample sheet from a folder: a cohort folder (a PACS export, a core facility's drop
folder) in two commands, ``imagedepot sheet`` then the workflow.

:func:`draft_sheet` walks the inbox like the scan (:class:`imagedepot.ingest.InputWalk`) and
groups what it finds into datasets:

* DICOM: one dataset per Patient ID and study (Study Instance UID), its ``subject`` the Patient
  ID (the identifier the sheet links to the consent sheet; the scan checks every file against it,
  :class:`imagedepot.ingest.SubjectCheck`) and its ``study_instance_uid`` the study.
* Microscopy and NIfTI: one dataset per image (``per="file"``; a multi-file OME-TIFF set, a NIfTI
  with its sidecar count as one) or per folder (``per="folder"``); their ``subject`` is left to
  fill (their headers name none).

Dataset names carry no identifier: ``dcm-001``, ``mic-001``, ``nii-001``... numbered in the order
of a SHA-256 of the Study Instance UID (DICOM) or of the path in the inbox (the others), so a
number follows no name, Patient ID or date and stays the same when the sheet is drafted again
from the same files.

Each dataset points to its files as the sheet allows (:mod:`imagedepot.samplesheet`): the single
file, or the folder that holds them when no other dataset has a file in it, else that folder
plus a ``file_list`` (one text file per dataset, written beside the sheet in
``<sheet name>.files/``). Files that fit no dataset (not image data, DICOM without Patient ID)
are listed with the reason; the scan then quarantines them as part of no dataset.

The sheet and its lists name patients: they belong to the trusted zone, like the sample sheet.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagedepot.errors import ConfigError, InputError
from imagedepot.ingest import (
    InputWalk,
    group_files,
    is_microscopy,
    is_nifti,
    read_dicom_header,
)
from imagedepot.io import atomic_path, check_overwrite
from imagedepot.progress import Progress
from imagedepot.samplesheet import FILE_LIST_COLUMN, REQUIRED

log = logging.getLogger(__name__)

#: How microscopy and NIfTI files are grouped into datasets.
GROUPINGS = ("file", "folder")
#: Columns of the draft sheet, in order.
COLUMNS = (*REQUIRED, FILE_LIST_COLUMN, "study_instance_uid")
#: Dataset name prefixes by modality class.
PREFIX = {"dicom": "dcm", "microscopy": "mic", "nifti": "nii"}


@dataclass
class DraftDataset:
    """One dataset of the draft sheet.

    ``files`` are the dataset's files (absolute paths as found); ``order_key`` is what numbers
    it (a SHA-256, see the module docstring).
    """

    modality_class: str
    subject: str
    files: list[Path]
    order_key: str
    study_uid: str = ""
    series: int = 0
    images: int = 0
    #: Grouped per folder (``per="folder"``): the source is the folder, even for one image.
    by_folder: bool = False
    dataset_id: str = ""
    source: str = ""
    file_list: str = ""
    listed: list[str] = field(default_factory=list)

    def row(self, policy: str, destinations: str) -> dict[str, str]:
        """The dataset as a sample sheet row."""
        return {
            "dataset_id": self.dataset_id,
            "subject": self.subject,
            "modality_class": self.modality_class,
            "source": self.source,
            "policy": policy,
            "destinations": destinations,
            FILE_LIST_COLUMN: self.file_list,
            "study_instance_uid": self.study_uid,
        }


@dataclass
class DraftSheet:
    """What :func:`draft_sheet` grouped, ready for :meth:`write`."""

    inbox: Path
    sheet: Path
    datasets: list[DraftDataset] = field(default_factory=list)
    #: Files that fit no dataset: ``{"path", "reason"}``.
    left_out: list[dict[str, str]] = field(default_factory=list)
    policy: str = ""
    destinations: str = ""

    @property
    def lists_dir(self) -> Path:
        """The folder of the ``file_list`` files: ``<sheet name>.files`` beside the sheet."""
        return self.sheet.with_name(self.sheet.stem + ".files")

    def rows(self) -> list[dict[str, str]]:
        """The sheet's rows, in dataset order."""
        return [d.row(self.policy, self.destinations) for d in self.datasets]

    def to_fill(self) -> list[str]:
        """The required columns left empty, as ``column (n rows)``."""
        out = []
        for column in REQUIRED:
            n = sum(1 for r in self.rows() if not r[column])
            if n:
                out.append(f"{column} ({n} row{'s' if n > 1 else ''})")
        return out

    def write(self, *, force: bool = False) -> None:
        """Write the sheet (TSV, or CSV for a ``.csv`` name) and the file lists beside it.

        Raises :class:`imagedepot.errors.OutputExistsError` when the sheet or the lists' folder
        exists and ``force`` is false; with ``force`` both are replaced.
        """
        suffix = self.sheet.suffix.lower()
        if suffix not in (".tsv", ".csv", ".txt"):
            raise ConfigError(f"{self.sheet}: write the draft sheet as .tsv or .csv")
        check_overwrite(self.sheet, force)
        check_overwrite(self.lists_dir, force)
        self.sheet.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf,
            fieldnames=COLUMNS,
            delimiter="," if suffix == ".csv" else "\t",
            lineterminator="\n",
        )
        writer.writeheader()
        writer.writerows(self.rows())
        listed = [d for d in self.datasets if d.file_list]
        if listed:
            with atomic_path(self.lists_dir, force=force, is_dir=True) as tmp:
                for d in listed:
                    (tmp / f"{d.dataset_id}.txt").write_text(
                        "".join(f"{entry}\n" for entry in d.listed), encoding="utf-8"
                    )
        elif self.lists_dir.is_dir() and not self.lists_dir.is_symlink():
            shutil.rmtree(self.lists_dir)  # stale lists of an earlier draft (force given)
        with atomic_path(self.sheet, force=force) as tmp_sheet:
            tmp_sheet.write_text(buf.getvalue(), encoding="utf-8")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sheet_path(p: Path, sheet_dir: Path) -> str:
    """``p`` as the sheet names it: relative to the sheet's folder when inside it, else absolute."""
    a = Path(os.path.abspath(p))
    try:
        rel = a.relative_to(sheet_dir)
    except ValueError:
        return str(a)
    return rel.as_posix() or "."


def _common_folder(files: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(f.parent) for f in files]))


def draft_sheet(
    inbox: str | Path,
    sheet: str | Path,
    *,
    policy: str = "",
    destinations: Sequence[str] = (),
    per: str = "file",
    progress: Progress | None = None,
) -> DraftSheet:
    """Group the files of ``inbox`` into the datasets of a draft sample sheet.

    Parameters
    ----------
    inbox
        The folder to scan (the workflow's ``inbox``).
    sheet
        Where the sheet will be written: sources and lists are named relative to its folder.
    policy, destinations
        The ``policy`` and ``destinations`` of every row (empty: left to fill).
    per
        Microscopy and NIfTI datasets: one per image (``"file"``) or per folder (``"folder"``).
    progress
        Advanced by one per file looked at.
    """
    if per not in GROUPINGS:
        raise ConfigError(f"per: {per!r} is not one of {', '.join(GROUPINGS)}")
    inbox_p = Path(inbox)
    if not inbox_p.is_dir():
        raise ConfigError(f"{inbox_p}: inbox folder not found")
    sheet_p = Path(sheet)
    draft = DraftSheet(
        inbox=inbox_p, sheet=sheet_p, policy=policy, destinations=";".join(destinations)
    )
    walk = InputWalk(inbox_p).add(inbox_p).finish()
    draft.left_out += walk.quarantine
    progress = progress if progress is not None else Progress()
    progress.start(len(walk.files))

    studies: dict[tuple[str, str], list[Path]] = defaultdict(list)
    series: dict[tuple[str, str], set[str]] = defaultdict(set)
    other: dict[str, list[Path]] = {"nifti": [], "microscopy": []}
    for p in walk.files:
        progress.advance()
        if is_nifti(p) or p.name.lower().endswith(".json"):
            other["nifti"].append(p)
            continue
        if is_microscopy(p):
            other["microscopy"].append(p)
            continue
        try:
            hdr = read_dicom_header(p)
        except InputError as exc:
            draft.left_out.append({"path": str(p), "reason": exc.reason})
            continue
        if hdr["dicomdir"]:
            draft.left_out.append({"path": str(p), "reason": "DICOMDIR media index"})
        elif not hdr["patient_id"]:
            draft.left_out.append(
                {"path": str(p), "reason": "DICOM file without Patient ID: no subject to group by"}
            )
        else:
            key = (hdr["patient_id"], hdr["study_instance_uid"])
            studies[key].append(p)
            series[key].add(hdr["series_instance_uid"])

    datasets = [
        DraftDataset(
            modality_class="dicom",
            subject=pid,
            files=files,
            order_key=_digest(study),
            study_uid=study,
            series=len(series[(pid, study)]),
        )
        for (pid, study), files in studies.items()
    ]
    for kind, files in other.items():
        found = group_files(files, kind_hint=kind)
        draft.left_out += found.quarantine
        units: dict[str, list[Path]] = defaultdict(list)
        images: dict[str, int] = defaultdict(int)
        for item in found.items:
            paths = [Path(r["path"]) for r in item.files]
            unit = str(paths[0].parent if per == "folder" else paths[0])
            units[unit] += paths
            images[unit] += 1
        for unit, paths in units.items():
            rel = _sheet_path(Path(unit), Path(os.path.abspath(inbox_p)))
            datasets.append(
                DraftDataset(
                    modality_class=kind,
                    subject="",
                    files=paths,
                    order_key=_digest(rel),
                    images=images[unit],
                    by_folder=per == "folder",
                )
            )
    _number(datasets)
    _point_to_files(datasets, walk.files, sheet_p)
    draft.datasets = sorted(datasets, key=lambda d: d.dataset_id)
    draft.left_out.sort(key=lambda q: q["path"])
    log.info("sheet: %d dataset(s), %d file(s) left out", len(draft.datasets), len(draft.left_out))
    return draft


def _number(datasets: list[DraftDataset]) -> None:
    """Name the datasets ``<prefix>-NNN`` per modality class, in order of their keys."""
    by_kind: dict[str, list[DraftDataset]] = defaultdict(list)
    for d in datasets:
        by_kind[d.modality_class].append(d)
    for kind, group in by_kind.items():
        width = max(3, len(str(len(group))))
        for n, d in enumerate(sorted(group, key=lambda d: d.order_key), start=1):
            d.dataset_id = f"{PREFIX[kind]}-{n:0{width}d}"


def _point_to_files(datasets: list[DraftDataset], found: Sequence[Path], sheet: Path) -> None:
    """Set each dataset's ``source`` (and ``file_list``): its single file (a NIfTI image brings
    its sidecar), unless grouped per folder; else the folder of its files when no other dataset
    has a file under it; else that folder and a list of its files."""
    owner: dict[Path, str] = {f: d.dataset_id for d in datasets for f in d.files}
    # Which datasets have files under each folder (every ancestor of every file).
    under: dict[Path, set[str]] = defaultdict(set)
    for f in found:
        if f in owner:
            for folder in f.parents:
                under[folder].add(owner[f])
    sheet_dir = Path(os.path.abspath(sheet.parent))
    lists = sheet.stem + ".files"
    for d in datasets:
        images = [f for f in d.files if is_nifti(f)]
        single = len(d.files) == 1 or (d.modality_class == "nifti" and len(images) == 1)
        if single and not d.by_folder:
            d.source = _sheet_path(images[0] if images else d.files[0], sheet_dir)
            continue
        folder = _common_folder(d.files)
        d.source = _sheet_path(folder, sheet_dir)
        if under[folder] != {d.dataset_id}:
            d.file_list = f"{lists}/{d.dataset_id}.txt"
            d.listed = sorted(f.relative_to(folder).as_posix() for f in d.files)


def summary_lines(draft: DraftSheet, limit: int = 20) -> list[str]:
    """What was grouped, for the console: one line per dataset (subjects by number, never by
    identifier), the files left out, and what is left to fill."""
    subjects: dict[str, int] = {}
    for d in draft.datasets:
        if d.subject:
            subjects.setdefault(d.subject, len(subjects) + 1)
    n_files = sum(len(d.files) for d in draft.datasets)
    lines = [
        f"sheet: {len(draft.datasets)} dataset(s) of {len(subjects)} subject(s) from "
        f"{n_files} file(s) -> {draft.sheet}"
    ]
    for d in draft.datasets[:limit]:
        who = f"subject {subjects[d.subject]}" if d.subject else "subject to fill"
        if d.modality_class == "dicom":
            what = f"1 study, {d.series} series"
        else:
            what = f"{d.images} image(s)"
        where = d.source + (f" (files listed in {d.file_list})" if d.file_list else "")
        lines.append(
            f"  {d.dataset_id}  {d.modality_class:<10}  {who}  {what}, {len(d.files)} file(s)  "
            f"{where}"
        )
    if len(draft.datasets) > limit:
        lines.append(f"  ... and {len(draft.datasets) - limit} more dataset(s), in the sheet")
    if draft.left_out:
        lines.append(
            f"left out: {len(draft.left_out)} file(s) in no dataset (the scan quarantines them):"
        )
        for q in draft.left_out[:limit]:
            path = q["path"]
            with contextlib.suppress(ValueError):
                path = str(Path(path).relative_to(draft.inbox))
            lines.append(f"  {path}: {q['reason']}")
        if len(draft.left_out) > limit:
            lines.append(f"  ... and {len(draft.left_out) - limit} more")
    todo = draft.to_fill()
    if todo:
        lines.append("to fill before running: " + ", ".join(todo))
    return lines
