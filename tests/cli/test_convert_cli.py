"""``imagedepot convert`` and ``imagedepot validate`` through ``main()``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from imagedepot import cli


@pytest.fixture
def imagedepot(monkeypatch):
    """``main`` with only the verbs under test registered (others may not import here)."""
    monkeypatch.setattr(cli, "VERBS", ("convert", "validate"))
    return cli.main


def write_dicom_series(folder: Path, slices: int = 3) -> list[Path]:
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = MRImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientName, ds.PatientID = "MR", "Doe^John", "P1"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 2.0
        ds.Rows, ds.Columns = 8, 6
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (np.arange(48, dtype=np.uint16) + 100 * k).tobytes()
        path = folder / f"slice{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_ome_tiff(path: Path) -> np.ndarray:
    data = np.arange(2 * 3 * 40 * 36, dtype=np.uint16).reshape(1, 2, 3, 40, 36)
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.4,
            "PhysicalSizeY": 0.4,
            "Channel": {"Name": ["a", "b"]},
        },
    )
    return data


def test_nifti_from_folder_with_report(tmp_path: Path, imagedepot) -> None:
    write_dicom_series(tmp_path / "series")
    out = tmp_path / "out"
    rc = imagedepot(
        [
            "convert",
            "nifti",
            str(tmp_path / "series"),
            str(out),
            "--name",
            "t2",
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["t2.json", "t2.nii.gz"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["input_count"] == 3
    assert report["arguments"][report["arguments"].index("-ba") + 1] == "n"
    assert imagedepot(["validate", str(out / "t2.nii.gz")]) == 0


def test_nifti_from_item_json(tmp_path: Path, imagedepot, monkeypatch) -> None:
    paths = write_dicom_series(tmp_path / "inbox" / "Doe_John")
    monkeypatch.chdir(tmp_path)
    item = {
        "id": "dcm-subj01-d001",
        "kind": "dicom",
        "files": [{"path": str(p.relative_to(tmp_path)), "size": p.stat().st_size} for p in paths],
    }
    (tmp_path / "item.json").write_text(json.dumps(item))
    assert imagedepot(["convert", "nifti", "item.json", "out", "--no-compress"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "dcm-subj01-d001.json",
        "dcm-subj01-d001.nii",
    ]


def test_nifti_errors_exit_1(tmp_path: Path, imagedepot, caplog) -> None:
    bad = tmp_path / "junk"
    bad.mkdir()
    (bad / "x.dcm").write_bytes(b"nope" * 100)
    assert imagedepot(["convert", "nifti", str(bad), str(tmp_path / "out")]) == 1
    assert "Unable to find any DICOM" in caplog.text
    caplog.clear()
    write_dicom_series(tmp_path / "s")
    (tmp_path / "exists").mkdir()
    assert imagedepot(["convert", "nifti", str(tmp_path / "s"), str(tmp_path / "exists")]) == 1
    assert "--force" in caplog.text
    assert (
        imagedepot(["convert", "nifti", str(tmp_path / "s"), str(tmp_path / "exists"), "--force"])
        == 0
    )
    (tmp_path / "item.json").write_text('{"files": []}')
    assert imagedepot(["convert", "nifti", str(tmp_path / "item.json"), str(tmp_path / "o2")]) == 1


def test_bad_name_is_usage_error(tmp_path: Path, imagedepot) -> None:
    with pytest.raises(SystemExit) as exc:
        imagedepot(["convert", "nifti", str(tmp_path), str(tmp_path / "o"), "--name", "%n"])
    assert exc.value.code == 2


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr(tmp_path: Path, imagedepot, version: str) -> None:
    data = write_ome_tiff(tmp_path / "img.ome.tif")
    out = tmp_path / "img.ome.zarr"
    argv = [
        "convert",
        "ome-zarr",
        str(tmp_path / "img.ome.tif"),
        str(out),
        "--ngff-version",
        version,
    ]
    argv += ["--chunks", "16,16", "--levels", "2", "--report", str(tmp_path / "r.json")]
    assert imagedepot(argv) == 0
    group = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(group["0"]["0"][:], data)
    assert group["0"]["0"].chunks == (1, 1, 1, 16, 16)
    assert group["0"]["1"].shape == (1, 2, 3, 20, 18)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"][0]["channel_names"] == ["a", "b"]
    assert report["options"]["ngff_version"] == version
    assert imagedepot(["validate", str(out)]) == 0


def test_ome_tiff_from_item_json(tmp_path: Path, imagedepot) -> None:
    data = write_ome_tiff(tmp_path / "img.ome.tif")
    (tmp_path / "item.json").write_text(
        json.dumps({"id": "m1", "files": [{"path": str(tmp_path / "img.ome.tif")}]})
    )
    out = tmp_path / "out.ome.tif"
    assert (
        imagedepot(
            [
                "convert",
                "ome-tiff",
                str(tmp_path / "item.json"),
                str(out),
                "--tile",
                "16",
                "--compression",
                "none",
            ]
        )
        == 0
    )
    with tifffile.TiffFile(out) as tif:
        np.testing.assert_array_equal(tif.series[0].asarray().reshape(data.shape), data)
        assert tif.pages[0].compression == 1
        assert len(tif.series[0].levels) == 3
    assert imagedepot(["validate", str(out)]) == 0


def test_microscopy_usage_errors(tmp_path: Path, imagedepot) -> None:
    for argv in (
        ["convert", "ome-tiff", "a.tif", "b.ome.tif", "--tile", "100"],
        ["convert", "ome-zarr", "a.tif", "b.ome.zarr", "--chunks", "1,2,3"],
        ["convert", "ome-zarr", "a.tif", "b.ome.zarr", "--ngff-version", "0.3"],
        ["convert", "ome-zarr", "a.tif", "b.ome.zarr", "--java-heap", "lots"],
    ):
        with pytest.raises(SystemExit) as exc:
            imagedepot(argv)
        assert exc.value.code == 2


def test_corrupt_image_exit_1(tmp_path: Path, imagedepot, caplog) -> None:
    (tmp_path / "bad.tif").write_bytes(b"garbage" * 10)
    assert (
        imagedepot(["convert", "ome-zarr", str(tmp_path / "bad.tif"), str(tmp_path / "o.ome.zarr")])
        == 1
    )
    assert "bad.tif" in caplog.text
    assert not (tmp_path / "o.ome.zarr").exists()


def test_validate_reports_invalid(tmp_path: Path, imagedepot, capsys) -> None:
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint8))
    broken = tmp_path / "broken.ome.zarr"
    broken.mkdir()
    (broken / ".zgroup").write_text('{"zarr_format": 2}')
    (broken / ".zattrs").write_text('{"multiscales": [{"axes": [], "datasets": []}]}')
    assert imagedepot(["validate", str(plain), str(broken), str(tmp_path / "nothing.nii.gz")]) == 1
    out = capsys.readouterr().out
    assert out.count("INVALID") == 3
    assert imagedepot(["validate", "--json", str(plain)]) == 1
    results = json.loads(capsys.readouterr().out)
    assert results[0]["valid"] is False and results[0]["kind"] == "ome-tiff"


def test_item_as_the_workflow_runs_it(tmp_path: Path, imagedepot) -> None:
    paths = write_dicom_series(tmp_path / "inbox" / "s1")
    item = {"id": "ds-d001", "kind": "dicom", "files": [{"path": str(p)} for p in paths]}
    (tmp_path / "d.json").write_text(json.dumps(item))
    out = tmp_path / "results" / "convert" / "ds-d001"
    assert imagedepot(["convert", "item", str(tmp_path / "d.json"), str(out)]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "processed"
    assert sorted(p.name for p in (out / "nifti").iterdir()) == ["ds-d001.json", "ds-d001.nii.gz"]

    write_ome_tiff(tmp_path / "img.ome.tif")
    item = {
        "id": "ds-m001",
        "kind": "microscopy",
        "files": [{"path": str(tmp_path / "img.ome.tif")}],
    }
    (tmp_path / "m.json").write_text(json.dumps(item))
    out = tmp_path / "results" / "convert" / "ds-m001"
    argv = ["convert", "item", str(tmp_path / "m.json"), str(out), "--ome-tiff", "--levels", "2"]
    assert imagedepot(argv) == 0
    assert (
        imagedepot(["validate", str(out / "ds-m001.ome.zarr"), str(out / "ds-m001.ome.tif")]) == 0
    )

    (tmp_path / "junk.dcm").write_bytes(b"junk" * 64)
    item = {"id": "ds-d002", "kind": "dicom", "files": [{"path": str(tmp_path / "junk.dcm")}]}
    (tmp_path / "q.json").write_text(json.dumps(item))
    out = tmp_path / "results" / "convert" / "ds-d002"
    assert imagedepot(["convert", "item", str(tmp_path / "q.json"), str(out)]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "quarantined" and "dcm2niix" in prov["reason"]


def test_ome_zarr_sharded_with_labels(tmp_path: Path, imagedepot) -> None:
    data = write_ome_tiff(tmp_path / "img.ome.tif")  # (1, 2, 3, 40, 36)
    mask = np.zeros((3, 40, 36), np.uint16)
    mask[:, 4:20, 6:30] = 3
    tifffile.imwrite(tmp_path / "cells.tif", mask, photometric="minisblack")
    out = tmp_path / "img.ome.zarr"
    argv = ["convert", "ome-zarr", str(tmp_path / "img.ome.tif"), str(out)]
    argv += ["--ngff-version", "0.5", "--chunks", "8,8", "--shard", "16,16", "--threads", "2"]
    argv += [
        "--labels",
        str(tmp_path / "cells.tif"),
        "--labels",
        f"all={tmp_path / 'cells.tif'}",
    ]
    argv += ["--report", str(tmp_path / "r.json")]
    assert imagedepot(argv) == 0
    group = zarr.open_group(out, mode="r")["0"]
    np.testing.assert_array_equal(group["0"][:], data)
    assert group["0"].shards == (1, 1, 1, 16, 16)
    assert group["labels"].attrs["ome"]["labels"] == ["cells", "all"]
    np.testing.assert_array_equal(group["labels"]["cells"]["0"][0, 0], mask)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["options"]["shard"] == [1, 1, 1, 16, 16]
    assert report["options"]["threads"] == 2
    assert imagedepot(["validate", str(out)]) == 0


def test_ome_zarr_option_errors(tmp_path: Path, imagedepot, caplog) -> None:
    write_ome_tiff(tmp_path / "img.ome.tif")
    base = ["convert", "ome-zarr", str(tmp_path / "img.ome.tif"), str(tmp_path / "o.ome.zarr")]
    assert imagedepot([*base, "--shard", "64,64"]) == 1  # NGFF 0.4 has no sharding
    assert "NGFF 0.5" in caplog.text
    caplog.clear()
    argv = [*base, "--ngff-version", "0.5", "--chunks", "16,16", "--shard", "24,24"]
    assert imagedepot(argv) == 1
    assert "multiple of the chunk" in caplog.text
    tifffile.imwrite(tmp_path / "m.tif", np.zeros((3, 40, 36), np.uint8), photometric="minisblack")
    caplog.clear()
    argv = [*base, "--labels", f"a={tmp_path / 'm.tif'}", "--labels", f"a={tmp_path / 'm.tif'}"]
    assert imagedepot(argv) == 1
    assert "given twice" in caplog.text
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((8, 8), np.uint8))
    caplog.clear()
    assert imagedepot([*base, "--labels", str(tmp_path / "small.tif")]) == 1
    assert "small.tif" in caplog.text and "the image needs" in caplog.text
    assert not (tmp_path / "o.ome.zarr").exists()
    for bad in (["--labels", "=x.tif"], ["--labels", "../a=x.tif"], ["--threads", "0"]):
        with pytest.raises(SystemExit) as exc:
            imagedepot([*base, *bad])
        assert exc.value.code == 2


def test_item_layout_options(tmp_path: Path, imagedepot, caplog) -> None:
    """`convert item` passes chunks/shard/tile/compression/threads on, or refuses them loudly."""
    import dataclasses

    from imagedepot.pipeline import ConvertOptions

    write_ome_tiff(tmp_path / "img.ome.tif")
    item = {
        "id": "ds-m001",
        "kind": "microscopy",
        "files": [{"path": str(tmp_path / "img.ome.tif")}],
    }
    (tmp_path / "m.json").write_text(json.dumps(item))
    out = tmp_path / "results" / "convert" / "ds-m001"
    argv = ["convert", "item", str(tmp_path / "m.json"), str(out), "--chunks", "16,16"]
    if "chunks" in {f.name for f in dataclasses.fields(ConvertOptions)}:
        assert imagedepot(argv) == 0
        arr = zarr.open_group(out / "ds-m001.ome.zarr", mode="r")["0"]["0"]
        assert arr.chunks == (1, 1, 1, 16, 16)
    else:
        assert imagedepot(argv) == 1
        assert "cannot pass chunks" in caplog.text
        assert not out.exists()


def test_layout_options_for_convert_options() -> None:
    """What `convert item` (and `batch convert`) hand to ConvertOptions: only the flags given."""
    import argparse

    from imagedepot.cli.convert import add_layout_options, layout_options

    parser = argparse.ArgumentParser()
    add_layout_options(parser)
    assert layout_options(parser.parse_args([])) == {}
    argv = ["--chunks", "8,8", "--shard", "1,1,1,16,16", "--tile", "32", "--compression", "none"]
    args = parser.parse_args([*argv, "--threads", "2"])
    assert layout_options(args) == {
        "chunks": (8, 8),
        "shard": (1, 1, 1, 16, 16),
        "tiff_tile": 32,
        "tiff_compression": "none",
        "threads": 2,
    }
