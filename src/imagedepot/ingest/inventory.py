""":func:`scan`: the inbox and the sample sheet's sources walked, their files shared out
among the datasets and grouped into the items of the manifest it returns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagedepot.errors import ConfigError
from imagedepot.ingest.dicom import SubjectCheck
from imagedepot.ingest.grouping import _Found, group_files
from imagedepot.ingest.manifest import Item, Manifest, _number
from imagedepot.ingest.walk import (
    InputWalk,
    _add_sidecars,
    _canon,
    _inside,
    _source_base,
    source_roots,
)
from imagedepot.progress import Progress
from imagedepot.provenance import latest_mtime
from imagedepot.samplesheet import Dataset
from imagedepot.storage import Storage

log = logging.getLogger(__name__)


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
