"""Pyramid levels and how a series is cut: level shapes, 2x2 reductions, chunks and shards,
and the band of rows read at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Largest chunk (and band) edge used when the caller gives no chunks.
DEFAULT_CHUNK = 1024


#: ``(t, c, z, y, x)`` sizes.
Shape5 = tuple[int, int, int, int, int]


def pyramid_level_count(y: int, x: int, requested: int) -> int:
    """Levels to write: as asked, but none smaller than one pixel in its shorter side."""
    most = 1 + math.floor(math.log2(max(1, min(y, x))))
    return max(1, min(int(requested), most))


def level_shape(y: int, x: int, level: int) -> tuple[int, int]:
    """Plane size at ``level`` (each level halves y and x, rounding up)."""
    for _ in range(level):
        y, x = (y + 1) // 2, (x + 1) // 2
    return y, x


def downsample_2x2(a: np.ndarray) -> np.ndarray:
    """Halve a ``(y, x)`` plane by 2x2 block means.

    An odd last row or column is repeated (edge blocks average what they cover). Integer results are
    rounded half to even and keep the input dtype.
    """
    if a.shape[0] % 2:
        a = np.concatenate([a, a[-1:, :]], axis=0)
    if a.shape[1] % 2:
        a = np.concatenate([a, a[:, -1:]], axis=1)
    work = np.float32 if a.dtype.itemsize <= 2 or a.dtype == np.float32 else np.float64
    acc: np.ndarray = a[0::2, 0::2].astype(work)
    np.add(acc, a[1::2, 0::2], out=acc)
    np.add(acc, a[0::2, 1::2], out=acc)
    np.add(acc, a[1::2, 1::2], out=acc)
    np.multiply(acc, 0.25, out=acc)
    if a.dtype.kind in "iu":
        np.rint(acc, out=acc)
    return acc.astype(a.dtype)


def subsample_2x2(a: np.ndarray) -> np.ndarray:
    """Halve a ``(y, x)`` plane by keeping the first pixel of each 2x2 block.

    For label images: no value appears that the full resolution does not hold.
    """
    return np.ascontiguousarray(a[0::2, 0::2])


def _chunks5(chunks: tuple[int, ...] | None) -> Shape5:
    """The chunk shape asked for as ``(t, c, z, y, x)`` (not yet clipped to an image)."""
    if chunks is None:
        full: tuple[int, ...] = (1, 1, 1, DEFAULT_CHUNK, DEFAULT_CHUNK)
    elif len(chunks) == 2:
        full = (1, 1, 1, int(chunks[0]), int(chunks[1]))
    elif len(chunks) == 5:
        full = tuple(int(n) for n in chunks)
    else:
        raise ValueError(f"chunks {chunks}: give (y, x) or (t, c, z, y, x)")
    if min(full) < 1:
        raise ValueError(f"chunks {chunks}: sizes must be positive")
    return full  # type: ignore[return-value]


def _shard5(shard: tuple[int, ...], chunk: Shape5) -> Shape5:
    """The shard shape as ``(t, c, z, y, x)``: ``(y, x)`` keeps the chunk's t, c and z."""
    if len(shard) == 2:
        full: tuple[int, ...] = (*chunk[:3], int(shard[0]), int(shard[1]))
    elif len(shard) == 5:
        full = tuple(int(n) for n in shard)
    else:
        raise ValueError(f"shard {shard}: give (y, x) or (t, c, z, y, x)")
    if min(full) < 1 or any(s % c for s, c in zip(full, chunk, strict=True)):
        raise ValueError(
            f"shard {shard}: every size must be a positive multiple of the chunk size {chunk}"
        )
    return full  # type: ignore[return-value]


def _clip(block: Shape5, shape: Shape5) -> Shape5:
    return tuple(max(1, min(b, n)) for b, n in zip(block, shape, strict=True))  # type: ignore[return-value]


def _clip_shard(shard: Shape5, chunk: Shape5, shape: Shape5) -> Shape5:
    """A shard no larger than needed to cover ``shape``, still a multiple of ``chunk``."""
    return tuple(
        s if s < n else c * math.ceil(n / c) for s, c, n in zip(shard, chunk, shape, strict=True)
    )  # type: ignore[return-value]


@dataclass(frozen=True)
class _Plan:
    """How one series is cut.

    ``shapes``, ``chunks`` and ``shards`` per level; ``units``: rows per write at each level (a
    chunk row, or a shard row when sharded, so no chunk or shard is written twice for one plane);
    ``band``: rows read at once (a multiple of ``2**(levels-1)``, so each band halves evenly, and of
    the level-0 write unit, covering at least one reader block).
    """

    shapes: list[Shape5]
    chunks: list[Shape5]
    shards: list[Shape5] | None
    units: list[int]
    band: int

    @property
    def levels(self) -> int:
        return len(self.shapes)


def _plan(
    shape: Shape5,
    chunks: tuple[int, ...] | None,
    shard: tuple[int, ...] | None,
    requested_levels: int,
    row_block: int,
) -> _Plan:
    t_n, c_n, z_n, y_n, x_n = shape
    n = pyramid_level_count(y_n, x_n, requested_levels)
    shapes: list[Shape5] = [(t_n, c_n, z_n, *level_shape(y_n, x_n, level)) for level in range(n)]
    chunk = _chunks5(chunks)
    level_chunks = [_clip(chunk, s) for s in shapes]
    level_shards = None
    if shard is not None:
        full_shard = _shard5(shard, chunk)
        level_shards = [
            _clip_shard(full_shard, c, s) for c, s in zip(level_chunks, shapes, strict=True)
        ]
    units = [block[3] for block in (level_shards or level_chunks)]
    base = math.lcm(units[0], 2 ** (n - 1))
    band = base * max(1, math.ceil(max(1, row_block) / base))
    return _Plan(shapes, level_chunks, level_shards, units, band)
