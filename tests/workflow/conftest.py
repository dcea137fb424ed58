"""Workflow fixtures: one real run of the demo shared by the workflow and report tests
(``demo_run``) and the test servers for the deposit-target tests. The demo working directory and
the snakemake runner (``demo_workdir``, ``run_snakemake``) live in tests/conftest.py, shared with
tests/reliability/."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Imported from here by the workflow tests.
from tests.conftest import CONFIGS, ROOT, snakemake_cmd

# The test servers' fixtures, for the workflow's deposit-target tests.
from tests.servers.bia_fixture import biostudies_server, ftp_server  # noqa: F401
from tests.servers.xnat_fixture import xnat_server  # noqa: F401


def route_to_repositories(sheet: Path, out: Path) -> None:
    """Copy the demo's sample sheet, sending DICOM/NIfTI to xnat and micro-cells to bia too."""
    with open(sheet, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for r in rows:
        if r["modality_class"] in ("dicom", "nifti"):
            r["destinations"] = "local;xnat"
        elif r["dataset_id"] == "micro-cells":
            r["destinations"] = "local;bia"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run of the demo workflow, shared by the workflow and report tests (read-only
    use: a test that changes the run's outputs makes its own)."""
    from imagedepot.demo import make_demo

    work = tmp_path_factory.mktemp("run")
    make_demo(work / "demo")
    # A corrupt file dropped into the inbox: must end in the quarantine list, the rest completes.
    (work / "demo" / "inbox" / "DOE_JOHN_19650312" / "IM_CORRUPT").write_bytes(b"\x00" * 50)
    cmd = [
        *snakemake_cmd(),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(CONFIGS[0]),
        "--cores",
        "2",
    ]
    env = os.environ | {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    env.pop("IMAGEDEPOT_PSEUDONYM_KEY", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (work / "snakemake.out").write_text(proc.stdout + proc.stderr)
    return work
