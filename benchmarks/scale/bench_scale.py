"""Scale benchmark: a synthetic cohort of many small DICOM series through the workflow.

Records, in one run on the same cohort:
  * DAG build time (``snakemake -n --forceall`` once the scan checkpoint has run: the full DAG),
  * number of Snakemake jobs, and of scheduler jobs under the SLURM profile's grouping,
  * total wall time of the workflow on the local executor (2 cores),
  * total wall time of the same work done by a plain Python loop calling the package directly
    (same batches, same worker count), the baseline of the overhead target (< 15 %).

Usage: python benchmarks/scale/bench_scale.py [--series 1000] [--files 10] [--batch-size 250] [--repeat 3]
Writes benchmarks/scale/results.json and results.md (other batch sizes: results-batch<N>.*).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MR = "1.2.840.10008.5.1.4.1.1.4"


def make_cohort(root: Path, series: int, files: int, per_dataset: int) -> int:
    """Write ``series`` MR series of ``files`` 32x32 slices; one dataset per ``per_dataset`` series."""
    inbox = root / "inbox"
    rows = ["dataset_id\tsubject\tmodality_class\tsource\tpolicy\tdestinations\n"]
    consent = ["subject\tconsent_imaging\n"]
    n_ds = math.ceil(series / per_dataset)
    for d in range(n_ds):
        subj = f"PAT{d:05d}"
        consent.append(f"{subj}\tyes\n")
        rows.append(f"ds{d:04d}\t{subj}\tdicom\tinbox/{subj}\tcohort\tlocal\n")
        study = f"1.2.826.0.1.3680043.10.1{d:05d}"
        for s in range(per_dataset):
            k = d * per_dataset + s
            if k >= series:
                break
            se = f"{study}.{s + 1}"
            for i in range(files):
                meta = FileMetaDataset()
                sop = f"{se}.{i + 1}"
                meta.MediaStorageSOPClassUID = MR
                meta.MediaStorageSOPInstanceUID = sop
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds = pydicom.Dataset()
                ds.file_meta = meta
                ds.SOPClassUID, ds.SOPInstanceUID = MR, sop
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study, se
                ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", s + 1, i + 1
                ds.PatientName, ds.PatientID = f"SYNTH^PATIENT{d}", subj
                ds.PatientBirthDate, ds.StudyDate, ds.SeriesDate = (
                    "19700101",
                    "20240301",
                    "20240301",
                )
                ds.StudyTime = "101010"
                ds.InstitutionName = "Synthetic Benchmark Hospital"
                ds.ImagePositionPatient = [0.0, 0.0, float(i)]
                ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
                ds.Rows = ds.Columns = 32
                ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                ds.BitsAllocated = ds.BitsStored = 16
                ds.HighBit, ds.PixelRepresentation = 15, 0
                ds.PixelData = (np.full(1024, k + i, np.uint16)).tobytes()
                out = inbox / subj / f"IM{s:03d}{i:03d}"
                out.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(out, enforce_file_format=True)
    (root / "samples.tsv").write_text("".join(rows))
    (root / "consent.tsv").write_text("".join(consent))
    (root / "policy.yaml").write_text(
        "policy_version: 1\nname: cohort\n"
        "data_use: {permission: 'DUO:0000042', modifiers: []}\n"
        "consent: {required: true, sheet: consent.tsv, subject_column: subject,\n"
        "          consent_column: consent_imaging, consent_values: ['yes']}\n"
        "destinations: {allowed_classes: [internal]}\n"
        "deidentification: {options: [retain_longitudinal_modified_dates]}\n"
    )
    (root / "key").write_text("benchmark-key-not-secret-0123456789")
    return n_ds


def write_config(work: Path, batch_size: int) -> Path:
    cfg = {
        "samples": "cohort/samples.tsv",
        "inbox": "cohort/inbox",
        "policies": {"cohort": "cohort/policy.yaml"},
        "pseudonymisation": {"key_file": "cohort/key", "linkage_dir": "secure/linkage"},
        "destinations": {"local": {"class": "internal", "type": "folder"}},
        "scan": {"batch_size": batch_size},
    }
    p = work / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def snakemake(work: Path, config: Path, *args: str) -> tuple[float, str]:
    exe = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake"
    cmd = [exe, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(config), *args]  # fmt: skip
    env = os.environ | {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return wall, proc.stdout + proc.stderr


_LOOP: dict = {}


def _loop_bundle(ds: str) -> tuple[str, str]:
    """One dataset's FHIR bundle in the plain loop (module level: forked workers run it)."""
    from imagedepot.fhir import bundle_dataset

    res = _LOOP["res"]
    st = bundle_dataset(ds, manifest=_LOOP["items"], deid_root=res / "deid",
                        leak_root=res / "leakcheck", out=res / "fhir" / ds / "bundle.json",
                        config=_LOOP["config"])  # fmt: skip
    return ds, st["status"]


