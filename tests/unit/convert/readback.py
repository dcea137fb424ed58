"""Read converted outputs back independently of the converters: what a user's tools would see.

Each function returns, per image (series), ``data`` (t, c, z, y, x at full resolution), ``name``,
``physical_size`` (µm for x, y, z and s for t; None where the output does not say) and
``channel_names``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import ome_types
import tifffile
import zarr

UM = {"µm": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}
SECONDS = {"s": 1.0, "ms": 1e-3, "min": 60.0}


def ome_zarr_images(path: Path) -> list[dict[str, Any]]:
    """Images of a bioformats2raw-layout OME-Zarr (NGFF 0.4 or 0.5)."""
    root = zarr.open_group(path, mode="r")
    v3 = root.metadata.zarr_format == 3

    def ome(group: zarr.Group) -> dict:
        attrs = group.attrs.asdict()
        return attrs["ome"] if v3 else attrs

    images = []
    for name in ome(root["OME"])["series"]:
        group = root[name]
        attrs = ome(group)
        ms = attrs["multiscales"][0]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        physical: dict[str, float | None] = {}
        for axis, value in zip(ms["axes"], scale, strict=True):
            if axis["name"] == "c":
                continue
            factor = {"micrometer": 1.0, "second": 1.0}.get(axis.get("unit", ""))
            physical[axis["name"]] = value * factor if factor else None
        images.append(
            {
                "data": np.asarray(group[ms["datasets"][0]["path"]][:]),
                "name": ms.get("name"),
                "physical_size": physical,
                "channel_names": [ch["label"] for ch in attrs["omero"]["channels"]],
            }
        )
    return images


def ome_tiff_images(path: Path) -> list[dict[str, Any]]:
    """Images of an OME-TIFF, sizes and names from its OME-XML (parsed by ome-types)."""
    images = []
    with tifffile.TiffFile(path) as tif:
        ome = ome_types.from_xml(tif.ome_metadata)
        for image, series in zip(ome.images, tif.series, strict=True):
            px = image.pixels
            shape = (px.size_t, px.size_c, px.size_z, px.size_y, px.size_x)
            assert px.dimension_order.value == "XYZCT"

            def length(value: float | None, unit: Any) -> float | None:
                return None if value is None else value * UM[unit.value]

            images.append(
                {
                    "data": series.asarray().reshape(shape),
                    "name": image.name,
                    "physical_size": {
                        "x": length(px.physical_size_x, px.physical_size_x_unit),
                        "y": length(px.physical_size_y, px.physical_size_y_unit),
                        "z": length(px.physical_size_z, px.physical_size_z_unit),
                        "t": None
                        if px.time_increment is None
                        else px.time_increment * SECONDS[px.time_increment_unit.value],
                    },
                    "channel_names": [ch.name for ch in px.channels],
                    "ome": image,
                }
            )
    return images


def assert_same_image(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Shape (TCZYX), dtype, pixel values, physical sizes and channel names are equal."""
    assert got["data"].shape == want["data"].shape
    assert got["data"].dtype == want["data"].dtype
    np.testing.assert_array_equal(got["data"], want["data"])
    for axis in "xyzt":
        w, g = want["physical_size"].get(axis), got["physical_size"].get(axis)
        if w is None:
            assert g is None, axis
        else:
            assert g is not None and abs(g - w) <= 1e-9 * abs(w), (axis, g, w)
    assert got["channel_names"] == want["channel_names"]
