"""Benchmark: DICOM de-identification speed and memory, imagedepot against deid, dicognito and
the floor (pydicom reading and writing the same files unchanged), in one run, on one synthetic
corpus.

Usage::

    python benchmarks/deid/bench_deid.py                 # 1,024 files, 3 repeats, writes results
    python benchmarks/deid/bench_deid.py --files 256 --repeats 1 --no-write   # a quick look

The corpus (made by this script, deterministic, fake PHI only): CT-like 512 x 512 16-bit and
MR-like 256 x 256 16-bit instances, several subjects, each with patient, study, equipment and
request attributes, nested sequences (references to the previous instance, request attributes,
procedure codes, other patient IDs), a Siemens-CSA-like private blob with the name inside, a GE-like
private group and a private sequence.

Each method runs in a fresh Python process (so peak memory is its own) on a warm page cache,
``--repeats`` times in rotation; the best time of each is kept (the machine may be shared, the
best run is the least disturbed). Files/s counts input files. Peak RSS is the largest resident set
of a worker process (of the process itself for one-process methods), read from ``getrusage``.

Methods
-------
``floor-1`` / ``floor-2``
    ``pydicom.dcmread`` + ``Dataset.save_as`` of every file, unchanged, on one / two processes.
``imagedepot-1`` / ``imagedepot-2``
    :func:`imagedepot.deid.dicom.deidentify_dicom`, Basic Profile, one call per subject, with
    the per-file action log, ``workers=1`` / ``workers=2``.
``deid-1`` / ``deid-2``
    ``deid.dicom.replace_identifiers`` with :data:`DEID_RECIPE` (the attributes of the corpus that
    the Basic Profile removes, empties or replaces, UIDs remapped by deid's ``pydicom_uuid``,
    private tags removed), one / two processes.
``dicognito-1`` / ``dicognito-2``
    ``dicognito.anonymizer.Anonymizer().anonymize`` + ``save_as``, one / two processes.

Memory flatness: ``imagedepot-2`` also runs on 1/4, 1/2 and all of the CT files of one subject;
the worker peak RSS should not grow with the number of files.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: An equivalent deid recipe: what the Basic Profile does to the attributes of the corpus.
DEID_RECIPE = """\
FORMAT dicom

