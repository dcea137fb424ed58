"""Pixels streamed from a reader: blocks of rows per pyramid level, read one band ahead in
a reader thread; thread count, progress and the allocator setting.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from imagedepot.convert import ImageSource, SeriesInfo
from imagedepot.convert.microscopy.ngff import _ChannelStats
from imagedepot.convert.microscopy.pyramid import _Plan
from imagedepot.errors import ImagedepotError

log = logging.getLogger(__name__)


Block = tuple[int, int, int, int, int, np.ndarray]


def _iter_blocks(
    source: ImageSource,
    s: int,
    info: SeriesInfo,
    plan: _Plan,
    reduce: Callable[[np.ndarray], np.ndarray],
    stats: _ChannelStats | None = None,
) -> Iterator[Block]:
    """Yield ``(t, c, z, level, y0, rows)`` plane after plane, ``rows`` being whole writes.

    Within a band, reduced levels come before full resolution. ``stats`` (if given) sees every
    band, in the thread that runs this generator.

    Each band read is reduced level by level with ``reduce``; each level holds back the rows that
    do not yet fill a write unit (``plan.units``) until the next band, and flushes the rest at the
    plane's end. In memory: one band and less than one write unit per level.
    """
    t_n, c_n, z_n, y_n, x_n = info.shape
    n = plan.levels
    for t, c, z in itertools.product(range(t_n), range(c_n), range(z_n)):
        held: list[np.ndarray | None] = [None] * n
        start = [0] * n
        for y0 in range(0, y_n, plan.band):
            y1 = min(y_n, y0 + plan.band)
            rows = source.read_rows(s, t, c, z, y0, y1)
            if rows.shape != (y1 - y0, x_n):
                expected = (y1 - y0, x_n)
                raise ImagedepotError(
                    f"{source.reader} returned rows of shape {rows.shape}, expected {expected}"
                )
            if stats is not None:
                stats.add(c, rows)
            ready_blocks: list[Block] = []
            for level in range(n):
                if level:
                    rows = reduce(rows)
                pending = held[level]
                block = rows if pending is None else np.concatenate([pending, rows])
                unit = plan.units[level]
                ready = block.shape[0] if y1 == y_n else block.shape[0] // unit * unit
                held[level] = block[ready:] if ready < block.shape[0] else None
                if ready:
                    ready_blocks.append((t, c, z, level, start[level], block[:ready]))
                    start[level] += ready
            # Reduced levels first: a consumer that stops after the last full-resolution rows
            # (tifffile, once it has every tile) has then received everything.
            yield from reversed(ready_blocks)


_END = object()


def _prefetched(items: Iterator[Block], depth: int) -> Iterator[Block]:
    """Run ``items`` in a reader thread, ``depth`` blocks ahead (``depth`` 0: in this thread).

    Reading (Bio-Formats releases the GIL in ``openBytes``, tifffile in its decoders) and
    downsampling then overlap with the caller's writing and compression. Errors of the reader
    thread are raised here; when the caller stops early, the thread stops after its current block.
    """
    if depth < 1:
        yield from items
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="imagedepot-reader", daemon=True)
    thread.start()
    try:
        while True:
            entry = q.get()
            if entry is _END:
                return
            if isinstance(entry, BaseException):
                raise entry
            yield entry
    finally:
        stop.set()
        thread.join()


#: Heap growth padding asked of glibc's allocator (``M_TOP_PAD``), see :func:`tune_allocator`.
TOP_PAD = 64 << 20
_allocator_tuned = False


def tune_allocator() -> None:
    """Ask glibc to keep 64 MiB of freed memory per heap instead of returning it at once.

    With a JVM in the process, glibc gives every zarr worker thread its own heap and trims it as
    soon as a chunk's buffers are freed, so the next chunk faults the same pages in again: two
    million page faults (seconds of system time, 25 % of the wall time) for a 2 GiB image; with
    the padding, a few ten thousand, and the same peak memory. Once per process, Linux with glibc
    only; an explicit ``MALLOC_TOP_PAD_`` in the environment is left to rule.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    if not sys.platform.startswith("linux") or "MALLOC_TOP_PAD_" in os.environ:
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):
        return
    m_top_pad = -2
    if mallopt(m_top_pad, TOP_PAD) != 1:
        log.debug("mallopt(M_TOP_PAD) refused; allocator left as it is")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. a batch job's allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _threads(threads: int | None) -> int:
    if threads is None:
        return available_cpus()
    if threads < 1:
        raise ValueError(f"threads {threads}: give a positive number")
    return int(threads)


def _progress(series: int, done: int, planes: int) -> None:
    """Log every tenth of the planes of a series (and the last)."""
    if done == planes or done % max(1, planes // 10) == 0:
        log.info("series %d: %d/%d planes written", series, done, planes)
