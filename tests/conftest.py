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
