"""Pictures for the run report: OME-Zarr levels, NIfTI mid-slices, burned-in text thumbnails.

Each function returns plain arrays for :mod:`imagedepot.report.figures` to lay out: 2-D images as
``rows x columns`` (grey, float in 0-1) or ``rows x columns x 3`` (RGB, float in 0-1), row 0 at the
top. Large planes are never read whole: a level bigger than :data:`MAX_PLANE` on a side is shown by
a centred crop of :data:`CROP` pixels (the report says so), so a report of a whole-slide image
costs a few chunks per level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: A level plane larger than this on either side is shown by a centred crop.
MAX_PLANE = 1024
#: Side of that crop, in pixels of the level.
CROP = 512
#: Colours of the first channels of a composite when the store names none (RGB, 0-1).
DEFAULT_COLOURS = ((0.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0))
#: At most this many channels are blended into one picture.
MAX_CHANNELS = 4
#: Groups of an OME-Zarr store that never hold images to show.
_SKIP_GROUPS = frozenset({"OME", "labels"})


def stretch(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``x`` mapped linearly to 0-1 between ``lo`` and ``hi`` (default: 1st and 99.5th
    percentiles of the finite values), clipped."""
    x = np.asarray(x, dtype=np.float32)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(x.shape, dtype=np.float32)
    if lo is None or hi is None:
        p0, p1 = np.percentile(finite, (1.0, 99.5))
        lo = float(p0) if lo is None else lo
        hi = float(p1) if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0.0, 1.0)


# --------------------------------------------------------------------------------- OME-Zarr


@dataclass
class LevelPicture:
    """One resolution level of one OME-Zarr image, ready to show."""

    level: int
    path: str  # dataset path inside the image group
    shape: tuple[int, ...]  # the level's full shape, in the order of ``axes``
    axes: tuple[str, ...]
    pixel_size: tuple[float, float] | None  # (y, x) in ``unit``
    unit: str
    picture: np.ndarray
    cropped: bool
    channels_shown: int


@dataclass
class OmeImage:
    """An image of an OME-Zarr store (a multiscales group): its levels as pictures."""

    store: str  # name of the store folder
    image: str  # path of the image group inside the store ("" for the root)
    name: str
    levels: list[LevelPicture] = field(default_factory=list)


