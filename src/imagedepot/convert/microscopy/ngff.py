"""NGFF versions as classes (where each puts its metadata) and what an image's metadata
holds: axes, scales, ``multiscales`` and ``omero`` (channel colours and windows).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np

from imagedepot.convert import AXES, SeriesInfo
from imagedepot.convert.microscopy.pyramid import Shape5

NGFF_VERSIONS = ("0.4", "0.5")


SHARDING_NEEDS_V3 = "shard: sharding needs NGFF 0.5 (Zarr v3)"


class NgffFormat:
    """Where one NGFF version puts its metadata (see the subclasses)."""

    version: ClassVar[str]
    zarr_format: ClassVar[Literal[2, 3]]
    #: Whether chunks can be grouped into shards (Zarr v3 sharding codec).
    sharding: ClassVar[bool] = False

    def array_options(self, shards: Shape5 | None = None) -> dict[str, Any]:
        """Keyword arguments of ``zarr.create_array`` for image levels (``shards``: 0.5 only)."""
        raise NotImplementedError

    def wrap(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Group attributes holding ``attrs`` as OME metadata."""
        raise NotImplementedError

    def multiscale(self, multiscale: dict[str, Any]) -> dict[str, Any]:
        """One ``multiscales`` entry."""
        return multiscale

    def omero(self, omero: dict[str, Any]) -> dict[str, Any]:
        """The ``omero`` block."""
        return omero

    def image_label(self, label: dict[str, Any]) -> dict[str, Any]:
        """The ``image-label`` block of a label image."""
        return label


class NgffV04(NgffFormat):
    """NGFF 0.4: Zarr v2, metadata at the top of ``.zattrs``, nested chunk keys (``/``)."""

    version = "0.4"
    zarr_format = 2

    def array_options(self, shards: Shape5 | None = None) -> dict[str, Any]:
        from numcodecs import Blosc

        if shards is not None:
            raise ValueError(SHARDING_NEEDS_V3)
        return {
            "chunk_key_encoding": {"name": "v2", "separator": "/"},
            "compressors": Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE),
        }

    def wrap(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs

    def multiscale(self, multiscale: dict[str, Any]) -> dict[str, Any]:
        return {**multiscale, "version": self.version}

    def omero(self, omero: dict[str, Any]) -> dict[str, Any]:
        return {**omero, "version": self.version}

    def image_label(self, label: dict[str, Any]) -> dict[str, Any]:
        return {"version": self.version, **label}


class NgffV05(NgffFormat):
    """NGFF 0.5: Zarr v3, metadata under ``attributes.ome`` with ``version``, dimension names.

    With ``shards``, chunks are stored inside shard files (Zarr v3 sharding codec): far fewer
    files for large images; each chunk stays separately readable.
    """

    version = "0.5"
    zarr_format = 3
    sharding = True

    def array_options(self, shards: Shape5 | None = None) -> dict[str, Any]:
        from zarr.codecs import BloscCodec

        options: dict[str, Any] = {
            "dimension_names": list(AXES),
            "compressors": BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
        }
        if shards is not None:
            options["shards"] = shards
        return options

    def wrap(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"ome": {"version": self.version, **attrs}}


NGFF_FORMATS: dict[str, NgffFormat] = {"0.4": NgffV04(), "0.5": NgffV05()}


# --------------------------------------------------------------------------- image metadata


class _ChannelStats:
    """Running per-channel minimum and maximum (finite values only) for display windows."""

    def __init__(self, channels: int) -> None:
        self.low = [math.inf] * channels
        self.high = [-math.inf] * channels

    def add(self, c: int, a: np.ndarray) -> None:
        if a.dtype.kind == "f":
            a = a[np.isfinite(a)]
        if a.size:
            self.low[c] = min(self.low[c], float(a.min()))
            self.high[c] = max(self.high[c], float(a.max()))

    def window(self, c: int, dtype: np.dtype) -> dict[str, float]:
        low, high = self.low[c], self.high[c]
        if not math.isfinite(low):
            low = high = 0.0
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return {"start": low, "end": high, "min": float(info.min), "max": float(info.max)}
        return {"start": low, "end": high, "min": low, "max": high}


DEFAULT_COLORS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")


def default_colors(channels: int) -> list[str]:
    """Display colours when the source gives none: white for one channel, else a fixed cycle."""
    if channels == 1:
        return ["FFFFFF"]
    if channels == 3:
        return ["FF0000", "00FF00", "0000FF"]
    return [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(channels)]


def _axes_metadata(info: SeriesInfo) -> list[dict[str, Any]]:
    ps = info.physical_size
    axes: list[dict[str, Any]] = []
    for name in AXES:
        if name == "c":
            axes.append({"name": "c", "type": "channel"})
            continue
        axis: dict[str, Any] = {"name": name, "type": "time" if name == "t" else "space"}
        if ps.get(name) is not None:
            axis["unit"] = "second" if name == "t" else "micrometer"
        axes.append(axis)
    return axes


def _scale(info: SeriesInfo, level: int) -> list[float]:
    ps = info.physical_size
    f = float(2**level)
    return [
        float(ps.get("t") or 1.0),
        1.0,
        float(ps.get("z") or 1.0),
        float(ps.get("y") or 1.0) * f,
        float(ps.get("x") or 1.0) * f,
    ]


def _multiscale(info: SeriesInfo, name: str, levels: int, labels: bool) -> dict[str, Any]:
    return {
        "name": name,
        "axes": _axes_metadata(info),
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": _scale(info, level)}],
            }
            for level in range(levels)
        ],
        "type": "nearest" if labels else "local_mean",
        "metadata": {
            "description": (
                "first pixel of each 2x2 block in y and x per level"
                if labels
                else "2x2 block mean in y and x per level; odd edges repeated"
            ),
            "method": "imagedepot.convert.microscopy."
            + ("subsample_2x2" if labels else "downsample_2x2"),
        },
    }


def _omero(info: SeriesInfo, stats: _ChannelStats) -> dict[str, Any]:
    dtype = np.dtype(info.dtype)
    defaults = default_colors(info.shape[1])
    channels = []
    for c in range(info.shape[1]):
        channels.append(
            {
                "active": True,
                "coefficient": 1.0,
                "color": info.channel_colors[c] or defaults[c],
                "family": "linear",
                "inverted": False,
                "label": info.channel_names[c] or f"Channel {c}",
                "window": stats.window(c, dtype),
            }
        )
    return {
        "name": info.name or f"Image {info.index}",
        "channels": channels,
        "rdefs": {
            "defaultT": 0,
            "defaultZ": info.shape[2] // 2,
            "model": "color" if info.shape[1] > 1 else "greyscale",
        },
    }
