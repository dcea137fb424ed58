"""DICOM to NIfTI geometry: every voxel lands where the DICOM geometry says, with its value.

The series are made here (single-frame and enhanced multi-frame, 3-D and 4-D, several orientations
and slice orders, uncompressed and compressed), plus the DICOM test files shipped in pydicom.

The expectation is computed independently of dcm2niix and of the converter: the written files are
read back with pydicom, and each frame's ImagePositionPatient, ImageOrientationPatient,
PixelSpacing and rescale give the scanner position (LPS, flipped to RAS for NIfTI) and the value of
every pixel. A NIfTI passes when

* its voxel grid maps onto the DICOM pixel grid by a signed permutation of axes plus a whole-voxel
  offset (no resampling, no lost or invented slice);
* every voxel centre, through the NIfTI affine, is at the millimetre position computed from the
  ImagePositionPatient of *its own* slice (so slice order and spacing are checked, corners
  included);
* ``nibabel.aff2axcodes`` gives, for each axis, the anatomical direction of the DICOM direction
  cosine it comes from;
* every voxel value equals the DICOM pixel value (after rescale).

The builder here is also used by the other ``test_nifti*`` modules.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from imagedepot.convert.nifti import convert_dicom_series

ENHANCED_MR = UID("1.2.840.10008.5.1.4.1.1.4.1")
#: DICOM patient coordinates (LPS) to NIfTI world coordinates (RAS): x and y change sign.
LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
RAS_LETTERS = ("R", "A", "S")
OPPOSITE = {"R": "L", "A": "P", "S": "I"}
TOL_MM = 1e-3


# ----------------------------------------------------------------------------- building series


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about x, y or z."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


#: (row direction cosine, column direction cosine) in LPS, as ImageOrientationPatient holds them.
ORIENTATIONS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
_OBLIQUE = rotation("z", 10) @ rotation("y", -7) @ rotation("x", 20)
ORIENTATIONS["oblique"] = (
    tuple(float(v) for v in _OBLIQUE @ [1.0, 0.0, 0.0]),
    tuple(float(v) for v in _OBLIQUE @ [0.0, 1.0, 0.0]),
)


@dataclass
class Acquisition:
    """What a synthetic series looks like. Sizes are small on purpose (tests stay fast)."""

    orientation: str = "axial"
    rows: int = 12
    cols: int = 10
    slices: int = 5
    volumes: int = 1
    echoes: int = 1
    pixel_spacing: tuple[float, float] = (0.9, 1.1)  # (between rows, between columns), mm
    slice_spacing: float = 2.5
    origin: tuple[float, float, float] = (-12.0, 30.5, 41.0)
    descending: bool = False  # acquired from the last slice in space to the first
    shuffle: bool = False  # file names (or frames) in random order
    temporal_ids: bool = True  # 4-D: TemporalPositionIdentifier, else AcquisitionTime only
    slope: float = 1.0
    intercept: float = 0.0
    modality: str = "MR"
    manufacturer: str = "SIEMENS"
    description: str = "t1_mprage_sag"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND")
    patient_name: str = "Doe^Jane"
    study: str = field(default_factory=generate_uid)
    series: str = field(default_factory=generate_uid)
    frame_of_reference: str = field(default_factory=generate_uid)

    @property
    def row_cos(self) -> np.ndarray:
        return np.asarray(ORIENTATIONS[self.orientation][0])

    @property
    def col_cos(self) -> np.ndarray:
        return np.asarray(ORIENTATIONS[self.orientation][1])

    def position(self, k: int) -> list[float]:
        """ImagePositionPatient of slice ``k`` (0 = first along the slice normal)."""
        normal = np.cross(self.row_cos, self.col_cos)
        return [float(v) for v in np.asarray(self.origin) + k * self.slice_spacing * normal]


@dataclass
class Frame:
    """One 2-D image of a series: where it is, when, which echo, and its stored pixels."""

    slice: int
    volume: int
    echo: int
    position: list[float]
    pixels: np.ndarray  # (rows, columns) stored values
    instance: int = 0  # acquisition order, 1-based


def make_frames(acq: Acquisition, seed: int = 0) -> list[Frame]:
    """Frames in acquisition order (echo, volume, slice), each with distinct pixel values."""
    rng = np.random.default_rng(seed)
    frames = []
    r = np.arange(acq.rows)[:, None]
    c = np.arange(acq.cols)[None, :]
    for e in range(acq.echoes):
        for t in range(acq.volumes):
            order = range(acq.slices - 1, -1, -1) if acq.descending else range(acq.slices)
            for k in order:
                base = k * 300 + r * 20 + c - 50 + t * 7 + e * 1000
                pix = (base + rng.integers(0, 3, size=base.shape)).astype(np.int16)
                frames.append(Frame(k, t, e + 1, acq.position(k), pix))
    for n, f in enumerate(frames, start=1):
        f.instance = n
    if acq.shuffle:
        frames = [frames[i] for i in rng.permutation(len(frames))]
    return frames


def _dataset(acq: Acquisition, sop_class: UID) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID = acq.study
    ds.SeriesInstanceUID = acq.series
    ds.FrameOfReferenceUID = acq.frame_of_reference
    ds.Modality = acq.modality
    ds.Manufacturer = acq.manufacturer
    ds.PatientName = acq.patient_name
    ds.PatientID = "PID-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientPosition = "HFS"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240131"
    ds.SeriesNumber = 3
    ds.SeriesDescription = ds.ProtocolName = acq.description
    ds.ImageType = list(acq.image_type)
    ds.MagneticFieldStrength = 3.0
    ds.Rows, ds.Columns = acq.rows, acq.cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def _iop(acq: Acquisition) -> list[float]:
    return [float(v) for v in (*acq.row_cos, *acq.col_cos)]


def _save(ds: Dataset, path: Path, syntax: UID) -> None:
    if syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif syntax == JPEG2000Lossless:
        _compress_j2k(ds)
    elif syntax == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = syntax  # pydicom deflates the dataset when saving
    ds.save_as(path, enforce_file_format=True)


def _compress_j2k(ds: Dataset) -> None:
    """Lossless JPEG 2000 through Pillow's OpenJPEG (pydicom ships no J2K encoder)."""
    image = pytest.importorskip("PIL.Image")
    features = pytest.importorskip("PIL.features")
    if not features.check("jpg_2000"):
        pytest.skip("Pillow was built without OpenJPEG")
    ds.PixelRepresentation = 0  # Pillow encodes unsigned 16-bit
    pixels = np.frombuffer(ds.PixelData, np.int16).astype(np.uint16)
    n = int(ds.get("NumberOfFrames", 1))
    fragments = []
    for plane in pixels.reshape(n, ds.Rows, ds.Columns):
        buf = io.BytesIO()
        image.fromarray(plane).save(buf, format="JPEG2000", no_jp2=True, irreversible=False)
        fragments.append(buf.getvalue())
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless


