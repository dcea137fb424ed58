"""Label images (segmentation masks) written into ``<series>/labels/<name>/`` of an OME-Zarr
(NGFF ``image-label``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.convert import ImageSource, SeriesInfo
from imagedepot.convert.microscopy.ngff import _multiscale
from imagedepot.convert.microscopy.readers import open_source
from imagedepot.convert.microscopy.zarr_image import _write_levels, _ZarrOptions
from imagedepot.errors import InputError

log = logging.getLogger(__name__)


LABEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def label_name(path: str | Path) -> str:
    """Default label name of a mask file: its name without ``.ome.tif``/``.tif``... suffixes."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _open_labels(
    labels: Mapping[str, str | Path],
    info: SeriesInfo,
    stack: contextlib.ExitStack[Any],
    java_heap: str,
) -> list[tuple[str, Path, ImageSource]]:
    """Open and check every label image against the image (series ``info``) before writing."""
    opened = []
    for name, path in labels.items():
        if not LABEL_NAME.fullmatch(name):
            raise ValueError(f"label name {name!r}: use letters, digits, '_', '.' and '-'")
        mask = open_source(path, "auto", java_heap=java_heap)
        stack.callback(mask.close)
        m = mask.series[0]
        t_n, _, z_n, y_n, x_n = info.shape
        expected = (t_n, 1, z_n, y_n, x_n)
        if m.shape != expected:
            raise InputError(
                path,
                f"label image is {m.shape} (t, c, z, y, x); the image needs {expected}",
            )
        if np.dtype(m.dtype).kind not in "iu":
            raise InputError(path, f"label image must hold integers, not {m.dtype}")
        if len(mask.series) > 1:
            log.warning("%s: only the first of %d series is used as labels", path, len(mask.series))
        opened.append((name, Path(path), mask))
    return opened


def _write_labels(
    group: Any,
    info: SeriesInfo,
    opened: list[tuple[str, Path, ImageSource]],
    options: _ZarrOptions,
) -> list[dict[str, Any]]:
    """Write label images into ``group/labels/<name>/`` (NGFF ``image-label``)."""
    fmt = options.fmt
    labels_group = group.create_group("labels")
    reports = []
    for name, path, mask in opened:
        m = mask.series[0]
        log.info("labels %s: %s %s", name, m.shape, m.dtype)
        label_group = labels_group.create_group(name)
        plan, _ = _write_levels(mask, 0, m, label_group, options, labels=True)
        label_info = SeriesInfo(
            index=info.index,
            name=name,
            shape=m.shape,
            dtype=m.dtype,
            physical_size=dict(info.physical_size),
            channel_names=[name],
            channel_colors=[None],
        )
        label_group.attrs.update(
            fmt.wrap(
                {
                    "multiscales": [
                        fmt.multiscale(_multiscale(label_info, name, plan.levels, True))
                    ],
                    "image-label": fmt.image_label({"source": {"image": "../../"}}),
                }
            )
        )
        reports.append(
            {
                "name": name,
                "source": str(path),
                "shape": list(m.shape),
                "dtype": m.dtype,
                "levels": [list(s) for s in plan.shapes],
            }
        )
    labels_group.attrs.update(fmt.wrap({"labels": [name for name, _, _ in opened]}))
    return reports
