"""The screen: which areas of an 8-bit image may hold text (no network).

Strokes of text are thin and of high contrast, so the white and black top-hats with a 9 x 9
element (after a 3 x 3 Gaussian that takes out pixel noise) keep them and drop flat background
and smooth anatomy; runs (three of a 3 x 3 neighbourhood) of pixels of at least
:attr:`~imagedepot.pixeltext.regions.DetectorSettings.contrast` grey levels are grouped (dilated
along the line) into candidate areas, padded for context and merged
(:func:`candidate_regions`). With ``screen: glyphs`` (the default) an area goes on only when it
holds a row of glyphs (letter-sized shapes side by side, their tops or bottoms aligned, in the
strokes or in each line's own two-level split): anatomy edges, vessels and noise make candidate
areas on most CT and MR slices but rarely such rows, so a text-free slice costs no network pass.
:func:`has_characters` is the gate of the second engine (Tesseract).
"""

from __future__ import annotations

import numpy as np

from imagedepot.pixeltext.regions import (
    Area,
    Box,
    DetectorSettings,
    _grow_box,
    _line_like,
    _overlaps,
    merge_boxes,
)


def candidate_regions(img: np.ndarray, settings: DetectorSettings) -> list[Area]:
    """Areas of ``img`` (H x W uint8) that may hold text (see the module docstring)."""
    import cv2

    h, w = img.shape
    if settings.screen == "full":
        return [Area((0, 0, w, h), stroke_height=settings.upscale_below)]
    polarities = _stroke_masks(img, settings.contrast)
    strong = polarities[0] | polarities[1]
    if not strong.any():
        return []
    grouped = cv2.dilate(strong, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
    stats = _component_stats(grouped)
    pad = settings.pad
    areas: list[Area] = []
    for x, y, bw, bh, _ in stats[stats[:, 4] >= 12].tolist():
        box = (max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad))
        areas.append(Area(box, stroke_height=bh, children=[(x, y, x + bw, y + bh)]))
    merged = merge_boxes([a.box for a in areas])
    out = []
    for box in merged:
        lines = [a for a in areas if _overlaps(a.box, box) and _line_like(a.children[0])]
        heights = sorted(a.stroke_height for a in lines)
        out.append(
            Area(
                box,
                stroke_height=heights[len(heights) // 2] if heights else 0,
                children=[a.children[0] for a in lines],
            )
        )
    if settings.screen == "glyphs":
        out = _with_glyphs(img, out, polarities)
    return out


def _stroke_masks(img: np.ndarray, contrast: int) -> tuple[np.ndarray, np.ndarray]:
    """Light strokes on dark (white top-hat) and dark on light (black top-hat) of ``img``:
    pixels of at least ``contrast`` grey levels in runs (three of a 3 x 3 neighbourhood)."""
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    smooth = cv2.GaussianBlur(img, (3, 3), 0.8)
    out = []
    for op in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        strong = (cv2.morphologyEx(smooth, op, k) >= contrast).astype(np.uint8)
        strong &= (cv2.boxFilter(strong, -1, (3, 3), normalize=False) >= 3).astype(np.uint8)
        out.append(strong)
    return out[0], out[1]


#: Glyphs in a row that make an area worth reading: in its strokes...
GLYPHS_IN_STROKES = 3


#: ... or in a two-level (Otsu) split of one of its lines, where texture and speckle also
#: make short rows.
GLYPHS_IN_SPLIT = 4


def _with_glyphs(
    img: np.ndarray, areas: list[Area], strokes: tuple[np.ndarray, np.ndarray]
) -> list[Area]:
    """The areas of ``img`` that hold a row of glyphs (the ``glyphs`` screen), each with its
    rows (:attr:`Area.rows`).

    Glyphs are looked for in the strokes of either polarity (``strokes``, the masks of
    :func:`_stroke_masks`; :data:`GLYPHS_IN_STROKES` in a row), and in each line of an area
    split at its own two-level (Otsu) threshold, either polarity, where letters too bold, too
    faint or set too close for the top-hat to keep apart show as separate shapes
    (:data:`GLYPHS_IN_SPLIT` in a row). Measured on the synthetic corpus
    (``benchmarks/pixels``): this keeps every text box the detector finds and drops the
    candidate areas of 55 of 58 text-free CT and MR images.
    """
    out = []
    for a in areas:
        a.rows = _glyph_rows(img, a, strokes)
        if a.rows:
            out.append(a)
    return out


def _glyph_rows(img: np.ndarray, area: Area, strokes: tuple[np.ndarray, np.ndarray]) -> list[Box]:
    """Boxes (image coordinates) of the rows of glyphs in ``area``: in the strokes, else in the
    split of its lines (see :func:`_with_glyphs`); empty when it has none."""

    x0, y0, x1, y1 = area.box
    if min(x1 - x0, y1 - y0) < 6:
        return []
    rows = [
        row for m in strokes for row in _rows(_glyphs(m[y0:y1, x0:x1]), GLYPHS_IN_STROKES, (x0, y0))
    ]
    if rows:
        return merge_boxes(rows)
    # each line (at least 1.5 times as wide as high: four glyphs) split on its own
    lines = [
        _grow_box(c, 6, img.shape[:2]) for c in area.children if c[2] - c[0] >= 1.5 * (c[3] - c[1])
    ]
    for line, found in zip(lines, _split_glyphs(img, lines), strict=True):
        if len(found) >= GLYPHS_IN_SPLIT:
            rows += _rows(found, GLYPHS_IN_SPLIT, (line[0], line[1]))
    return merge_boxes(rows)


def _split_glyphs(img: np.ndarray, lines: list[Box]) -> list[list[Box]]:
    """The glyphs (:func:`_glyphs`, in the line's own coordinates) of each line of ``img`` split
    at its own two-level (Otsu) threshold, light and dark parts together.

    Each line's two masks are framed by a pixel of background, so no part crosses from one
    line into another; the masks of all lines are packed side by side into one picture per
    polarity (shelves of lines sorted by height) and labelled in one call each: the parts are
    those of labelling each line on its own, at a fraction of the calls (a text-free CT slice
    has about twenty such lines).
    """
    import cv2

    if not lines:
        return []
    width = max(512, max(x1 - x0 for x0, _, x1, _ in lines))
    places: list[tuple[int, int]] = [(0, 0)] * len(lines)
    x = y = shelf = 0
    for i in sorted(range(len(lines)), key=lambda i: lines[i][1] - lines[i][3]):
        lw, lh = lines[i][2] - lines[i][0], lines[i][3] - lines[i][1]
        if x + lw > width:
            x, y, shelf = 0, y + shelf, 0
        places[i] = (x, y)
        x, shelf = x + lw, max(shelf, lh)
    light = np.zeros((y + shelf, width), dtype=np.uint8)
    dark = np.zeros_like(light)
    owner = np.full(light.shape, -1, dtype=np.int32)
    for i, ((lx0, ly0, lx1, ly1), (px, py)) in enumerate(zip(lines, places, strict=True)):
        h, w = ly1 - ly0, lx1 - lx0
        _, bw = cv2.threshold(img[ly0:ly1, lx0:lx1], 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        inner = (slice(py + 1, py + h - 1), slice(px + 1, px + w - 1))
        light[inner] = bw[1:-1, 1:-1]
        dark[inner] = 1 - bw[1:-1, 1:-1]
        owner[py : py + h, px : px + w] = i
    out: list[list[Box]] = [[] for _ in lines]
    for mask in (light, dark):
        for gx0, gy0, gx1, gy1 in _glyphs(mask):
            i = int(owner[gy0, gx0])
            px, py = places[i]
            out[i].append((gx0 - px, gy0 - py, gx1 - px, gy1 - py))
    return out


def _glyphs(mask: np.ndarray) -> list[Box]:
    """Parts of a binary mask shaped like glyphs: 5 to 60 px high, no more than three times as
    wide, strokes (12-90 % of their box filled) rather than solid blobs or single lines."""
    st = _component_stats(mask).astype(np.int64)
    _, _, bw, bh, count = st.T
    ok = (
        (bh >= 5)
        & (bh <= 60)
        & (bw <= 3 * bh)
        & (count >= 6)
        & (100 * count >= 12 * bw * bh)
        & (10 * count <= 9 * bw * bh + 10)
    )
    return [(a, b, a + c, b + d) for a, b, c, d in st[ok][:, :4].tolist()]


def _component_stats(mask: np.ndarray) -> np.ndarray:
    """``(x, y, width, height, pixels)`` of each 8-connected part of ``mask`` (background
    left out), labelled within the bounding box of its set pixels (labelling costs per pixel,
    set or not). Labels are 16-bit where that cannot overflow."""
    import cv2

    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return np.zeros((0, 5), dtype=np.int32)
    crop = mask[y : y + h, x : x + w]
    ltype = cv2.CV_16U if w * h <= 4 * 65000 else cv2.CV_32S
    # Grana's block-based labelling: the same parts, three times as fast as the default with
    # 32-bit labels (OpenCV 5.1, 512 x 512)
    _, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(crop, 8, ltype, cv2.CCL_GRANA)
    out = np.array(stats[1:])
    out[:, 0] += x
    out[:, 1] += y
    return out


def _chains(glyphs: list[Box]) -> tuple[list[Box], list[int], list[int]]:
    """Chains of glyphs each beside the next: heights within a factor of two, no farther apart
    than the larger height (overlapping by at most half the smaller), tops or bottoms aligned
    within a quarter of the larger height (2 px at least). Returns the glyphs sorted, the
    length of the longest chain ending at each, and the glyph before it in that chain (-1)."""
    glyphs = sorted(glyphs)
    best = [1] * len(glyphs)
    prev = [-1] * len(glyphs)
    for b, (bx0, by0, _, by1) in enumerate(glyphs):
        bh = by1 - by0
        for a in range(b):
            _, ay0, ax1, ay1 = glyphs[a]
            lo, hi = sorted((ay1 - ay0, bh))
            gap = bx0 - ax1
            if not (-lo // 2 <= gap <= hi and 2 * lo >= hi):
                continue
            tol = max(2.0, 0.25 * hi)
            if (abs(ay1 - by1) <= tol or abs(ay0 - by0) <= tol) and best[a] + 1 > best[b]:
                best[b], prev[b] = best[a] + 1, a
    return glyphs, best, prev


def _longest_row(glyphs: list[Box]) -> int:
    """Length of the longest chain of glyphs (:func:`_chains`)."""
    return max(_chains(glyphs)[1], default=0)


def _rows(glyphs: list[Box], at_least: int, origin: tuple[int, int] = (0, 0)) -> list[Box]:
    """Boxes around the chains of at least ``at_least`` glyphs (:func:`_chains`), shifted by
    ``origin``."""
    glyphs, best, prev = _chains(glyphs)
    ox, oy = origin
    rows = []
    for end, length in enumerate(best):
        if length < at_least:
            continue
        members, i = [], end
        while i >= 0:
            members.append(glyphs[i])
            i = prev[i]
        rows.append(
            (
                ox + min(g[0] for g in members),
                oy + min(g[1] for g in members),
                ox + max(g[2] for g in members),
                oy + max(g[3] for g in members),
            )
        )
    return rows


def glyph_row(img: np.ndarray, box: Box, *, contrast: int = 28) -> int:
    """The longest row of glyphs in ``box`` of ``img`` (H x W uint8), in the strokes of
    either polarity or in the two-level (Otsu) split of the crop, either polarity."""
    import cv2

    x0, y0, x1, y1 = box
    crop = np.ascontiguousarray(img[y0:y1, x0:x1])
    if crop.shape[0] < 6 or crop.shape[1] < 6:
        return 0
    _, split = cv2.threshold(crop, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    masks = [*_stroke_masks(crop, contrast), split, 1 - split]
    return max(_longest_row(_glyphs(m)) for m in masks)


def has_characters(img: np.ndarray, box: Box, contrast: int = 28) -> bool:
    """True if ``box`` of ``img`` holds strokes shaped like a line of text (gates Tesseract).

    Per polarity (light on dark: white top-hat; dark on light: black top-hat; one at a time,
    since their union fills the gaps between letters), the strokes of at least
    ``contrast`` grey levels are split into connected parts. The box holds characters when two
    parts of glyph size (4 to 60 pixels high, no more than four times as wide) stand in a row,
    each beside the next: heights within a factor of two, overlapping by half the smaller
    height, no farther apart than the larger height (two blobs of anatomy side by side are
    common, three in a row of letter shape are not); or when one part is a run of letters that touch (a band 6
    to 48 pixels high whose middle rows cross at least three strokes, and about one per
    character width). A curve of anatomy or a table edge crosses one.
    """
    import cv2

    x0, y0, x1, y1 = box
    crop = img[y0:y1, x0:x1]
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return False
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    smooth = cv2.GaussianBlur(crop, (3, 3), 0.8)
    for op in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        strong = (cv2.morphologyEx(smooth, op, k) >= contrast).astype(np.uint8)
        strong &= (cv2.boxFilter(strong, -1, (3, 3), normalize=False) >= 3).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
        glyphs = []
        for i in range(1, n):
            x, y, bw, bh, count = (int(v) for v in stats[i])
            if 4 <= bh <= 60 and bw <= 4 * bh and count >= 4:
                glyphs.append((x, y, x + bw, y + bh))
            elif 6 <= bh <= 48 and bw >= bh and count >= 12:
                part = labels[y : y + bh, x : x + bw] == i
                mid = part[bh // 4 : bh - bh // 4]
                crossings = np.count_nonzero(mid[:, 1:] & ~mid[:, :-1], axis=1)
                if float(np.median(crossings)) >= max(3.0, 0.8 * bw / bh):
                    return True
        glyphs.sort()
        left: set[int] = set()  # glyphs with a neighbour to their right
        right: set[int] = set()  # ... to their left
        for a, (_, ay0, ax1, ay1) in enumerate(glyphs):
            ah = ay1 - ay0
            for b, (bx0, by0, _, by1) in enumerate(glyphs[a + 1 :], start=a + 1):
                gap = bx0 - ax1
                if gap > 60:
                    break  # sorted by left edge: the rest are farther still
                lo, hi = sorted((ah, by1 - by0))
                overlap = min(ay1, by1) - max(ay0, by0)
                if -lo // 2 <= gap <= hi and 2 * lo >= hi and 2 * overlap >= lo:
                    left.add(a)
                    right.add(b)
        if left & right:
            return True  # three glyphs in a row
    return False