def write_single_frames(
    folder: Path,
    acq: Acquisition,
    frames: list[Frame] | None = None,
    *,
    syntax: UID = ExplicitVRLittleEndian,
) -> list[Path]:
    """One file per frame (classic MR Image Storage), named ``IM0001``... in ``frames`` order."""
    frames = make_frames(acq) if frames is None else frames
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for n, f in enumerate(frames, start=1):
        ds = _dataset(acq, MRImageStorage)
        ds.InstanceNumber = f.instance
        ds.AcquisitionNumber = 1
        if acq.echoes > 1:
            ds.EchoNumbers = f.echo
        ds.EchoTime = 4.5 * f.echo
        ds.RepetitionTime = 2000.0
        ds.FlipAngle = 9.0
        seconds = f.volume * 2.0 + f.slice * 0.1
        ds.AcquisitionTime = f"1200{seconds:09.6f}"
        if acq.volumes > 1 and acq.temporal_ids:
            ds.TemporalPositionIdentifier = f.volume + 1
            ds.NumberOfTemporalPositions = acq.volumes
        ds.ImagePositionPatient = f.position
        ds.ImageOrientationPatient = _iop(acq)
        ds.PixelSpacing = [float(v) for v in acq.pixel_spacing]
        ds.SliceThickness = ds.SpacingBetweenSlices = float(acq.slice_spacing)
        ds.RescaleSlope = acq.slope
        ds.RescaleIntercept = acq.intercept
        ds.PixelData = f.pixels.tobytes()
        path = folder / f"IM{n:04d}"
        _save(ds, path, syntax)
        files.append(path)
    return files


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for key, value in values.items():
        setattr(item, key, value)
    return item


