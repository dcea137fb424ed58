"""Shared fixtures: small synthetic inputs made on the fly (no real patient data, no downloads)."""

from __future__ import annotations

from collections.abc import Callable
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
