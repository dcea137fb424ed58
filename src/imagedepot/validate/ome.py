"""OME-Zarr and OME-TIFF, against independent readers and spec models.

* OME-Zarr (NGFF 0.4 and 0.5, plain image or bioformats2raw layout, sharded or not): metadata
  validated with ``ome-zarr-models``; every array of every resolution level opened and its first
  chunk decoded; label images (``labels/``) validated with the models, their levels matched to the
  image's shapes (channel axis aside) and their data type checked (integers);
  ``OME/METADATA.ome.xml`` parsed with ``ome-types`` and its image count matched to the series.
* OME-TIFF: the OME-XML parsed with ``ome-types``; each image's sizes matched to the TIFF series
  tifffile finds; the first tile of each series decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.validate.base import ValidationResult, need

ZARR_MARKERS = (".zattrs", ".zgroup", "zarr.json")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf")


def is_ome_zarr(path: Path) -> bool:
    """True for a folder with Zarr group metadata."""
    return path.is_dir() and any((path / m).is_file() for m in ZARR_MARKERS)


def _first_chunk(arr: Any) -> None:
    """Decode the first chunk of a zarr array (raises when the data cannot be read)."""
    chunks = arr.chunks
    index = tuple(slice(0, min(int(n), int(c))) for n, c in zip(arr.shape, chunks, strict=True))
    np.asarray(arr[index])


def check_ome_zarr(path: Path, result: ValidationResult) -> None:
    try:
        zarr = need("zarr", "zarr")
        models = need("ome_zarr_models", "ome-zarr-models")
    except RuntimeError as exc:
        result.errors.append(str(exc))
        return
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        result.errors.append(f"zarr cannot open the group: {exc}")
        return
    zarr_format = int(root.metadata.zarr_format)
    version = "0.5" if zarr_format == 3 else "0.4"
    attrs = root.attrs.asdict()
    ome = attrs.get("ome", attrs) if zarr_format == 3 else attrs
    result.info["zarr_format"] = zarr_format
    result.info["ngff_version"] = ome.get("version", version) if isinstance(ome, dict) else version
    image_paths: list[str]
    if isinstance(ome, dict) and "bioformats2raw.layout" in ome:
        result.info["layout"] = "bioformats2raw"
        try:
            if version == "0.5":
                from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw as Bf2RawV05

                model: Any = Bf2RawV05.from_zarr(root)
            else:
                from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw as Bf2RawV04

                model = Bf2RawV04.from_zarr(root)
            image_paths = list(model.image_paths)
        except Exception as exc:
            result.errors.append(f"ome-zarr-models: not a valid bioformats2raw group: {exc}")
            return
        if not image_paths:
            result.errors.append("bioformats2raw group without images (no '0' group)")
        _check_ome_group(root, path, version, image_paths, result)
    else:
        result.info["layout"] = "image"
        try:
            models.open_ome_zarr(root, version=version)
        except Exception as exc:
            result.errors.append(f"ome-zarr-models: {exc}")
            return
        image_paths = [""]
    images = []
    for image_path in image_paths:
        group = root[image_path] if image_path else root
        gattrs = group.attrs.asdict()
        gome = gattrs.get("ome", gattrs) if zarr_format == 3 else gattrs
        entry: dict[str, Any] = {"path": image_path or ".", "levels": []}
        try:
            multiscale = gome["multiscales"][0]
            entry["axes"] = [a["name"] for a in multiscale["axes"]]
            for ds in multiscale["datasets"]:
                arr = group[ds["path"]]
                _first_chunk(arr)
                entry["levels"].append({"path": ds["path"], "shape": list(arr.shape)})
            entry["dtype"] = str(group[multiscale["datasets"][0]["path"]].dtype)
        except Exception as exc:
            result.errors.append(f"image {image_path or '.'}: arrays cannot be read: {exc}")
        if "labels" in group:
            _check_labels(group, version, image_path or ".", entry, result)
        images.append(entry)
    result.info["images"] = images


def _check_labels(
    group: Any, version: str, image: str, entry: dict[str, Any], result: ValidationResult
) -> None:
    """Check ``labels/`` of an image: spec models, shapes against the image, integer data."""
    try:
        if version == "0.5":
            from ome_zarr_models.v05.image_label import ImageLabel as ImageLabelV05
            from ome_zarr_models.v05.labels import Labels as LabelsV05

            names = list(LabelsV05.from_zarr(group["labels"]).label_paths)
            for name in names:
                ImageLabelV05.from_zarr(group["labels"][name])
        else:
            from ome_zarr_models.v04.image_label import ImageLabel as ImageLabelV04
            from ome_zarr_models.v04.labels import Labels as LabelsV04

            names = list(LabelsV04.from_zarr(group["labels"]).attributes.labels)
            for name in names:
                ImageLabelV04.from_zarr(group["labels"][name])
    except Exception as exc:
        result.errors.append(f"image {image}: labels: ome-zarr-models: {exc}")
        return
    entry["labels"] = names
    levels = entry.get("levels") or []
    for name in names:
        label = group["labels"][name]
        attrs = label.attrs.asdict()
        meta = attrs.get("ome", attrs) if version == "0.5" else attrs
        try:
            datasets = meta["multiscales"][0]["datasets"]
            for k, ds in enumerate(datasets):
                arr = label[ds["path"]]
                _first_chunk(arr)
                if np.dtype(arr.dtype).kind not in "iu":
                    result.errors.append(f"image {image}: label {name} holds {arr.dtype}")
                if k < len(levels):
                    want = list(levels[k]["shape"])
                    got = list(arr.shape)
                    if len(got) != len(want) or [g for i, g in enumerate(got) if i != 1] != [
                        w for i, w in enumerate(want) if i != 1
                    ]:
                        result.errors.append(
                            f"image {image}: label {name} level {k} is {got}, the image {want}"
                        )
        except Exception as exc:
            result.errors.append(f"image {image}: label {name} cannot be read: {exc}")


def _check_ome_group(
    root: Any, path: Path, version: str, images: list[str], result: ValidationResult
) -> None:
    """Check the ``OME`` group of a bioformats2raw layout: ``series`` and ``METADATA.ome.xml``."""
    if "OME" not in root:
        return
    ome_attrs = root["OME"].attrs.asdict()
    if version == "0.5":
        ome_attrs = ome_attrs.get("ome", {})
    series = ome_attrs.get("series")
    if series is not None:
        if not isinstance(series, list) or not all(isinstance(s, str) for s in series):
            result.errors.append("OME/series must be a list of paths")
        elif [s for s in series if s not in root]:
            result.errors.append(
                f"OME/series names missing groups: {[s for s in series if s not in root]}"
            )
        elif len(series) != len(images):
            result.errors.append(f"OME/series lists {len(series)} images, found {len(images)}")
    xml_path = path / "OME" / "METADATA.ome.xml"
    if not xml_path.is_file():
        return
    try:
        ome_types = need("ome_types", "ome-types")
        ome = ome_types.from_xml(xml_path.read_text(encoding="utf-8"))
    except Exception as exc:
        result.errors.append(f"OME/METADATA.ome.xml: not valid OME-XML: {exc}")
        return
    result.info["ome_xml_images"] = len(ome.images)
    if len(ome.images) != len(images):
        result.errors.append(
            f"OME/METADATA.ome.xml has {len(ome.images)} images, the group {len(images)}"
        )
    for image in ome.images:
        pixels = image.pixels
        if pixels.tiff_data_blocks or pixels.bin_data_blocks:
            result.errors.append(
                f"OME/METADATA.ome.xml {image.id}: must use MetadataOnly, not TiffData/BinData"
            )


# --------------------------------------------------------------------------- OME-TIFF


def check_ome_tiff(path: Path, result: ValidationResult) -> None:
    import tifffile

    try:
        ome_types = need("ome_types", "ome-types")
    except RuntimeError as exc:
        result.errors.append(str(exc))
        return
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.is_ome or not tif.ome_metadata:
                result.errors.append("no OME-XML in the first ImageDescription (not an OME-TIFF)")
                return
            try:
                ome = ome_types.from_xml(tif.ome_metadata)
            except Exception as exc:
                result.errors.append(f"OME-XML does not parse as OME: {exc}")
                return
            series = list(tif.series)
            result.info["images"] = [
                {
                    "name": img.name,
                    "size_tczyx": [
                        img.pixels.size_t,
                        img.pixels.size_c,
                        img.pixels.size_z,
                        img.pixels.size_y,
                        img.pixels.size_x,
                    ],
                    "type": str(img.pixels.type.value),
                    "levels": len(series[i].levels) if i < len(series) else 0,
                }
                for i, img in enumerate(ome.images)
            ]
            if len(series) != len(ome.images):
                result.errors.append(
                    f"OME-XML has {len(ome.images)} images, tifffile finds {len(series)} series"
                )
            for i, (img, s) in enumerate(zip(ome.images, series, strict=False)):
                px = img.pixels
                shape = dict(zip(s.get_axes(False), s.get_shape(False), strict=True))
                if shape.get("X") != px.size_x or shape.get("Y") != px.size_y:
                    result.errors.append(
                        f"image {i}: OME-XML says {px.size_x}x{px.size_y}, TIFF holds {shape}"
                    )
                missing = sum(1 for page in s.pages if page is None)
                if missing:
                    result.errors.append(
                        f"image {i}: {missing} plane(s) named in the OME-XML are not in the TIFF"
                    )
                planes = int(
                    np.prod([n for a, n in shape.items() if a not in "YXS"], dtype=np.int64)
                )
                if planes * shape.get("S", 1) != px.size_t * px.size_c * px.size_z:
                    result.errors.append(
                        f"image {i}: OME-XML plane count does not match the TIFF pages"
                    )
                try:
                    store = s.aszarr(level=0)
                    zarr = need("zarr", "zarr")
                    _first_chunk(zarr.open_array(store, mode="r"))
                    for level in range(1, len(s.levels)):
                        _first_chunk(zarr.open_array(s.aszarr(level=level), mode="r"))
                except Exception as exc:
                    result.errors.append(f"image {i}: pixels cannot be decoded: {exc}")
    except (tifffile.TiffFileError, OSError) as exc:
        result.errors.append(f"tifffile cannot read it: {exc}")


__all__ = ["TIFF_SUFFIXES", "ZARR_MARKERS", "check_ome_tiff", "check_ome_zarr", "is_ome_zarr"]
