"""DICOM series to NIfTI with dcm2niix: geometry, voxel data, safety of inputs and names."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imagedepot.convert.nifti import convert_dicom_series, find_dcm2niix
from imagedepot.errors import InputError, OutputExistsError
from imagedepot.io import sha256_file

from .dicom_factory import ORIENTATIONS, dicom_affine_ras, oblique, write_series

FLIP = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def assert_same_geometry(
    nii: Path, affine: np.ndarray, data_ijk: np.ndarray, *, axes: int = 3
) -> None:
    """The NIfTI shows the same voxels at the same places as the DICOM geometry says.

    ``affine`` maps DICOM indices (column, row, slice) to RAS mm. The NIfTI may order or flip its
    axes differently: the mapping from NIfTI to DICOM indices must be a signed permutation with an
    integer offset, each NIfTI affine column must be the matching DICOM column (signed), the
    orientation codes must follow, and every voxel value must match.
    """
    img = nib.load(nii)
    a_n = img.affine
    m = np.linalg.inv(affine) @ a_n
    lin = m[:3, :3]
    perm = np.round(lin).astype(int)
    np.testing.assert_allclose(lin[:, :axes], perm[:, :axes], atol=2e-3)
    assert (np.abs(perm[:, :axes]).sum(axis=0) == 1).all()
    offset = np.round(m[:3, 3]).astype(int)
    np.testing.assert_allclose(m[:3, 3], offset, atol=2e-3)
    want_codes = nib.aff2axcodes(affine)
    got_codes = nib.aff2axcodes(a_n)
    for a in range(axes):
        b = int(np.flatnonzero(perm[:, a])[0])
        sign = perm[b, a]
        np.testing.assert_allclose(a_n[:3, a], sign * affine[:3, b], atol=2e-3)
        assert got_codes[a] == (want_codes[b] if sign > 0 else FLIP[want_codes[b]])
    data = np.asanyarray(img.dataobj)
    data = data.reshape(data.shape[:3])
    idx = np.indices(data.shape).reshape(3, -1)
    src = perm @ idx + offset[:, None]
    assert (src >= 0).all()
    assert (src < np.array(data_ijk.shape)[:, None]).all()
    np.testing.assert_array_equal(data.reshape(-1), data_ijk[tuple(src)])


CASES = {
    "axial-ascending": (ORIENTATIONS["axial"], False),
    "axial-descending": (ORIENTATIONS["axial"], True),
    "sagittal": (ORIENTATIONS["sagittal"], False),
    "coronal": (ORIENTATIONS["coronal"], False),
    "oblique": (oblique(), False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_geometry_and_voxels(tmp_path: Path, case: str) -> None:
    (row_cos, col_cos), descending = CASES[case]
    series = write_series(tmp_path / "in", row_cos=row_cos, col_cos=col_cos, descending=descending)
    report = convert_dicom_series(series.files, tmp_path / "out", name="t1w")
    niftis = [Path(p) for p in report.outputs if p.endswith(".nii.gz")]
    assert [p.name for p in niftis] == ["t1w.nii.gz"]
    img = nib.load(niftis[0])
    assert sorted(img.shape) == sorted(series.data_ijk.shape)
    zooms = sorted(float(z) for z in img.header.get_zooms()[:3])
    np.testing.assert_allclose(zooms, sorted([0.9, 1.1, 2.5]), atol=1e-4)
    assert_same_geometry(niftis[0], series.affine_ras, series.data_ijk)
    assert report.images[0]["axcodes"] == list(nib.aff2axcodes(img.affine))


def test_report_and_sidecar(tmp_path: Path) -> None:
    series = write_series(tmp_path / "in", row_cos=[1, 0, 0], col_cos=[0, 1, 0])
    report = convert_dicom_series(series.files, tmp_path / "out", name="run-1")
    d = report.to_dict()
    assert d["step"] == "convert_nifti"
    assert d["input_count"] == len(series.files)
    assert d["versions"]["dcm2niix"].startswith("v")
    args = d["arguments"]
    assert args[0] == "dcm2niix"
    assert args[args.index("-b") + 1] == "y"
    assert args[args.index("-ba") + 1] == "n"
    assert args[args.index("-f") + 1] == "run-1"
    assert "<input>" in args and "<output>" in args
    names = sorted(Path(p).name for p in d["outputs"])
    assert names == ["run-1.json", "run-1.nii.gz"]
    sidecar = json.loads((tmp_path / "out" / "run-1.json").read_text())
    assert sidecar["EchoTime"] == pytest.approx(0.0045)
    # -ba n keeps what the de-identifier must clean (it owns that step).
    assert "PatientName" in sidecar or "PatientID" in sidecar
    json.dumps(d)


def test_inputs_untouched_and_names_not_leaked(tmp_path: Path) -> None:
    folder = tmp_path / "Doe_Jane_1970-01-01"
    series = write_series(folder, row_cos=[1, 0, 0], col_cos=[0, 1, 0])
    before = {p: (sha256_file(p), p.stat().st_mtime_ns) for p in series.files}
    listing = sorted(folder.iterdir())
    report = convert_dicom_series(series.files, tmp_path / "out")
    assert {p: (sha256_file(p), p.stat().st_mtime_ns) for p in series.files} == before
    assert sorted(folder.iterdir()) == listing
    out_names = " ".join(p.name for p in (tmp_path / "out").iterdir())
    assert "Doe" not in out_names and "IM0001" not in out_names
    text = json.dumps(report.to_dict()["arguments"] + report.to_dict()["messages"])
    assert "Doe_Jane" not in text and "IM0" not in text
    for p in (tmp_path / "out").glob("*.json"):
        assert "Doe_Jane_1970" not in p.read_text()


def test_uncompressed(tmp_path: Path) -> None:
    series = write_series(tmp_path / "in", row_cos=[1, 0, 0], col_cos=[0, 1, 0], slices=3)
    report = convert_dicom_series(series.files, tmp_path / "out", compress=False)
    assert sorted(Path(p).name for p in report.outputs) == ["series.json", "series.nii"]
    assert_same_geometry(tmp_path / "out" / "series.nii", series.affine_ras, series.data_ijk)


def test_pydicom_test_file(tmp_path: Path) -> None:
    pydicom_data = pytest.importorskip("pydicom.data")
    import pydicom

    path = pydicom_data.get_testdata_file("MR_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom test file MR_small.dcm not shipped")
    ds = pydicom.dcmread(path)
    report = convert_dicom_series([Path(path)], tmp_path / "out", name="mr")
    nii = tmp_path / "out" / "mr.nii.gz"
    assert str(nii) in report.outputs
    img = nib.load(nii)
    assert img.shape[:2] in {(ds.Columns, ds.Rows), (ds.Rows, ds.Columns)}
    expected = ds.pixel_array.astype(np.float64).T[:, :, None]  # (column, row, slice)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    inter = float(ds.get("RescaleIntercept", 0) or 0)
    assert_same_geometry(nii, dicom_affine_ras(ds), expected * slope + inter, axes=2)


def test_out_dir_exists(tmp_path: Path) -> None:
    series = write_series(tmp_path / "in", row_cos=[1, 0, 0], col_cos=[0, 1, 0], slices=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        convert_dicom_series(series.files, out)
    assert (out / "old.txt").exists()
    convert_dicom_series(series.files, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["series.json", "series.nii.gz"]


def test_not_dicom_is_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "junk.dcm"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not DICOM" * 40)
    with pytest.raises(InputError) as err:
        convert_dicom_series([bad], tmp_path / "out")
    assert "dcm2niix" in err.value.reason
    assert err.value.path == str(bad.resolve())
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no temporary left


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        convert_dicom_series([tmp_path / "nope.dcm"], tmp_path / "out")


@pytest.mark.parametrize("name", ["%n_%i", "../x", "", "a/b", "-x"])
def test_name_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        convert_dicom_series([tmp_path / "x.dcm"], tmp_path / "out", name=name)


def test_find_dcm2niix() -> None:
    assert Path(find_dcm2niix()).is_file()
