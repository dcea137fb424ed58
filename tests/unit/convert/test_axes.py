"""Non-spatial dimensions folded into Z, C or T (OME / Bio-Formats moduli) keep their meaning.

A wavelength sweep folded into T is written as channels with wavelengths, not as time points,
by both readers alike; other moduli along Z or T (rotations, lifetimes...) become channels too;
a modulo along C stays in the channels with its labels. The written OME-XML describes the layout.

Bio-Formats 7's ``.fake`` format has no key for moduli, so the Bio-Formats path is tested with
OME-TIFFs carrying OME's modulo annotation, which its OME-TIFF reader turns into
``CoreMetadata.moduloZ/C/T``, the same fields its vendor readers (CZI, LSM, ICS, SDT, OIR...) set.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile

from imagedepot.convert import axes
from imagedepot.convert.microscopy import convert_to_ome_tiff, convert_to_ome_zarr, open_source
from imagedepot.validate import validate_path

from .images import OME_NS, pattern
from .readback import ome_tiff_images, ome_zarr_images

READERS = [
    "tifffile",
    pytest.param("bioformats", marks=pytest.mark.bioformats),
]


def write_modulo_ome_tiff(
    path: Path,
    data: np.ndarray,
    along: str,
    attrs: str,
    *,
    labels: list[str] | None = None,
    channel_names: list[str] | None = None,
    extra: str = ' PhysicalSizeX="0.5" PhysicalSizeY="0.5" PhysicalSizeZ="2.0" TimeIncrement="3.0"',
) -> Path:
    """Write ``data`` (source t, c, z, y, x, the modulo folded into its parent) as an OME-TIFF
    with a ``ModuloAlong<along>`` annotation, one page per plane in XYZCT order."""
    t_n, c_n, z_n, y_n, x_n = data.shape
    channels = "".join(
        f'<Channel ID="Channel:0:{c}" SamplesPerPixel="1"'
        + (f' Name="{channel_names[c]}"' if channel_names else "")
        + "/>"
        for c in range(c_n)
    )
    planes = [(t, c, z) for t in range(t_n) for c in range(c_n) for z in range(z_n)]
    tiffdata = "".join(
        f'<TiffData FirstT="{t}" FirstC="{c}" FirstZ="{z}" IFD="{i}" PlaneCount="1"/>'
        for i, (t, c, z) in enumerate(planes)
    )
    inner = "".join(f"<Label>{label}</Label>" for label in labels or [])
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{OME_NS}">'
        f'<Image ID="Image:0" Name="modulo"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" '
        f'Type="{data.dtype.name}" SizeX="{x_n}" SizeY="{y_n}" SizeZ="{z_n}" SizeC="{c_n}" '
        f'SizeT="{t_n}"{extra}>{channels}{tiffdata}</Pixels>'
        '<AnnotationRef ID="Annotation:Modulo:0"/></Image>'
        '<StructuredAnnotations><XMLAnnotation ID="Annotation:Modulo:0" '
        f'Namespace="{axes.MODULO_NAMESPACE}"><Value><Modulo namespace='
        '"http://www.openmicroscopy.org/Schemas/Additions/2011-09">'
        f"<ModuloAlong{along} {attrs}>{inner}</ModuloAlong{along}></Modulo></Value>"
        "</XMLAnnotation></StructuredAnnotations></OME>"
    )
    stack = np.stack([data[t, c, z] for t, c, z in planes])
    tifffile.imwrite(path, stack, description=xml, metadata=None, photometric="minisblack")
    return path


def lambda_sweep(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """2 time points x 4 wavelengths (500..560 nm, folded into T) x 2 channels x 3 z."""
    data = pattern((2 * 4, 2, 3, 12, 10), "uint16", seed=11)
    src = write_modulo_ome_tiff(
        tmp_path / "lambda.ome.tif",
        data,
        "T",
        'Type="lambda" Unit="nm" Start="500" Step="20" End="560"',
        channel_names=["PMT1", "PMT2"],
    )
    return src, data


def expected_lambda_as_channels(data: np.ndarray, n: int) -> np.ndarray:
    """Source (t*n + l, c, ...) to written (t, c*n + l, ...)."""
    tl, c, z, y, x = data.shape
    t = tl // n
    return data.reshape(t, n, c, z, y, x).transpose(0, 2, 1, 3, 4, 5).reshape(t, c * n, z, y, x)


@pytest.mark.parametrize("reader", READERS)
def test_lambda_folded_into_t_becomes_channels_with_wavelengths(
    tmp_path: Path, reader: str
) -> None:
    src, data = lambda_sweep(tmp_path)
    out = tmp_path / "out.ome.zarr"
    report = convert_to_ome_zarr(src, out, reader=reader, chunks=(16, 16), ngff_version="0.5")
    (image,) = ome_zarr_images(out)
    want = expected_lambda_as_channels(data, 4)
    assert report.images[0]["shape"] == [2, 8, 3, 12, 10]
    np.testing.assert_array_equal(image["data"], want)
    assert image["channel_names"] == [
        f"PMT{c} λ {w} nm" for c in (1, 2) for w in range(500, 561, 20)
    ]
    assert image["physical_size"] == {"t": 3.0, "z": 2.0, "y": 0.5, "x": 0.5}
    layout = report.images[0]["layout"]
    assert layout["moved_to_c"][0]["type"] == "lambda"
    assert layout["moved_to_c"][0]["values"] == [500.0, 520.0, 540.0, 560.0]
    assert any("written as channels" in m for m in report.messages)
    assert validate_path(out).valid, validate_path(out).errors
    ome = ome_types.from_xml((out / "OME" / "METADATA.ome.xml").read_text())
    px = ome.images[0].pixels
    assert (px.size_t, px.size_c, px.size_z) == (2, 8, 3)
    assert [ch.emission_wavelength for ch in px.channels] == [500, 520, 540, 560] * 2
    assert [ch.name for ch in px.channels] == image["channel_names"]
    xml = (out / "OME" / "METADATA.ome.xml").read_text()
    assert "ModuloAlongC" in xml and "ModuloAlongT" not in xml


@pytest.mark.parametrize("reader", READERS)
def test_lambda_sweep_to_ome_tiff(tmp_path: Path, reader: str) -> None:
    src, data = lambda_sweep(tmp_path)
    out = tmp_path / "out.ome.tif"
    convert_to_ome_tiff(src, out, reader=reader, tile=16)
    (image,) = ome_tiff_images(out)
    np.testing.assert_array_equal(image["data"], expected_lambda_as_channels(data, 4))
    px = image["ome"].pixels
    assert [ch.emission_wavelength for ch in px.channels] == [500, 520, 540, 560] * 2
    assert image["physical_size"]["t"] == 3.0
    # The written file is read back the same way by either reader (its modulo is now along C).
    for again in ("tifffile", "bioformats"):
        if again == "bioformats" and reader != "bioformats":
            continue
        source = open_source(out, again)
        try:
            info = source.series[0]
            assert info.shape == (2, 8, 3, 12, 10)
            assert info.channel_names == image["channel_names"]
        finally:
            source.close()


@pytest.mark.parametrize("reader", READERS)
def test_tifffile_written_lambda_axis(tmp_path: Path, reader: str) -> None:
    """tifffile's own modulo writer (axes TECYX): lambda indices without wavelengths."""
    data = pattern((2, 3, 2, 8, 9), "uint8", seed=4)  # t, lambda, c, y, x
    src = tmp_path / "te.ome.tif"
    tifffile.imwrite(src, data, ome=True, metadata={"axes": "TECYX"}, photometric="minisblack")
    out = tmp_path / "out.ome.zarr"
    report = convert_to_ome_zarr(src, out, reader=reader, chunks=(16, 16))
    (image,) = ome_zarr_images(out)
    want = data.transpose(0, 2, 1, 3, 4).reshape(2, 6, 1, 8, 9)  # c outer, lambda inner
    np.testing.assert_array_equal(image["data"], want)
    assert image["channel_names"] == [f"C{c} λ {k}" for c in range(2) for k in range(3)]
    assert report.images[0]["layout"]["moved_to_c"][0]["size"] == 3
    ome = ome_types.from_xml((out / "OME" / "METADATA.ome.xml").read_text())
    assert all(ch.emission_wavelength is None for ch in ome.images[0].pixels.channels)