%header
REPLACE PatientName ANONYMIZED
REPLACE PatientID SUBJECT
BLANK PatientBirthDate
BLANK PatientSex
REMOVE PatientAge
REMOVE PatientSize
REMOVE PatientWeight
REMOVE PatientAddress
REMOVE PatientTelephoneNumbers
REMOVE OtherPatientIDs
REMOVE OtherPatientIDsSequence
REMOVE IssuerOfPatientID
BLANK AccessionNumber
BLANK StudyID
BLANK ReferringPhysicianName
REMOVE PerformingPhysicianName
REMOVE OperatorsName
REMOVE InstitutionName
REMOVE InstitutionAddress
REMOVE InstitutionalDepartmentName
REMOVE StationName
REMOVE DeviceSerialNumber
REMOVE StudyDescription
REMOVE SeriesDescription
REMOVE ProtocolName
REMOVE RequestAttributesSequence
REMOVE endswith:Date
REMOVE endswith:Time
REMOVE AcquisitionDateTime
REPLACE StudyInstanceUID deid_func:pydicom_uuid
REPLACE SeriesInstanceUID deid_func:pydicom_uuid
REPLACE SOPInstanceUID deid_func:pydicom_uuid
REPLACE FrameOfReferenceUID deid_func:pydicom_uuid
REPLACE ReferencedSOPInstanceUID deid_func:pydicom_uuid
ADD PatientIdentityRemoved YES
"""

UID_ROOT = "1.2.826.0.1.3680043.8.498.9"

NOTES = (
    "imagedepot writes one JSON line of actions per file (as the workflow does); the others "
    "write no log.",
    "imagedepot copies the pixel data element byte for byte when no pixel cleaning applies; the "
    "floor decodes nothing either (pydicom reads and writes the bytes).",
    "deid gets an equivalent recipe (DEID_RECIPE in the script), its own UID function and "
    "remove_private; deid and dicognito do not apply the full PS3.15 table (about 600 "
    "attributes), imagedepot does.",
    "deid has no parallel API: deid-2 is this script running deid in a pool of two processes "
    "(chunks of 16 files), as imagedepot does internally; the same for dicognito and the floor.",
    "The machine is shared with other jobs (see the load average): runs of one method vary by up "
    "to 2x; the best of the repeats is reported, every run is in results.json. CPU time per "
    "file (user + system, workers included) varies less than wall time.",
)


# ============================================================================================
# Corpus


def _subjects(n_files: int) -> list[tuple[str, str, int, int]]:
    """(folder, modality, rows, count): 5/8 of the files CT 512x512, 3/8 MR 256x256."""
    ct = n_files * 5 // 8
    mr = n_files - ct
    return [
        ("S01", "CT", 512, ct // 2),
        ("S02", "CT", 512, ct - ct // 2),
        ("S03", "MR", 256, mr // 2),
        ("S04", "MR", 256, mr - mr // 2),
    ]


def make_corpus(root: Path, n_files: int) -> dict[str, list[Path]]:
    """Write the corpus under ``root``; returns the files of each subject folder."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as Seq
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

    rng = np.random.default_rng(20240601)
    out: dict[str, list[Path]] = {}
    for s, (folder, modality, rows, count) in enumerate(_subjects(n_files), start=1):
        sop_class = CTImageStorage if modality == "CT" else MRImageStorage
        study = f"{UID_ROOT}.1.{s}"
        series = f"{UID_ROOT}.2.{s}"
        files = []
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            sop = f"{UID_ROOT}.3.{s}.{i}"
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = sop
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = f"{UID_ROOT}.0"
            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240115"
            ds.StudyTime = ds.SeriesTime = "093000"
            ds.AcquisitionTime = ds.ContentTime = f"0930{i % 60:02d}"
            ds.AccessionNumber = f"ACC{s:02d}{i:05d}"
            ds.Modality = modality
            ds.Manufacturer = "SIEMENS"
            ds.InstitutionName = "St Example Hospital"
            ds.InstitutionAddress = "1 Example Road, Exampletown"
            ds.ReferringPhysicianName = "House^Gregory"
            ds.StationName = f"{modality}SCAN{s}"
            ds.StudyDescription = f"{modality} HEAD for Doe^Jane{s}"
            ds.SeriesDescription = "AXIAL 5mm"
            ds.InstitutionalDepartmentName = "Radiology"
            ds.PerformingPhysicianName = "Barton^Clara"
            ds.OperatorsName = "Techner^Toby"
            ds.ManufacturerModelName = "Example 9000"
            ds.PatientName = f"Doe^Jane{s}"
            ds.PatientID = f"MRN{s:07d}"
            ds.IssuerOfPatientID = "EXAMPLE"
            ds.PatientBirthDate = "19601224"
            ds.PatientSex = "F"
            ds.PatientAge = "063Y"
            ds.PatientSize = "1.68"
            ds.PatientWeight = "63.5"
            ds.PatientAddress = f"{s} Elm Street^^Springfield"
            ds.PatientTelephoneNumbers = f"+44 20 7946 0{s:03d}"
            ds.OtherPatientIDs = f"NHS-{s:03d}-000-0000"
            other = Dataset()
            other.PatientID = ds.OtherPatientIDs
            other.TypeOfPatientID = "TEXT"
            ds.OtherPatientIDsSequence = Seq([other])
            ds.DeviceSerialNumber = f"SN-{s:05d}"
            ds.SoftwareVersions = "VA50"
            ds.ProtocolName = f"{modality}_routine"
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.FrameOfReferenceUID = f"{UID_ROOT}.4.{s}"
            ds.StudyID = f"ST{s}"
            ds.SeriesNumber = 2
            ds.InstanceNumber = i
            ds.AcquisitionDateTime = "20240115093012.000000"
            ds.ImagePositionPatient = [-125.0, -125.0, float(i) * 2.5]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing = [0.488, 0.488] if rows == 512 else [0.9375, 0.9375]
            ds.SliceThickness = 2.5
            if i > 1:
                ref = Dataset()
                ref.ReferencedSOPClassUID = sop_class
                ref.ReferencedSOPInstanceUID = f"{UID_ROOT}.3.{s}.{i - 1}"
                ds.ReferencedImageSequence = Seq([ref])
            request = Dataset()
            request.AccessionNumber = ds.AccessionNumber
            request.RequestedProcedureID = f"RP{s}{i}"
            request.ScheduledProcedureStepID = f"SPS{s}{i}"
            request.ReasonForTheRequestedProcedure = f"Follow-up of Jane Doe{s}, born 1960-12-24"
            ds.RequestAttributesSequence = Seq([request])
            code = Dataset()
            code.CodeValue = "ZZ123"
            code.CodingSchemeDesignator = "99LOCAL"
            code.CodeMeaning = f"{modality} head"
            ds.ProcedureCodeSequence = Seq([code])
            # private data: a CSA-like blob with the name inside, a GE-like group, a sequence
            csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            blob = (b"SV10\x04\x03\x02\x01" + f"PatientName=Doe^Jane{s};".encode()) * 400
            csa.add_new(0x10, "OB", blob[: 10 * 1024])
            csa.add_new(0x08, "CS", "IMAGE NUM 4")
            ge = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
            ge.add_new(0x01, "LO", f"Doe^Jane{s}")
            ge.add_new(0x02, "SH", f"{modality}SCAN{s}")
            item = Dataset()
            item.add_new(0x00110010, "LO", "ACME NESTED")
            item.add_new(0x00111001, "LO", "Doe^Jane")
            vendor = ds.private_block(0x0011, "ACME SEQ", create=True)
            vendor.add_new(0x01, "SQ", Seq([item]))
            ds.Rows = ds.Columns = rows
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.RescaleIntercept = -1024 if modality == "CT" else 0
            ds.RescaleSlope = 1
            ds.PixelData = rng.integers(0, 4096, (rows, rows), dtype=np.uint16).tobytes()
            path = root / folder / f"{folder}_IM{i:05d}"  # unique names: outputs share a folder
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
        out[folder] = files
    return out


