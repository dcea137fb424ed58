"""Stage de-identified, leak-checked outputs into a local deposit folder per destination.

Only items whose leak report is ``clean`` and whose policy allows the destination's class are staged.
The folder holds the data, one FHIR bundle per dataset, ``MANIFEST.sha256`` (``sha256sum -c`` format),
``manifest.json`` (path, size, sha256 per file) and ``summary.json``. Trusted-zone records (inbox paths,
action logs, linkage) are never copied.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import ImagedepotError, PolicyError
from imagedepot.io import (
    atomic_path,
    file_record,
    iter_files,
    public_modes,
    read_json,
    write_json,
    write_text,
)
from imagedepot.pipeline import THUMBNAILS, item_dir, leak_report_path
from imagedepot.provenance import data_time, now, tool_versions

log = logging.getLogger(__name__)

#: Files of a de-identified item folder that stay in the trusted zone.
TRUSTED_ONLY = {"actions.jsonl", THUMBNAILS}


@dataclass
class StageInputs:
    """Where the earlier stages wrote their results."""

    manifest: Path
    deid_root: Path
    leak_root: Path
    fhir_root: Path


@dataclass
class StageReport:
    """What was staged for one destination."""

    destination: str
    destination_class: str
    staged: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (trusted zone: reasons may name original files)."""
        return dict(self.__dict__)

    def public_dict(self) -> dict[str, Any]:
        """The form that travels with the staged data: skipped items by id and category only,
        since a reason may quote an original path or a tool message about the original."""
        d = self.to_dict()
        d["skipped"] = [
            {"item": s["item"], "category": s["reason"].split(":", 1)[0]} for s in self.skipped
        ]
        return d


def _public_provenance(prov: dict[str, Any], when: str) -> dict[str, Any]:
    """The parts of a step record that may leave: no input paths (inbox names may carry PHI).

    The step's wall-clock ``started`` / ``ended`` stay in the trusted zone; the staged record has
    ``data_time`` (``when``, :func:`imagedepot.provenance.data_time`), so a rerun stages the same
    bytes."""
    keep = {k: prov.get(k) for k in ("step", "item", "status", "versions")}
    keep["data_time"] = when
    opts = dict(prov.get("options") or {})
    opts.pop("reports", None)
    keep["options"] = opts
    pol = prov.get("policy") or {}
    keep["policy"] = {
        k: pol.get(k)
        for k in ("name", "sha256", "data_use", "deid_options", "profile_edition")
        if k in pol
    }
    keep["outputs"] = prov.get("outputs", [])
    keep["inputs_count"] = len(prov.get("inputs", []))
    return keep


def stage_destination(
    destination: str,
    destination_class: str,
    inputs: StageInputs,
    out: str | Path,
    *,
    policies: dict[str, Any],
    force: bool = True,
) -> StageReport:
    """Stage every eligible item of the manifest for ``destination`` into ``out`` (atomically).

    ``policies`` maps policy names to loaded policies (with ``check_destination``).
    """
    manifest = read_json(inputs.manifest)
    report = StageReport(destination, destination_class)
    with atomic_path(out, force=force, is_dir=True) as tmp:
        datasets: set[str] = set()
        staged_times: list[str | None] = []
        for item in manifest["items"]:
            if destination not in item.get("destinations", []):
                continue
            iid = item["id"]
            if item["status"] != "pending":
                report.skipped.append(
                    {"item": iid, "reason": f"{item['status']}: {item['reason']}"}
                )
                continue
            policy = policies.get(item["policy"])
            try:
                if policy is None:
                    raise PolicyError(f"item {iid}: unknown policy {item['policy']!r}")
                policy.check_destination(destination, destination_class)
            except PolicyError as exc:
                report.skipped.append({"item": iid, "reason": f"excluded by policy: {exc}"})
                continue
            leak = read_json(leak_report_path(inputs.leak_root, item))
            if leak["status"] != "clean":
                report.skipped.append(
                    {"item": iid, "reason": f"{leak['status']}: {leak.get('reason')}"}
                )
                continue
            src = item_dir(inputs.deid_root, item)
            dst = tmp / item["dataset"] / iid
            dst.mkdir(parents=True)
            for f in sorted(src.iterdir()):
                if f.name in TRUSTED_ONLY or f.name.startswith(".snakemake"):
                    continue
                if f.name == "provenance.json":
                    when = data_time([item.get("data_time")])
                    write_json(dst / f.name, _public_provenance(read_json(f), when))
                elif f.is_dir():
                    shutil.copytree(f, dst / f.name)
                else:
                    shutil.copy2(f, dst / f.name)
            datasets.add(item["dataset"])
            report.staged.append(iid)
            staged_times.append(item.get("data_time"))
        for ds in sorted(datasets):
            status_file = inputs.fhir_root / ds / "bundle.status.json"
            bundle = inputs.fhir_root / ds / "bundle.json"
            if (
                status_file.exists()
                and read_json(status_file).get("status") == "clean"
                and bundle.exists()
            ):
                shutil.copy2(bundle, tmp / ds / "fhir-bundle.json")
        records = [file_record(p, tmp) for p in iter_files(tmp)]
        report.files = len(records)
        report.bytes = sum(r["size"] for r in records)
        write_text(
            tmp / "MANIFEST.sha256",
            "".join(f"{r['sha256']}  {r['path']}\n" for r in records),
        )
        write_json(
            tmp / "manifest.json",
            {
                "destination": destination,
                "class": destination_class,
                "created": data_time(staged_times),  # reproducible: not the wall clock
                "versions": tool_versions(),
                "files": records,
            },
        )
        write_json(tmp / "summary.json", report.public_dict())
        # Staged output is meant to leave the trusted zone: usual modes (files copied from
        # results/deid would keep 0600 otherwise).
        public_modes(tmp)
    log.info("staged %d item(s) for %s (%d files)", len(report.staged), destination, report.files)
    return report


