"""Shared fixtures: small synthetic inputs made on the fly (no real patient data, no downloads),
the demo in a working directory and a snakemake runner (workflow and reliability tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def make_dicom(
    path: Path,
    *,
    study: str,
    series: str,
    instance: int,
    patient: str = "TEST^PATIENT",
    patient_id: str = "PID0001",
    modality: str = "MR",
    preamble: bool = True,
) -> Path:
    """Write one small MR-like DICOM file."""
    meta = FileMetaDataset()
    sop = generate_uid(entropy_srcs=[study, series, str(instance)])
    meta.MediaStorageSOPClassUID = MR_STORAGE
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MR_STORAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.PatientName = patient
    ds.PatientID = patient_id
    ds.StudyDate = "20240102"
    ds.ImagePositionPatient = [0, 0, float(instance)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = 1
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(64, dtype=np.uint16) + instance).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=preamble)
    return path


@pytest.fixture
def dicom_factory() -> Callable[..., Path]:
    """Return :func:`make_dicom`."""
    return make_dicom


# --------------------------------------------------------------------------------------------
# The workflow: the demo in a working directory, and snakemake run on it

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    ROOT / "config" / "config.yaml",
    *sorted((ROOT / "tests/workflow/configs").glob("*.yaml")),
]


def snakemake_cmd() -> list[str]:
    """The snakemake program beside this Python (skips the test when there is none)."""
    exe = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or shutil.which(
        "snakemake"
    )
    if exe is None:
        pytest.skip("snakemake is not installed (pip install -e '.[workflow]')")
    return [exe]


def snakemake_argv(workdir: Path, *args: str, config: Path = CONFIGS[0]) -> list[str]:
    """The command line of a snakemake run of this repository's workflow in ``workdir``."""
    return [
        *snakemake_cmd(),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        *args,
    ]


def snakemake_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test's snakemake: this Python's tools first on PATH, and no
    pseudonymisation key from the caller's environment (the demo's key file is used)."""
    env = os.environ | {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    env.pop("IMAGEDEPOT_PSEUDONYM_KEY", None)
    return env | dict(extra or {})


def snakemake_run(
    workdir: Path,
    *args: str,
    config: Path = CONFIGS[0],
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run snakemake in ``workdir`` (``env``: extra variables); with ``check``, fail the test
    with its output when it fails."""
    proc = subprocess.run(
        snakemake_argv(workdir, *args, config=config),
        capture_output=True,
        text=True,
        env=snakemake_env(env),
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with the demo made by `imagedepot demo` (shared, read-only use)."""
    from imagedepot.demo import make_demo

    work = tmp_path_factory.mktemp("wf")
    make_demo(work / "demo")
    return work


@pytest.fixture(scope="session")
def run_snakemake() -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`snakemake_run`."""
    return snakemake_run


#: The patients of :func:`make_pacs_export`: Patient ID, name, and the study UIDs of their files.
PACS_PATIENTS = {
    "MRN-1001": ("ALPHA^ANNA", ["1.2.826.0.1.3680043.8.498.101", "1.2.826.0.1.3680043.8.498.102"]),
    "MRN-2002": ("BRAVO^BEN", ["1.2.826.0.1.3680043.8.498.201"]),
    "MRN-3003": ("CHARLIE^CARL", ["1.2.826.0.1.3680043.8.498.301"]),
}


def make_pacs_export(folder: Path) -> Path:
    """A clinical group's PACS export: one flat folder of DICOM files of three patients and four
    studies, interleaved (``IM0001``...), with a README and a JSON query result beside them; a
    NIfTI volume with its sidecar in ``nifti/``. Returns ``folder``.

    MRN-1001 has two studies (2 + 1 files), MRN-2002 one study (2 files), MRN-3003 one (1 file).
    """
    import nibabel as nib

    order = [
        ("MRN-1001", 0, 1),
        ("MRN-2002", 0, 1),
        ("MRN-1001", 1, 1),
        ("MRN-3003", 0, 1),
        ("MRN-1001", 0, 2),
        ("MRN-2002", 0, 2),
    ]
    for n, (pid, study_index, instance) in enumerate(order, start=1):
        name, studies = PACS_PATIENTS[pid]
        study = studies[study_index]
        make_dicom(
            folder / f"IM{n:04d}",
            study=study,
            series=study + ".1",
            instance=instance,
            patient=name,
            patient_id=pid,
        )
    (folder / "README.txt").write_text("Export of 2024-03-01 for ALPHA^ANNA and others\n")
    (folder / "export.json").write_text('{"query": "MRN-1001", "results": 6}\n')
    nifti = folder / "nifti"
    nifti.mkdir()
    img = nib.Nifti1Image(np.zeros((4, 4, 3), dtype=np.int16), np.eye(4))
    nib.save(img, nifti / "brain.nii.gz")
    (nifti / "brain.json").write_text('{"Modality": "MR"}\n')
    return folder
