"""DICOM to NIfTI on awkward input: every file ends in an output or in a reason.

The rules under test are those of :mod:`imagedepot.convert.nifti` ("Rules for awkward series").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from imagedepot.convert.nifti import NoImageError, convert_dicom_series
from imagedepot.errors import InputError

from .test_nifti_geometry import (
    Acquisition,
    assert_matches_dicom,
    dicom_frames,
    expected_stacks,
    in_dicom_order,
    make_frames,
    niftis,
    write_single_frames,
)


def _testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not shipped with this pydicom")
    return Path(str(path))


def _same_series(path: Path, like: Path) -> None:
    """Put a file into the study and series of another (as a confused export would)."""
    ds = pydicom.dcmread(path)
    ref = pydicom.dcmread(like, stop_before_pixels=True)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ref.StudyInstanceUID, ref.SeriesInstanceUID
    ds.save_as(path)


# ----------------------------------------------------------------------------- several outputs


def test_localizer_images_inside_a_series_are_kept_apart_and_flagged(tmp_path: Path) -> None:
    main = Acquisition(orientation="axial", slices=6, description="t2_tse_tra")
    files = write_single_frames(tmp_path / "in", main)
    loc = Acquisition(
        orientation="sagittal",
        slices=3,
        rows=8,
        cols=8,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        study=main.study,
        series=main.series,
    )
    loc_frames = make_frames(loc)
    for f in loc_frames:
        f.instance += 100
    loc_files = write_single_frames(tmp_path / "loc", loc, loc_frames)
    for f in loc_files:
        shutil.move(f, tmp_path / "in" / f"L{f.name}")
    every = sorted((tmp_path / "in").iterdir())
    report = convert_dicom_series(every, tmp_path / "out", name="s")
    assert len(report.images) == 2  # nothing dropped
    flagged = [i for i in report.images if "localizer" in i["flags"]]
    plain = [i for i in report.images if "localizer" not in i["flags"]]
    assert len(flagged) == 1 and len(plain) == 1
    assert flagged[0]["shape"][:2] == [8, 8] and plain[0]["shape"] == [10, 12, 6]
    assert len({i["postfix"] for i in report.images}) == 2  # dcm2niix named them apart
    assert any("Slices not stacked" in m for m in report.messages)  # and said why
    [exp] = expected_stacks(dicom_frames(files)).values()
    assert_matches_dicom(Path(plain[0]["path"]), exp)
    [exp_loc] = expected_stacks(dicom_frames(sorted((tmp_path / "in").glob("L*")))).values()
    assert_matches_dicom(Path(flagged[0]["path"]), exp_loc)
    assert all(Path(i["sidecar"]).is_file() for i in report.images)


def test_three_plane_localizer_series(tmp_path: Path) -> None:
    """A localizer series (three orientations): one flagged output per orientation."""
    series, study = generate_uid(), generate_uid()
    for n, orientation in enumerate(("axial", "coronal", "sagittal")):
        acq = Acquisition(
            orientation=orientation,
            slices=2,
            description="AAHead_Scout",
            series=series,
            study=study,
        )
        frames = make_frames(acq)
        for f in frames:
            f.instance += 10 * n
        for f in write_single_frames(tmp_path / orientation, acq, frames):
            shutil.move(f, tmp_path / f"{orientation}-{f.name}")
    files = sorted(tmp_path.glob("*-IM*"))
    report = convert_dicom_series(files, tmp_path / "out", name="loc")
    assert len(report.images) == 3
    assert all(i["flags"] == ["localizer"] for i in report.images)
    assert sum(i["shape"][2] for i in report.images) == len(files)


def test_echoes_are_recorded_one_by_one(tmp_path: Path) -> None:
    acq = Acquisition(echoes=3, slices=3)
    files = write_single_frames(tmp_path / "in", acq)
    report = convert_dicom_series(files, tmp_path / "out", name="me")
    assert sorted((i["echo"], i["postfix"]) for i in report.images) == [
        (1, "_e1"),
        (2, "_e2"),
        (3, "_e3"),
    ]
    outputs = {Path(p).name for p in report.outputs}
    assert outputs == {f"me_e{n}{ext}" for n in (1, 2, 3) for ext in (".nii.gz", ".json")}


# ----------------------------------------------------------------------------- irregular slices


def _series_with_gap(folder: Path, **kw: object) -> tuple[list[Path], Acquisition, Path]:
    acq = Acquisition(orientation="axial", slices=8, **kw)  # type: ignore[arg-type]
    files = write_single_frames(folder, acq)
    missing = next(f for f in files if pydicom.dcmread(f).InstanceNumber == 5)
    return files, acq, missing


def test_missing_slice_is_quarantined_with_dcm2niix_words(tmp_path: Path) -> None:
    files, _, missing = _series_with_gap(tmp_path / "in")
    missing.unlink()
    with pytest.raises(InputError) as err:
        convert_dicom_series([f for f in files if f != missing], tmp_path / "out")
    reason = err.value.reason
    assert "irregular" in reason and "missing slices" in reason
    assert "Interslice distance varies" in reason  # dcm2niix's own message
    assert "irregular_slices='resample'" in reason
    assert not (tmp_path / "out").exists()


def test_missing_slice_resampled_when_asked(tmp_path: Path) -> None:
    files, _, missing = _series_with_gap(tmp_path / "in")
    [full] = expected_stacks(dicom_frames(files)).values()  # before the slice goes missing
    missing.unlink()
    kept = [f for f in files if f != missing]
    report = convert_dicom_series(kept, tmp_path / "out", name="s", irregular_slices="resample")
    [image] = report.images
    assert image["flags"] == ["resampled"] and image["postfix"] == "_Eq_1"
    assert sorted(Path(p).name for p in report.outputs) == ["s_Eq_1.json", "s_Eq_1.nii.gz"]
    assert any("s.nii.gz not kept" in m for m in report.messages)
    # Every acquired slice is where the DICOM says, with its values; the gap is interpolated.
    got = in_dicom_order(Path(image["path"]), full)[..., 0]
    for k in range(8):
        if k == 4:  # the missing one (instance 5)
            lo, hi = np.minimum(got[..., 3], got[..., 5]), np.maximum(got[..., 3], got[..., 5])
            assert ((got[..., 4] >= lo - 1) & (got[..., 4] <= hi + 1)).all()
        else:
            np.testing.assert_array_equal(got[..., k], full.data[..., k, 0])
    side = json.loads(Path(image["sidecar"]).read_text())
    assert side["EchoTime"] == pytest.approx(0.0045)


def test_uneven_spacing_is_quarantined(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=6))
    for f in files:
        ds = pydicom.dcmread(f)
        if ds.InstanceNumber > 3:
            ds.ImagePositionPatient[2] += 1.0  # 3.5 mm once, 2.5 mm elsewhere
        ds.save_as(f)
    with pytest.raises(InputError, match="irregular"):
        convert_dicom_series(files, tmp_path / "out")


def test_gantry_tilt(tmp_path: Path) -> None:
    acq = Acquisition(modality="CT", slices=6, description="head_ct")
    files = write_single_frames(tmp_path / "in", acq)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient[1] += 0.8 * (ds.InstanceNumber - 1)  # slices sheared along y
        ds.GantryDetectorTilt = 17.7
        ds.save_as(f)
    with pytest.raises(InputError, match="gantry tilt"):
        convert_dicom_series(files, tmp_path / "out")
    report = convert_dicom_series(files, tmp_path / "out", irregular_slices="resample")
    [image] = report.images
    assert image["postfix"].startswith("_Tilt") and image["flags"] == ["resampled"]


def test_irregular_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="irregular_slices"):
        convert_dicom_series([tmp_path / "x"], tmp_path / "out", irregular_slices="keep")


# ----------------------------------------------------------------------------- small and odd input


def test_single_file_series(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=1, orientation="coronal"))
    report = convert_dicom_series(files, tmp_path / "out")
    [nii] = niftis(report)
    assert nib.load(nii).shape == (10, 12, 1)
    [exp] = expected_stacks(dicom_frames(files)).values()
    assert_matches_dicom(nii, exp, spatial_axes=2)


@pytest.mark.parametrize(
    ("name", "modality"),
    [("test-SR.dcm", "SR"), ("reportsi.dcm", "SR"), ("waveform_ecg.dcm", "ECG")],
)
def test_non_image_objects_are_no_image(tmp_path: Path, name: str, modality: str) -> None:
    with pytest.raises(NoImageError) as err:
        convert_dicom_series([_testdata(name)], tmp_path / "out")
    reason = err.value.reason
    assert "no image to convert" in reason and f"({modality})" in reason
    assert "no pixel data" in reason
    assert "No valid DICOM images" in reason  # dcm2niix's own words
    assert isinstance(err.value, InputError)  # a data problem, never a crash


def test_presentation_state_is_no_image(tmp_path: Path) -> None:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    gsps = pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.11.1")
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = gsps
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.Modality = "PR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName = "Doe^Jane"
    path = tmp_path / "in" / "ps"
    path.parent.mkdir()
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(NoImageError, match=r"Grayscale Softcopy Presentation State.*no pixel"):
        convert_dicom_series([path], tmp_path / "out")


def test_report_inside_an_image_series_is_named(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=4))
    stray = tmp_path / "in" / "SR0001"
    shutil.copyfile(_testdata("test-SR.dcm"), stray)
    _same_series(stray, files[0])
    report = convert_dicom_series([*files, stray], tmp_path / "out")
    [exp] = expected_stacks(dicom_frames(files)).values()
    assert_matches_dicom(niftis(report)[0], exp)
    [note] = [m for m in report.messages if "in no NIfTI" in m]
    assert note.startswith("1 of 5 input file(s)") and "SR" in note and "no pixel data" in note


def test_duplicate_file_is_named(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=4))
    copy = tmp_path / "in" / "copy-of-IM0002"
    shutil.copyfile(files[1], copy)
    report = convert_dicom_series([*files, copy], tmp_path / "out")
    assert nib.load(niftis(report)[0]).shape == (10, 12, 4)
    [note] = [m for m in report.messages if "in no NIfTI" in m]
    assert note.startswith("1 of 5") and "duplicates removed" in note


def test_truncated_file_quarantines_with_dcm2niix_words(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=3))
    files[1].write_bytes(files[1].read_bytes()[:-60])
    with pytest.raises(InputError) as err:
        convert_dicom_series(files, tmp_path / "out")
    assert "File not large enough" in err.value.reason
    assert str(tmp_path) not in err.value.reason  # folders are replaced...
    assert "IM0" not in err.value.reason  # ...and so are the original file names
    assert "<input>/000" in err.value.reason


def test_not_dicom_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "notes.txt"
    bad.parent.mkdir()
    bad.write_text("scan notes\n" * 40)
    with pytest.raises(InputError) as err:
        convert_dicom_series([bad], tmp_path / "out")
    assert not isinstance(err.value, NoImageError)  # damaged input, not a report
    assert "not DICOM" in err.value.reason and "dcm2niix" in err.value.reason


@pytest.mark.parametrize("seed", [1, 11])  # today: 1 stacks right, 11 gives a singular affine
def test_instance_numbers_against_time_give_no_silent_volume(tmp_path: Path, seed: int) -> None:
    """4-D files whose instance numbers run against time: when dcm2niix cannot stack them it says
    so only in a warning; the read-back turns that into a quarantine, never a wrong volume."""
    acq = Acquisition(volumes=3, slices=4)
    frames = make_frames(acq)
    rng = np.random.default_rng(seed)
    for f, n in zip(frames, rng.permutation(len(frames)) + 1, strict=True):
        f.instance = int(n)
    files = write_single_frames(tmp_path / "in", acq, frames)
    try:
        report = convert_dicom_series(files, tmp_path / "out")
    except InputError as err:
        assert "slice direction" in err.reason or "singular" in err.reason
    else:  # if dcm2niix stacks them after all, the result must be right
        [exp] = expected_stacks(dicom_frames(files)).values()
        assert_matches_dicom(niftis(report)[0], exp)


def test_unknown_slice_direction_is_quarantined(tmp_path: Path) -> None:
    """pydicom's RT Dose (multi-frame, GridFrameOffsetVector): dcm2niix stacks the frames but
    cannot tell which way; a volume that may be flipped is not passed on."""
    with pytest.raises(InputError) as err:
        convert_dicom_series([_testdata("rtdose.dcm")], tmp_path / "out")
    assert "slice direction" in err.value.reason
    assert "Unable to determine slice direction" in err.value.reason  # dcm2niix's own words
    assert not (tmp_path / "out").exists()
