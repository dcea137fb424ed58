"""TIFF compressions read by tifffile with imagecodecs, and the fallback to Bio-Formats.

Every compression is written with tifffile and converted with ``reader="auto"``: tifffile must
read it (no fallback), losslessly where the codec is lossless. Where tifffile cannot read a file,
``auto`` hands it to Bio-Formats and the report says so; where both fail, the error names both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from imagedepot.convert import bioformats, microscopy
from imagedepot.convert.microscopy import TiffSource, convert_to_ome_tiff, convert_to_ome_zarr
from imagedepot.errors import InputError, ReaderError
from imagedepot.pipeline import ConvertOptions, convert_item

from .images import pattern
from .readback import ome_tiff_images, ome_zarr_images

#: name -> tifffile ``write`` keywords; every one lossless.
LOSSLESS = {
    "lzw": {"compression": "lzw"},
    "lzw-predictor": {"compression": "lzw", "predictor": True},
    "deflate": {"compression": "zlib"},
    "adobe-deflate": {"compression": "adobe_deflate"},
    "zstd": {"compression": "zstd"},
    "lzma": {"compression": "lzma"},
    "lerc": {"compression": "lerc"},
    "packbits": {"compression": "packbits"},
    "jpeg2000": {"compression": "jpeg2000", "compressionargs": {"reversible": True}},
    "jpegxl": {"compression": "jpegxl", "compressionargs": {"lossless": True}},
}


def _write(path: Path, data: np.ndarray, **codec: object) -> Path:
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={"axes": "TCZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
        photometric="minisblack",
        tile=(16, 16),
        **codec,
    )
    return path


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_compression_round_trip(tmp_path: Path, name: str) -> None:
    data = pattern((1, 2, 3, 40, 50), "uint16", seed=3)
    src = _write(tmp_path / f"{name}.ome.tif", data, **LOSSLESS[name])
    report = convert_to_ome_zarr(src, tmp_path / "out.ome.zarr", chunks=(16, 16))
    assert report.tool == "tifffile"
    assert report.reader_fallback is None
    (image,) = ome_zarr_images(tmp_path / "out.ome.zarr")
    assert image["data"].dtype == np.uint16
    assert image["data"].shape == data.shape
    np.testing.assert_array_equal(image["data"], data)
    assert image["physical_size"]["x"] == pytest.approx(0.5)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    y, x = np.mgrid[0:48, 0:64]
    plane = (100 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint8)
    data = np.stack([plane, plane[::-1]])[None, :, None]  # t, c, z, y, x = 1, 2, 1, 48, 64
    src = _write(tmp_path / "jpeg.ome.tif", data, compression="jpeg", compressionargs={"level": 90})
    out = tmp_path / "out.ome.tif"
    report = convert_to_ome_tiff(src, out, tile=16)
    assert report.tool == "tifffile"
    (image,) = ome_tiff_images(out)
    assert image["data"].shape == data.shape and image["data"].dtype == np.uint8
    diff = np.abs(image["data"].astype(int) - data.astype(int))
    assert diff.mean() < 2.0 and diff.max() <= 16


def _without_imagecodecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make tifffile behave as when imagecodecs is not installed (its codec cache emptied)."""
    codecs = tifffile.TIFF.DECOMPRESSORS
    monkeypatch.setattr(tifffile.tifffile, "imagecodecs", None)
    monkeypatch.setattr(codecs, "_codecs", {k: v for k, v in codecs._codecs.items() if k == 1})


def test_tifffile_failure_found_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "lzw.ome.tif", pattern((1, 1, 1, 20, 20)), compression="lzw")
    _without_imagecodecs(monkeypatch)
    with pytest.raises(ReaderError, match=r"cannot decode series 0 \(LZW\).*imagecodecs"):
        TiffSource(src)


