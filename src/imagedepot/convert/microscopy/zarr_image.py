"""One image of an OME-Zarr: its pyramid levels written as arrays of a group, then its
metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagedepot.convert import ImageSource, SeriesInfo
from imagedepot.convert.microscopy.ngff import NgffFormat, _ChannelStats, _multiscale, _omero
from imagedepot.convert.microscopy.pyramid import (
    Shape5,
    _Plan,
    _plan,
    downsample_2x2,
    subsample_2x2,
)
from imagedepot.convert.microscopy.streaming import _iter_blocks, _prefetched, _progress


@dataclass(frozen=True)
class _ZarrOptions:
    fmt: NgffFormat
    chunks: tuple[int, ...] | None
    shard: tuple[int, ...] | None
    levels: int
    prefetch: int


def _write_levels(
    source: ImageSource,
    s: int,
    info: SeriesInfo,
    group: Any,
    options: _ZarrOptions,
    *,
    labels: bool = False,
) -> tuple[_Plan, _ChannelStats]:
    """Write the pyramid of series ``s`` as arrays ``0``, ``1``... of ``group``."""
    plan = _plan(info.shape, options.chunks, options.shard, options.levels, info.row_block)
    arrays = [
        group.create_array(
            str(level),
            shape=shape,
            chunks=plan.chunks[level],
            dtype=info.dtype,
            fill_value=0,
            **options.fmt.array_options(plan.shards[level] if plan.shards else None),
        )
        for level, shape in enumerate(plan.shapes)
    ]
    stats = _ChannelStats(info.shape[1])
    y_n = info.shape[3]
    planes = info.shape[0] * info.shape[1] * info.shape[2]
    done = 0
    reduce = subsample_2x2 if labels else downsample_2x2
    blocks = _iter_blocks(source, s, info, plan, reduce, None if labels else stats)
    for t, c, z, level, y0, rows in _prefetched(blocks, options.prefetch):
        arrays[level][t, c, z, y0 : y0 + rows.shape[0], :] = rows
        if level == 0 and y0 + rows.shape[0] == y_n:
            done += 1
            _progress(s, done, planes)
    return plan, stats


def _write_zarr_image(
    source: ImageSource, s: int, info: SeriesInfo, root: Any, options: _ZarrOptions
) -> list[Shape5]:
    group = root.create_group(str(s))
    plan, stats = _write_levels(source, s, info, group, options)
    name = info.name or f"Image {s}"
    fmt = options.fmt
    group.attrs.update(
        fmt.wrap(
            {
                "multiscales": [fmt.multiscale(_multiscale(info, name, plan.levels, False))],
                "omero": fmt.omero(_omero(info, stats)),
            }
        )
    )
    return plan.shapes