# ============================================================================================
# Methods (each runs in its own process: ``--one METHOD``)


def _maxrss_kib(who: int) -> int:
    return int(resource.getrusage(who).ru_maxrss)  # KiB on Linux


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _floor_chunk(args: tuple[list[str], str]) -> tuple[int, int]:
    import pydicom

    files, out = args
    for f in files:
        ds = pydicom.dcmread(f)
        ds.save_as(os.path.join(out, os.path.basename(f)))
    return len(files), _maxrss_kib(resource.RUSAGE_SELF)


def _deid_chunk(args: tuple[list[str], str]) -> tuple[int, int]:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers
    from deid.logger import bot

    bot.level = 0  # quiet
    files, out = args
    recipe_path = os.path.join(out, "..", "bench.deid")
    recipe = DeidRecipe(recipe_path, base=False)
    # In batches: deid holds every de-identified dataset of a call in memory until it returns.
    for i in range(0, len(files), 32):
        replace_identifiers(
            files[i : i + 32],
            deid=recipe,
            save=True,
            overwrite=True,
            output_folder=out,
            remove_private=True,
        )
    return len(files), _maxrss_kib(resource.RUSAGE_SELF)


def _dicognito_chunk(args: tuple[list[str], str]) -> tuple[int, int]:
    import pydicom
    from dicognito.anonymizer import Anonymizer

    files, out = args
    anonymizer = Anonymizer(seed="benchmark")
    for f in files:
        ds = pydicom.dcmread(f)
        anonymizer.anonymize(ds)
        ds.save_as(os.path.join(out, os.path.basename(f)))
    return len(files), _maxrss_kib(resource.RUSAGE_SELF)


