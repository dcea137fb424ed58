"""Workflow fixtures: the test servers, for the workflow's deposit-target tests. The demo working
directory and the snakemake runner (``demo_workdir``, ``run_snakemake``) live in tests/conftest.py,
shared with tests/reliability/."""

from __future__ import annotations

import csv
from pathlib import Path

# Imported from here by the workflow tests.
from tests.conftest import CONFIGS, ROOT, snakemake_cmd  # noqa: F401

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
