"""Synthetic DICOM series with known geometry, and the expected NIfTI geometry computed from it.

The expected affine is derived here from ImagePositionPatient, ImageOrientationPatient and
PixelSpacing (DICOM PS3.3 C.7.6.2.1.1), independently of dcm2niix and of the converter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

#: LPS (DICOM patient coordinates) to RAS (NIfTI world coordinates).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about x, y or z."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


ORIENTATIONS = {
    "axial": ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
    "coronal": ([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),
    "sagittal": ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]),
}


def oblique() -> tuple[list[float], list[float]]:
    """Axial orientation rotated 20 degrees about x then 10 about z."""
    r = rotation("z", 10) @ rotation("x", 20)
    return list(r @ [1.0, 0.0, 0.0]), list(r @ [0.0, 1.0, 0.0])


@dataclass
class Series:
    """A written series: its files, voxel data ``[slice, row, column]`` and the expected affine."""

    files: list[Path]
    volume: np.ndarray  # (slices, rows, columns), in spatial order along the slice normal
    affine_ras: np.ndarray  # maps (column i, row j, slice k) indices to RAS millimetres

    @property
    def data_ijk(self) -> np.ndarray:
        """Voxel data indexed (column, row, slice), matching :attr:`affine_ras`."""
        return np.transpose(self.volume, (2, 1, 0))


def write_series(
    folder: Path,
    *,
    row_cos: list[float],
    col_cos: list[float],
    rows: int = 12,
    cols: int = 10,
    slices: int = 5,
    pixel_spacing: tuple[float, float] = (0.9, 1.1),  # (between rows, between columns)
    slice_spacing: float = 2.5,
    origin: tuple[float, float, float] = (-12.0, 30.5, 41.0),
    descending: bool = False,
    patient_name: str = "Doe^Jane",
) -> Series:
    """Write a single-frame MR series; with ``descending`` instance 1 is the last slice in space."""
    folder.mkdir(parents=True, exist_ok=True)
    rc = np.asarray(row_cos, float)
    cc = np.asarray(col_cos, float)
    normal = np.cross(rc, cc)
    k = np.arange(slices)[:, None, None]
    r = np.arange(rows)[None, :, None]
    c = np.arange(cols)[None, None, :]
    volume = (k * 300 + r * 20 + c - 50).astype(np.int16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    positions = [np.asarray(origin) + i * slice_spacing * normal for i in range(slices)]
    files = []
    order = list(range(slices))[::-1] if descending else list(range(slices))
    for instance, kk in enumerate(order, start=1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        sop = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.Modality = "MR"
        ds.Manufacturer = "SIEMENS"
        ds.PatientName = patient_name
        ds.PatientID = "PID-0001"
        ds.StudyDate = "20240131"
        ds.SeriesDate = "20240131"
        ds.AcquisitionTime = f"1200{instance:02d}.000"
        ds.SeriesNumber = 3
        ds.InstanceNumber = instance
        ds.AcquisitionNumber = 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SeriesDescription = "t1_test"
        ds.ProtocolName = "t1_test"
        ds.EchoTime = 4.5
        ds.RepetitionTime = 2000.0
        ds.MagneticFieldStrength = 3.0
        ds.ImagePositionPatient = [float(v) for v in positions[kk]]
        ds.ImageOrientationPatient = [float(v) for v in (*rc, *cc)]
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.SliceThickness = float(slice_spacing)
        ds.SpacingBetweenSlices = float(slice_spacing)
        ds.Rows = rows
        ds.Columns = cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelData = volume[kk].tobytes()
        path = folder / f"IM{instance:04d}"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    lps = np.eye(4)
    lps[:3, 0] = rc * pixel_spacing[1]
    lps[:3, 1] = cc * pixel_spacing[0]
    lps[:3, 2] = normal * slice_spacing
    lps[:3, 3] = positions[0]
    return Series(files=files, volume=volume, affine_ras=LPS_TO_RAS @ lps)


def dicom_affine_ras(ds: Dataset, slices: int = 1) -> np.ndarray:
    """Expected RAS affine of a single-frame image from its own geometry attributes."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    rc, cc = iop[:3], iop[3:]
    lps = np.eye(4)
    lps[:3, 0] = rc * float(ds.PixelSpacing[1])
    lps[:3, 1] = cc * float(ds.PixelSpacing[0])
    lps[:3, 2] = np.cross(rc, cc) * float(ds.get("SliceThickness", 1.0) or 1.0)
    lps[:3, 3] = np.asarray(ds.ImagePositionPatient, float)
    return LPS_TO_RAS @ lps
