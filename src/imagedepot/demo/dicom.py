"""The demo's DICOM studies: MR, CT, a secondary capture and an ultrasound capture full of
fake PHI, shuffled into subject folders with a DICOMDIR and a truncated copy.
"""

from __future__ import annotations

import datetime as dt
import shutil
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imagedepot.demo.cohort import (
    _DEVICES,
    _IMPLEMENTATION_UID,
    _IMPLEMENTATION_VERSION,
    _STUDY_REFERENCE_SOP_CLASS,
    DEMO_UID_ROOT,
    INSTITUTION,
    INSTITUTION_ADDRESS,
    OPERATOR,
    PERFORMING,
    REFERRING,
    STUDIES,
    SUBJECT_A,
    SUBJECT_B,
    SUBJECT_C,
    SUBJECTS,
    _iso,
    _Series,
    _Study,
)
from imagedepot.demo.phantoms import _body_ct, _head_mr, _rng, _screen_capture, _ultrasound_capture
from imagedepot.io import TMP_PREFIX


def _csa2(entries: Sequence[tuple[str, str, Sequence[str]]]) -> bytes:
    """Encode a Siemens-CSA2-like header: 'SV10' tag table with null-terminated string items."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(entries), 77)
    for name, vr, values in entries:
        out += struct.pack("<64si4s3i", name.encode(), len(values), vr.encode(), 3, len(values), 77)
        for value in values:
            data = value.encode() + b"\x00"
            out += struct.pack("<4i", len(data), len(data), 77, len(data))
            out += data + b"\x00" * (-len(data) % 4)
    return bytes(out)


def _add_siemens_private(ds: Any, study: _Study) -> None:
    """Private group 0029 as Siemens writes it, with the patient's name inside the CSA blobs."""
    s = study.subject
    image = _csa2(
        [
            ("ImaPATModeText", "LO", ["p2"]),
            ("PatientName", "PN", [s.name]),
            ("SliceNormalVector", "FD", ["0.0", "0.0", "1.0"]),
        ]
    )
    phoenix = (
        f'ulVersion = 0x14b44b6\ntPatientName = "{s.name}"\ntPatientID = "{s.patient_id}"\n'
        f'sProtConsistencyInfo.tBaselineString = "N4_VE11C"\ntInstitution = "{INSTITUTION}"\n'
    )
    series = _csa2([("MrPhoenixProtocol", "UN", [phoenix]), ("NumberOfPrescans", "IS", ["0"])])
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x08, "CS", "IMAGE NUM 4")
    block.add_new(0x09, "LO", study.date)
    block.add_new(0x10, "OB", image)
    block.add_new(0x18, "CS", "MR")
    block.add_new(0x19, "LO", study.date)
    block.add_new(0x20, "OB", series)


def _age(birth: str, on: str) -> str:
    b, d = dt.date.fromisoformat(_iso(birth)), dt.date.fromisoformat(_iso(on))
    years = d.year - b.year - ((d.month, d.day) < (b.month, b.day))
    return f"{years:03d}Y"


def _time_plus(tm: str, seconds: int) -> str:
    t = dt.datetime.strptime(tm, "%H%M%S") + dt.timedelta(seconds=seconds)
    return t.strftime("%H%M%S")