def write_enhanced(
    path: Path,
    acq: Acquisition,
    frames: list[Frame] | None = None,
    *,
    syntax: UID = ExplicitVRLittleEndian,
) -> Path:
    """One Enhanced MR Image Storage file: per-frame positions, shared orientation and spacing."""
    frames = make_frames(acq) if frames is None else frames
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _dataset(acq, ENHANCED_MR)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20240131", "120000"
    ds.AcquisitionDateTime = "20240131120000.000000"
    ds.ImageType = [*acq.image_type[:3], "NONE"]
    ds.NumberOfFrames = len(frames)
    org = generate_uid()
    ds.DimensionOrganizationSequence = DicomSequence([_item(DimensionOrganizationUID=org)])
    ds.DimensionIndexSequence = DicomSequence(
        [
            _item(
                DimensionOrganizationUID=org,
                DimensionIndexPointer=pointer,
                FunctionalGroupPointer=0x00209111,  # FrameContentSequence
            )
            # StackID, InStackPositionNumber, TemporalPositionIndex (as Siemens and Philips)
            for pointer in (0x00209056, 0x00209057, 0x00209128)
        ]
    )
    shared = _item(
        PixelMeasuresSequence=DicomSequence(
            [
                _item(
                    PixelSpacing=[float(v) for v in acq.pixel_spacing],
                    SliceThickness=float(acq.slice_spacing),
                    SpacingBetweenSlices=float(acq.slice_spacing),
                )
            ]
        ),
        PlaneOrientationSequence=DicomSequence([_item(ImageOrientationPatient=_iop(acq))]),
        PixelValueTransformationSequence=DicomSequence(
            [_item(RescaleSlope=acq.slope, RescaleIntercept=acq.intercept, RescaleType="US")]
        ),
        MRTimingAndRelatedParametersSequence=DicomSequence(
            [_item(RepetitionTime=2000.0, FlipAngle=9.0)]
        ),
    )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for f in frames:
        # InStackPositionNumber counts from the first slice acquired (PS3.3 C.7.6.16.2.2.4).
        in_stack = (acq.slices - f.slice) if acq.descending else (f.slice + 1)
        content = _item(
            StackID="1",
            InStackPositionNumber=in_stack,
            TemporalPositionIndex=f.volume + 1,
            DimensionIndexValues=[1, in_stack, f.volume + 1],
        )
        per_frame.append(
            _item(
                FrameContentSequence=DicomSequence([content]),
                PlanePositionSequence=DicomSequence([_item(ImagePositionPatient=f.position)]),
                MREchoSequence=DicomSequence([_item(EffectiveEchoTime=4.5 * f.echo)]),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.stack([f.pixels for f in frames]).tobytes()
    _save(ds, path, syntax)
    return path


# ----------------------------------------------------------------------------- the expectation


@dataclass
class DicomFrame:
    """What pydicom reads of one frame: geometry (LPS mm), values (rescaled), volume and echo."""

    position: np.ndarray
    row_cos: np.ndarray
    col_cos: np.ndarray
    spacing: tuple[float, float]  # (between rows, between columns)
    thickness: float
    values: np.ndarray  # (rows, columns), rescaled
    volume: float | None  # TemporalPositionIdentifier / TemporalPositionIndex, if any
    echo: float
    time: float = 0.0  # AcquisitionTime in seconds of the day, then InstanceNumber

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cos, self.col_cos)


def _first(seq_owner: Any, seq: str, attr: str) -> Any:
    for item in seq_owner.get(seq) or []:
        if attr in item:
            return item[attr].value
    return None


def dicom_frames(files: list[Path], pixels_of: dict[Path, np.ndarray] | None = None) -> list:
    """Read every frame of ``files`` with pydicom (``pixels_of`` overrides decoded pixels)."""
    out: list[DicomFrame] = []
    for path in files:
        ds = pydicom.dcmread(path)
        pixels = (pixels_of or {}).get(path)
        if pixels is None:
            pixels = ds.pixel_array
        if "PerFrameFunctionalGroupsSequence" in ds:
            shared = ds.SharedFunctionalGroupsSequence[0]
            pixels = pixels.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
            for i, per in enumerate(ds.PerFrameFunctionalGroupsSequence):

                def get(seq: str, attr: str, per: Dataset = per) -> Any:
                    value = _first(per, seq, attr)
                    return _first(shared, seq, attr) if value is None else value

                iop = np.asarray(get("PlaneOrientationSequence", "ImageOrientationPatient"), float)
                spacing = get("PixelMeasuresSequence", "PixelSpacing")
                slope = float(get("PixelValueTransformationSequence", "RescaleSlope") or 1)
                inter = float(get("PixelValueTransformationSequence", "RescaleIntercept") or 0)
                out.append(
                    DicomFrame(
                        position=np.asarray(
                            get("PlanePositionSequence", "ImagePositionPatient"), float
                        ),
                        row_cos=iop[:3],
                        col_cos=iop[3:],
                        spacing=(float(spacing[0]), float(spacing[1])),
                        thickness=float(get("PixelMeasuresSequence", "SliceThickness") or 1),
                        values=pixels[i].astype(float) * slope + inter,
                        volume=float(get("FrameContentSequence", "TemporalPositionIndex") or 0),
                        echo=float(get("MREchoSequence", "EffectiveEchoTime") or 0),
                        time=float(i),
                    )
                )
        else:
            iop = np.asarray(ds.ImageOrientationPatient, float)
            slope = float(ds.get("RescaleSlope", 1) or 1)
            inter = float(ds.get("RescaleIntercept", 0) or 0)
            volume = ds.get("TemporalPositionIdentifier")
            hhmmss = str(ds.get("AcquisitionTime", "") or "000000")
            seconds = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + float(hhmmss[4:] or 0)
            out.append(
                DicomFrame(
                    position=np.asarray(ds.ImagePositionPatient, float),
                    row_cos=iop[:3],
                    col_cos=iop[3:],
                    spacing=(float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
                    thickness=float(ds.get("SliceThickness", 1) or 1),
                    values=pixels.astype(float) * slope + inter,
                    volume=None if volume is None else float(volume),
                    echo=float(ds.get("EchoNumbers") or ds.get("EchoTime") or 0),
                    time=seconds + int(ds.get("InstanceNumber") or 0) * 1e-6,
                )
            )
    return out


@dataclass
class Expected:
    """One stack as the DICOM geometry says: slices sorted along the normal, volumes in time."""

    slices: list[list[DicomFrame]]  # [volume][slice]
    affine: np.ndarray  # 4x4, DICOM index (column, row, slice) -> RAS mm
    data: np.ndarray  # (columns, rows, slices, volumes), rescaled values

    @property
    def first(self) -> DicomFrame:
        return self.slices[0][0]


def expected_stacks(frames: list[DicomFrame]) -> dict[float, Expected]:
    """Group frames by echo, then volume; sort slices along the normal; derive the affine.

    Without a temporal index, the n-th acquisition (in time) at a slice position belongs to the
    n-th volume.
    """
    stacks: dict[float, Expected] = {}
    for echo in sorted({f.echo for f in frames}):
        of_echo = [f for f in frames if f.echo == echo]
        normal = of_echo[0].normal
        if any(f.volume is None for f in of_echo):
            at: dict[float, list[DicomFrame]] = {}
            for f in of_echo:
                at.setdefault(round(float(f.position @ normal), 3), []).append(f)
            for same_place in at.values():
                for rank, f in enumerate(sorted(same_place, key=lambda f: f.time)):
                    f.volume = float(rank)
        volumes = []
        for v in sorted({f.volume or 0.0 for f in of_echo}):
            vol = sorted(
                (f for f in of_echo if (f.volume or 0.0) == v), key=lambda f: f.position @ normal
            )
            volumes.append(vol)
        first, last = volumes[0][0], volumes[0][-1]
        n = len(volumes[0])
        lps = np.eye(4)
        lps[:3, 0] = first.row_cos * first.spacing[1]  # along a row: column index i
        lps[:3, 1] = first.col_cos * first.spacing[0]  # down a column: row index j
        lps[:3, 2] = (last.position - first.position) / (n - 1) if n > 1 else normal
        lps[:3, 3] = first.position
        ras = np.diag([*LPS_TO_RAS, 1.0]) @ lps
        data = np.stack([np.stack([f.values.T for f in vol], axis=-1) for vol in volumes], -1)
        stacks[echo] = Expected(volumes, ras, data)
    return stacks


def axis_code(vector_ras: np.ndarray) -> str:
    """Anatomical direction a RAS vector points to most (independent of nibabel)."""
    a = int(np.argmax(np.abs(vector_ras)))
    return RAS_LETTERS[a] if vector_ras[a] > 0 else OPPOSITE[RAS_LETTERS[a]]


def grid_map(affine: np.ndarray, exp: Expected, *, spatial_axes: int = 3) -> tuple:
    """NIfTI voxel index -> DICOM index: a signed permutation ``perm`` plus an ``offset``.

    Asserts that the mapping is one (no resampling, whole-voxel offset).
    """
    m = np.linalg.inv(exp.affine) @ affine
    perm = np.round(m[:3, :3])
    np.testing.assert_allclose(m[:3, :spatial_axes], perm[:, :spatial_axes], atol=1e-3)
    if spatial_axes == 2:  # one slice: the slice axis only has to be along the normal
        perm[:, 2] = [0, 0, 1] if perm[2, 2] >= 0 else [0, 0, -1]
    assert (np.abs(perm).sum(axis=0) == 1).all() and (np.abs(perm).sum(axis=1) == 1).all()
    offset = np.round(m[:3, 3])
    np.testing.assert_allclose(m[:3, 3], offset, atol=1e-3)
    return perm, offset


def in_dicom_order(nii: Path, exp: Expected) -> np.ndarray:
    """The NIfTI's values re-indexed (column, row, slice, volume) like :attr:`Expected.data`."""
    img = nib.load(nii)
    data = np.asanyarray(img.dataobj).astype(float)
    data = data.reshape(*data.shape[:3], -1)
    perm, offset = grid_map(img.affine, exp)
    out = np.full(exp.data.shape[:3] + data.shape[3:], np.nan)
    ijk = np.indices(data.shape[:3]).reshape(3, -1)
    src = (perm @ ijk + offset[:, None]).astype(int)
    out[tuple(src)] = data.reshape(-1, data.shape[3])
    return out


def assert_matches_dicom(nii: Path, exp: Expected, *, spatial_axes: int = 3) -> None:
    """The NIfTI holds the DICOM pixels at the DICOM positions (see the module docstring)."""
    img = nib.load(nii)
    a = img.affine
    data = np.asanyarray(img.dataobj).astype(float)  # scaled by scl_slope/scl_inter
    data = data.reshape(*data.shape[:3], -1)
    assert data.shape[3] == exp.data.shape[3], "number of volumes"
    assert sorted(data.shape[:3]) == sorted(exp.data.shape[:3]), "grid size"

    # 1. Grid to grid: a signed permutation of axes plus a whole-voxel offset.
    perm, offset = grid_map(a, exp, spatial_axes=spatial_axes)
    ijk = np.indices(data.shape[:3]).reshape(3, -1)
    src = (perm @ ijk + offset[:, None]).astype(int)
    assert (src >= 0).all() and (src < np.array(exp.data.shape[:3])[:, None]).all()

    # 2. Every voxel centre (corners included) at the position its own DICOM slice gives.
    mm_nifti = (a @ np.vstack([ijk, np.ones(ijk.shape[1])]))[:3]
    first_volume = exp.slices[0]
    ipp = np.stack([first_volume[k].position for k in src[2]], axis=1)
    f0 = exp.first
    lps = (
        ipp
        + f0.row_cos[:, None] * (src[0] * f0.spacing[1])
        + f0.col_cos[:, None] * (src[1] * f0.spacing[0])
    )
    np.testing.assert_allclose(mm_nifti, lps * LPS_TO_RAS[:, None], atol=TOL_MM)
    corners = [
        (i, j, k)
        for i in (0, data.shape[0] - 1)
        for j in (0, data.shape[1] - 1)
        for k in (0, data.shape[2] - 1)
    ]
    for corner in corners:
        got = (a @ [*corner, 1])[:3]
        c, r, k = (perm @ corner + offset).astype(int)
        f = first_volume[k]
        want = f.position + f.row_cos * c * f.spacing[1] + f.col_cos * r * f.spacing[0]
        np.testing.assert_allclose(got, want * LPS_TO_RAS, atol=TOL_MM, err_msg=f"corner {corner}")

    # 3. Orientation codes: each axis points where its DICOM direction cosine points.
    directions = [f0.row_cos, f0.col_cos, np.cross(f0.row_cos, f0.col_cos)]
    want_codes = []
    for axis in range(spatial_axes):
        b = int(np.flatnonzero(perm[:, axis])[0])
        want_codes.append(axis_code(perm[b, axis] * directions[b] * LPS_TO_RAS))
    assert list(nib.aff2axcodes(a))[:spatial_axes] == want_codes

    # 4. Voxel values, volume by volume.
    np.testing.assert_allclose(data.reshape(-1, data.shape[3]), exp.data[tuple(src)], atol=1e-4)


def niftis(report: Any) -> list[Path]:
    """The NIfTI outputs of a conversion report, sorted by name."""
    return sorted(Path(i["path"]) for i in report.images)


# ----------------------------------------------------------------------------- synthetic series


@pytest.mark.parametrize(
    ("orientation", "descending", "shuffle"),
    [
        ("axial", False, False),
        ("axial", True, True),
        ("coronal", False, True),
        ("coronal", True, False),
        ("sagittal", False, False),
        ("sagittal", True, True),
        ("oblique", False, True),
        ("oblique", True, False),
    ],
)
def test_single_frame_series(
    tmp_path: Path, orientation: str, descending: bool, shuffle: bool
) -> None:
    acq = Acquisition(orientation=orientation, descending=descending, shuffle=shuffle)
    files = write_single_frames(tmp_path / "in", acq)
    report = convert_dicom_series(files, tmp_path / "out", name="t1w")
    [nii] = niftis(report)
    assert nii.name == "t1w.nii.gz"
    [exp] = expected_stacks(dicom_frames(files)).values()
    assert_matches_dicom(nii, exp)
    img = nib.load(nii)
    np.testing.assert_allclose(sorted(img.header.get_zooms()[:3]), [0.9, 1.1, 2.5], atol=1e-4)
    assert report.images[0]["axcodes"] == list(nib.aff2axcodes(img.affine))
    assert report.images[0]["flags"] == [] and report.images[0]["postfix"] == ""


def test_expected_geometry_is_right_by_hand() -> None:
    """The expectation itself, on an axial series: columns go left, rows posterior (LPS)."""
    acq = Acquisition(orientation="axial", slices=3)
    frames = [
        DicomFrame(
            np.asarray(acq.position(k)),
            acq.row_cos,
            acq.col_cos,
            acq.pixel_spacing,
            2.5,
            np.zeros((12, 10)),
            0,
            0,
        )
        for k in (2, 0, 1)
    ]
    [exp] = expected_stacks(frames).values()
    assert nib.aff2axcodes(exp.affine) == ("L", "P", "S")
    # Voxel (9, 11, 2), the far corner: 9 columns of 1.1 mm left, 11 rows of 0.9 mm back, 2
    # slices of 2.5 mm up from ImagePositionPatient (-12, 30.5, 41) LPS = (12, -30.5, 41) RAS.
    np.testing.assert_allclose(exp.affine @ [9, 11, 2, 1], [12 - 9.9, -30.5 - 9.9, 46.0, 1])


def test_scaled_values(tmp_path: Path) -> None:
    acq = Acquisition(slope=0.5, intercept=-100.0, slices=3)
    files = write_single_frames(tmp_path / "in", acq)
    report = convert_dicom_series(files, tmp_path / "out")
    [nii] = niftis(report)
    assert_matches_dicom(nii, expected_stacks(dicom_frames(files))[4.5])
    assert report.images[0]["scl_slope"] == pytest.approx(0.5)


@pytest.mark.parametrize("temporal_ids", [True, False])
def test_4d_fmri_like(tmp_path: Path, temporal_ids: bool) -> None:
    """Volumes told apart by TemporalPositionIdentifier, or by AcquisitionTime: one 4-D NIfTI."""
    acq = Acquisition(
        orientation="oblique",
        slices=4,
        volumes=3,
        shuffle=True,
        description="bold_rest",
        temporal_ids=temporal_ids,
    )
    files = write_single_frames(tmp_path / "in", acq)
    report = convert_dicom_series(files, tmp_path / "out", name="bold")
    [nii] = niftis(report)
    assert nib.load(nii).shape == (10, 12, 4, 3)
    [exp] = expected_stacks(dicom_frames(files)).values()
    assert_matches_dicom(nii, exp)
    assert report.images[0]["zooms"][3] == pytest.approx(2.0)  # seconds between volumes


def test_multi_echo_gives_one_nifti_per_echo(tmp_path: Path) -> None:
    acq = Acquisition(echoes=2, slices=4, shuffle=True, orientation="coronal")
    files = write_single_frames(tmp_path / "in", acq)
    report = convert_dicom_series(files, tmp_path / "out", name="me")
    by_echo = {i["echo"]: i for i in report.images}
    assert sorted(by_echo) == [1, 2]
    stacks = expected_stacks(dicom_frames(files))
    for echo in (1, 2):
        assert_matches_dicom(Path(by_echo[echo]["path"]), stacks[float(echo)])
    tes = {i["echo"]: json.loads(Path(i["sidecar"]).read_text())["EchoTime"] for i in report.images}
    assert tes == {1: pytest.approx(0.0045), 2: pytest.approx(0.009)}


#: Vendor of the synthetic enhanced files. dcm2niix tunes its frame ordering per vendor; with
#: Philips (and unknown vendors) it follows the standard DimensionIndexValues, which is what these
#: files carry. See test_enhanced_4d_labelled_siemens for the other case.
ENHANCED_VENDOR = "Philips Medical Systems"


@pytest.mark.parametrize(
    ("orientation", "descending", "volumes", "shuffle"),
    [
        ("axial", False, 1, False),
        ("sagittal", True, 1, True),
        ("coronal", False, 3, False),
        ("oblique", False, 3, True),
    ],
)
def test_enhanced_multiframe(
    tmp_path: Path, orientation: str, descending: bool, volumes: int, shuffle: bool
) -> None:
    acq = Acquisition(
        orientation=orientation,
        descending=descending,
        volumes=volumes,
        shuffle=shuffle,
        slices=4,
        manufacturer=ENHANCED_VENDOR,
    )
    path = write_enhanced(tmp_path / "in" / "enhanced.dcm", acq)
    report = convert_dicom_series([path], tmp_path / "out", name="mf")
    [nii] = niftis(report)
    [exp] = expected_stacks(dicom_frames([path])).values()
    assert_matches_dicom(nii, exp)
    assert nib.load(nii).shape[3:] == ((volumes,) if volumes > 1 else ())


@pytest.mark.xfail(
    strict=True,
    reason="dcm2niix (v1.0.20260724) orders the frames of an Enhanced MR file labelled SIEMENS or "
    "GE by vendor convention, not by DimensionIndexValues: this synthetic 4-D file comes out with "
    "volumes and slices interleaved, and nothing in dcm2niix's output says so. Real Siemens XA "
    "files were not available to check. When this passes, drop the marker.",
)
def test_enhanced_4d_labelled_siemens(tmp_path: Path) -> None:
    acq = Acquisition(volumes=3, slices=4, manufacturer="SIEMENS")
    path = write_enhanced(tmp_path / "in" / "enhanced.dcm", acq)
    report = convert_dicom_series([path], tmp_path / "out")
    [exp] = expected_stacks(dicom_frames([path])).values()
    assert_matches_dicom(niftis(report)[0], exp)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, DeflatedExplicitVRLittleEndian])
