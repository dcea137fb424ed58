"""The ``results/bids/`` tree of the workflow: the de-identified NIfTI of every clean item
copied to its BIDS path (:func:`write_bids_tree`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagedepot.convert.bids.layout import bids_layout
from imagedepot.convert.bids.rules import BidsRules, load_rules
from imagedepot.errors import ImagedepotError


class BidsClashError(ImagedepotError):
    """Two images of the BIDS tree would get the same path (never overwritten)."""


def _nifti_files(folder: Path) -> list[Path]:
    """NIfTI files of a folder in the order the NIfTI de-identifier numbers them (sorted paths)."""
    if not folder.is_dir():
        return []
    return [
        p for p in sorted(folder.rglob("*")) if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
    ]


def write_bids_tree(
    manifest: Mapping[str, Any],
    *,
    convert_root: Path,
    deid_root: Path,
    leak_root: Path,
    out: Path,
    rules: BidsRules | None = None,
) -> dict[str, Any]:
    """Lay the de-identified NIfTI of every clean DICOM/NIfTI item out as a BIDS-like tree.

    Names come from the *conversion* sidecars (inside the trusted zone, before de-identification
    removes SeriesDescription / ProtocolName); the files copied are the *de-identified* NIfTI and
    sidecars (the de-identifier numbers them ``<pseudonym>_NNN`` in sorted order of its inputs).
    Sessions: the studies of a subject, numbered ``1, 2, ...`` in StudyInstanceUID order of the
    manifest, or no session level when the subject has one study. Writes ``dataset_description.json``
    and ``.bidsignore`` (for the non-standard datatypes). Returns a summary.
    """
    import shutil

    from imagedepot.io import atomic_path, read_json, write_json
    from imagedepot.pipeline import item_dir, leak_report_path

    compiled = rules or load_rules()
    per_subject: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for item in manifest["items"]:
        if item["status"] != "pending" or item["kind"] not in ("dicom", "nifti"):
            continue
        leak = leak_report_path(leak_root, item)
        if not leak.is_file() or read_json(leak).get("status") != "clean":
            continue
        prov = read_json(item_dir(deid_root, item) / "provenance.json")
        pseudonym = prov.get("options", {}).get("subject_pseudonym")
        if pseudonym:
            per_subject.setdefault(pseudonym, []).append((item, pseudonym))
    # Run numbers are counted per subject and session across all items (two series with the same
    # description in one session are run-1 and run-2), so every image of a session is laid out
    # by one bids_layout call; keys are unique across items.
    groups: dict[tuple[str, str | None], list[tuple[str, Mapping[str, Any], Path, str]]] = {}
    for pseudonym, entries in sorted(per_subject.items()):
        studies = sorted(
            {(e[0].get("dicom") or {}).get("study_instance_uid") or e[0]["id"] for e in entries}
        )
        for item, _ in entries:
            study = (item.get("dicom") or {}).get("study_instance_uid") or item["id"]
            session = str(studies.index(study) + 1) if len(studies) > 1 else None
            conv = _nifti_files(item_dir(convert_root, item) / "nifti")
            deid = item_dir(deid_root, item) / "nifti"
            group = groups.setdefault((pseudonym, session), [])
            for n, src in enumerate(conv, 1):
                side = src.with_name(src.name.removesuffix(".gz").removesuffix(".nii") + ".json")
                sidecar = json.loads(side.read_text("utf-8")) if side.is_file() else {}
                ext = ".nii.gz" if src.name.endswith(".gz") else ".nii"
                group.append((f"{item['id']}/{pseudonym}_{n:03d}", sidecar, deid, ext))
    written: list[str] = []
    with atomic_path(out, force=True, is_dir=True, remove_stale=True) as tmp:
        for (pseudonym, session), group in sorted(
            groups.items(), key=lambda g: (g[0][0], g[0][1] or "")
        ):
            names = bids_layout(
                [(k, s) for k, s, _, _ in group], pseudonym=pseudonym, session=session,
                rules=compiled,
            )  # fmt: skip
            for key, _, deid, ext in group:
                rel = names[key] if ext == ".nii.gz" else names[key].removesuffix(".gz")
                src_img = deid / f"{key.rsplit('/', 1)[1]}{ext}"
                if not src_img.is_file():
                    continue
                dst = tmp / rel
                side = deid / f"{key.rsplit('/', 1)[1]}.json"
                dst_side = dst.with_name(dst.name.removesuffix(ext) + ".json")
                for target in (dst, dst_side) if side.is_file() else (dst,):
                    if os.path.lexists(target):
                        raise BidsClashError(
                            f"BIDS tree: two images would be written to {os.path.relpath(target, tmp)}; "
                            "refusing to overwrite (check the BIDS rules file for outputs it cannot "
                            "tell apart)"
                        )
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src_img, dst)
                written.append(rel)
                if side.is_file():
                    shutil.copy2(side, dst_side)
        write_json(
            tmp / "dataset_description.json",
            {"Name": "imagedepot de-identified NIfTI", "BIDSVersion": "1.9.0",
             "DatasetType": "raw", "GeneratedBy": [{"Name": "imagedepot"}]},
        )  # fmt: skip
        (tmp / ".bidsignore").write_text(compiled.bidsignore(), encoding="utf-8")
    return {"subjects": len(per_subject), "images": len(written), "files": sorted(written)}
