"""The run report's pieces, made from what the run wrote (``imagedepot report``).

:func:`build_report` reads the run summary, the scan's manifest, the de-identification folders
(provenance, ``pixeltext-thumbnails/``, de-identified NIfTI and OME-Zarr of the processed items)
and Snakemake's benchmark files, and writes the files of :data:`REPORT_FILES` into one folder:
HTML tables and PNG figures that the workflow marks with ``report()`` so that
``snakemake --report report.html`` shows them.

The report belongs to the trusted zone: it shows images before their burned-in text was blanked
and names original files. It is never staged; keep ``report.html`` where the originals may be.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError, OutputExistsError
from imagedepot.io import read_json, write_text
from imagedepot.pipeline import PROVENANCE, THUMBNAILS, item_dir
from imagedepot.report import figures, images, tables

log = logging.getLogger(__name__)

#: What :func:`build_report` writes, by role (file names inside the output folder).
REPORT_FILES: Mapping[str, str] = {
    "accounting": "accounting.html",
    "accounting_chart": "accounting.png",
    "quarantine": "quarantine.html",
    "policies": "policies.html",
    "policy_chart": "policy-actions.png",
    "blanked": "blanked.png",
    "ome_zarr": "ome-zarr.png",
    "nifti": "nifti.png",
    "benchmarks": "benchmarks.html",
    "benchmarks_chart": "benchmarks.png",
}


@dataclass(frozen=True)
class ReportOptions:
    """How much the figures show."""

    #: Rows (images, files) per picture gallery; the rest is counted, not drawn.
    max_images: int = 24

    def __post_init__(self) -> None:
        if self.max_images < 1:
            raise ValueError("max_images must be at least 1")


def _accounting_page(summary: Mapping[str, Any], rows: Sequence[tables.AccountingRow]) -> str:
    t = tables
    sections = [
        (
            "Inputs per dataset",
            f"found {summary['found']} = {summary['processed']} processed + "
            f"{summary['quarantined']} quarantined + {summary['excluded']} excluded by policy "
            f"({summary.get('files_found', '?')} files scanned)",
            t.html_table(
                ["dataset", "found", "processed", "quarantined", "excluded"],
                [(r.dataset, r.found, r.processed, r.quarantined, r.excluded) for r in rows],
                total=(
                    "all datasets",
                    summary["found"],
                    summary["processed"],
                    summary["quarantined"],
                    summary["excluded"],
                ),
                table_id="accounting",
            ),
        )
    ]
    dests = summary.get("destinations") or {}
    if dests:
        sections.append(
            (
                "Staged per destination",
                "what leaves the trusted zone (results/stage/<destination>/)",
                t.html_table(
                    ["destination", "items staged", "files", "bytes"],
                    [(d, v["staged"], v["files"], v["bytes"]) for d, v in sorted(dests.items())],
                    table_id="destinations",
                ),
            )
        )
    fhir = summary.get("fhir") or {}
    if fhir:
        sections.append(
            (
                "FHIR bundles per dataset",
                "",
                t.html_table(
                    ["dataset", "status", "entries", "clinical records rejected"],
                    [
                        (d, v.get("status"), v.get("entries", 0), v.get("clinical_rejected", 0))
                        for d, v in sorted(fhir.items())
                    ],
                    table_id="fhir",
                ),
            )
        )
    versions = summary.get("versions") or {}
    if versions:
        sections.append(
            (
                "Tool versions",
                "",
                t.html_table(["tool", "version"], sorted(versions.items()), table_id="versions"),
            )
        )
    return t.html_page("Run accounting", sections)


def _quarantine_page(summary: Mapping[str, Any]) -> str:
    rows = tables.quarantine_rows(summary)
    note = (
        f"{summary['quarantined']} quarantined (kept out of every destination) and "
        f"{summary['excluded']} excluded by policy; each with the reason recorded by the step "
        "that stopped it"
    )
    body = tables.html_table(
        ["outcome", "dataset", "input", "reason"],
        [(r["outcome"], r["dataset"], r["input"], r["reason"]) for r in rows],
        table_id="quarantine",
    )
    return tables.html_page("Quarantine and exclusions", [("", note, body)])


def _policies_page(uses: Sequence[tables.PolicyUse]) -> str:
    sections = []
    for use in uses:
        sections.append(
            (
                f"Policy {use.name}: settings",
                "as recorded in the de-identification provenance",
                tables.html_table(
                    ["setting", "value"], tables.policy_settings(use), table_id=f"policy-{use.name}"
                ),
            )
        )
        sections.append(
            (
                f"Policy {use.name}: what it did",
                "counted over every item of the run under this policy",
                tables.html_table(["what", "count"], tables.policy_counts(use)),
            )
        )
    if not sections:
        sections.append(("", "no item of the run names a policy", ""))
    return tables.html_page("Policies: options and actions", sections)


def _benchmarks_page(jobs: Sequence[tables.BenchmarkJob]) -> str:
    costs = tables.rule_costs(jobs)
    return tables.html_page(
        "Time and memory per step",
        [
            (
                "Per rule",
                "from Snakemake's benchmark files (benchmarks/<rule>/<job>.tsv); memory in MB",
                tables.html_table(
                    [
                        "rule",
                        "jobs",
                        "wall s (sum)",
                        "wall s (slowest job)",
                        "CPU s (sum)",
                        "peak RSS MB (largest job)",
                    ],
                    [
                        (c.rule, c.jobs, c.seconds, c.seconds_max, c.cpu_seconds, c.max_rss_mb)
                        for c in costs
                    ],
                    total=(
                        "all rules",
                        sum(c.jobs for c in costs),
                        sum(c.seconds for c in costs),
                        None,
                        None,
                        None,
                    ),
                    table_id="benchmarks",
                ),
            ),
            (
                "Per job",
                "",
                tables.html_table(
                    ["rule", "job", "wall s", "CPU s", "peak RSS MB"],
                    [(j.rule, j.job, j.seconds, j.cpu_seconds, j.max_rss_mb) for j in jobs],
                ),
            ),
        ],
    )


def _item_status(folder: Path) -> str:
    prov = folder / PROVENANCE
    return str(read_json(prov).get("status", "?")) if prov.is_file() else "not run"


def _thumbnail_rows(
    items: Sequence[Mapping[str, Any]], deid_root: Path, limit: int
) -> tuple[list[tuple[str, Any, Any]], int]:
    rows: list[tuple[str, Any, Any]] = []
    total = 0
    for item in items:
        folder = item_dir(deid_root, item)
        pairs = images.thumbnail_pairs(folder / THUMBNAILS)
        if not pairs:
            continue
        status = _item_status(folder)
        for pair in pairs:
            total += 1
            if len(rows) >= limit:
                continue
            refused = status != "processed" or pair.after is None
            name = pair.name if len(pair.name) <= 28 else pair.name[:12] + "..." + pair.name[-12:]
            label = f"{item['id']} ({'refused' if refused else 'blanked'})\n{pair.how}: {name}"
            before = images.read_png(pair.before)
            after = None if refused or pair.after is None else images.read_png(pair.after)
            rows.append((label, before, after))
    return rows, total


def _ome_rows(
    items: Sequence[Mapping[str, Any]], deid_root: Path, limit: int
) -> tuple[list[tuple[str, images.OmeImage]], int]:
    rows: list[tuple[str, images.OmeImage]] = []
    total = 0
    for item in items:
        folder = item_dir(deid_root, item)
        if not folder.is_dir():
            continue
        for store in sorted(p for p in folder.iterdir() if p.name.endswith(".ome.zarr")):
            try:
                found, n = images.ome_zarr_images(store, max(limit - len(rows), 0))
            except (OSError, ValueError, KeyError) as exc:
                raise InputError(store, f"cannot read the OME-Zarr store: {exc}") from exc
            total += n
            rows += [(str(item["id"]), img) for img in found]
    return rows, total


def _nifti_rows(
    items: Sequence[Mapping[str, Any]], deid_root: Path, limit: int
) -> tuple[list[tuple[str, images.NiftiPicture]], int]:
    rows: list[tuple[str, images.NiftiPicture]] = []
    total = 0
    for item in items:
        folder = item_dir(deid_root, item) / "nifti"
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if not f.name.endswith((".nii", ".nii.gz")):
                continue
            total += 1
            if len(rows) < limit:
                try:
                    rows.append((str(item["id"]), images.nifti_mid_slices(f)))
                except (OSError, ValueError) as exc:
                    raise InputError(f, f"cannot read the NIfTI file: {exc}") from exc
    return rows, total


def build_report(
    summary_path: str | Path,
    manifest_path: str | Path,
    deid_root: str | Path,
    benchmarks: Sequence[str | Path],
    out_dir: str | Path,
    options: ReportOptions | None = None,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Write the report's tables and figures (:data:`REPORT_FILES`) into ``out_dir``.

    Parameters
    ----------
    summary_path, manifest_path
        ``results/summary.json`` and the scan's ``results/ingest/manifest.json``.
    deid_root
        The folder of the de-identification batch folders (``results/deid``).
    benchmarks
        Snakemake benchmark files, ``benchmarks/<rule>/<job>.tsv`` (rules in pipeline order).
    out_dir
        Where to write; existing report files are replaced only with ``force``.

    Returns
    -------
    dict
        What was written and counted: ``files`` (role -> path) and the number of datasets,
        quarantine entries, policies, thumbnails, OME-Zarr images, NIfTI files and benchmark jobs.
    """
    options = options or ReportOptions()
    out = Path(out_dir)
    paths = {role: out / name for role, name in REPORT_FILES.items()}
    if not force:
        for p in paths.values():
            if p.exists():
                raise OutputExistsError(p)
    summary = read_json(summary_path)
    manifest = read_json(manifest_path)
    root = Path(deid_root)
    pending = [i for i in manifest["items"] if i["status"] == "pending"]
    processed = set(summary["processed_items"])
    staged = [i for i in pending if i["id"] in processed]

    rows = tables.accounting_rows(summary, manifest)
    write_text(paths["accounting"], _accounting_page(summary, rows), force=True)
    figures.accounting_chart(rows, paths["accounting_chart"], force=True)
    write_text(paths["quarantine"], _quarantine_page(summary), force=True)

    uses = tables.policy_uses(manifest, root)
    write_text(paths["policies"], _policies_page(uses), force=True)
    figures.policy_actions_chart(uses, paths["policy_chart"], force=True)

    limit = options.max_images
    thumbs, n_thumbs = _thumbnail_rows(pending, root, limit)
    figures.thumbnails_gallery(thumbs, n_thumbs, paths["blanked"], force=True)
    omes, n_omes = _ome_rows(staged, root, limit)
    figures.ome_zarr_gallery(omes, n_omes, paths["ome_zarr"], force=True)
    niftis, n_niftis = _nifti_rows(staged, root, limit)
    figures.nifti_gallery(niftis, n_niftis, paths["nifti"], force=True)

    jobs = [tables.read_benchmark(b) for b in benchmarks]
    write_text(paths["benchmarks"], _benchmarks_page(jobs), force=True)
    figures.benchmark_chart(tables.rule_costs(jobs), paths["benchmarks_chart"], force=True)

    record = {
        "files": {role: str(p) for role, p in paths.items()},
        "datasets": len(rows),
        "quarantine_entries": summary["quarantined"] + summary["excluded"],
        "policies": len(uses),
        "thumbnails": n_thumbs,
        "ome_zarr_images": n_omes,
        "nifti_files": n_niftis,
        "benchmark_jobs": len(jobs),
    }
    log.info("report: %s", {k: v for k, v in record.items() if k != "files"})
    return record