def _dataset(study: _Study, series: _Series, number: int, sop_class: str) -> Any:
    """Patient, study, series, equipment and SOP common modules full of fake PHI."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    s = study.subject
    sop_uid = f"{DEMO_UID_ROOT}.3.{study.index}.{series.number}.{number}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(_IMPLEMENTATION_UID)
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.file_meta = meta
    series_offset = 600 * (series.number % 10)  # seconds after the study start
    acq_time = _time_plus(study.time, series_offset + number)
    maker, model, station, serial, software = _DEVICES[series.modality]

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = (
        ["DERIVED", "SECONDARY", "OTHER"]
        if series.modality in ("OT", "US")
        else ["ORIGINAL", "PRIMARY", "AXIAL"]
    )
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = acq_time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study.date
    ds.SeriesDate = study.date
    ds.AcquisitionDate = study.date
    ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = _time_plus(study.time, series_offset)
    ds.AcquisitionTime = acq_time
    ds.ContentTime = acq_time
    ds.AccessionNumber = study.accession
    ds.Modality = series.modality
    ds.Manufacturer = maker
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = INSTITUTION_ADDRESS
    ds.ReferringPhysicianName = REFERRING
    ds.StationName = station
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.InstitutionalDepartmentName = "Radiology"
    ds.PerformingPhysicianName = PERFORMING
    ds.OperatorsName = OPERATOR
    ds.ManufacturerModelName = model
    ref = Dataset()
    ref.ReferencedSOPClassUID = _STUDY_REFERENCE_SOP_CLASS
    ref.ReferencedSOPInstanceUID = study.uid
    ds.ReferencedStudySequence = [ref]

    ds.PatientName = s.name
    ds.PatientID = s.patient_id
    ds.IssuerOfPatientID = "ST EXAMPLE MRN"
    ds.PatientBirthDate = s.birth_date
    ds.PatientSex = s.sex
    ds.OtherPatientIDs = s.other_id
    other = Dataset()
    other.PatientID = s.other_id
    other.IssuerOfPatientID = "NHS"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = [other]
    ds.PatientAge = _age(s.birth_date, study.date)
    ds.PatientSize = f"{s.height_m:.2f}"
    ds.PatientWeight = f"{s.weight_kg:.1f}"
    ds.PatientAddress = s.address
    ds.PatientTelephoneNumbers = s.phone

    ds.BodyPartExamined = series.body_part
    ds.DeviceSerialNumber = serial
    ds.SoftwareVersions = software
    ds.ProtocolName = series.protocol
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = f"{DEMO_UID_ROOT}.2.{study.index}.{series.number}"
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = number

    request = Dataset()
    request.AccessionNumber = study.accession
    request.RequestedProcedureDescription = study.description
    request.ScheduledProcedureStepID = study.step_id
    request.RequestedProcedureID = study.requested_procedure_id
    request.ReasonForTheRequestedProcedure = (
        f"Follow-up for {s.plain_name}, born {_iso(s.birth_date)}"
    )
    ds.RequestAttributesSequence = [request]
    return ds


def _set_pixels(ds: Any, pixels: npt.NDArray[Any], bits_stored: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()


def _set_geometry(
    ds: Any, study: _Study, series: _Series, k: int, spacing: float, thickness: float, z0: float
) -> None:
    """Axial slice ``k``: rows along +y (posterior), columns along +x (left), z stepping up."""
    n = 64
    half = spacing * n / 2
    z = z0 + k * thickness
    ds.FrameOfReferenceUID = f"{DEMO_UID_ROOT}.4.{study.index}.{series.number}"
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [-half + spacing / 2, -half + spacing / 2, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = thickness
    ds.SpacingBetweenSlices = thickness
    ds.SliceLocation = z


def _mr_series(study: _Study, series: _Series) -> list[Any]:
    from pydicom.uid import MRImageStorage

    vol = _head_mr(_rng(f"mr-{study.index}"), series.slices, 64, 64)
    out = []
    for k in range(series.slices):
        ds = _dataset(study, series, k + 1, MRImageStorage)
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = ["SK", "SP"]
        ds.ScanOptions = "PFP"
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 500
        ds.EchoTime = 15
        ds.FlipAngle = 90
        ds.EchoTrainLength = 1
        ds.NumberOfAverages = 1
        ds.ImagingFrequency = 123.25
        ds.ImagedNucleus = "1H"
        ds.MagneticFieldStrength = 3
        ds.PixelBandwidth = 130
        ds.AcquisitionMatrix = [0, 64, 64, 0]
        ds.InPlanePhaseEncodingDirection = "ROW"
        ds.AcquisitionDateTime = f"{study.date}{ds.AcquisitionTime}.000000"
        _set_geometry(ds, study, series, k, 3.75, 5.0, -47.5)
        _set_pixels(ds, vol[k], 12)
        ds.WindowCenter = 600
        ds.WindowWidth = 1200
        _add_siemens_private(ds, study)
        out.append(ds)
    return out


def _ct_series(study: _Study, series: _Series) -> list[Any]:
    from pydicom.uid import CTImageStorage

    hu = _body_ct(_rng(f"ct-{study.index}"), series.body_part, series.slices, 64, 64)
    stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.int16)
    head = series.body_part == "HEAD"
    spacing, thickness = (3.90625, 5.0) if head else (6.25, 10.0)
    z0 = -30.0 if head else -1250.0
    out = []
    for k in range(series.slices):
        ds = _dataset(study, series, k + 1, CTImageStorage)
        ds.KVP = 120
        ds.DataCollectionDiameter = 500
        ds.ReconstructionDiameter = spacing * 64
        ds.GantryDetectorTilt = 0
        ds.XRayTubeCurrent = 200
        ds.ExposureTime = 500
        ds.ConvolutionKernel = "Hr40" if head else "Br40"
        _set_geometry(ds, study, series, k, spacing, thickness, z0)
        _set_pixels(ds, stored[k], 16)
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = 40 if head else -600
        ds.WindowWidth = 80 if head else 1500
        out.append(ds)
    return out


def _sc_series(study: _Study, series: _Series) -> list[Any]:
    from pydicom.uid import SecondaryCaptureImageStorage

    ds = _dataset(study, series, 1, SecondaryCaptureImageStorage)
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ""  # General Image, Type 2C without an image plane: empty
    ds.DateOfSecondaryCapture = study.date
    ds.TimeOfSecondaryCapture = ds.ContentTime
    ds.BurnedInAnnotation = "YES"
    _set_pixels(ds, _screen_capture(_rng(f"sc-{study.index}"), study.subject), 8)
    return [ds]


def _us_series(study: _Study, series: _Series) -> list[Any]:
    """An ultrasound screen capture stored as Secondary Capture, text burned in, from a device
    that no pixel-cleaning rule knows."""
    from pydicom.uid import SecondaryCaptureImageStorage

    ds = _dataset(study, series, 1, SecondaryCaptureImageStorage)
    ds.ConversionType = "DV"
    ds.PatientOrientation = ""  # General Image, Type 2C without an image plane: empty
    ds.BurnedInAnnotation = "YES"
    _set_pixels(ds, _ultrasound_capture(_rng(f"us-{study.index}"), study.subject), 8)
    return [ds]


def _series_datasets(study: _Study) -> list[Any]:
    out: list[Any] = []
    for series in study.series:
        make = {"MR": _mr_series, "CT": _ct_series, "OT": _sc_series, "US": _us_series}[
            series.modality
        ]
        out += make(study, series)
    return out


def _save(ds: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _write_dicomdir(datasets: Sequence[Any], dest: Path) -> None:
    """A real DICOMDIR (pydicom FileSet) describing ``datasets``.

    Its records point at pydicom's file-set layout (``PT000000/ST000000/...``), not at the
    shuffled files beside it: scanning must ignore DICOMDIR files, not follow them.
    """
    from pydicom.fileset import FileSet
    from pydicom.uid import UID

    fs = FileSet()
    fs.ID = "DEMO"
    fs.UID = UID(f"{DEMO_UID_ROOT}.5.1")
    for ds in datasets:
        fs.add(ds)
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as tmp:
        fs.write(tmp)
        shutil.copyfile(Path(tmp) / "DICOMDIR", dest)
    # pydicom 3.0 gives each FileSet a staging TemporaryDirectory and leaves it to the garbage
    # collector (a ResourceWarning at exit); remove it now when that private detail is there.
    stage = getattr(fs, "_stage", {}).get("t")
    if isinstance(stage, tempfile.TemporaryDirectory):
        stage.cleanup()


def _write_dicom(inbox: Path) -> None:
    by_subject: dict[str, list[Any]] = {s.folder: [] for s in SUBJECTS}
    for study in STUDIES:
        by_subject[study.subject.folder] += _series_datasets(study)

    # Subject A: both studies shuffled into one folder, every third file in a subfolder.
    folder_a = inbox / SUBJECT_A.folder
    datasets_a = by_subject[SUBJECT_A.folder]
    order = _rng("shuffle").permutation(len(datasets_a))
    for n, idx in enumerate(order, start=1):
        sub = folder_a / "DICOM" if n % 3 == 0 else folder_a
        _save(datasets_a[int(idx)], sub / f"IM{n:04d}")
    _write_dicomdir(datasets_a, folder_a / "DICOMDIR")

    for subject in (SUBJECT_B, SUBJECT_C):
        for n, ds in enumerate(by_subject[subject.folder], start=1):
            _save(ds, inbox / subject.folder / f"IM{n:04d}")

    # A copy cut short, as after an interrupted transfer: must end in quarantine.
    first_b = (inbox / SUBJECT_B.folder / "IM0001").read_bytes()
    (inbox / SUBJECT_B.folder / "IM9999").write_bytes(first_b[:200])