def _split(files: Sequence[str], parts: int) -> list[list[str]]:
    """Chunks of 16 files dealt to ``parts`` workers (balanced, like imagedepot's pool)."""
    chunks = [list(files[i : i + 16]) for i in range(0, len(files), 16)]
    return chunks if parts > 1 else [list(files)]


def run_one(method: str, corpus: dict[str, list[str]], out: Path) -> dict[str, Any]:
    """Run ``method`` on the corpus into ``out``; time and peak memory."""
    name, _, cores = method.rpartition("-")
    workers = int(cores)
    files = [f for fs in corpus.values() for f in fs]
    import importlib

    for module in (
        {"imagedepot": ["imagedepot.deid.dicom"], "deid": ["deid.dicom"]}.get(name, [])
        + ["pydicom"]
        + (["dicognito.anonymizer"] if name == "dicognito" else [])
    ):
        importlib.import_module(module)  # imports are not part of the measure
    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    worker_rss = 0
    if name == "imagedepot":
        from imagedepot.deid.dicom import deidentify_dicom
        from imagedepot.deid.pseudonym import Pseudonymizer

        pz = Pseudonymizer(key=b"benchmark-key-0123456789", prefix="SUBJ")
        for folder, fs in corpus.items():
            deidentify_dicom(
                fs,
                out / folder,
                policy_options=frozenset(),
                pseudonymizer=pz,
                subject=folder,
                action_log=out / f"{folder}.actions.jsonl",
                workers=workers,
            )
    else:
        chunk_fn = {"floor": _floor_chunk, "deid": _deid_chunk, "dicognito": _dicognito_chunk}[name]
        out.mkdir(parents=True, exist_ok=True)
        if name == "deid":
            (out / "bench.deid").write_text(DEID_RECIPE)
            out = out / "files"
            out.mkdir()
        chunks = [(c, str(out)) for c in _split(files, workers)]
        if workers == 1:
            for c in chunks:
                _, worker_rss = chunk_fn(c)
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                worker_rss = max(rss for _, rss in pool.map(chunk_fn, chunks))
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    written = sum(1 for p in out.rglob("*") if p.is_file() and not p.name.endswith(".jsonl"))
    if workers == 1:
        worker_rss = max(worker_rss, _maxrss_kib(resource.RUSAGE_SELF))
    else:
        worker_rss = max(worker_rss, _maxrss_kib(resource.RUSAGE_CHILDREN))
    return {
        "method": method,
        "files": len(files),
        "written": written,
        "seconds": seconds,
        "files_per_s": len(files) / seconds,
        "cpu_ms_per_file": 1000 * cpu / len(files),
        "peak_rss_per_worker_mib": round(worker_rss / 1024, 1),
    }


# ============================================================================================
# Orchestration


METHODS = (
    "floor-1",
    "floor-2",
    "imagedepot-1",
    "imagedepot-2",
    "deid-1",
    "deid-2",
    "dicognito-1",
    "dicognito-2",
)


