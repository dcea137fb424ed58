"""Line completion: lines of text followed where they run faint over anatomy.

A line of text drawn at one grey level is faint where it crosses anatomy of nearly that level,
and the detector stops where the contrast does. :func:`complete_lines` looks around each line
found with strokes normalised by their local maximum (:func:`local_strokes`) and extends the
line word by word (:func:`_continuation`).
"""

from __future__ import annotations

import numpy as np

from imagedepot.pixeltext import engines
from imagedepot.pixeltext.kernels import _kernels, kernel_box
from imagedepot.pixeltext.regions import (
    MAX_TEXT_HEIGHT,
    MIN_TEXT_HEIGHT,
    Box,
    DetectorSettings,
    TextRegion,
    _covered,
    _overlaps,
    _union,
    tiles,
)

#: How far (in line heights) :meth:`TextFinder._complete_lines` looks to either side of a line.
LINE_REACH = 8


def complete_lines(
    detector: engines.DbDetector,
    settings: DetectorSettings,
    img: np.ndarray,
    seeds: list[TextRegion],
    found: list[TextRegion],
    frame: int,
) -> list[TextRegion]:
    """Parts of the lines of ``found`` that run over bright or busy background.

    A line of text drawn at one grey level is faint where it crosses anatomy of nearly
    that level, and the detector stops where the contrast does. Around each line (as
    high, and :data:`LINE_REACH` heights to either side) the strokes of either polarity
    are normalised by their local maximum (:func:`local_strokes`), so faint letters show
    as strongly as bright ones, and the detector reads that picture; its boxes that
    continue a found line (as high, on the same rows) are added, unread
    (engine ``rapidocr-line``).
    """
    h, w = img.shape[:2]
    # lines of text: three letters or digits read (not a lone marker or scale label)
    lines = [
        r
        for r in seeds
        if MIN_TEXT_HEIGHT <= r.box[3] - r.box[1] <= MAX_TEXT_HEIGHT
        and sum(c.isalnum() for c in r.text) >= 3
    ]
    bands: list[Box] = []  # one per line: a band shared by several lines would make
    for r in lines:  # what is found depend on the neighbours
        x0, y0, x1, y1 = r.box
        lh = y1 - y0
        bands.append(
            (
                max(0, x0 - LINE_REACH * lh),
                max(0, y0 - lh // 2),
                min(w, x1 + LINE_REACH * lh),
                min(h, y1 + lh // 2),
            )
        )
    out: list[TextRegion] = []
    for band, line in sorted(set(zip(bands, [r.box for r in lines], strict=True))):
        bx0, by0, bx1, by1 = band
        # boxes are grown around their text: the letters are about two thirds as high
        height = max(8, round(0.65 * (line[3] - line[1])))
        planes = local_strokes(img[by0:by1, bx0:bx1], height)
        seen: list[Box] = []
        for tile in tiles((0, 0, bx1 - bx0, by1 - by0), settings.tile, settings.overlap):
            tx0, ty0, tx1, ty1 = tile
            prob = detector.probability(np.dstack([p[ty0:ty1, tx0:tx1] for p in planes]))
            seen += [
                kernel_box(kernel, scale=1, origin=(bx0 + tx0, by0 + ty0), shape=img.shape)
                for *kernel, _ in _kernels(prob, settings, 1)
            ]
        hull = _continuation(seen, line)
        if hull is None or _covered(hull, found + out):
            continue
        # a token left in place on the line (an orientation marker beside a name) cuts it
        kept = [r.box for r in found if r not in seeds and _overlaps(r.box, hull)]
        out += [
            TextRegion(piece, "", 0.0, "rapidocr-line", "strokes", frame)
            for piece in _cut(hull, kept)
            if _overlaps(piece, line) or piece[2] - piece[0] >= MIN_TEXT_HEIGHT
        ]
    return out


def local_strokes(img: np.ndarray, height: int) -> list[np.ndarray]:
    """Strokes of ``img`` (H x W uint8) normalised by their local maximum, per polarity.

    The white and black top-hats (element a little larger than the line ``height``) keep
    strokes and drop background; each is divided by its maximum over a neighbourhood three
    line heights wide (at least :data:`LOCAL_FLOOR` grey levels, so flat noise is not blown
    up). Faint letters
    over bright anatomy then show as strongly as the bright letters of the same line.
    """
    import cv2

    side = max(9, height | 1)
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    near = cv2.getStructuringElement(cv2.MORPH_RECT, ((3 * height) | 1, height | 1))
    smooth = cv2.GaussianBlur(img, (3, 3), 0.8)
    out = []
    for op in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        s = cv2.morphologyEx(smooth, op, k).astype(np.float32)
        top = np.maximum(cv2.dilate(s, near), np.float32(LOCAL_FLOOR))
        out.append(np.clip(s * (255.0 / top), 0, 255).astype(np.uint8))
    return out


#: Grey levels under which strokes are not normalised up (:func:`local_strokes`).
LOCAL_FLOOR = 20.0


def _continuation(boxes: list[Box], line: Box) -> Box | None:
    """The whole of ``line`` as ``boxes`` continue it, or ``None`` when none does.

    A box continues the line when it lies on its rows (half the lower height shared), is of
    about its height (a half to 1.5 times) and is reached from it through boxes that do the
    same with no gap wider than :data:`WORD_GAP` line heights (so a line is followed word by
    word, never across to a distant shape that happens to be level). The result is the hull
    of the line and its continuations: a piece between two words that neither picture shows
    is blanked with them. The line's height is the larger of its own box's and of the boxes
    that cover half of it (its text found again in the same picture, grown the same way),
    since engines draw their boxes differently tight, but no more than 1.5 times its own.
    """
    again = [b for b in boxes if _covered(line, [TextRegion(b, "", 0.0, "")], 0.5)]
    own = line[3] - line[1]
    lh = min(max([own, *(b[3] - b[1] for b in again)]), (3 * own) // 2)
    level = [
        b
        for b in boxes
        if 2 * (min(b[3], line[3]) - max(b[1], line[1])) >= min(b[3] - b[1], lh)
        and 2 * (b[3] - b[1]) <= 3 * lh
        and lh <= 2 * (b[3] - b[1])
    ]
    reached = [line]
    grew = True
    while grew:
        grew = False
        for b in level:
            if b not in reached and any(
                max(r[0] - b[2], b[0] - r[2]) <= WORD_GAP * lh for r in reached
            ):
                reached.append(b)
                grew = True
    if len(reached) == 1:
        return None
    hull = reached[0]
    for b in reached[1:]:
        hull = _union(hull, b)
    return hull


def _cut(box: Box, holes: list[Box]) -> list[Box]:
    """``box`` cut along its line (x) around ``holes``: the pieces left and right of them."""
    pieces = [box]
    for hx0, _, hx1, _ in sorted(holes):
        out = []
        for x0, y0, x1, y1 in pieces:
            if hx1 <= x0 or x1 <= hx0:
                out.append((x0, y0, x1, y1))
                continue
            if hx0 > x0:
                out.append((x0, y0, hx0, y1))
            if hx1 < x1:
                out.append((hx1, y0, x1, y1))
        pieces = out
    return pieces


#: Widest gap (in line heights) between two words of one line.
WORD_GAP = 1.5
