"""Text kernels of the DB detector's probability map (lines set close together cut apart)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from imagedepot.pixeltext.regions import MIN_TEXT_HEIGHT, Box, DetectorSettings

#: A row of a kernel whose mean probability is under this share of its highest row's lies
#: between two lines of text.
SPLIT_VALLEY = 0.3


def _kernels(
    prob: np.ndarray, settings: DetectorSettings, scale: int
) -> list[tuple[int, int, int, int, float]]:
    """Text kernels of a probability map: ``(x, y, width, height, mean probability)``.

    Lines of text set close together (two pixels apart, as on the corners of radiographs)
    merge into one kernel at :attr:`DetectorSettings.det_threshold`; such a kernel is too high
    for a line and its reading fails. Where the kernel breaks into bands that do not share a
    row at a higher level (:data:`SPLIT_LEVELS`), it is cut between them, each part keeping
    all its pixels of the lower level.
    """
    import cv2

    mask = (prob > settings.det_threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    out = []
    for i in range(1, n):
        x, y, bw, bh, count = (int(v) for v in stats[i])
        if count < 3 or min(bw, bh) < 2:
            continue
        own = labels[y : y + bh, x : x + bw] == i
        sub = prob[y : y + bh, x : x + bw]
        parts = [(0, bh)]
        if bh >= 2 * MIN_TEXT_HEIGHT * scale:
            parts = _stacked_lines(sub, own) or parts
        for r0, r1 in parts:
            piece = own[r0:r1]
            rows = np.flatnonzero(piece.any(axis=1))
            cols = np.flatnonzero(piece.any(axis=0))
            if len(rows) == 0:
                continue
            score = float(sub[r0:r1][piece].mean())
            if score < settings.box_threshold or piece.sum() < 3:
                continue
            py0, px0 = r0 + int(rows[0]), int(cols[0])
            ph, pw = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
            if min(ph, pw) >= 2:
                out.append((x + px0, y + py0, pw, ph, score))
    return out


def _stacked_lines(sub: np.ndarray, own: np.ndarray) -> list[tuple[int, int]] | None:
    """Row ranges of the lines stacked in one kernel, or ``None`` when it holds one line.

    The mean probability of each row falls between two lines (a few columns may still bridge
    them where the lines end together); rows under :data:`SPLIT_VALLEY` of the highest row
    part the kernel into bands, and two bands of three rows or more are cut at the lowest row
    between them.
    """
    profile = np.where(own, sub, 0.0).mean(axis=1)
    low = profile < SPLIT_VALLEY * float(profile.max())
    bands: list[tuple[int, int]] = []
    start = None
    for r, is_low in enumerate([*low.tolist(), True]):
        if not is_low and start is None:
            start = r
        elif is_low and start is not None:
            if r - start >= 3:
                bands.append((start, r))
            start = None
    if len(bands) < 2:
        return None
    cuts = [a1 + int(np.argmin(profile[a1:b0])) for (_, a1), (b0, _) in itertools.pairwise(bands)]
    edges = [0, *cuts, own.shape[0]]
    return list(itertools.pairwise(edges))


def kernel_box(
    kernel: Sequence[int],
    *,
    scale: int,
    origin: tuple[int, int],
    shape: tuple[int, ...],
) -> Box:
    """The text box of a kernel ``(x, y, width, height)`` found in a picture read at ``scale``
    whose top-left corner lies at ``origin`` (x, y) of an image of ``shape``: grown as DB grows
    its kernels (by area x 1.6 / perimeter), back in image pixels, clipped to the image."""
    x, y, kw, kh = kernel
    grow = round(kw * kh * 1.6 / (2.0 * (kw + kh)))
    ox, oy = origin
    return (
        max(0, int(np.floor((x - grow) / scale + ox))),
        max(0, int(np.floor((y - grow) / scale + oy))),
        min(shape[1], int(np.ceil((x + kw + grow) / scale + ox))),
        min(shape[0], int(np.ceil((y + kh + grow) / scale + oy))),
    )