def _ome_attrs(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """NGFF 0.5 nests its metadata under ``ome``; 0.4 has it at the top."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, Mapping) else attrs


def _image_groups(root: Any, max_depth: int = 4) -> Iterator[tuple[str, Any]]:
    """(path, group) of every multiscales group, depth first in name order: a plain image,
    bioformats2raw series, the fields of an HCS plate."""
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    while stack:
        path, group, depth = stack.pop()
        if _ome_attrs(group.attrs).get("multiscales"):
            yield path, group
            continue
        if depth >= max_depth:
            continue
        children = sorted(group.groups(), key=lambda kv: kv[0])
        for name, child in reversed(children):
            if name not in _SKIP_GROUPS:
                stack.append((f"{path}/{name}" if path else name, child, depth + 1))


def _hex_colour(value: Any) -> tuple[float, float, float] | None:
    text = str(value or "").strip().lstrip("#")
    if len(text) != 6:
        return None
    try:
        return tuple(int(text[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        return None


def _composite(planes: np.ndarray, omero: Mapping[str, Any] | None) -> np.ndarray:
    """``channels x rows x columns`` -> grey (one channel) or additive RGB, each channel
    stretched by its omero window when the store gives one."""
    channels = list((omero or {}).get("channels") or [])

    def meta(i: int) -> Mapping[str, Any]:
        m = channels[i] if i < len(channels) else None
        return m if isinstance(m, Mapping) else {}

    scaled = []
    for i, plane in enumerate(planes):
        window = meta(i).get("window")
        lo = window.get("start") if isinstance(window, Mapping) else None
        hi = window.get("end") if isinstance(window, Mapping) else None
        if isinstance(lo, int | float) and isinstance(hi, int | float) and hi > lo:
            scaled.append(stretch(plane, float(lo), float(hi)))
        else:
            scaled.append(stretch(plane))
    if len(scaled) == 1:
        return scaled[0]
    rgb = np.zeros((*scaled[0].shape, 3), dtype=np.float32)
    for i, plane in enumerate(scaled):
        colour = _hex_colour(meta(i).get("color")) or DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)]
        rgb += plane[..., None] * np.asarray(colour, dtype=np.float32)
    return np.clip(rgb, 0.0, 1.0)


def _axis_names(multiscale: Mapping[str, Any], ndim: int) -> tuple[str, ...]:
    axes = multiscale.get("axes")
    if isinstance(axes, list) and len(axes) == ndim:
        return tuple(str(a["name"] if isinstance(a, Mapping) else a).lower() for a in axes)
    return ("t", "c", "z", "y", "x")[-ndim:]  # NGFF 0.1-0.3: always tczyx


def _level_scale(dataset: Mapping[str, Any], axes: tuple[str, ...]) -> tuple[float, float] | None:
    for t in dataset.get("coordinateTransformations") or []:
        if (
            isinstance(t, Mapping)
            and t.get("type") == "scale"
            and len(t.get("scale", [])) == len(axes)
        ):
            scale = dict(zip(axes, t["scale"], strict=True))
            if "y" in scale and "x" in scale:
                return float(scale["y"]), float(scale["x"])
    return None


def _unit(multiscale: Mapping[str, Any]) -> str:
    for a in multiscale.get("axes") or []:
        if isinstance(a, Mapping) and a.get("name") == "x" and a.get("unit"):
            return str(a["unit"])
    return ""


def level_picture(
    array: Any, axes: tuple[str, ...], omero: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, bool, int]:
    """The picture of one level: first time point, middle z, up to :data:`MAX_CHANNELS`
    channels blended, whole plane or a centred crop. Returns (picture, cropped, channels)."""
    shape = tuple(int(n) for n in array.shape)
    sel: list[Any] = []
    cropped = False
    for name, n in zip(axes, shape, strict=True):
        if name in ("y", "x") and n > MAX_PLANE:
            start = (n - CROP) // 2
            sel.append(slice(start, start + CROP))
            cropped = True
        elif name in ("y", "x"):
            sel.append(slice(None))
        elif name == "c":
            sel.append(slice(0, MAX_CHANNELS))
        elif name == "z":
            sel.append(n // 2)
        else:  # t and anything else: the first
            sel.append(0)
    data = np.asarray(array[tuple(sel)])
    kept = [a for a, s in zip(axes, sel, strict=True) if isinstance(s, slice)]
    # order the kept axes as (c, y, x), adding c when the image has none
    order = [kept.index(a) for a in ("c", "y", "x") if a in kept]
    data = np.transpose(data, order)
    if "c" not in kept:
        data = data[np.newaxis]
    return _composite(data, omero), cropped, int(data.shape[0])


def ome_zarr_images(store: str | Path, max_images: int) -> tuple[list[OmeImage], int]:
    """Pictures of every level of (at most ``max_images``) images of an OME-Zarr store; also
    returns how many images the store holds in all."""
    import zarr

    root = zarr.open_group(str(store), mode="r")
    found: list[OmeImage] = []
    total = 0
    for path, group in _image_groups(root):
        total += 1
        if len(found) >= max_images:
            continue
        attrs = _ome_attrs(group.attrs)
        multiscale = attrs["multiscales"][0]
        omero = attrs.get("omero") if isinstance(attrs.get("omero"), Mapping) else None
        image = OmeImage(Path(store).name, path, str(multiscale.get("name") or path or "image"))
        for level, dataset in enumerate(multiscale.get("datasets") or []):
            array = group[dataset["path"]]
            axes = _axis_names(multiscale, len(array.shape))
            picture, cropped, shown = level_picture(array, axes, omero)
            image.levels.append(
                LevelPicture(
                    level=level,
                    path=str(dataset["path"]),
                    shape=tuple(int(n) for n in array.shape),
                    axes=axes,
                    pixel_size=_level_scale(dataset, axes),
                    unit=_unit(multiscale),
                    picture=picture,
                    cropped=cropped,
                    channels_shown=shown,
                )
            )
        found.append(image)
    return found, total


# ------------------------------------------------------------------------------------ NIfTI

#: The three planes: name, the world (RAS) axis sliced through, and the world axis along the
#: picture's columns (the other one runs along its rows).
PLANES = (("sagittal", 0, 1), ("coronal", 1, 0), ("axial", 2, 0))


@dataclass
class NiftiPicture:
    """Mid-slices of a NIfTI volume in the three planes, in the neurological view: the subject's
    left on the picture's left (coronal, axial), anterior on the right (sagittal), superior at the
    top (axial: anterior)."""

    name: str
    shape: tuple[int, ...]
    zooms: tuple[float, ...]  # voxel size along the three voxel axes, in ``unit``
    unit: str
    planes: list[tuple[str, np.ndarray, float]]  # (plane, picture, aspect = pixel height/width)


def nifti_mid_slices(path: str | Path) -> NiftiPicture:
    """The middle slice of each world plane, read slice by slice (the volume is never loaded
    whole; of a 4-D file the first volume). Voxel axes are matched to world axes by the affine's
    closest RAS orientation: a picture's columns run towards +R (sagittal: +A), its rows from
    +S (axial: +A) at the top downwards."""
    import nibabel as nib

    img: Any = nib.load(str(path))
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3:
        shape = shape + (1,) * (3 - len(shape))
    ornt = nib.orientations.io_orientation(img.affine)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    zooms = zooms + (1.0,) * (3 - len(zooms))
    planes = []
    for plane, world, h_world in PLANES:
        vox = int(np.flatnonzero(ornt[:, 0] == world)[0])
        idx: list[Any] = [slice(None)] * 3
        idx[vox] = shape[vox] // 2
        idx += [0] * (len(img.shape) - 3)
        data = np.asarray(img.dataobj[tuple(idx[: len(img.shape)])], dtype=np.float32)
        data = data.reshape([shape[a] for a in range(3) if a != vox])
        rest = [a for a in range(3) if a != vox]
        if int(ornt[rest[0], 0]) != h_world:
            data, rest = data.T, rest[::-1]
        if ornt[rest[0], 1] < 0:
            data = data[::-1, :]
        if ornt[rest[1], 1] < 0:
            data = data[:, ::-1]
        picture = stretch(data.T[::-1, :])  # rows: vertical world axis, + at the top
        planes.append((plane, picture, zooms[rest[1]] / zooms[rest[0]]))
    unit = str(img.header.get_xyzt_units()[0]) if hasattr(img.header, "get_xyzt_units") else ""
    return NiftiPicture(
        Path(path).name,
        tuple(int(n) for n in img.shape),
        zooms,
        "" if unit == "unknown" else unit,
        planes,
    )


# ------------------------------------------------------------------- burned-in text thumbnails


@dataclass
class ThumbnailPair:
    """Before/after pictures of one image whose burned-in text was blanked (or refused)."""

    name: str  # the image's name (its SOP Instance UID in the output)
    how: str  # "pixel text" (found by OCR) or "rules" (pixel-cleaning rules of the policy)
    before: Path
    after: Path | None


def thumbnail_pairs(folder: str | Path) -> list[ThumbnailPair]:
    """The pairs of a ``pixeltext-thumbnails`` folder (``<name>[.rules].before.png`` and
    ``.after.png``; a refused image may have no after picture)."""
    pairs = []
    for before in sorted(Path(folder).glob("*.before.png")):
        stem = before.name[: -len(".before.png")]
        how = "pixel text"
        name = stem
        if stem.endswith(".rules"):
            how, name = "rules", stem[: -len(".rules")]
        after = before.with_name(f"{stem}.after.png")
        pairs.append(ThumbnailPair(name, how, before, after if after.is_file() else None))
    return pairs


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as floats in 0-1 (grey or RGB; alpha dropped)."""
    from PIL import Image

    with Image.open(path) as im:
        mode = "L" if im.mode in ("L", "I", "I;16", "1") else "RGB"
        return np.asarray(im.convert(mode), dtype=np.float32) / 255.0