def _available(method: str) -> bool:
    import importlib.util

    name = method.rpartition("-")[0]
    module = {"deid": "deid", "dicognito": "dicognito"}.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def _subprocess(method: str, corpus_json: Path, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", method]
    cmd += ["--corpus-json", str(corpus_json), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("imagedepot", "pydicom", "numpy", "deid", "dicognito"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    with contextlib.suppress(ValueError, OSError):
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _markdown(report: dict[str, Any]) -> str:
    best = {r["method"]: r for r in report["results"]}
    lines = [
        "# DICOM de-identification benchmark",
        "",
        f"Run {report['date']} with `python benchmarks/deid/bench_deid.py "
        f"{' '.join(report['argv'])}`".rstrip()
        + ".",
        "",
        f"Corpus: {report['corpus']['files']} synthetic files "
        f"({report['corpus']['ct']} CT-like 512 x 512, {report['corpus']['mr']} MR-like 256 x 256, "
        f"16-bit, {report['corpus']['mib']} MiB), 4 subjects, with private blobs and nested "
        "sequences. Best of "
        f"{report['repeats']} runs per method on a warm page cache, each method in a fresh process.",
        "",
        "| method | processes | files/s | seconds | CPU ms per file | peak RSS per worker (MiB) "
        "| time vs floor | CPU vs floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report["methods"]:
        r = best.get(m)
        if r is None:
            continue
        name, _, cores = m.rpartition("-")
        floor = best.get(f"floor-{cores}")
        ratio = f"{floor['files_per_s'] / r['files_per_s']:.2f}x" if floor else ""
        cpu = f"{r['cpu_ms_per_file'] / floor['cpu_ms_per_file']:.2f}x" if floor else ""
        lines.append(
            f"| {name} | {cores} | {r['files_per_s']:.0f} | {r['seconds']:.2f} | "
            f"{r['cpu_ms_per_file']:.2f} | {r['peak_rss_per_worker_mib']:.0f} | {ratio} | {cpu} |"
        )
    t = report["targets"]
    lines += ["", "## Targets", ""]
    for key, text in (
        ("vs_deid", "imagedepot (2 processes) at least 5x deid's files/s"),
        ("vs_floor", "imagedepot (2 processes) within 1.5x of the floor (2 processes)"),
        ("memory_flat", "imagedepot worker memory flat in the number of files"),
    ):
        if key in t:
            lines.append(
                f"* {text}: **{'met' if t[key]['met'] else 'missed'}** — {t[key]['detail']}"
            )
    lines += ["", "## Memory per worker against the number of files (imagedepot, 2 processes)", ""]
    lines += ["| files | peak RSS per worker (MiB) |", "|---:|---:|"]
    for row in report.get("flatness", []):
        lines.append(f"| {row['files']} | {row['peak_rss_per_worker_mib']:.0f} |")
    lines += ["", "## Machine and versions", ""]
    for k, v in report["machine"].items():
        lines.append(f"* {k}: {v}")
    lines.append("* " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    lines += ["", "## Notes", ""] + [f"* {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=1024, help="corpus size (default 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method (best kept)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument(
        "--workdir", type=Path, help="where corpus and outputs go (default: a temp dir)"
    )
    ap.add_argument("--no-write", action="store_true", help="print, do not write results.md/json")
    ap.add_argument("--render", type=Path, help="only rewrite results.md from this results.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--corpus-json", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.render:  # rewrite results.md from a saved results.json (notes as in this script)
        saved = json.loads(args.render.read_text())
        saved["notes"] = list(NOTES)
        (HERE / "results.md").write_text(_markdown(saved))
        return 0
    if args.one:  # a single measured run, in its own process
        corpus = json.loads(args.corpus_json.read_text())
        print(json.dumps(run_one(args.one, corpus, args.out)))
        return 0

    work = Path(args.workdir or tempfile.mkdtemp(prefix="imagedepot-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"making a corpus of {args.files} files in {work} ...", flush=True)
        corpus = make_corpus(work / "corpus", args.files)
        corpus_json = work / "corpus.json"
        corpus_json.write_text(json.dumps({k: [str(p) for p in v] for k, v in corpus.items()}))
        size = sum(p.stat().st_size for fs in corpus.values() for p in fs)
        for fs in corpus.values():  # warm the page cache
            for p in fs:
                p.read_bytes()
        methods = [m for m in args.methods if _available(m)]
        skipped = [m for m in args.methods if m not in methods]
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
        started = dt.datetime.now(dt.UTC)
        machine = _machine()
        for rep in range(args.repeats):
            for m in methods:
                out = work / "out" / m
                shutil.rmtree(work / "out", ignore_errors=True)
                res = _subprocess(m, corpus_json, out)
                if res["written"] < res["files"]:
                    raise RuntimeError(f"{m} wrote {res['written']} of {res['files']} files")
                runs[m].append(res)
                print(
                    f"[{rep + 1}/{args.repeats}] {m:13s} {res['files_per_s']:8.1f} files/s "
                    f"{res['seconds']:7.2f} s  peak RSS/worker {res['peak_rss_per_worker_mib']:.0f} MiB",
                    flush=True,
                )
        shutil.rmtree(work / "out", ignore_errors=True)
        best = [min(runs[m], key=lambda r: r["seconds"]) for m in methods]

        # memory flatness: one subject's CT files, 1/4, 1/2 and all of them
        flat = []
        ct = corpus["S01"]
        for n in (len(ct) // 4, len(ct) // 2, len(ct)):
            sub = work / "flat.json"
            sub.write_text(json.dumps({"S01": [str(p) for p in ct[:n]]}))
            res = _subprocess("imagedepot-2", sub, work / "out" / "flat")
            shutil.rmtree(work / "out", ignore_errors=True)
            flat.append({"files": n, "peak_rss_per_worker_mib": res["peak_rss_per_worker_mib"]})

        by = {r["method"]: r for r in best}
        targets: dict[str, Any] = {}
        ours = by.get("imagedepot-2")
        if ours and "deid-1" in by:
            x1 = ours["files_per_s"] / by["deid-1"]["files_per_s"]
            x2 = ours["files_per_s"] / by["deid-2"]["files_per_s"] if "deid-2" in by else None
            targets["vs_deid"] = {
                "met": x1 >= 5 and (x2 is None or x2 >= 5),
                "detail": f"{x1:.1f}x deid on one process"
                + (f", {x2:.1f}x deid on two processes" if x2 else ""),
            }
        if ours and "floor-2" in by:
            slower = by["floor-2"]["files_per_s"] / ours["files_per_s"]
            cpu_ratio = ours["cpu_ms_per_file"] / by["floor-2"]["cpu_ms_per_file"]
            targets["vs_floor"] = {
                "met": slower <= 1.5,
                "detail": f"{slower:.2f}x the floor's time on two processes "
                f"({cpu_ratio:.2f}x its CPU time per file)"
                + (
                    f" ({by['floor-1']['files_per_s'] / by['imagedepot-1']['files_per_s']:.2f}x "
                    "on one process)"
                    if "floor-1" in by and "imagedepot-1" in by
                    else ""
                ),
            }
        if flat:
            lo, hi = flat[0]["peak_rss_per_worker_mib"], flat[-1]["peak_rss_per_worker_mib"]
            targets["memory_flat"] = {
                "met": hi <= lo * 1.1 + 5,
                "detail": f"{lo:.0f} MiB at {flat[0]['files']} files, {hi:.0f} MiB at "
                f"{flat[-1]['files']} files",
            }
        n_ct = sum(c for _, m, _, c in _subjects(args.files) if m == "CT")
        report = {
            "date": started.isoformat(timespec="seconds"),
            "argv": list(argv if argv is not None else sys.argv[1:]),
            "corpus": {
                "files": args.files,
                "ct": n_ct,
                "mr": args.files - n_ct,
                "mib": round(size / 2**20),
            },
            "repeats": args.repeats,
            "methods": methods,
            "skipped_methods": skipped,
            "results": best,
            "all_runs": runs,
            "flatness": flat,
            "targets": targets,
            "machine": machine,
            "versions": _versions(),
            "notes": list(NOTES),
        }
        print(_markdown(report))
        if not args.no_write:
            (HERE / "results.json").write_text(json.dumps(report, indent=2) + "\n")
            (HERE / "results.md").write_text(_markdown(report))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
