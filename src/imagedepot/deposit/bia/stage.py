"""Stage for the BioImage Archive (local, in the default run): one package per dataset.

:func:`stage_bia` reads what ``imagedepot stage`` copied for a ``bia`` destination
(``results/stage/<destination>/<dataset>/<item>/...``, checked against its manifest), the
items' sample-sheet metadata (``results/ingest/items/<item>.json``) and study-level metadata, and
writes one package per dataset under ``results/bia/<destination>/<dataset>/`` (the layout is
described in :mod:`imagedepot.deposit.bia.package`): the File List, the validated PageTab, the
RO-Crate and the bag.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.deposit.bia.bag import write_bag
from imagedepot.deposit.bia.errors import BagError, BiaValidationError
from imagedepot.deposit.bia.filelist import _file_list_rows, validate_file_list
from imagedepot.deposit.bia.package import PACKAGE_VERSION, SUBMISSION_DIR, UPLOAD_DIR, content_hash
from imagedepot.deposit.bia.pagetab import (
    _iter_sections,
    _tsv_line,
    attr,
    build_pagetab,
    pagetab_to_tsv,
)
from imagedepot.deposit.bia.rocrate import _rocrate
from imagedepot.deposit.bia.study import StudyMetadata
from imagedepot.deposit.bia.validation import validate_pagetab
from imagedepot.errors import ConfigError, PolicyError
from imagedepot.io import atomic_path, file_record, iter_files, read_json, write_text
from imagedepot.provenance import data_time, tool_versions

log = logging.getLogger(__name__)


@dataclass
class BiaStageReport:
    """What :func:`stage_bia` packaged."""

    destination: str
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(self.__dict__)


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link (same file system, no extra space) or copy; the bag checksums guard both."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _dataset_dirs(staged: Path) -> list[Path]:
    return sorted(p for p in staged.iterdir() if p.is_dir() and not p.name.startswith("."))


def _stage_dataset(
    ds_dir: Path,
    pkg: Path,
    *,
    destination: str,
    destination_class: str,
    items: list[dict[str, Any]],
    study: StudyMetadata,
    policy: Any,
) -> tuple[dict[str, Any], list[str]]:
    dataset = ds_dir.name
    meta = dict(items[0].get("metadata") or {})
    upload_ds = pkg / UPLOAD_DIR / dataset
    upload_ds.mkdir(parents=True)
    item_ids = []
    provenances = []
    for child in sorted(ds_dir.iterdir()):
        if child.is_dir():
            shutil.copytree(child, upload_ds / child.name, copy_function=_link_or_copy)
            item_ids.append(child.name)
            if (child / "provenance.json").is_file():
                provenances.append(read_json(child / "provenance.json"))
        else:
            _link_or_copy(str(child), str(upload_ds / child.name))
    header, rows, summaries = _file_list_rows(dataset, upload_ds, item_ids)
    for child in sorted(p for p in ds_dir.iterdir() if p.is_file()):
        r = file_record(child, ds_dir)
        rows.append(
            [
                f"{dataset}/{child.name}",
                "",
                "supporting file",
                child.suffix.lstrip(".") or "file",
                str(r["size"]),
                "1",
                f"sha256:{r['sha256']}",
                "",
            ]
        )
    filelist = f"{dataset}-filelist"
    problems = validate_file_list(header, rows, pkg / UPLOAD_DIR)
    tsv = "".join(_tsv_line(row) for row in [header, *rows])
    write_text(upload_ds / f"{filelist}.tsv", tsv)
    fl_json = [
        {
            "path": row[0],
            "attributes": [attr(h, v) for h, v in zip(header[1:], row[1:], strict=True) if v],
        }
        for row in rows
    ]
    write_text(upload_ds / f"{filelist}.json", json.dumps(fl_json, indent=2) + "\n")
    doc = build_pagetab(dataset, meta, study, f"{dataset}/{filelist}.json", summaries)
    problems += [f"dataset {dataset}: {p}" for p in validate_pagetab(doc)]
    sub = pkg / SUBMISSION_DIR
    sub.mkdir(parents=True)
    write_text(sub / "pagetab.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    tsv_doc = json.loads(json.dumps(doc))
    for s in _iter_sections(tsv_doc["section"]):
        for a in s.get("attributes", []):
            if a["name"] == "File List":
                a["value"] = f"{dataset}/{filelist}.tsv"
    write_text(sub / "pagetab.tsv", pagetab_to_tsv(tsv_doc))
    uploads = [file_record(p, pkg / UPLOAD_DIR) for p in iter_files(pkg / UPLOAD_DIR)]
    write_text(sub / "MANIFEST.sha256", "".join(f"{u['sha256']}  {u['path']}\n" for u in uploads))
    chash = content_hash(pkg)
    record = {
        "package_version": PACKAGE_VERSION,
        "dataset": dataset,
        "destination": destination,
        "destination_class": destination_class,
        "policy": {
            "name": policy.name,
            "sha256": policy.sha256,
            "allowed_classes": sorted(policy.allowed_classes),
        },
        "items": item_ids,
        "files": len(uploads),
        "bytes": sum(u["size"] for u in uploads),
        "content_hash": chash,
        "pagetab": "submission/pagetab.json",
        "file_list": f"upload/{dataset}/{filelist}.json",
        "upload_root": "upload",
    }
    write_text(sub / "package.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    versions = dict(tool_versions())
    for p in provenances:
        versions.update({k: v for k, v in (p.get("versions") or {}).items() if isinstance(v, str)})
    crate = _rocrate(dataset, meta, study, pkg / "data", provenances, versions)
    write_text(
        pkg / "data" / "ro-crate-metadata.json",
        json.dumps(crate, indent=2, ensure_ascii=False) + "\n",
    )
    write_bag(
        pkg,
        {
            "External-Identifier": f"imagedepot:{destination}:{dataset}",
            "External-Description": f"BioImage Archive submission package of dataset {dataset}",
            "Imagedepot-Content-Hash": chash,
            # Reproducible (BagIt date of the data, not of this run): see provenance.data_time.
            "Bagging-Date": data_time(p.get("data_time") for p in provenances)[:10],
        },
    )
    return record, problems


def stage_bia(
    staged: str | Path,
    manifest: str | Path | Mapping[str, Any],
    out: str | Path,
    *,
    destination: str,
    study: StudyMetadata,
    policies: Mapping[str, Any],
    destination_class: str = "public_archive",
    force: bool = True,
) -> BiaStageReport:
    """Package every dataset staged for a ``bia`` destination as a validated BioImage Archive submission.

    Parameters
    ----------
    staged
        The destination's staged folder from ``imagedepot stage`` (``results/stage/<destination>``);
        re-checked against its ``manifest.json`` first.
    manifest
        The scan's manifest (or its item JSON folder): each item's ``metadata`` holds the sample
        sheet's REMBI columns, ``policy`` the dataset's policy.
    out
        Folder to create (replaced atomically): one bag per dataset.
    study
        Study-level metadata (authors, licence, release date, protocol defaults).
    policies
        Loaded policies by name; a dataset whose policy does not allow ``destination_class`` is
        skipped (and never packaged).

    Raises
    ------
    BiaValidationError
        A PageTab or File List misses a required field (every problem is listed, with its source).
    """
    from imagedepot.stage import verify_stage

    if destination_class != "public_archive":
        raise ConfigError(
            f"destination {destination!r}: the BioImage Archive is a public archive; "
            f"set its class to public_archive (not {destination_class})"
        )
    staged_p = Path(staged)
    trouble = verify_stage(staged_p)
    if trouble:
        raise BagError(staged_p, trouble)
    report = BiaStageReport(destination)
    problems: list[str] = []
    from imagedepot.pipeline import manifest_items

    by_id = {str(i["id"]): i for i in manifest_items(manifest)}
    with atomic_path(out, force=force, is_dir=True) as tmp:
        for ds_dir in _dataset_dirs(staged_p):
            item_ids = sorted(p.name for p in ds_dir.iterdir() if p.is_dir())
            if not item_ids:
                continue
            items = [by_id[i] for i in item_ids]
            policy = policies.get(items[0].get("policy", ""))
            try:
                if policy is None:
                    raise PolicyError(
                        f"dataset {ds_dir.name}: unknown policy {items[0].get('policy')!r}"
                    )
                policy.check_destination(destination, destination_class)
            except PolicyError as exc:
                report.skipped.append(
                    {"dataset": ds_dir.name, "reason": f"excluded by policy: {exc}"}
                )
                continue
            record, errs = _stage_dataset(
                ds_dir,
                tmp / ds_dir.name,
                destination=destination,
                destination_class=destination_class,
                items=items,
                study=study,
                policy=policy,
            )
            problems += errs
            report.packages[ds_dir.name] = {
                k: record[k] for k in ("content_hash", "files", "bytes", "items")
            }
        if problems:
            raise BiaValidationError(problems)
        write_text(
            tmp / "summary.json", json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
        )
    log.info("staged %d BioImage Archive package(s) for %s", len(report.packages), destination)
    return report
