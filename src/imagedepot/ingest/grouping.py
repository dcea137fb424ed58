"""Files grouped into items: DICOM series by UID, NIfTI files with their sidecar, one item
per microscopy image; unusable files quarantined with the reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError
from imagedepot.ingest.dicom import SubjectCheck, has_dicom_preamble, read_dicom_header
from imagedepot.ingest.formats import (
    _check_microscopy,
    _check_nifti,
    _lower_name,
    _ome_companions,
    is_microscopy,
    is_nifti,
    nifti_sidecar,
)
from imagedepot.ingest.manifest import Item
from imagedepot.io import file_record
from imagedepot.progress import Progress


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
