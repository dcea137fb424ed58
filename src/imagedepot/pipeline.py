"""Per-item steps of the workflow: each dispatches on the item's kind and records what it did.

A data problem (bad input, unsafe content, a leak) quarantines the item: the step still succeeds and
writes its output folder with a ``provenance.json`` whose ``status`` is ``quarantined`` and whose
``reason`` says why, so the rest of the batch goes on and the run summary can count it. Bugs and system
errors propagate and fail the job.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import ImagedepotError, InputError
from imagedepot.io import (
    atomic_path,
    file_record,
    iter_files,
    read_json,
    write_json,
    write_private_text,
)
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.progress import Progress
from imagedepot.provenance import Provenance
from imagedepot.storage import Storage, finish_output, input_folder, output_folder

log = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
#: Before/after pictures of images blanked or refused for burned-in text: trusted zone only
#: (never staged, not scanned by the leak gate), for the run report.
THUMBNAILS = "pixeltext-thumbnails"


def load_item(item: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """One item of the manifest: an item JSON written by the scan, or the item itself."""
    data: dict[str, Any] = dict(item) if isinstance(item, Mapping) else read_json(item)
    if "id" not in data or "kind" not in data or "files" not in data:
        where = item if not isinstance(item, Mapping) else f"item {data.get('id', '?')}"
        raise InputError(where, "not an item of the manifest (needs id, kind, files)")
    return data


def item_files(item: dict[str, Any], role: str | None = None) -> list[Path]:
    """Files to open for the item (those without a role, i.e. the primary files, unless ``role``).

    The manifest names files by logical path; on a storage run they are Snakemake's local copies
    (:meth:`imagedepot.storage.Storage.local`).
    """
    storage = Storage.from_env()
    return [storage.local(f["path"]) for f in item["files"] if f.get("role") == role]


def all_item_files(item: dict[str, Any]) -> list[Path]:
    """Every file of the item (primary files and sidecars), ready to open."""
    storage = Storage.from_env()
    return [storage.local(f["path"]) for f in item["files"]]


def input_records(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Provenance records of the item's originals: logical path (as in the manifest), size, SHA-256."""
    return [
        file_record(local) | {"path": f["path"]}
        for f, local in zip(item["files"], all_item_files(item), strict=True)
    ]


def read_status(folder: str | Path) -> dict[str, Any]:
    """The provenance record of a per-item output folder."""
    return dict(read_json(Path(folder) / PROVENANCE))


def _run_step(
    step: str,
    item: dict[str, Any],
    out: Path,
    work: Callable[[Path, Provenance], None],
    *,
    upstream: Path | None = None,
    force: bool = False,
) -> Provenance:
    """Run ``work(tmp_dir, prov)`` into a temporary folder renamed onto ``out`` when complete."""
    prov = Provenance(step=step, item=item["id"])
    with atomic_path(out, force=force, is_dir=True) as tmp:
        if upstream is not None:
            up = read_status(upstream)
            if up["status"] != "processed":
                prov.quarantine(f"quarantined upstream at {up['step']}: {up['reason']}")
                prov.write(tmp / PROVENANCE)
                return prov
        try:
            work(tmp, prov)
        except InputError as exc:
            log.warning("%s: item %s quarantined: %s", step, item["id"], exc)
            for child in list(tmp.iterdir()):
                if child.name == THUMBNAILS:
                    continue  # what was refused, shown for the run report (trusted zone)
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            prov.outputs.clear()
            prov.quarantine(str(exc))
        else:
            prov.add_outputs((p for p in iter_files(tmp) if p.name != PROVENANCE), root=tmp)
        prov.write(tmp / PROVENANCE)
    return prov


#: SOP classes that hold no image volume (or a 2-D capture without patient geometry): NIfTI
#: conversion is skipped for them, by design, not as a failure.
NON_VOLUME_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture (and its multi-frame forms)
    "1.2.840.10008.5.1.4.1.1.88.",  # Structured Reports, Key Object Selection
    "1.2.840.10008.5.1.4.1.1.11.",  # Presentation States
    "1.2.840.10008.5.1.4.1.1.104.",  # Encapsulated documents (PDF, CDA...)
    "1.2.840.10008.5.1.4.1.1.66",  # Raw data, spatial registration, fiducials, segmentation
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects (plans, structures, records)
)
NON_VOLUME_MODALITIES = {"SR", "PR", "KO", "DOC", "REG", "FID", "RTSTRUCT", "RTPLAN", "RTRECORD"}