@pytest.mark.parametrize("layout", ["single", "enhanced"])
def test_compressed_transfer_syntaxes(tmp_path: Path, syntax: UID, layout: str) -> None:
    acq = Acquisition(
        orientation="sagittal", slices=3, descending=True, manufacturer=ENHANCED_VENDOR
    )
    frames = make_frames(acq)
    if syntax == JPEG2000Lossless:  # stored unsigned for Pillow's encoder
        for f in frames:
            f.pixels += 100
    plain_dir, packed_dir = tmp_path / "plain", tmp_path / "packed"
    if layout == "single":
        plain = write_single_frames(plain_dir, acq, frames)
        packed = write_single_frames(packed_dir, acq, frames, syntax=syntax)
    else:
        plain = [write_enhanced(plain_dir / "mf.dcm", acq, frames)]
        packed = [write_enhanced(packed_dir / "mf.dcm", acq, frames, syntax=syntax)]
    assert pydicom.dcmread(packed[0]).file_meta.TransferSyntaxUID == syntax
    report = convert_dicom_series(packed, tmp_path / "out")
    [nii] = niftis(report)
    # The expectation comes from the uncompressed twin (pydicom may lack the decoder).
    values = {p: pydicom.dcmread(q).pixel_array for p, q in zip(packed, plain, strict=True)}
    [exp] = expected_stacks(dicom_frames(packed, pixels_of=values)).values()
    assert_matches_dicom(nii, exp)
    if syntax == DeflatedExplicitVRLittleEndian:
        assert any("inflated" in m for m in report.messages)


