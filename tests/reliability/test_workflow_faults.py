"""Faults in real Snakemake runs of the demo (``imagedepot demo``), as an operator meets them.

* A run killed (SIGKILL to its whole process group) after the scan, in the middle of a convert
  batch, of a de-identify batch and of the staging, each time resumed with ``--rerun-incomplete``,
  stages the same bytes as an uninterrupted run, leaves no temporary behind and accounts for
  every input.
* Deposit credentials in the environment and the pseudonymisation key reach no file under
  ``results/``, ``logs/``, ``benchmarks/`` or ``.snakemake/``, also through the XNAT and
  BioImage Archive staging and deposit targets (against the local test servers).
* Bad inputs mixed into the inbox (truncated DICOM, a text file and an empty file in a subject's
  DICOM folder, an empty TIFF, another patient's file) are each quarantined with a reason, the
  run completes, the accounting identity holds, and nothing staged names an inbox folder.

Every run starts from a copy of one demo (same files, same modification times, same key), so
the staged bytes of all runs are comparable. Processes run with ``--cores 2``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml

from imagedepot.io import TMP_PREFIX
from tests.conftest import CONFIGS, snakemake_argv, snakemake_env, snakemake_run
from tests.workflow.conftest import route_to_repositories

pytestmark = pytest.mark.workflow

#: Inbox folders of the demo named after its (fake) patients.
PATIENT_FOLDERS = ("DOE_JOHN_19650312", "ROE_JANE", "POE_EDGAR")
#: Name prefixes of the package's temporaries: atomic outputs (imagedepot.io) and scratch folders.
TEMP_PREFIXES = (TMP_PREFIX, "imagedepot-")


# --------------------------------------------------------------------------------------------
# Helpers


def _copy_demo(demo_workdir: Path, work: Path) -> Path:
    """A fresh working directory holding a copy of the shared demo (its key included). copy2 keeps
    modification times: the staged records' time is the inputs' (provenance.data_time)."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_workdir / "demo", work / "demo", ignore=shutil.ignore_patterns("secure"))
    (work / "tmp").mkdir()
    return work