def nifti_skip_reason(dicom: dict[str, Any]) -> str | None:
    """Why a DICOM series is not converted to NIfTI (None when it should be)."""
    sop = str(dicom.get("sop_class_uid") or "")
    modality = str(dicom.get("modality") or "")
    if modality in NON_VOLUME_MODALITIES:
        return f"modality {modality} holds no image volume"
    if sop.startswith(NON_VOLUME_SOP_PREFIXES):
        return f"SOP class {sop} holds no image volume with patient geometry"
    return None


@dataclass
class ConvertOptions:
    """Options of the conversion step (from the ``convert`` section of the config)."""

    nifti_compress: bool = True
    #: Missing or unevenly spaced slices: "quarantine" the series, or keep dcm2niix's "resample".
    nifti_irregular_slices: str = "quarantine"
    ngff_version: str = "0.4"
    pyramid_levels: int = 3
    reader: str = "auto"
    java_heap: str = "2g"
    ome_tiff: bool = False
    #: OME-Zarr chunk / shard shape ((y, x) or (t, c, z, y, x)); None: the converter's default.
    chunks: tuple[int, ...] | None = None
    shard: tuple[int, ...] | None = None
    tiff_tile: int | None = None
    tiff_compression: str | None = None
    #: Threads per image (read-ahead, compression); None: the CPUs this process may use.
    threads: int | None = None


