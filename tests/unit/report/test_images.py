"""The report's pictures: OME-Zarr levels, NIfTI mid-slices, thumbnails, and the figures."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imagedepot.report import figures, images


def _ngff(path: Path, *, version: str, shape=(1, 2, 3, 40, 60), levels: int = 2) -> None:
    """A small OME-Zarr image (NGFF 0.4 in Zarr v2, 0.5 in Zarr v3), channel 1 bright on the
    right half, the top row of channel 0 bright."""
    import zarr

    fmt = 2 if version == "0.4" else 3
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    datasets = []
    for level in range(levels):
        f = 2**level
        data = np.zeros((*shape[:3], shape[3] // f, shape[4] // f), dtype=np.uint16)
        data[:, -1, :, :, data.shape[-1] // 2 :] = 1000
        data[:, 0, :, 0, :] = 500
        root.create_array(str(level), data=data, chunks=data.shape)
        datasets.append(
            {"path": str(level), "coordinateTransformations": [
                {"type": "scale", "scale": [1, 1, 1, 0.5 * f, 0.5 * f]}]}
        )  # fmt: skip
    axes = [{"name": n, "type": t} for n, t in zip("tczyx", ["time", "channel"] + ["space"] * 3)]
    for a in axes[2:]:
        a["unit"] = "micrometer"
    multiscales = [{"version": version, "name": "img", "axes": axes, "datasets": datasets}]
    omero = {"channels": [{"color": "FF0000", "window": {"start": 0, "end": 500}},
                          {"color": "0000FF", "window": {"start": 0, "end": 1000}}]}  # fmt: skip
    if version == "0.4":
        root.attrs.update({"multiscales": multiscales, "omero": omero})
    else:
        root.attrs.update({"ome": {"version": "0.5", "multiscales": multiscales, "omero": omero}})


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_levels_as_pictures(tmp_path: Path, version: str) -> None:
    store = tmp_path / "x.ome.zarr"
    _ngff(store, version=version)
    found, total = images.ome_zarr_images(store, max_images=5)
    assert total == 1
    (img,) = found
    assert [lv.shape for lv in img.levels] == [(1, 2, 3, 40, 60), (1, 2, 3, 20, 30)]
    lv = img.levels[1]
    assert lv.pixel_size == (1.0, 1.0) and lv.unit == "micrometer" and not lv.cropped
    pic = lv.picture
    assert pic.shape == (20, 30, 3)
    # channel colours from omero: channel 0 red (top row), channel 1 blue (right half)
    assert pic[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert pic[10, 25].tolist() == [0.0, 0.0, 1.0]
    assert pic[10, 5].tolist() == [0.0, 0.0, 0.0]


def test_ome_zarr_large_levels_are_cropped_and_images_counted(tmp_path: Path, monkeypatch) -> None:
    import zarr

    monkeypatch.setattr(images, "MAX_PLANE", 32)
    monkeypatch.setattr(images, "CROP", 16)
    store = tmp_path / "plate.ome.zarr"
    zarr.open_group(str(store), mode="w", zarr_format=2)
    for name in ("0", "1", "2"):  # bioformats2raw layout: one image per series
        _ngff(store / name, version="0.4", shape=(1, 1, 1, 40, 60), levels=1)
    found, total = images.ome_zarr_images(store, max_images=2)
    assert total == 3 and [f.image for f in found] == ["0", "1"]
    lv = found[0].levels[0]
    assert lv.cropped and lv.picture.shape == (16, 16)  # one channel: grey


def _volume(affine: np.ndarray) -> nib.Nifti1Image:
    data = np.zeros((10, 12, 14), dtype=np.int16)
    data[:, :, :] = 10
    return nib.Nifti1Image(data, affine)


def test_nifti_mid_slices_are_oriented_by_the_affine(tmp_path: Path) -> None:
    """A bright voxel block at the subject's right-anterior-superior corner shows at the
    right of axial and coronal pictures and at the top of coronal and sagittal ones, whatever
    the voxel order on disk (RAS or LPS-flipped)."""
    ras = np.diag([2.0, 2.0, 3.0, 1.0])
    img = _volume(ras)
    data = np.asarray(img.dataobj).copy()
    data[4:, 5:, 7:] = 100  # towards +x (R), +y (A), +z (S), through every middle slice
    nib.save(nib.Nifti1Image(data, ras), tmp_path / "ras.nii.gz")
    lps = np.diag([-2.0, -2.0, 3.0, 1.0])  # voxel axes run towards L and P
    nib.save(nib.Nifti1Image(data[::-1, ::-1, :].copy(), lps), tmp_path / "lps.nii")
    for name in ("ras.nii.gz", "lps.nii"):
        pic = images.nifti_mid_slices(tmp_path / name)
        planes = {p: (img, aspect) for p, img, aspect in pic.planes}
        assert pic.zooms == (2.0, 2.0, 3.0) and pic.unit in ("mm", "")
        axial, _ = planes["axial"]  # rows: A at the top; columns: R to the right
        assert axial.shape == (12, 10)
        assert axial[0, -1] == 1.0 and axial[-1, 0] == 0.0
        coronal, aspect = planes["coronal"]  # rows: S at the top; columns: R to the right
        assert coronal.shape == (14, 10) and aspect == 1.5
        assert coronal[0, -1] == 1.0 and coronal[-1, 0] == 0.0
        sagittal, _ = planes["sagittal"]  # rows: S at the top; columns: A to the right
        assert sagittal[0, -1] == 1.0 and sagittal[-1, 0] == 0.0


def test_thumbnail_pairs(tmp_path: Path) -> None:
    from PIL import Image

    for name in ("1.2.before.png", "1.2.after.png", "1.3.rules.before.png", "1.4.before.png"):
        Image.fromarray(np.full((4, 4), 200, dtype=np.uint8)).save(tmp_path / name)
    pairs = images.thumbnail_pairs(tmp_path)
    assert [(p.name, p.how, p.after is not None) for p in pairs] == [
        ("1.2", "pixel text", True),
        ("1.3", "rules", False),
        ("1.4", "pixel text", False),
    ]
    assert images.read_png(pairs[0].before).max() == pytest.approx(200 / 255)


def test_figures_are_pngs_even_with_nothing_to_show(tmp_path: Path) -> None:
    from PIL import Image

    made = [
        figures.thumbnails_gallery([], 0, tmp_path / "a.png"),
        figures.ome_zarr_gallery([], 0, tmp_path / "b.png"),
        figures.nifti_gallery([], 0, tmp_path / "c.png"),
        figures.benchmark_chart([], tmp_path / "d.png"),
        figures.policy_actions_chart([], tmp_path / "e.png"),
        figures.accounting_chart([], tmp_path / "f.png"),
    ]
    for p in made:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] >= 400
    with pytest.raises(Exception, match="use --force"):
        figures.nifti_gallery([], 0, tmp_path / "c.png")
