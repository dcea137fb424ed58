"""imagedepot.validate: good outputs pass, each kind of damage is reported (never raised)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from imagedepot.convert.microscopy import convert_to_ome_zarr
from imagedepot.validate import detect_kind, inspect_nifti, validate_path

from .images import pattern, write_ome_tiff


def nifti(
    path: Path, *, affine: np.ndarray | None = None, codes: int = 1, qform: bool = True
) -> Path:
    aff = np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(pattern((6, 5, 4), "int16"), None)
    img.header.set_sform(aff, code=codes)
    if qform:
        img.header.set_qform(aff, code=codes)
    nib.save(img, path)
    return path


def test_nifti_good(tmp_path: Path) -> None:
    result = validate_path(nifti(tmp_path / "a.nii.gz"))
    assert result.valid, result.errors
    assert result.kind == "nifti"
    assert result.info["shape"] == [6, 5, 4]
    assert result.info["axcodes"] == ["R", "A", "S"]


def test_nifti_singular_affine_and_no_orientation(tmp_path: Path) -> None:
    flat = np.diag([2.0, 2.0, 0.0, 1.0])
    errors = validate_path(nifti(tmp_path / "flat.nii", affine=flat, qform=False)).errors
    assert any("singular" in e for e in errors)
    errors = validate_path(nifti(tmp_path / "nocode.nii", codes=0)).errors
    assert any("qform_code and sform_code" in e for e in errors)


def test_nifti_truncated_and_bad_scaling(tmp_path: Path) -> None:
    good = nifti(tmp_path / "a.nii.gz")
    cut = tmp_path / "cut.nii.gz"
    raw = gzip.decompress(good.read_bytes())
    cut.write_bytes(gzip.compress(raw[: len(raw) - 100]))
    assert any("cannot be read" in e for e in validate_path(cut).errors)

    plain = tmp_path / "s.nii"
    img = nib.load(nifti(tmp_path / "b.nii"))
    data = bytearray((tmp_path / "b.nii").read_bytes())
    data[112:116] = np.float32(np.inf).tobytes()  # scl_slope
    plain.write_bytes(bytes(data))
    assert img.shape == (6, 5, 4)
    assert any("scl_slope" in e for e in validate_path(plain).errors)
    # NaN slope means "unscaled" for nibabel-made files, but dcm2niix always writes one.
    data[112:116] = np.float32(np.nan).tobytes()
    plain.write_bytes(bytes(data))
    assert validate_path(plain).valid
    assert inspect_nifti(plain, require_scaling=True)[1]


def test_ome_zarr_damage(tmp_path: Path) -> None:
    src = write_ome_tiff(tmp_path / "s.ome.tif", [{"data": pattern((1, 2, 1, 40, 40))}])
    good = tmp_path / "good.ome.zarr"
    convert_to_ome_zarr(src, good, chunks=(16, 16))
    assert validate_path(good).valid
    assert detect_kind(good) == "ome-zarr"

    bad_meta = tmp_path / "meta.ome.zarr"
    shutil.copytree(good, bad_meta)
    attrs = json.loads((bad_meta / "0" / ".zattrs").read_text())
    attrs["multiscales"][0]["axes"] = attrs["multiscales"][0]["axes"][:2]
    (bad_meta / "0" / ".zattrs").write_text(json.dumps(attrs))
    errors = validate_path(bad_meta).errors
    assert errors and "ome-zarr-models" in errors[0]

    bad_chunk = tmp_path / "chunk.ome.zarr"
    shutil.copytree(good, bad_chunk)
    (bad_chunk / "0" / "0" / "0" / "0" / "0" / "0" / "0").write_bytes(b"not blosc")
    assert any("cannot be read" in e for e in validate_path(bad_chunk).errors)

    bad_xml = tmp_path / "xml.ome.zarr"
    shutil.copytree(good, bad_xml)
    xml = (bad_xml / "OME" / "METADATA.ome.xml").read_text()
    (bad_xml / "OME" / "METADATA.ome.xml").write_text(
        xml.replace("<MetadataOnly />", '<TiffData IFD="0" />')
    )
    assert any("MetadataOnly" in e for e in validate_path(bad_xml).errors)


def test_ome_tiff_damage(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint8))
    assert "not an OME-TIFF" in validate_path(plain).errors[0]

    lying = tmp_path / "lying.ome.tif"
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" SizeX="8" SizeY="8" SizeZ="3" '
        'SizeC="1" SizeT="1"><Channel ID="Channel:0:0"/><TiffData/></Pixels></Image></OME>'
    )
    tifffile.imwrite(lying, np.zeros((8, 8), np.uint8), description=xml, metadata=None)
    result = validate_path(lying)
    assert not result.valid


def test_unknown_and_missing(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    assert validate_path(tmp_path / "x.txt").kind == "unknown"
    assert not validate_path(tmp_path / "x.txt").valid
    assert validate_path(tmp_path / "none.nii").errors == ["no such file or folder"]


@pytest.mark.parametrize("name", ["a.ome.tiff", "a.TIF", "b.nii", "c.nii.gz"])
def test_detect_kind_by_name(tmp_path: Path, name: str) -> None:
    assert detect_kind(tmp_path / name) in {"ome-tiff", "nifti"}