def convert_item(
    item_json: str | Path | Mapping[str, Any],
    out: str | Path,
    options: ConvertOptions,
    *,
    force: bool = False,
) -> Provenance:
    """Convert one item to open formats inside the trusted zone (originals untouched).

    DICOM series → NIfTI + BIDS sidecar (dcm2niix); microscopy → OME-Zarr (and OME-TIFF when asked);
    NIfTI → checked copy with its sidecar.
    """
    item = load_item(item_json)
    kind = item["kind"]

    def work(tmp: Path, prov: Provenance) -> None:
        prov.inputs.extend(input_records(item))
        prov.options = {"kind": kind} | options.__dict__
        if kind == "dicom":
            from imagedepot.convert.nifti import NoImageError, convert_dicom_series

            skip = nifti_skip_reason(item.get("dicom") or {})
            if skip:
                # Not a volume: no NIfTI; the DICOM itself still goes through de-identification.
                prov.options["nifti"] = f"not converted: {skip}"
                return
            try:
                report = convert_dicom_series(
                    item_files(item),
                    tmp / "nifti",
                    compress=options.nifti_compress,
                    name=item["id"],
                    irregular_slices=options.nifti_irregular_slices,
                )
            except NoImageError as exc:
                # No image volume after all (e.g. ECG waveforms): the DICOM still goes on.
                prov.options["nifti"] = f"not converted: {exc.reason}"
                return
            prov.options["converter"] = report.to_dict()
        elif kind == "microscopy":
            from imagedepot.convert.microscopy import convert_to_ome_tiff, convert_to_ome_zarr

            src = item_files(item)[0]
            zreport = convert_to_ome_zarr(
                src,
                tmp / f"{item['id']}.ome.zarr",
                ngff_version=options.ngff_version,
                pyramid_levels=options.pyramid_levels,
                reader=options.reader,
                java_heap=options.java_heap,
                chunks=options.chunks,
                shard=options.shard,
                threads=options.threads,
            )
            prov.options["converter"] = zreport.to_dict()
            if options.ome_tiff:
                treport = convert_to_ome_tiff(
                    src,
                    tmp / f"{item['id']}.ome.tif",
                    pyramid_levels=options.pyramid_levels,
                    reader=options.reader,
                    tile=options.tiff_tile or 512,
                    compression=options.tiff_compression or "zlib",
                    java_heap=options.java_heap,
                    threads=options.threads,
                )
                prov.options["converter_tiff"] = treport.to_dict()
        elif kind == "nifti":
            import nibabel as nib

            src = item_files(item)[0]
            suffix = ".nii.gz" if src.name.lower().endswith(".gz") else ".nii"
            try:
                img = nib.load(str(src))
                img.get_fdata(dtype="float32")  # type: ignore[attr-defined]  # decodes every voxel
            except Exception as exc:  # nibabel raises many types on damaged files
                raise InputError(src, f"unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
            (tmp / "nifti").mkdir()
            shutil.copyfile(src, tmp / "nifti" / f"{item['id']}{suffix}")
            for side in item_files(item, role="sidecar"):
                shutil.copyfile(side, tmp / "nifti" / f"{item['id']}.json")
        else:
            raise InputError(f"item {item['id']}", f"unknown item kind {kind!r}")

    return _run_step("convert", item, Path(out), work, force=force)


@dataclass
class DeidSettings:
    """What the de-identification step needs besides the item: policy and secrets location."""

    policy_path: Path | None = None
    #: Policy files by name: a batch mixes datasets, each item uses its own policy.
    policies: dict[str, Path] = field(default_factory=dict)
    key_env: str | None = "IMAGEDEPOT_PSEUDONYM_KEY"
    key_file: Path | None = None
    linkage_dir: Path | None = None
    #: ``pseudonymisation.key_permissions``: a key file readable by others is warned about or refused.
    key_permissions: str = "warn"


def deidentify_item(
    item_json: str | Path | Mapping[str, Any],
    converted: str | Path,
    out: str | Path,
    settings: DeidSettings,
    *,
    force: bool = False,
) -> Provenance:
    """De-identify one item: the original DICOM (for controlled repositories), the converted NIfTI and
    sidecars, and the OME metadata of microscopy outputs (their slide label, macro and thumbnail
    series removed as ``pixel_text.auxiliary_images`` says), under the item's policy."""
    from imagedepot.deid.pseudonym import load_key
    from imagedepot.policy import load_policy

    item = load_item(item_json)
    policy_path = settings.policies.get(item.get("policy") or "", settings.policy_path)
    if policy_path is None:
        raise ImagedepotError(
            f"item {item['id']}: no policy file for policy {item.get('policy')!r}"
        )
    policy = load_policy(policy_path)
    pseudo = policy.make_pseudonymizer(
        load_key(settings.key_env, settings.key_file, key_permissions=settings.key_permissions)
    )
    subject = item["subject"] or item["id"]
    pseudonym = pseudo.subject_id(subject)
    opts = policy.deid_options
    conv = Path(converted)

    def work(tmp: Path, prov: Provenance) -> None:
        prov.policy = policy.to_provenance()
        prov.options = {"subject_pseudonym": pseudonym, "deid_options": sorted(opts)}
        reports: dict[str, Any] = {}
        kind = item["kind"]
        if kind == "dicom":
            from imagedepot.deid.dicom import deidentify_dicom

            r = deidentify_dicom(
                item_files(item),
                tmp / "dicom",
                pseudonymizer=pseudo,
                subject=subject,
                action_log=tmp / "actions.jsonl",
                thumbnails=tmp / THUMBNAILS,
                identifiers=[(str(v), "id") for v in (item.get("dataset"),) if v],
                **policy.dicom_options(),
            )
            reports["dicom"] = r.to_dict()
        if kind in ("dicom", "nifti"):
            from imagedepot.deid.nifti import deidentify_nifti

            src = conv / "nifti"
            if src.is_dir() and any(src.iterdir()):
                r2 = deidentify_nifti(
                    src, tmp / "nifti", policy_options=opts, pseudonymizer=pseudo, subject=subject
                )
                reports["nifti"] = r2.to_dict()
        if kind == "microscopy":
            from imagedepot.deid.ome import deidentify_ome

            for src in sorted(conv.iterdir()):
                if src.name.endswith((".ome.zarr", ".ome.tif")):
                    r3 = deidentify_ome(
                        src,
                        tmp / src.name,
                        policy_options=opts,
                        pseudonymizer=pseudo,
                        subject=subject,
                        pixel_text=policy.pixel_text,
                    )
                    reports[src.name] = r3.to_dict()
        prov.options["reports"] = reports

    prov = _run_step("deidentify", item, Path(out), work, upstream=conv, force=force)
    if settings.linkage_dir is not None and prov.status == "processed":
        write_private_text(
            Path(settings.linkage_dir) / f"{item['id']}.tsv",
            "item\tdataset\tsubject\tpseudonym\n"
            f"{item['id']}\t{item.get('dataset') or ''}\t{subject}\t{pseudonym}\n",
        )
        Path(settings.linkage_dir).chmod(0o700)
    return prov


def leakcheck_item(
    item_json: str | Path | Mapping[str, Any],
    deidentified: str | Path,
    report: str | Path,
    *,
    force: bool = True,
) -> dict[str, Any]:
    """Run the leak gate on one item's de-identified outputs against its originals.

    Writes a JSON report with ``status``: ``clean``, ``leak`` (the item is quarantined) or
    ``quarantined`` (it was quarantined upstream). Identifier values are never written.
    """
    from imagedepot.leakcheck import allowed_kinds_for_options, leakcheck

    item = load_item(item_json)
    deid = Path(deidentified)
    up = read_status(deid)
    result: dict[str, Any] = {"item": item["id"], "dataset": item.get("dataset")}
    if up["status"] != "processed":
        result |= {
            "status": "quarantined",
            "reason": f"quarantined upstream at {up['step']}: {up['reason']}",
        }
    else:
        extra = [item["subject"]] if item.get("subject") else []
        originals = all_item_files(item)
        outputs = [p for p in deid.iterdir() if p.name not in (PROVENANCE, THUMBNAILS)]
        allow = allowed_kinds_for_options(frozenset(up.get("options", {}).get("deid_options", [])))
        text = PixelTextSettings.from_config((up.get("policy") or {}).get("pixel_text"))
        rep = leakcheck(
            originals, outputs, extra=extra, allow_kinds=allow, pixel_text=text
        ).to_dict()
        result |= {"report": rep, "status": "clean" if rep["status"] == "clean" else "leak"}
        if result["status"] == "leak":
            result["reason"] = f"leak gate: {len(rep['hits'])} identifier hit(s) in the outputs"
    write_json(report, result, force=force)
    return result


# --- Batches -----------------------------------------------------------------------------------
# The workflow runs one job per batch of items (``scan.batch_size``), not per item, so that a cohort
# of 10,000 small files is a few dozen jobs. Items keep their own folders inside the batch folder:
# ``<stage root>/batch-NNNN/<item>/`` (leak reports: ``<root>/batch-NNNN/<item>.json``).

BATCH_SUMMARY = "batch.json"


def batch_name(batch: int) -> str:
    """Folder name of a batch."""
    return f"batch-{int(batch):04d}"


def item_dir(root: str | Path, item: Mapping[str, Any]) -> Path:
    """Where an item's folder lives under a stage root (``results/convert``, ``results/deid``)."""
    return Path(root) / batch_name(item.get("batch", 0)) / item["id"]


def leak_report_path(root: str | Path, item: Mapping[str, Any]) -> Path:
    """Where an item's leak report lives under the leak-check root."""
    return Path(root) / batch_name(item.get("batch", 0)) / f"{item['id']}.json"


def manifest_items(manifest: str | Path | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every item of the scan: from the manifest (path or loaded) or a folder of item JSONs."""
    if isinstance(manifest, Mapping):
        return list(manifest["items"])
    if Path(manifest).is_dir():
        return [read_json(p) for p in sorted(Path(manifest).glob("*.json"))]
    return list(read_json(manifest)["items"])


def batch_items(manifest: str | Path | Mapping[str, Any], batch: int) -> list[dict[str, Any]]:
    """The items of one batch that are to be processed (status pending), sorted by item id.

    ``manifest`` is the scan's manifest (path or loaded), or a folder of item JSONs (``scan
    --items-dir``)."""
    chosen = [
        i
        for i in manifest_items(manifest)
        if i.get("status") == "pending" and int(i.get("batch", 0)) == int(batch)
    ]
    return sorted(chosen, key=lambda i: str(i["id"]))


def _convert_one(args: tuple[dict[str, Any], str, ConvertOptions]) -> tuple[str, str]:
    prov = convert_item(args[0], args[1], args[2], force=True)
    return prov.item or "", prov.status


def _deid_one(args: tuple[dict[str, Any], str, str, DeidSettings]) -> tuple[str, str]:
    prov = deidentify_item(args[0], args[1], args[2], args[3], force=True)
    return prov.item or "", prov.status


def _leak_one(args: tuple[dict[str, Any], str, str]) -> tuple[str, str]:
    res = leakcheck_item(args[0], args[1], args[2])
    return str(res["item"]), str(res["status"])


#: Modules the workers of a batch step use: imported once, before forking.
READERS = ("pydicom", "nibabel")


def run_parallel(
    fn: Callable[[Any], tuple[str, str]],
    tasks: list[Any],
    jobs: int,
    *,
    preload: Sequence[str] = READERS,
    progress: Progress | None = None,
) -> dict[str, str]:
    """Run ``fn`` over ``tasks`` on ``jobs`` worker processes (in this process when 1).

    ``preload``: modules imported in this process before forking, so that the workers inherit
    them instead of each importing them again. ``progress`` advances by one per task finished
    (in task order).
    """
    progress = progress if progress is not None else Progress()
    progress.start(len(tasks))
    done: dict[str, str] = {}
    if jobs <= 1 or len(tasks) <= 1:
        for t in tasks:
            key, value = fn(t)
            done[key] = value
            progress.advance()
        return done
    import importlib
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    for name in preload:
        importlib.import_module(name)

    # fork: workers start in milliseconds. Safe because this parent process never starts a JVM
    # (Bio-Formats readers start theirs inside the workers) nor threads before the pool.
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as pool:
        for key, value in pool.map(fn, tasks):
            done[key] = value
            progress.advance()
    return done


def run_batch(
    step: str,
    manifest: str | Path | Mapping[str, Any],
    batch: int,
    out: str | Path,
    *,
    upstream: str | Path | None = None,
    convert_options: ConvertOptions | None = None,
    deid_settings: DeidSettings | None = None,
    jobs: int = 1,
    force: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run one per-item step (``convert``, ``deidentify`` or ``leakcheck``) over a batch.

    ``out`` is the batch folder (``<root>/batch-NNNN``) or its tree marker
    (``<root>/batch-NNNN.tree.json``: the folder beside it is written, then published to the marker
    and, on a storage run, uploaded). The folder is written atomically. ``upstream`` is the previous
    step's batch folder or marker. Returns the batch summary (item id → status), also written to
    ``batch.json`` in the folder. ``progress`` advances by one per item done.
    """
    items = batch_items(manifest, batch)
    up = input_folder(upstream) if upstream is not None else None
    with atomic_path(output_folder(out), force=force, is_dir=True) as tmp:
        if step == "convert":
            opts = convert_options or ConvertOptions()
            if jobs > 1 and opts.threads is None:
                # Workers share the CPUs: each image gets its share, not all of them.
                from dataclasses import replace

                from imagedepot.convert.microscopy import available_cpus

                opts = replace(opts, threads=max(1, available_cpus() // jobs))
            statuses = run_parallel(
                _convert_one,
                [(i, str(tmp / i["id"]), opts) for i in items],
                jobs,
                progress=progress,
            )
        elif step == "deidentify":
            if deid_settings is None or up is None:
                raise ImagedepotError("deidentify batch needs the policy settings and upstream")
            tasks = [(i, str(up / i["id"]), str(tmp / i["id"]), deid_settings) for i in items]
            statuses = run_parallel(_deid_one, tasks, jobs, progress=progress)
        elif step == "leakcheck":
            if up is None:
                raise ImagedepotError("leakcheck batch needs the de-identified batch folder")
            leak_tasks = [(i, str(up / i["id"]), str(tmp / f"{i['id']}.json")) for i in items]
            statuses = run_parallel(_leak_one, leak_tasks, jobs, progress=progress)
        else:
            raise ImagedepotError(f"unknown batch step {step!r}")
        summary = {"step": step, "batch": int(batch), "items": statuses}
        write_json(tmp / BATCH_SUMMARY, summary)
    finish_output(out, known=_recorded_outputs(output_folder(out), items))
    return summary


def _recorded_outputs(folder: Path, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The output records the items' provenance holds (hashed by this job), by path in ``folder``."""
    known: dict[str, dict[str, Any]] = {}
    for item in items:
        prov_file = folder / item["id"] / PROVENANCE
        if prov_file.is_file():
            for r in read_json(prov_file).get("outputs", []):
                known[f"{item['id']}/{r['path']}"] = r
    return known