@pytest.mark.bioformats
@pytest.mark.parametrize("writer", ["zarr", "tiff"])
def test_auto_falls_back_to_bioformats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """The reported case: an LZW OME-TIFF that tifffile cannot decode is read by Bio-Formats."""
    data = pattern((2, 2, 3, 40, 50), "uint16", seed=5)
    src = _write(tmp_path / "lzw.ome.tif", data, compression="lzw")
    _without_imagecodecs(monkeypatch)
    if writer == "zarr":
        out = tmp_path / "out.ome.zarr"
        report = convert_to_ome_zarr(src, out, chunks=(16, 16))
        (image,) = ome_zarr_images(out)
    else:
        out = tmp_path / "out.ome.tif"
        report = convert_to_ome_tiff(src, out, tile=16)
        (image,) = ome_tiff_images(out)
    assert report.tool == "bioformats"
    assert report.reader_fallback is not None
    assert report.reader_fallback["from"] == "tifffile"
    assert report.reader_fallback["to"] == "bioformats"
    assert "LZW" in report.reader_fallback["reason"]
    assert "imagecodecs" in report.reader_fallback["reason"]
    assert any("read with Bio-Formats" in m for m in report.messages)
    assert "bioformats" in report.versions
    np.testing.assert_array_equal(image["data"], data)


@pytest.mark.bioformats
def test_decode_failure_while_writing_reruns_with_bioformats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tile tifffile cannot decode after a good start: the conversion is redone by Bio-Formats
    and nothing of the first attempt is left."""
    data = pattern((1, 1, 4, 40, 50), "uint16", seed=6)
    src = _write(tmp_path / "deflate.ome.tif", data, compression="zlib")
    original = TiffSource.read_rows

    def failing(self: TiffSource, series: int, t: int, c: int, z: int, y0: int, y1: int):
        if z == 2:
            raise ReaderError(self.path, "tifffile cannot decode series 0: simulated bad tile")
        return original(self, series, t, c, z, y0, y1)

    monkeypatch.setattr(TiffSource, "read_rows", failing)
    out = tmp_path / "out.ome.zarr"
    report = convert_to_ome_zarr(src, out, chunks=(16, 16))
    assert report.tool == "bioformats"
    assert report.reader_fallback is not None
    assert "simulated bad tile" in report.reader_fallback["reason"]
    (image,) = ome_zarr_images(out)
    np.testing.assert_array_equal(image["data"], data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deflate.ome.tif", "out.ome.zarr"]


def test_explicit_tifffile_reader_does_not_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "lzw.ome.tif", pattern((1, 1, 1, 20, 20)), compression="lzw")
    _without_imagecodecs(monkeypatch)
    with pytest.raises(ReaderError, match="imagecodecs"):
        convert_to_ome_zarr(src, tmp_path / "out.ome.zarr", reader="tifffile")
    assert not (tmp_path / "out.ome.zarr").exists()


@pytest.mark.bioformats
def test_both_readers_failing_quarantines_with_both_reasons(tmp_path: Path) -> None:
    src = tmp_path / "broken.tif"
    src.write_bytes(b"II*\x00" + b"\xff" * 64)  # a TIFF header pointing nowhere
    item = {
        "id": "m1",
        "kind": "microscopy",
        "files": [{"path": str(src)}],
    }
    prov = convert_item(item, tmp_path / "convert" / "m1", ConvertOptions())
    assert prov.status == "quarantined"
    assert "tifffile:" in prov.reason and "Bio-Formats:" in prov.reason


def test_no_bioformats_gives_both_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "lzw.ome.tif", pattern((1, 1, 1, 20, 20)), compression="lzw")
    _without_imagecodecs(monkeypatch)
    monkeypatch.setenv(bioformats.JAR_ENV, str(tmp_path / "missing.jar"))
    with pytest.raises(InputError) as info:
        microscopy.open_source(src)
    assert "tifffile:" in info.value.reason and "imagecodecs" in info.value.reason
    assert "Bio-Formats: needs the Bio-Formats reader" in info.value.reason