def _env(work: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Variables of a run: scratch files of every job go to ``work/tmp`` (checked as well)."""
    return {"TMPDIR": str(work / "tmp"), **(extra or {})}


def _checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (hidden files included)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _temporaries(work: Path) -> list[str]:
    """Temporaries left under ``results/`` and the runs' scratch folder."""
    return [
        str(p.relative_to(work))
        for top in (work / "results", work / "tmp")
        if top.is_dir()
        for p in top.rglob("*")
        if p.name.startswith(TEMP_PREFIXES)
    ]


def _summary(work: Path) -> dict[str, Any]:
    s = json.loads((work / "results" / "summary.json").read_text(encoding="utf-8"))
    assert s["found"] == s["processed"] + s["quarantined"] + s["excluded"], s
    return s


def _files_under(*tops: Path) -> Iterator[Path]:
    """The files ``tops`` are or hold (links are not followed)."""
    for top in tops:
        if top.is_file():
            yield top
        elif top.is_dir():
            yield from (p for p in top.rglob("*") if p.is_file() and not p.is_symlink())


# --------------------------------------------------------------------------------------------
# The uninterrupted run every other run is compared with


@pytest.fixture(scope="module")
def reference(demo_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean run of the demo; its staged folder is the reference."""
    work = _copy_demo(demo_workdir, tmp_path_factory.mktemp("reference"))
    snakemake_run(work, "--cores", "2", env=_env(work))
    return work


# --------------------------------------------------------------------------------------------
# 1. Kill and resume


@dataclass(frozen=True)
class KillPoint:
    """When to kill a run: ``hit`` is true in the moment to kill; once ``passed`` is true the
    moment is gone (the run is then killed anyway and retried with ``--forcerun rule``).
    ``leaves_temporary``: a kill there leaves a temporary of the step's output behind."""

    name: str
    rule: str
    hit: Callable[[Path], bool]
    passed: Callable[[Path], bool]
    leaves_temporary: bool


def _has_temporary(folder: str, name: str = "") -> Callable[[Path], bool]:
    def check(work: Path) -> bool:
        try:
            return any(
                e.name.startswith(TMP_PREFIX + name) for e in os.scandir(work / "results" / folder)
            )
        except FileNotFoundError:
            return False

    return check


def _all_markers(folder: str) -> Callable[[Path], bool]:
    """Every batch of the manifest has its tree marker in ``results/<folder>``."""

    def check(work: Path) -> bool:
        manifest = work / "results" / "ingest" / "manifest.json"
        try:
            items = json.loads(manifest.read_text(encoding="utf-8"))["items"]
        except (OSError, ValueError):
            return False
        batches = {int(i["batch"]) for i in items if i["status"] == "pending"}
        return all(
            (work / "results" / folder / f"batch-{b:04d}.tree.json").is_file() for b in batches
        )

    return check


def _exists(rel: str) -> Callable[[Path], bool]:
    return lambda work: (work / rel).is_file()


KILL_POINTS = [
    KillPoint(
        "after the scan",
        "scan_inputs",
        _exists("results/ingest/manifest.json"),
        _exists("results/ingest/manifest.json"),
        leaves_temporary=False,
    ),
    KillPoint(
        "in a convert batch",
        "convert_batch",
        _has_temporary("convert"),
        _all_markers("convert"),
        leaves_temporary=True,
    ),
    KillPoint(
        "in a de-identify batch",
        "deidentify_batch",
        _has_temporary("deid"),
        _all_markers("deid"),
        leaves_temporary=True,
    ),
    KillPoint(
        "in the staging",
        "stage_destination",
        _has_temporary("stage", "local."),
        _exists("results/stage/local.tree.json"),
        leaves_temporary=True,
    ),
]


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies aside, from /proc on Linux)."""
    if not Path("/proc/self/stat").is_file():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL snakemake and every job it started (one process group), and wait until none runs."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while _group_alive(proc.pid):
        assert time.monotonic() < deadline, "processes of the killed run still run"
        time.sleep(0.05)


def _run_until(work: Path, point: KillPoint, log: Path, *args: str) -> bool:
    """Start snakemake in its own process group and SIGKILL the group at ``point``; return
    whether the kill hit the moment (false: the run got past it first)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            snakemake_argv(work, "--cores", "2", *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=snakemake_env(_env(work)),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if point.hit(work):
                _kill_group(proc)
                return True
            if point.passed(work):
                _kill_group(proc)
                return False
            time.sleep(0.002)
        raise AssertionError(
            f"the run ended (rc {proc.returncode}) before the kill point {point.name!r}:\n"
            + log.read_text(errors="replace")[-3000:]
        )
    finally:
        if proc.poll() is None:
            _kill_group(proc)


def test_killed_runs_resume_to_the_same_staged_bytes(
    reference: Path, demo_workdir: Path, tmp_path: Path
) -> None:
    """One working directory, killed at each point in turn; each next run resumes it."""
    work = _copy_demo(demo_workdir, tmp_path / "work")
    log = tmp_path / "snakemake.log"
    resume = ("--rerun-incomplete",)
    for point in KILL_POINTS:
        for attempt in range(3):
            extra = ("--forcerun", point.rule) if attempt else ()
            # A SIGKILLed snakemake leaves its lock behind.
            snakemake_run(work, "--unlock", env=_env(work))
            hit = _run_until(work, point, log, *resume, *extra)
            # Mid-write: the step's temporary is still there after the kill.
            if hit and (point.hit(work) or not point.leaves_temporary):
                break
        else:
            raise AssertionError(f"three runs got past {point.name!r} before the kill")
    snakemake_run(work, "--unlock", env=_env(work))
    snakemake_run(work, "--cores", "2", *resume, env=_env(work))

    staged, expected = (_checksums(w / "results" / "stage" / "local") for w in (work, reference))
    assert staged == expected
    assert _temporaries(work) == []
    assert not list((work / ".snakemake" / "incomplete").glob("*"))
    assert _summary(work) | {"created": None} == _summary(reference) | {"created": None}
    out = snakemake_run(work, "-n", "--cores", "1", env=_env(work))
    assert "Nothing to be done" in out.stdout + out.stderr


# --------------------------------------------------------------------------------------------
# 2. Secrets


#: Recognisable fake credentials: letters, digits and dashes only, so that no encoding (URL,
#: JSON, shell quoting) would hide them from the search.
XNAT_USER, XNAT_PASSWORD = "xnatuser-Qv7Zr2", "xnatpass-Kx9Lm4Wq3Tb"
BIA_USER, BIA_PASSWORD = "bialogin-Tt3Jh8", "biapass-Rn5Pz1Yc7Dd"
FTP_USER, FTP_PASSWORD, FTP_DIR = "ftpuser-Hd2Vb6", "ftppass-Mw8Sc3Xa5Ee", "ftpdir-Gq4Nf7Ue2Jk"
FHIR_TOKEN = "fhirtoken-Zy6Wk1Pb9Qs"
#: What must appear nowhere. User names are not secrets to the package: messages name them (XNAT's
#: client logs "Logged in successfully as <user>"; a refused login names the user).
SECRETS = (XNAT_PASSWORD, BIA_PASSWORD, FTP_PASSWORD, FTP_DIR, FHIR_TOKEN)


def _key_needles(key_file: Path) -> dict[str, bytes]:
    """The demo's key as written (hex text, both cases) and as the bytes it spells."""
    text = key_file.read_text(encoding="ascii").strip()
    return {"key": text.encode(), "KEY": text.upper().encode(), "key bytes": bytes.fromhex(text)}


def _files_holding(needles: dict[str, bytes], tops: Iterable[Path]) -> dict[str, list[str]]:
    """Which files (read as bytes, whatever their type) hold which needle."""
    found: dict[str, list[str]] = {}
    for f in _files_under(*tops):
        data = f.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                found.setdefault(name, []).append(str(f))
    return found


@pytest.fixture
def deposit_servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The local XNAT, FTP and BioStudies test servers, logging in with the fake credentials;
    their addresses and the credentials as the workflow reads them from the environment."""
    from tests.servers.bia_fixture import start_server
    from tests.servers.xnat_fixture import run_xnat_server

    ftp_root = tmp_path / "ftp-home"
    (ftp_root / FTP_DIR).mkdir(parents=True)
    servers = []
    try:
        ftp = start_server(
            "ftp_server.py", "--root", str(ftp_root), "--user", FTP_USER, "--password", FTP_PASSWORD
        )
        servers.append(ftp)
        api = start_server(
            "biostudies_server.py",
            "--user-dir", str(ftp_root / FTP_DIR),
            "--login", BIA_USER,
            "--password", BIA_PASSWORD,
        )  # fmt: skip
        servers.append(api)
        with run_xnat_server(
            tmp_path / "xnat-server", "--user", XNAT_USER, "--password", XNAT_PASSWORD
        ) as xnat:
            yield {
                "xnat_url": xnat.url,
                "xnat_project": xnat.project,
                "bia_url": f"http://127.0.0.1:{api.port}",
                "XNAT_DEMO_USER": XNAT_USER,
                "XNAT_DEMO_PASSWORD": XNAT_PASSWORD,
                "BIA_DEMO_USER": BIA_USER,
                "BIA_DEMO_PASSWORD": BIA_PASSWORD,
                "IMAGEDEPOT_BIA_FTP_URL": (
                    f"ftp://{FTP_USER}:{FTP_PASSWORD}@127.0.0.1:{ftp.port}/{FTP_DIR}"
                ),
                "IMAGEDEPOT_FHIR_TOKEN": FHIR_TOKEN,
            }
    finally:
        for s in servers:
            s.stop()


def test_no_secret_in_results_logs_or_snakemake_state(
    demo_workdir: Path, tmp_path: Path, deposit_servers: dict[str, str]
) -> None:
    """The default run (with XNAT plans and BioImage Archive packages), then both deposit targets,
    all with the credentials in the environment; then every file is searched as bytes."""
    work = _copy_demo(demo_workdir, tmp_path / "work")
    route_to_repositories(work / "demo" / "samples.tsv", work / "demo" / "samples-deposit.tsv")
    config = yaml.safe_load(CONFIGS[0].read_text(encoding="utf-8"))
    config["samples"] = "demo/samples-deposit.tsv"
    config["destinations"]["xnat"].update(
        url=deposit_servers["xnat_url"], project=deposit_servers["xnat_project"]
    )
    config["destinations"]["bia"]["url"] = deposit_servers["bia_url"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = _env(work, {k: v for k, v in deposit_servers.items() if k.isupper()})

    snakemake_run(work, "--cores", "2", config=cfg, env=env)
    assert (work / "results" / "stage" / "xnat.xnat-plan.json").is_file()
    assert (work / "results" / "bia" / "bia.tree.json").is_file()
    snakemake_run(work, "--cores", "2", "deposit_xnat_all", "deposit_bia_all", config=cfg, env=env)
    assert (work / "results" / "deposit" / "xnat.xnat-receipt.json").is_file()
    assert "S-BIAD" in (work / "results" / "deposit" / "bia.bia.json").read_text()

    needles = {s: s.encode() for s in SECRETS}
    needles |= _key_needles(work / "demo" / "secrets" / "pseudonym.key")
    tops = [work / d for d in ("results", "logs", "benchmarks", ".snakemake")]
    assert sum(1 for _ in _files_under(*tops)) > 100  # the search saw the runs' files
    assert _files_holding(needles, tops) == {}


# --------------------------------------------------------------------------------------------
# 3. Mixed bad inputs


def _truncated_copy(src: Path, dst: Path) -> None:
    """``src`` as a new instance of its series (own SOP Instance UID), cut 4000 bytes short."""
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.InstanceNumber = 99
    buf = io.BytesIO()
    ds.save_as(buf)
    dst.write_bytes(buf.getvalue()[:-4000])


def _reasons(summary: dict[str, Any], manifest: dict[str, Any]) -> dict[str, str]:
    """Quarantine reason of each input file: its own, or that of the item holding it."""
    by_item = {q["item"]: q["reason"] for q in summary["quarantined_items"] if "item" in q}
    out = {q["file"]: q["reason"] for q in summary["quarantined_items"] if "file" in q}
    for item in manifest["items"]:
        if item["id"] in by_item:
            out |= {f["path"]: by_item[item["id"]] for f in item["files"]}
    return out


def test_mixed_bad_inputs_are_each_quarantined_and_the_run_completes(
    reference: Path, demo_workdir: Path, tmp_path: Path
) -> None:
    work = _copy_demo(demo_workdir, tmp_path / "work")
    inbox = work / "demo" / "inbox"
    originals = sorted(p for p in inbox.rglob("*") if p.is_file())
    john, jane = inbox / "DOE_JOHN_19650312", inbox / "ROE_JANE"
    bad = {
        "truncated DICOM": jane / "IM0099",
        "text file in a DICOM folder": john / "README.txt",
        "empty file": john / "DICOM" / "IM0000",
        "empty TIFF": inbox / "microscopy" / "empty.tif",
        "another patient's file": john / "IM0777",
    }
    _truncated_copy(jane / "IM0004", bad["truncated DICOM"])
    bad["text file in a DICOM folder"].write_text("Scanned at the front desk.\n", encoding="utf-8")
    bad["empty file"].write_bytes(b"")
    bad["empty TIFF"].write_bytes(b"")
    shutil.copy2(jane / "IM0001", bad["another patient's file"])
    # The empty TIFF as a dataset of its own, so that the microscopy reader meets it.
    sheet = work / "demo" / "samples.tsv"
    with open(sheet, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    rows.append(
        rows[-1]
        | {
            "dataset_id": "micro-empty",
            "subject": "specimen-E00",
            "source": "inbox/microscopy/empty.tif",
        }
    )
    with open(sheet, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    # Staged for XNAT and the BioImage Archive too (plans and packages, no server needed).
    route_to_repositories(sheet, sheet)

    proc = snakemake_run(work, "--cores", "2", env=_env(work))  # keep-going: default profile
    assert proc.returncode == 0

    # Every file found, once: the originals and the five added.
    summary = _summary(work)
    manifest = json.loads((work / "results" / "ingest" / "manifest.json").read_text())
    assert summary["files_found"] == len(originals) + len(bad)
    listed = [f["path"] for i in manifest["items"] for f in i["files"]]
    listed += [q["path"] for q in manifest["quarantine"]]
    assert sorted(listed) == sorted(
        str(p.relative_to(work)) for p in inbox.rglob("*") if p.is_file()
    )
    ref = _summary(reference)
    # Each bad input is a unit of its own, except the truncated file, which joins its series.
    assert summary["found"] == ref["found"] + len(bad) - 1
    assert summary["excluded"] == ref["excluded"]

    reasons = _reasons(summary, manifest)
    for what, path in bad.items():
        assert reasons.get(str(path.relative_to(work))), f"{what}: no quarantine reason"
    assert "Patient ID differs" in reasons[str(bad["another patient's file"].relative_to(work))]
    # The whole series is quarantined: by the converter (dcm2niix: "not large enough") or, when
    # it copes, by the de-identifier ("truncated").
    truncated = reasons[str(bad["truncated DICOM"].relative_to(work))]
    assert "truncated" in truncated or "not large enough" in truncated, truncated

    # Nothing of the other patient under the subject: subject 01's staged data are the reference's
    # (its FHIR bundle differs: the XNAT endpoint), every other staged data file is one of the
    # reference's too.
    def data(folder: Path, prefix: str = "") -> dict[str, str]:
        return {
            k: v
            for k, v in _checksums(folder / "results" / "stage" / "local").items()
            if k.startswith(prefix) and "/" in k and not k.endswith("/fhir-bundle.json")
        }

    assert data(work, "dcm-subj01/") == data(reference, "dcm-subj01/")
    assert data(work).items() <= data(reference).items()

    # The trusted zone names the inbox folders; nothing staged does.
    names = {n: n.encode() for n in (*PATIENT_FOLDERS, "inbox/")}
    assert _files_holding(names, [work / "results" / "summary.json"])
    assert (work / "results" / "stage" / "xnat.xnat-plan.json").is_file()
    assert (work / "results" / "bia" / "bia.tree.json").is_file()
    assert _files_holding(names, [work / "results" / "stage", work / "results" / "bia"]) == {}
    assert _temporaries(work) == []