# ----------------------------------------------------------------------------- pydicom's files

PYDICOM_MR = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
]


def _testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not shipped with this pydicom")
    return Path(str(path))


@pytest.mark.parametrize("name", PYDICOM_MR)
def test_pydicom_mr_small_and_its_encodings(tmp_path: Path, name: str) -> None:
    """MR_small in every transfer syntax pydicom ships it in: same voxels, same place."""
    src = tmp_path / "in" / "image"
    src.parent.mkdir()
    shutil.copyfile(_testdata(name), src)
    reference = pydicom.dcmread(_testdata("MR_small.dcm")).pixel_array
    report = convert_dicom_series([src], tmp_path / "out", name="mr")
    [nii] = niftis(report)
    [exp] = expected_stacks(dicom_frames([src], pixels_of={src: reference})).values()
    assert_matches_dicom(nii, exp, spatial_axes=2)
    assert report.images[0]["shape"][:2] in ([64, 64],)


def test_pydicom_ct_small(tmp_path: Path) -> None:
    src = _testdata("CT_small.dcm")
    ds = pydicom.dcmread(src)
    assert float(ds.RescaleIntercept) != 0  # the test means something: values are rescaled
    report = convert_dicom_series([src], tmp_path / "out", name="ct")
    [nii] = niftis(report)
    [exp] = expected_stacks(dicom_frames([src])).values()
    assert_matches_dicom(nii, exp, spatial_axes=2)