@pytest.mark.parametrize("reader", READERS)
def test_rotation_folded_into_z_becomes_channels(tmp_path: Path, reader: str) -> None:
    data = pattern((1, 1, 3 * 2, 10, 12), "uint16", seed=8)  # 3 z x 2 angles
    src = write_modulo_ome_tiff(
        tmp_path / "angles.ome.tif",
        data,
        "Z",
        'Type="angle" Unit="degree" Start="0" Step="90" End="90"',
    )
    out = tmp_path / "out.ome.zarr"
    report = convert_to_ome_zarr(src, out, reader=reader, chunks=(16, 16))
    (image,) = ome_zarr_images(out)
    want = data.reshape(1, 1, 3, 2, 10, 12).transpose(0, 1, 3, 2, 4, 5).reshape(1, 2, 3, 10, 12)
    np.testing.assert_array_equal(image["data"], want)
    assert image["channel_names"] == ["angle 0 degree", "angle 90 degree"]
    assert image["physical_size"]["z"] == 2.0
    assert report.images[0]["layout"]["moved_to_c"][0]["along"] == "Z"


@pytest.mark.parametrize("reader", READERS)
def test_modulo_along_c_stays_in_channels_with_labels(tmp_path: Path, reader: str) -> None:
    data = pattern((1, 3, 1, 8, 8), "uint16", seed=9)
    src = write_modulo_ome_tiff(
        tmp_path / "phases.ome.tif", data, "C", 'Type="phase"', labels=["0", "120", "240"]
    )
    out = tmp_path / "out.ome.zarr"
    convert_to_ome_zarr(src, out, reader=reader, chunks=(16, 16))
    (image,) = ome_zarr_images(out)
    np.testing.assert_array_equal(image["data"], data)
    assert image["channel_names"] == ["0", "120", "240"]
    assert "ModuloAlongC" in (out / "OME" / "METADATA.ome.xml").read_text()


