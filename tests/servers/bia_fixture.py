"""Fixtures for the BioImage Archive tests: real server processes and the staged demo microscopy.

Import the fixtures you use into the test module (``from tests.servers.bia_fixture import ...``).
Every server runs as its own process on 127.0.0.1 with a port of its choosing (printed as
``READY <port>``) and is stopped when the test ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
FTP_USER, FTP_PASSWORD = "bsftp", "bsftp1"
API_LOGIN, API_PASSWORD = "submitter@example.org", "secret-password"
SECRET_DIR = "a1b2c3d4-secret-upload-area"

STUDY = {
    "authors": [
        {
            "name": "Ada Example",
            "affiliation": "Example Institute of Cell Biology",
            "email": "ada@example.org",
            "role": "submitter",
        }
    ],
    "license": "CC0",
    "release_date": "2030-01-01",
    "sample_preparation": "Cells fixed with 4% formaldehyde, stained with DAPI",
    "keywords": ["fibroblasts", "synthetic"],
}


@dataclass
class ServerProcess:
    """A test server running as a child process."""

    proc: subprocess.Popen[str]
    port: int
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_server(script: str, *args: str, timeout: float = 20.0) -> ServerProcess:
    """Start ``tests/servers/<script>`` and wait for its ``READY <port>`` line."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not line or not line[0].startswith("READY "):
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"{script} did not start (got {line!r})")
    return ServerProcess(proc, int(line[0].split()[1]))


@pytest.fixture
def ftp_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``ftp_server(drop_after=0, drop_count=0)`` starts an FTP server whose home holds
    the secret upload directory; ``.extra`` has ``root``, ``user_dir``, ``journal`` and ``url``."""
    started: list[ServerProcess] = []

    def start(*, drop_after: int = 0, drop_count: int = 0) -> ServerProcess:
        root = tmp_path / f"ftp-home-{len(started)}"
        user_dir = root / SECRET_DIR
        user_dir.mkdir(parents=True)
        journal = root.with_suffix(".journal")
        srv = start_server(
            "ftp_server.py",
            "--root", str(root),
            "--user", FTP_USER,
            "--password", FTP_PASSWORD,
            "--drop-after", str(drop_after),
            "--drop-count", str(drop_count),
            "--journal", str(journal),
        )  # fmt: skip
        srv.extra = {
            "root": root,
            "user_dir": user_dir,
            "journal": journal,
            "url": f"ftp://{FTP_USER}:{FTP_PASSWORD}@127.0.0.1:{srv.port}/{SECRET_DIR}",
        }
        started.append(srv)
        return srv

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def biostudies_server() -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``biostudies_server(user_dir, fail_submit=0, fail_login=0)``; ``.extra["url"]``."""
    started: list[ServerProcess] = []

    def start(user_dir: Path, *, fail_submit: int = 0, fail_login: int = 0) -> ServerProcess:
        srv = start_server(
            "biostudies_server.py",
            "--user-dir", str(user_dir),
            "--login", API_LOGIN,
            "--password", API_PASSWORD,
            "--fail-submit", str(fail_submit),
            "--fail-login", str(fail_login),
        )  # fmt: skip
        srv.extra = {"url": f"http://127.0.0.1:{srv.port}"}
        started.append(srv)
        return srv

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """An SMTP server writing received messages to ``.extra["out"]``."""
    out = tmp_path / "mail"
    srv = start_server("smtp_server.py", "--out", str(out))
    srv.extra = {"out": out}
    yield srv
    srv.stop()


@dataclass
class DemoStage:
    """The demo's microscopy dataset taken through convert, de-identify, leak check and stage."""

    root: Path
    items_dir: Path
    staged: Path
    policies: dict[str, Any]


@pytest.fixture(scope="session")
def demo_microscopy_stage(tmp_path_factory: pytest.TempPathFactory) -> DemoStage:
    """``micro-cells`` of ``imagedepot.demo`` (OME-TIFF -> OME-Zarr), staged for a ``bia``
    destination of class public_archive by ``imagedepot.stage.stage_destination``."""
    from imagedepot.demo import make_demo
    from imagedepot.ingest import scan
    from imagedepot.pipeline import (
        ConvertOptions,
        DeidSettings,
        convert_item,
        deidentify_item,
        item_dir,
        leak_report_path,
        leakcheck_item,
    )
    from imagedepot.policy import load_policy
    from imagedepot.samplesheet import load_samples
    from imagedepot.stage import StageInputs, stage_destination

    root = tmp_path_factory.mktemp("bia-demo")
    info = make_demo(root / "demo")
    policies = {n: load_policy(p) for n, p in info.policies.items()}
    datasets = [d for d in load_samples(info.samples) if d.dataset_id == "micro-cells"]
    manifest = scan(
        root / "demo" / "inbox", datasets=datasets, sheet=info.samples, policies=policies
    )
    for item in manifest.items:
        item.destinations = ["bia"]
    res = root / "results"
    manifest.write(res / "ingest" / "manifest.json", res / "ingest" / "items")
    for item in manifest.items:
        ij = res / "ingest" / "items" / f"{item.id}.json"
        rec = item.to_dict()
        conv, deid = item_dir(res / "convert", rec), item_dir(res / "deid", rec)
        convert_item(ij, conv, ConvertOptions(pyramid_levels=2))
        deidentify_item(
            ij,
            conv,
            deid,
            DeidSettings(
                policy_path=info.policies["open-microscopy"],
                key_env=None,
                key_file=info.key_file,
                linkage_dir=root / "linkage",
            ),
        )
        leakcheck_item(ij, deid, leak_report_path(res / "leakcheck", rec))
    (res / "fhir").mkdir(parents=True, exist_ok=True)
    report = stage_destination(
        "bia",
        "public_archive",
        StageInputs(
            res / "ingest" / "manifest.json", res / "deid", res / "leakcheck", res / "fhir"
        ),
        res / "stage" / "bia",
        policies=policies,
    )
    assert report.staged == ["micro-cells-m001"], report
    return DemoStage(root, res / "ingest" / "items", res / "stage" / "bia", policies)


@pytest.fixture
def bia_package(demo_microscopy_stage: DemoStage, tmp_path: Path) -> Path:
    """A fresh BioImage Archive package folder (``results/bia/bia``) for one test."""
    from imagedepot.deposit.bia import StudyMetadata, stage_bia

    staged = tmp_path / "stage" / "bia"
    shutil.copytree(demo_microscopy_stage.staged, staged)
    out = tmp_path / "bia" / "bia"
    stage_bia(
        staged,
        demo_microscopy_stage.items_dir,
        out,
        destination="bia",
        study=StudyMetadata.from_mapping(STUDY),
        policies=demo_microscopy_stage.policies,
    )
    return out
