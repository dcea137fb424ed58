"""The demo gives the same results on the local executor, on a real single-node SLURM cluster and
with every input and output in S3 (a real S3 endpoint: moto_server on loopback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflow.conftest import CONFIGS, ROOT, snakemake_cmd

pytestmark = pytest.mark.workflow
SERVICES = ROOT / "tests" / "services"


@pytest.fixture(scope="module")
def slurm_cluster():
    """Start the test cluster (tests/services/slurm-up.sh) and stop it afterwards."""
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed (apt-get install slurm-wlm munge; .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd needs root")
    already = subprocess.run(["sinfo", "-h"], capture_output=True, text=True).returncode == 0
    up = subprocess.run(["bash", str(SERVICES / "slurm-up.sh")], capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    if not already:
        subprocess.run(["bash", str(SERVICES / "slurm-down.sh")], capture_output=True)


def _env(**extra: str) -> dict[str, str]:
    env = os.environ | {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    env.pop("IMAGEDEPOT_PSEUDONYM_KEY", None)
    return env | extra


def _run(work: Path, *extra: str, key: bytes | None = None, env: dict | None = None) -> str:
    """Make the demo in ``work`` (with ``key`` if given) unless it is there, and run the workflow;
    return its log."""
    from imagedepot.demo import make_demo

    if not (work / "demo").exists():
        make_demo(work / "demo")
    if key is not None:
        (work / "demo" / "secrets" / "pseudonym.key").write_bytes(key)
    cmd = [
        *snakemake_cmd(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
        "--configfile", str(CONFIGS[0]), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return proc.stdout + proc.stderr


def _fingerprint(summary: dict, staged_manifest: dict) -> tuple[dict, dict[str, str]]:
    """Run counts and the checksums of staged data files (minus per-run records)."""
    counts = {k: summary[k] for k in ("found", "processed", "quarantined", "excluded")}
    varying = ("provenance.json", "fhir-bundle.json")
    files = {
        r["path"]: r["sha256"] for r in staged_manifest["files"] if not r["path"].endswith(varying)
    }
    return counts, files


def _local_fingerprint(work: Path) -> tuple[dict, dict[str, str]]:
    res = work / "results"
    return _fingerprint(
        json.loads((res / "summary.json").read_text()),
        json.loads((res / "stage" / "local" / "manifest.json").read_text()),
    )


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run on the local executor: the reference the other executors must match."""
    work = tmp_path_factory.mktemp("local")
    _run(work, "--cores", "2")
    return work


def test_slurm_run_matches_local_run(slurm_cluster, local_run: Path, tmp_path: Path) -> None:
    # The demo's key is random: give the SLURM run the same key, so pseudonyms, UIDs and date
    # shifts, and hence the de-identified bytes, are identical.
    key = (local_run / "demo" / "secrets" / "pseudonym.key").read_bytes()
    slurm = tmp_path / "slurm"
    log = _run(
        slurm,
        "--profile", str(ROOT / "profiles" / "slurm"),
        "--slurm-no-account", "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2", "--jobs", "4",
        key=key,
    )  # fmt: skip
    assert "submitted with SLURM jobid" in log
    assert _local_fingerprint(slurm) == _local_fingerprint(local_run)


@pytest.fixture
def s3_server(tmp_path: Path):
    """A real S3 endpoint (moto_server) on a free loopback port; stopped afterwards."""
    import socket
    import time

    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("moto[server] is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_kubernetes_profile_lints_and_dry_runs_against_s3(tmp_path: Path, s3_server: str) -> None:
    """The Kubernetes profile (executor kubernetes, default storage S3) parses, lints and plans the
    demo with its inputs in an S3 bucket (no cluster needed for a dry run)."""
    import boto3

    from imagedepot.demo import make_demo

    work = tmp_path / "work"
    make_demo(work / "demo")
    env = os.environ | {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The profile passes the key into the pods (envvars); it must be set.
        "IMAGEDEPOT_PSEUDONYM_KEY": "dry-run-key-not-secret",
    }
    s3 = boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id="test", aws_secret_access_key="test",
        region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket="imagedepot-work")
    for p in (work / "demo").rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), "imagedepot-work", f"runs/{p.relative_to(work)}")
    base = [
        *snakemake_cmd(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
        "--configfile", str(CONFIGS[0]), "--profile", str(ROOT / "profiles" / "kubernetes"),
        "--storage-s3-endpoint-url", s3_server,
    ]  # fmt: skip
    lint = subprocess.run([*base, "--lint"], capture_output=True, text=True, env=env, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = subprocess.run([*base, "-n"], capture_output=True, text=True, env=env, timeout=300)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out
    assert "s3://imagedepot-work/runs/demo/inbox" in out
    assert "scan_inputs" in out


#: Cohort-definition files: they stay with the workflow (its git sources on Kubernetes); the
#: imaging data and the clinical records live in the bucket.
COHORT_FILES = ("samples.tsv", "consent.tsv", "policies", "secrets")


def test_s3_run_matches_local_run(local_run: Path, tmp_path: Path, s3_server: str) -> None:
    """Inputs and outputs in S3: the working directory holds only the cohort definition, the
    originals are read from the bucket, every result is written there (nothing under results/
    locally), and the results equal the local run's. A second run finds nothing to do."""
    import boto3

    from imagedepot.storage import Storage, open_tree

    bucket, prefix = "imagedepot-test", "runs/cohort-1"
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    env = _env(AWS_DEFAULT_REGION="us-east-1", **creds)
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", **{
        "aws_access_key_id": "test", "aws_secret_access_key": "test"})  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    demo = local_run / "demo"
    for p in sorted(demo.rglob("*")):
        rel = p.relative_to(demo)
        if p.is_file() and (rel.parts[0] == "inbox" or rel.name == "clinical.csv"):
            s3.upload_file(str(p), bucket, f"{prefix}/demo/{rel.as_posix()}")
    work = tmp_path / "work"
    for name in COHORT_FILES:
        src, dst = demo / name, work / "demo" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    args = [
        "--cores", "2", "--default-storage-provider", "s3",
        "--default-storage-prefix", f"s3://{bucket}/{prefix}",
        "--storage-s3-endpoint-url", s3_server,
    ]  # fmt: skip
    _run(work, *args, env=env)
    assert not (work / "results").exists()
    assert not (work / "demo" / "inbox").exists()

    # Read the results back from the bucket, through the package's own tree reader.
    dl = tmp_path / "download"
    storage = Storage(root=dl, prefix=f"s3://{bucket}/{prefix}")
    os.environ.update(creds | {"AWS_ENDPOINT_URL_S3": s3_server, "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        summary = json.loads(storage.fetch(dl / "results" / "summary.json").read_text())
        staged = open_tree(dl / "results" / "stage" / "local.tree.json", storage)
    finally:
        for k in (*creds, "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
            os.environ.pop(k, None)
    manifest = json.loads((staged / "manifest.json").read_text())
    assert _fingerprint(summary, manifest) == _local_fingerprint(local_run)
    # OME-Zarr stores went to the bucket object by object (no directory objects).
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    assert any(".ome.zarr/" in k and k.endswith((".zattrs", "zarr.json")) for k in keys)

    again = _run(work, *args, env=env)
    assert "Nothing to be done" in again