#: Loop stage -> the workflow rules doing the same work (for the side-by-side table).
STAGES = {
    "scan": ["scan_inputs"],
    "convert": ["convert_batch"],
    "deidentify": ["deidentify_batch"],
    "leakcheck": ["check_leaks_batch"],
    "fhir": ["build_fhir_bundles"],
    "bids": ["build_bids_tree"],
    "stage + summary": ["stage_destination", "summarize_run"],
}


def plain_loop(work: Path, config_path: Path, jobs: int) -> tuple[float, dict[str, float]]:
    """The same work without Snakemake: the package's functions called in one Python process.
    Returns the total wall time and the time of each stage."""
    from imagedepot.config import load_config
    from imagedepot.convert.bids import load_rules, write_bids_tree
    from imagedepot.ingest import scan
    from imagedepot.pipeline import ConvertOptions, DeidSettings, run_batch, run_parallel
    from imagedepot.policy import load_policy
    from imagedepot.samplesheet import load_samples
    from imagedepot.stage import StageInputs, stage_destination, summarize_run

    stages = dict.fromkeys(STAGES, 0.0)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        t0 = time.perf_counter()
        config = load_config(config_path)
        datasets = load_samples(config["samples"], policies=config["policies"])
        policies = {n: load_policy(p) for n, p in config["policies"].items()}
        m = scan(config["inbox"], datasets=datasets, sheet=config["samples"], policies=policies,
                 batch_size=config["scan"]["batch_size"])  # fmt: skip
        res = Path("loop")
        m.write(res / "manifest.json")
        items = {"items": [i.to_dict() for i in m.items]}
        settings = DeidSettings(
            policies={n: Path(p) for n, p in config["policies"].items()},
            key_file=Path(config["pseudonymisation"]["key_file"]),
            linkage_dir=Path("secure/loop-linkage"),
        )
        t = time.perf_counter()
        stages["scan"] = t - t0
        for b in sorted({i.batch for i in m.items if i.status == "pending"}):
            name = f"batch-{b:04d}"
            run_batch("convert", items, b, res / "convert" / name,
                      convert_options=ConvertOptions(), jobs=jobs)  # fmt: skip
            t, stages["convert"] = time.perf_counter(), stages["convert"] + time.perf_counter() - t
            run_batch("deidentify", items, b, res / "deid" / name,
                      upstream=res / "convert" / name, deid_settings=settings, jobs=jobs)  # fmt: skip
            t, stages["deidentify"] = (
                time.perf_counter(),
                stages["deidentify"] + time.perf_counter() - t,
            )
            run_batch("leakcheck", items, b, res / "leakcheck" / name,
                      upstream=res / "deid" / name, jobs=jobs)  # fmt: skip
            t, stages["leakcheck"] = (
                time.perf_counter(),
                stages["leakcheck"] + time.perf_counter() - t,
            )
        # FHIR bundles on the same worker count as the workflow's FHIR job.
        for ds in datasets:
            (res / "fhir" / ds.dataset_id).mkdir(parents=True, exist_ok=True)
        _LOOP.update(items=items, res=res, config=config)
        run_parallel(_loop_bundle, [ds.dataset_id for ds in datasets], jobs)
        t, stages["fhir"] = time.perf_counter(), time.perf_counter() - t
        write_bids_tree(items, convert_root=res / "convert", deid_root=res / "deid",
                        leak_root=res / "leakcheck", out=res / "bids", rules=load_rules(None))  # fmt: skip
        t, stages["bids"] = time.perf_counter(), time.perf_counter() - t
        stage_destination("local", "internal",
                          StageInputs(res / "manifest.json", res / "deid", res / "leakcheck", res / "fhir"),
                          res / "stage" / "local", policies=policies)  # fmt: skip
        summarize_run(res / "manifest.json", res / "leakcheck", [res / "stage" / "local"])
        stages["stage + summary"] = time.perf_counter() - t
        return time.perf_counter() - t0, stages
    finally:
        os.chdir(cwd)