def verify_stage(folder: str | Path) -> list[str]:
    """Re-check a staged folder against its ``manifest.json``; return the problems (empty if none)."""
    root = Path(folder)
    problems = []
    listed = read_json(root / "manifest.json")["files"]
    names = {r["path"] for r in listed}
    for r in listed:
        p = root / r["path"]
        if not p.is_file():
            problems.append(f"{r['path']}: missing")
        elif file_record(p, root)["sha256"] != r["sha256"]:
            problems.append(f"{r['path']}: checksum differs from manifest")
    for p in iter_files(root):
        rel = str(p.relative_to(root))
        if rel not in names and rel not in {"manifest.json", "MANIFEST.sha256", "summary.json"}:
            problems.append(f"{rel}: not in the manifest")
    return problems


def summarize_run(
    manifest_path: str | Path,
    leak_root: str | Path,
    stage_dirs: Sequence[str | Path],
    fhir_root: str | Path | None = None,
) -> dict[str, Any]:
    """The run summary: every input accounted for as processed, quarantined or excluded.

    Units are items (DICOM series, microscopy images, NIfTI files) plus loose files that could not be
    read at all. ``found == processed + quarantined + excluded`` is checked before returning.
    """
    manifest = read_json(manifest_path)
    leaks = {}
    for item in manifest["items"]:
        report = leak_report_path(leak_root, item)
        if item["status"] == "pending" and report.is_file():
            leaks[item["id"]] = read_json(report)
    processed: list[str] = []
    quarantined: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    for item in manifest["items"]:
        iid = item["id"]
        if item["status"] == "excluded":
            excluded.append(
                {
                    "item": iid,
                    "dataset": item.get("dataset"),
                    "reason": item["reason"],
                    "files": len(item["files"]),
                }
            )
            continue
        leak = leaks.get(iid)
        if leak is None:
            quarantined.append(
                {
                    "item": iid,
                    "dataset": item.get("dataset"),
                    "reason": "no leak report (the item did not finish)",
                }
            )
        elif leak["status"] == "clean":
            processed.append(iid)
        else:
            quarantined.append(
                {"item": iid, "dataset": item.get("dataset"), "reason": leak.get("reason")}
            )
    for q in manifest["quarantine"]:
        quarantined.append({"file": q["path"], "dataset": q.get("dataset"), "reason": q["reason"]})
    found = len(manifest["items"]) + len(manifest["quarantine"])
    summary = {
        "created": now(),
        "found": found,
        "processed": len(processed),
        "quarantined": len(quarantined),
        "excluded": len(excluded),
        "files_found": manifest["counts"]["files"],
        "processed_items": processed,
        "quarantined_items": quarantined,
        "excluded_items": excluded,
        "destinations": {},
        "versions": tool_versions(),
    }
    if fhir_root is not None:
        summary["fhir"] = _fhir_statuses(Path(fhir_root))
    for d in stage_dirs:
        sfile = Path(d) / "summary.json"
        if sfile.exists():
            s = read_json(sfile)
            summary["destinations"][s["destination"]] = {
                "staged": len(s["staged"]),
                "files": s["files"],
                "bytes": s["bytes"],
            }
    if found != summary["processed"] + summary["quarantined"] + summary["excluded"]:
        raise ImagedepotError(f"run accounting does not add up: {summary}")
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    """One human-readable line."""
    return (
        f"imagedepot: {summary['found']} input(s) found = {summary['processed']} processed + "
        f"{summary['quarantined']} quarantined + {summary['excluded']} excluded by policy"
    )


def _fhir_statuses(root: Path) -> dict[str, Any]:
    """Per-dataset FHIR bundle status and the clinical records that were rejected (no values)."""
    out: dict[str, Any] = {}
    for status_file in sorted(root.glob("*/bundle.status.json")):
        st = read_json(status_file)
        clinical = st.get("clinical") or {}
        errors = clinical.get("errors") or []
        seen = set()
        unique = []
        for e in errors:
            key = (str(e.get("source")), str(e.get("where")))
            if key not in seen:
                seen.add(key)
                unique.append(e)
        out[status_file.parent.name] = {
            "status": st.get("status"),
            "entries": st.get("entries", 0),
            "clinical_rejected": clinical.get("rejected", len(unique)),
            "clinical_errors": unique,
        }
    return out