def test_plan_coordinates_round_trip() -> None:
    mz = axes.modulo("Z", "rotation", 2)
    mt = axes.modulo("T", "lambda", 3, start=500, step=10, unit="nm")
    plan = axes.plan_moduli([mz, mt], (4 * 2, 2, 5 * 3))
    assert plan is not None and plan.shape == (5, 2 * 6, 4)
    seen = set()
    for t, c, z in itertools.product(range(5), range(12), range(4)):
        src = plan.source_coords(t, c, z)
        assert plan.written_coords(*src) == (z, c, t)
        seen.add(src)
    assert len(seen) == 5 * 12 * 4
    names, _, waves = axes.expand_channels(plan, ["a", "b"], [None, None])
    assert names[:3] == ["a rotation 0 λ 500 nm", "a rotation 0 λ 510 nm", "a rotation 0 λ 520 nm"]
    assert waves[4] == {"emission": 510.0}


def test_modulo_that_does_not_divide_is_left_alone() -> None:
    plan = axes.plan_moduli([axes.modulo("T", "lambda", 4)], (1, 1, 6))
    assert plan is not None and not plan.moved and plan.notes


def test_excitation_sweep_sets_excitation_wavelength() -> None:
    m = axes.modulo("T", "lambda", 2, start=488, step=50, unit="nm", description="Excitation sweep")
    plan = axes.plan_moduli([m], (1, 1, 2))
    assert plan is not None
    _, _, waves = axes.expand_channels(plan, [None], [None])
    assert waves == [{"excitation": 488.0}, {"excitation": 538.0}]


# --------------------------------------------------------------------------- Leica LIF