def rule_times(work: Path) -> dict[str, float]:
    """Sum of the job wall times of each rule (Snakemake's benchmark files)."""
    out: dict[str, float] = {}
    for tsv in sorted((work / "benchmarks").glob("*/*.tsv")):
        lines = tsv.read_text().splitlines()
        out[tsv.parent.name] = out.get(tsv.parent.name, 0.0) + float(lines[-1].split("\t")[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--per-dataset", type=int, default=50, help="series per dataset (sheet row)")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp folder)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="loop/workflow pairs, alternating; medians reported"
    )
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="imagedepot-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    n_ds = make_cohort(work / "cohort", args.series, args.files, args.per_dataset)
    config = write_config(work, args.batch_size)
    n_files = args.series * args.files

    # The plain loop first, then the workflow: both on the same machine state, same cohort.
    # Pairs on a shared machine are noisy: alternate loop and workflow, report medians and each pair.
    pairs = []
    for _ in range(args.repeat):
        for d in ("loop", "results", "logs", "benchmarks", "secure", ".snakemake"):
            shutil.rmtree(work / d, ignore_errors=True)
        loop_wall, loop_stages = plain_loop(work, config, args.cores)
        wf_wall, _ = snakemake(work, config, "--cores", str(args.cores), "--quiet", "rules")
        pairs.append((loop_wall, wf_wall, loop_stages, rule_times(work)))
    pairs.sort(key=lambda p: p[1] / p[0])
    loop_wall, wf_wall, loop_stages, per_rule = pairs[len(pairs) // 2]
    # Full DAG once the scan checkpoint has run: force every per-batch job and what follows it.
    dag_wall, dry = snakemake(
        work, config, "-n", "--forcerun", "convert_batch", "deidentify_batch", "check_leaks_batch"
    )
    rules = {"all", "scan_inputs", "convert_batch", "deidentify_batch", "check_leaks_batch",
             "build_fhir_bundles", "build_bids_tree", "stage_destination", "summarize_run"}  # fmt: skip
    counts = {}
    for line in dry.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in rules and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    jobs = sum(counts.values())
    batches = math.ceil(args.series / args.batch_size)
    # SLURM profile: convert+deid+leak of 4 batches per group job; everything else one job each.
    slurm_jobs = math.ceil(batches / 4) + (jobs - 3 * batches - counts.get("all", 0))
    summary = json.loads((work / "results" / "summary.json").read_text())
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "series": args.series,
        "files": n_files,
        "datasets": n_ds,
        "batch_size": args.batch_size,
        "snakemake_jobs": jobs,
        "jobs_by_rule": counts,
        "slurm_scheduler_jobs": slurm_jobs,
        "dag_build_s": round(dag_wall, 2),
        "workflow_wall_s": round(wf_wall, 2),
        "plain_loop_wall_s": round(loop_wall, 2),
        "overhead_pct": round(100 * (wf_wall - loop_wall) / loop_wall, 1),
        "pairs": [
            {
                "plain_loop_wall_s": round(lw, 2),
                "workflow_wall_s": round(ww, 2),
                "overhead_pct": round(100 * (ww - lw) / lw, 1),
            }
            for lw, ww, _, _ in pairs
        ],
        "stages_s": {
            st: {
                "plain_loop": round(loop_stages[st], 2),
                "workflow_jobs": round(sum(per_rule.get(r, 0.0) for r in rules_of), 2),
            }
            for st, rules_of in STAGES.items()
        },
        "processed": summary["processed"],
        "found": summary["found"],
    }
    name = "results" if args.batch_size == 250 else f"results-batch{args.batch_size}"
    (HERE / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Scale benchmark (recorded)", "",
          f"{result['date']} · {result['machine']}", "",
          "| measure | value | target |", "|---|---|---|",
          f"| cohort | {args.series} series, {n_files} files, {n_ds} datasets | ≥ 1,000 series, ≥ 10,000 files |",
          f"| Snakemake jobs (local) | {jobs} | not one per file |",
          f"| scheduler jobs under profiles/slurm | {slurm_jobs} | not one per file |",
          f"| DAG build (dry run of every batch job and what follows, after the scan) | {result['dag_build_s']} s | < 30 s |",
          f"| workflow, local executor, {args.cores} cores | {result['workflow_wall_s']} s | |",
          f"| plain Python loop, same work, {args.cores} workers | {result['plain_loop_wall_s']} s | baseline |",
          f"| workflow overhead (median of {len(pairs)} pairs) | {result['overhead_pct']} % | < 15 % |",
          "| every pair: overhead | "
          + ", ".join(f"{p['overhead_pct']} %" for p in result["pairs"]) + " | |",
          "", "Per stage (s): the loop's stage against the sum of the workflow's job wall times",
          "(Snakemake benchmark files; jobs of different rules may overlap in time).", "",
          "| stage | plain loop | workflow jobs |", "|---|---|---|",
          *[f"| {st} | {v['plain_loop']} | {v['workflow_jobs']} |" for st, v in result["stages_s"].items()],
          "", "Reproduce: `python benchmarks/scale/bench_scale.py`"]  # fmt: skip
    (HERE / f"{name}.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=2))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