def test_pydicom_emri_multiframe_if_present(tmp_path: Path) -> None:
    """emri_small*.dcm (multi-frame MR) come from pydicom-data, downloaded on demand: not here."""
    src = _testdata("emri_small.dcm")
    report = convert_dicom_series([src], tmp_path / "out", name="emri")
    assert niftis(report)


# ----------------------------------------------------------------------------- the checker itself


@pytest.mark.parametrize("damage", ["flip_slices", "swap_volumes", "half_voxel", "mirror_x"])
def test_checker_catches_damage(tmp_path: Path, damage: str) -> None:
    """assert_matches_dicom fails on the silent errors it exists for."""
    acq = Acquisition(orientation="oblique", slices=4, volumes=2)
    files = write_single_frames(tmp_path / "in", acq)
    report = convert_dicom_series(files, tmp_path / "out")
    [exp] = expected_stacks(dicom_frames(files)).values()
    img = nib.load(niftis(report)[0])
    data = np.asanyarray(img.dataobj)
    affine = img.affine.copy()
    if damage == "flip_slices":  # data reversed along the slice axis, affine unchanged
        data = data[:, :, ::-1]
    elif damage == "swap_volumes":
        data = data[..., ::-1]
    elif damage == "half_voxel":
        affine[:3, 3] += 0.5 * affine[:3, 2]
    else:  # the x axis flipped in the affine only (a left-right error)
        affine[:3, 0] *= -1
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), bad)
    with pytest.raises(AssertionError):
        assert_matches_dicom(bad, exp)