def _lif_file(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A LIF with an XZ scan (2 channels line-interleaved, 3 time points), an XT scan and an
    XYZ wavelength sweep (5 emission wavelengths, 500-580 nm)."""
    from .lif import LifDim, LifImage, write_lif

    xz = pattern((3, 8, 2, 16), "uint16", seed=21)  # memory: T, Z, C, X
    xt = pattern((12, 20), "uint8", seed=22)  # memory: T, X
    sweep = pattern((5, 3, 6, 10), "uint16", seed=23)  # memory: λ, Z, Y, X
    images = [
        LifImage(
            "xz",
            [LifDim(1, 16, 15e-6), LifDim(3, 8, 14e-6), LifDim(4, 3, 20.0, "s")],
            2,
            xz,
            channel_after=0,
        ),
        LifImage("xt", [LifDim(1, 20, 19e-6), LifDim(4, 12, 1.1, "s")], 1, xt),
        LifImage(
            "sweep",
            [
                LifDim(1, 10, 4.5e-6),
                LifDim(2, 6, 2.5e-6),
                LifDim(3, 3, 4e-6),
                LifDim(5, 5, 80e-9, "m", 500e-9),
            ],
            1,
            sweep,
        ),
    ]
    src = write_lif(tmp_path / "scans.lif", images)
    return src, {"xz": xz, "xt": xt, "sweep": sweep}


@pytest.mark.bioformats
def test_lif_line_scans_and_wavelength_sweep(tmp_path: Path) -> None:
    """The reported LIF cases: Bio-Formats reads an XZ scan's Z (and an XT scan's T) as Y and a
    wavelength sweep as T or Z; written, they are Z (T) with Y = 1, and channels."""
    src, data = _lif_file(tmp_path)
    source = open_source(src)
    try:
        shapes = [info.shape for info in source.series]
    finally:
        source.close()
    assert shapes == [(3, 2, 8, 1, 16), (12, 1, 1, 1, 20), (1, 5, 3, 6, 10)]
    out = tmp_path / "out.ome.zarr"
    report = convert_to_ome_zarr(src, out, chunks=(16, 16), ngff_version="0.5")
    xz, xt, sweep = ome_zarr_images(out)
    # XZ: memory T, Z, C, X -> t, c, z, y=1, x
    np.testing.assert_array_equal(xz["data"], data["xz"].transpose(0, 2, 1, 3)[:, :, :, None, :])
    assert xz["physical_size"]["z"] == pytest.approx(2.0)  # 14 µm over 7 steps
    assert xz["physical_size"]["t"] == pytest.approx(10.0)
    assert xz["physical_size"]["y"] is None
    np.testing.assert_array_equal(xt["data"], data["xt"][:, None, None, None, :])
    assert xt["physical_size"]["t"] == pytest.approx(0.1)
    np.testing.assert_array_equal(sweep["data"], data["sweep"][None])
    assert sweep["channel_names"] == [f"λ {w} nm" for w in range(500, 581, 20)]
    assert sweep["physical_size"]["z"] == pytest.approx(2.0)
    assert report.images[0]["layout"]["dimensions"][1] == {"DimID": 3, "name": "Z", "size": 8}
    assert any("XZ line scan" in m for m in report.messages)
    assert any("XT line scan" in m for m in report.messages)
    ome = ome_types.from_xml((out / "OME" / "METADATA.ome.xml").read_text())
    px = [image.pixels for image in ome.images]
    assert [(p.size_t, p.size_c, p.size_z, p.size_y) for p in px] == [
        (3, 2, 8, 1),
        (12, 1, 1, 1),
        (1, 5, 3, 6),
    ]
    assert [ch.emission_wavelength for ch in px[2].channels] == [500, 520, 540, 560, 580]
    assert validate_path(out).valid, validate_path(out).errors


def test_lif_layout_refuses_what_it_cannot_map() -> None:
    dims = [
        axes.LifDimension(1, 16, 0, 15e-6, "m", 2),
        axes.LifDimension(3, 8, 0, 7e-6, "m", 32),
    ]
    sizes = {"x": 16, "y": 8, "image_count": 1}
    layout, reason = axes.lif_layout(
        dims, [0], bf_sizes=sizes, bf_physical={"x": 1.0}, bytes_per_pixel=2
    )
    assert layout is not None and reason is None and layout.shape == (1, 1, 8, 1)
    # Sizes Bio-Formats does not report the same way: left alone, with the reason.
    layout, reason = axes.lif_layout(
        dims, [0], bf_sizes={**sizes, "y": 1}, bf_physical={}, bytes_per_pixel=2
    )
    assert layout is None and "do not match" in str(reason)
    # A dimension whose meaning is not known.
    odd = [*dims, axes.LifDimension(6, 4, 0, 0, "", 256)]
    layout, reason = axes.lif_layout(odd, [0], bf_sizes=sizes, bf_physical={}, bytes_per_pixel=2)
    assert layout is None and "[6]" in str(reason)
    # An ordinary XYZ image needs nothing.
    xyz = [dims[0], axes.LifDimension(2, 8, 0, 7e-6, "m", 32), dims[1]]
    assert axes.lif_layout(xyz, [0], bf_sizes=sizes, bf_physical={}, bytes_per_pixel=2) == (
        None,
        None,
    )
