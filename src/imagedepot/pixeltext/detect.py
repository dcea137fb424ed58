"""Find text in an 8-bit image: screen, detect with both engines, unite the boxes.

:meth:`TextFinder.find` works in three steps:

1. **Screen** (:func:`candidate_regions`, OpenCV, a few milliseconds for 512 x 512): strokes of
   text are thin and of high contrast, so the white and black top-hats with a 9 x 9 element
   (after a 3 x 3 Gaussian that takes out pixel noise) keep them and drop flat background and
   smooth anatomy; runs (three of a 3 x 3 neighbourhood) of pixels of at least
   :attr:`DetectorSettings.contrast` grey levels are grouped (dilated along the line) into
   candidate areas, padded for context and merged. With ``screen: glyphs`` (the default) an
   area goes on only when it holds a row of glyphs (:func:`glyph_row`: letter-sized shapes side
   by side, their tops or bottoms aligned, in the strokes or in the area's own two-level
   split): anatomy edges, vessels and noise make candidate areas on most CT and MR slices but
   rarely such rows, so a text-free slice costs no network pass. An image without candidates
   has no text the detector could find: no network runs on it. ``screen: candidates`` reads
   every candidate area; ``screen: full`` skips screening and reads the whole image.
2. **Detect**: RapidOCR's DB detector reads each candidate area at full resolution (tiles of at
   most :attr:`DetectorSettings.tile` pixels with overlap, so a mammogram is tiled, never
   shrunk); areas whose strokes are small (text under :attr:`DetectorSettings.upscale_below`
   pixels high) are read at twice the size. The renderings of a frame go into the network's
   colour channels together, so one pass reads both. Probability above
   :attr:`DetectorSettings.det_threshold` gives text kernels; a kernel whose mean probability
   reaches :attr:`DetectorSettings.box_threshold` becomes a box, grown as DB grows its kernels
   (by area x 1.6 / perimeter). The recogniser reads every box in every rendering and keeps
   the best reading.
3. **Second engine**: Tesseract reads the line-shaped groups of strokes the screen found that
   no detector box covers and that hold characters (:func:`has_characters`: three glyph-sized
   strokes in a row, or a run of touching letters), in one call per frame (the pieces are
   stacked into one picture); its words of at least
   :attr:`DetectorSettings.tesseract_confidence` are added. Boxes of both engines are kept
   (united), each with its text, confidence and engine.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagedepot.pixeltext import engines

log = logging.getLogger(__name__)

#: A rectangle ``(x0, y0, x1, y1)``: x the column, y the row, ends exclusive.
Box = tuple[int, int, int, int]

#: Screening modes (see :func:`candidate_regions`).
SCREENS = ("glyphs", "candidates", "full")
#: Boxes less high than this (pixels) are not legible text and are dropped.
MIN_TEXT_HEIGHT = 6
#: Tesseract words higher than this with no detector box around them are anatomy.
MAX_TESSERACT_HEIGHT = 80
#: Detector boxes higher than this need a confident reading of three or more characters.
MAX_TEXT_HEIGHT = 48
#: A detector box counts when the recogniser reads it with this confidence...
READ_CONFIDENCE = 0.5
#: ... or when the detector is this sure (mean probability of its kernel) without a reading,
#: in a box no higher than this (large unread blobs are anatomy).
STRONG_KERNEL = 0.7
MAX_UNREAD_HEIGHT = 36


@dataclass(frozen=True)
class DetectorSettings:
    """How hard to look (the defaults are the ones ``benchmarks/pixels`` measures)."""

    screen: str = "glyphs"
    contrast: int = 28
    det_threshold: float = 0.3
    box_threshold: float = 0.5
    tesseract: bool = True
    tesseract_confidence: float = 0.8
    tile: int = 1024
    overlap: int = 96
    upscale_below: int = 12
    pad: int = 24
    complete_lines: bool = True

    def __post_init__(self) -> None:
        if self.screen not in SCREENS:
            raise ValueError(f"screen must be one of {', '.join(SCREENS)} (given {self.screen!r})")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for provenance."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class TextRegion:
    """A box of text in one frame: where, what was read, how sure, by which engine."""

    box: Box
    text: str
    confidence: float
    engine: str
    rendering: str = ""
    frame: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the text is the caller's to keep or drop)."""
        return {
            "box": list(self.box),
            "text": self.text,
            "confidence": round(self.confidence, 3),
            "engine": self.engine,
            "rendering": self.rendering,
            "frame": self.frame,
        }


# --------------------------------------------------------------------------------------------
# Screening


@dataclass
class Area:
    """A candidate area of an image and the height of the strokes seen in it."""

    box: Box
    stroke_height: int = 0
    children: list[Box] = field(default_factory=list)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Boxes merged until none overlap (a box touching another merges with it)."""
    out = list(boxes)
    changed = True
    while changed:
        changed = False
        merged: list[Box] = []
        for box in out:
            for i, other in enumerate(merged):
                if _overlaps(box, other):
                    merged[i] = _union(box, other)
                    changed = True
                    break
            else:
                merged.append(box)
        out = merged
    return out


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
    """The areas of ``img`` that hold a row of glyphs (the ``glyphs`` screen).

    Glyphs are looked for in the strokes of either polarity (``strokes``, the masks of
    :func:`_stroke_masks`; :data:`GLYPHS_IN_STROKES` in a row), and in each line of an area
    split at its own two-level (Otsu) threshold, either polarity, where letters too bold, too
    faint or set too close for the top-hat to keep apart show as separate shapes
    (:data:`GLYPHS_IN_SPLIT` in a row). Measured on the synthetic corpus
    (``benchmarks/pixels``): this keeps every text box the detector finds and drops the
    candidate areas of 55 of 58 text-free CT and MR images.
    """
    return [a for a in areas if _holds_glyphs(img, a, strokes)]


def _holds_glyphs(img: np.ndarray, area: Area, strokes: tuple[np.ndarray, np.ndarray]) -> bool:
    import cv2

    x0, y0, x1, y1 = area.box
    if min(x1 - x0, y1 - y0) < 6:
        return False
    if any(_longest_row(_glyphs(m[y0:y1, x0:x1])) >= GLYPHS_IN_STROKES for m in strokes):
        return True
    # the lines (at least 1.5 times as wide as high: four glyphs) are painted into one mask
    # per polarity, framed by a pixel of background so that no shape crosses from one line
    # into another; each line's glyphs are chained on their own
    lines = [
        _grow_box(c, 6, img.shape[:2]) for c in area.children if c[2] - c[0] >= 1.5 * (c[3] - c[1])
    ]
    if not lines:
        return False
    light = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    dark = np.zeros_like(light)
    for cx0, cy0, cx1, cy1 in lines:
        _, bw = cv2.threshold(img[cy0:cy1, cx0:cx1], 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        window = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        light[window] = bw
        dark[window] = 1 - bw
        for mask in (light, dark):
            mask[window][[0, -1], :] = 0
            mask[window][:, [0, -1]] = 0
    found = _glyphs(light) + _glyphs(dark)
    for lx0, ly0, lx1, ly1 in lines:
        inside = [g for g in found if _within(g, (lx0 - x0, ly0 - y0, lx1 - x0, ly1 - y0))]
        if len(inside) >= GLYPHS_IN_SPLIT and _longest_row(inside) >= GLYPHS_IN_SPLIT:
            return True
    return False


def _within(inner: Box, outer: Box) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


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
    left out). Labels are 16-bit where that cannot overflow (about twice as fast)."""
    import cv2

    small = mask.shape[0] * mask.shape[1] <= 4 * 65000
    ltype = cv2.CV_16U if small else cv2.CV_32S
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=ltype)
    return np.asarray(stats[1:])


def _longest_row(glyphs: list[Box]) -> int:
    """Length of the longest chain of glyphs each beside the next: heights within a factor of
    two, no farther apart than the larger height (overlapping by at most half the smaller),
    tops or bottoms aligned within a quarter of the larger height (2 px at least)."""
    glyphs = sorted(glyphs)
    best = [1] * len(glyphs)
    for b, (bx0, by0, _, by1) in enumerate(glyphs):
        bh = by1 - by0
        for a in range(b):
            _, ay0, ax1, ay1 = glyphs[a]
            lo, hi = sorted((ay1 - ay0, bh))
            gap = bx0 - ax1
            if not (-lo // 2 <= gap <= hi and 2 * lo >= hi):
                continue
            tol = max(2.0, 0.25 * hi)
            if abs(ay1 - by1) <= tol or abs(ay0 - by0) <= tol:
                best[b] = max(best[b], best[a] + 1)
    return max(best, default=0)


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


def _line_like(box: Box) -> bool:
    """A group of strokes shaped like a line of text (height of text, at least as wide)."""
    w, h = box[2] - box[0], box[3] - box[1]
    return MIN_TEXT_HEIGHT <= h <= MAX_TESSERACT_HEIGHT and w >= h


def tiles(box: Box, size: int, overlap: int) -> list[Box]:
    """``box`` cut into tiles of at most ``size`` x ``size`` that overlap by ``overlap``."""
    x0, y0, x1, y1 = box
    step = max(1, size - overlap)

    def starts(a: int, b: int) -> list[int]:
        if b - a <= size:
            return [a]
        s = list(range(a, b - size, step))
        return [*s, b - size]

    return [
        (x, y, min(x + size, x1), min(y + size, y1)) for y in starts(y0, y1) for x in starts(x0, x1)
    ]


# --------------------------------------------------------------------------------------------
# Detection


class TextFinder:
    """Both engines, loaded once per process (see the module docstring)."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self.detector = engines.DbDetector()
        self.recognizer = engines.Recognizer()
        if self.settings.tesseract and engines.tesseract_path() is None:
            raise engines.EngineUnavailable(
                "tesseract is not installed (Debian: tesseract-ocr tesseract-ocr-eng); "
                "set pixel_text.tesseract: false to use RapidOCR alone"
            )

    def find(self, img: np.ndarray, *, frame: int = 0, rendering: str = "") -> list[TextRegion]:
        """Text regions of ``img`` (H x W uint8), boxes in its pixel coordinates."""
        return self.find_frame([(rendering, img)], frame=frame)

    def find_frame(
        self,
        renderings: list[tuple[str, np.ndarray]],
        *,
        frame: int = 0,
        keep: Callable[[TextRegion], bool] | None = None,
    ) -> list[TextRegion]:
        """Text regions of one frame given in several renderings.

        Renderings of the same size are stacked into the detector's colour channels (one pass
        reads them all, :meth:`engines.DbDetector.probability`); the recogniser reads every box
        in each rendering and keeps the best reading. Tesseract gets one call per frame.
        Lines of text are then followed where they run faint (:meth:`_complete_lines`); regions
        for which ``keep`` is true (tokens the caller leaves in place, such as orientation
        markers) are not followed.
        """
        found: list[TextRegion] = []
        pieces: list[tuple[str, np.ndarray, Area, int]] = []
        for group in _stacks(renderings):
            stack = group[0][1] if len(group) == 1 else np.dstack([img for _, img in group])
            runs: dict[int, list[Box]] = {}
            for name, img in group:
                for area in candidate_regions(img, self.settings):
                    small = area.stroke_height and area.stroke_height < self.settings.upscale_below
                    scale = 2 if small else 1
                    pieces.append((name, img, area, scale))
                    runs.setdefault(scale, []).append(area.box)
            for scale, boxes in sorted(runs.items()):
                size = self.settings.tile // scale
                for box in merge_boxes(boxes):
                    for tile in tiles(box, size, self.settings.overlap // scale):
                        found.extend(self._db(stack, group, tile, scale, frame))
        if pieces and self.settings.tesseract:
            # Tesseract reads what the detector did not: line-shaped strokes with no box yet
            # that hold characters (two or more glyph-sized strokes side by side)
            lines = []
            for name, img, area, scale in pieces:
                h, w = img.shape
                boxes = merge_boxes([_grow_box(c, 8, (h, w)) for c in area.children])
                lines += [
                    (name, img, Area(b), scale)
                    for b in boxes
                    if not any(_overlaps(r.box, b) for r in found) and has_characters(img, b)
                ]
            if lines:
                found.extend(self._tesseract(lines, found, frame))
        if found and self.settings.complete_lines:
            seeds = [r for r in found if keep is None or not keep(r)]
            found.extend(self._complete_lines(renderings[0][1], seeds, found, frame))
        return found

    def _complete_lines(
        self, img: np.ndarray, seeds: list[TextRegion], found: list[TextRegion], frame: int
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
            for tile in tiles(
                (0, 0, bx1 - bx0, by1 - by0), self.settings.tile, self.settings.overlap
            ):
                tx0, ty0, tx1, ty1 = tile
                prob = self.detector.probability(np.dstack([p[ty0:ty1, tx0:tx1] for p in planes]))
                for x, y, kw, kh, _ in _kernels(prob, self.settings, 1):
                    grow = round(kw * kh * 1.6 / (2.0 * (kw + kh)))
                    seen.append(
                        (
                            max(0, bx0 + tx0 + x - grow),
                            max(0, by0 + ty0 + y - grow),
                            min(w, bx0 + tx0 + x + kw + grow),
                            min(h, by0 + ty0 + y + kh + grow),
                        )
                    )
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

    def _db(
        self,
        stack: np.ndarray,
        group: list[tuple[str, np.ndarray]],
        tile: Box,
        scale: int,
        frame: int,
    ) -> list[TextRegion]:
        import cv2

        x0, y0, x1, y1 = tile
        crop = stack[y0:y1, x0:x1]
        if scale != 1:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        prob = self.detector.probability(crop)
        h, w = stack.shape[:2]
        boxes: list[Box] = []
        scores: list[float] = []
        for x, y, bw, bh, score in _kernels(prob, self.settings, scale):
            grow = round(bw * bh * 1.6 / (2.0 * (bw + bh)))
            bx0 = (x - grow) / scale + x0
            by0 = (y - grow) / scale + y0
            bx1 = (x + bw + grow) / scale + x0
            by1 = (y + bh + grow) / scale + y0
            box = (
                max(0, int(np.floor(bx0))),
                max(0, int(np.floor(by0))),
                min(w, int(np.ceil(bx1))),
                min(h, int(np.ceil(by1))),
            )
            if box[3] - box[1] < MIN_TEXT_HEIGHT or box[2] - box[0] < MIN_TEXT_HEIGHT // 2:
                continue  # too small to be legible
            boxes.append(box)
            scores.append(score)
        if not boxes:
            return []
        crops = [_line_crop(img, b) for b in boxes for _, img in group]
        read = self.recognizer.read(crops)
        k = len(group)
        out = []
        for j, (b, score) in enumerate(zip(boxes, scores, strict=True)):
            choices = [(*read[j * k + r], group[r][0]) for r in range(k)]
            t, conf, rendering = max(choices, key=lambda c: (_readable(c[0], c[1]), c[1]))
            alnum = sum(c.isalnum() for c in t)
            if b[3] - b[1] > MAX_TEXT_HEIGHT and (alnum < 3 or conf < 0.9):
                continue  # a blob of anatomy read as one or two letters
            readable = _readable(t, conf)
            bh, bw = b[3] - b[1], b[2] - b[0]
            line_like = bh <= MAX_UNREAD_HEIGHT and bw >= 2 * bh  # a line of characters
            if readable or (score >= STRONG_KERNEL and line_like):
                out.append(TextRegion(b, t if readable else "", conf, "rapidocr", rendering, frame))
        return out

    def _tesseract(
        self,
        pieces: list[tuple[str, np.ndarray, Area, int]],
        found: list[TextRegion],
        frame: int,
    ) -> list[TextRegion]:
        import cv2

        gap = 16
        crops = []
        for _, img, area, scale in pieces:
            x0, y0, x1, y1 = area.box
            crop = img[y0:y1, x0:x1]
            if scale != 1:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            if float(crop.mean()) < 128:  # Tesseract reads dark text on light
                crop = 255 - crop
            crops.append(crop)
        width = max(c.shape[1] for c in crops) + 2 * gap
        height = sum(c.shape[0] + gap for c in crops) + gap
        mosaic = np.full((height, width), 255, dtype=np.uint8)
        offsets = []
        y = gap
        for piece, crop in zip(pieces, crops, strict=True):
            mosaic[y : y + crop.shape[0], gap : gap + crop.shape[1]] = crop
            offsets.append((y, crop.shape[0], piece))
            y += crop.shape[0] + gap
        out = []
        for word in engines.tesseract_words(mosaic):
            wx0, wy0, wx1, wy1 = word.box
            cy = (wy0 + wy1) / 2
            for top, ph, (name, img, area, scale) in offsets:
                if not top <= cy < top + ph:
                    continue
                h, w = img.shape
                ax0, ay0 = area.box[:2]
                box = (
                    max(0, int((wx0 - gap) / scale) + ax0 - 1),
                    max(0, int((wy0 - top) / scale) + ay0 - 1),
                    min(w, int(np.ceil((wx1 - gap) / scale)) + ax0 + 1),
                    min(h, int(np.ceil((wy1 - top) / scale)) + ay0 + 1),
                )
                if box[2] > box[0] and box[3] > box[1] and self._plausible(word, box, found):
                    out.append(
                        TextRegion(box, word.text, word.confidence, "tesseract", name, frame)
                    )
                break
        return out

    def _plausible(self, word: engines.Word, box: Box, found: list[TextRegion]) -> bool:
        """Tesseract also reads anatomy as letters: a word counts when it overlaps a box of
        the detector, or on its own when it is confident, of the height of text and has three
        or more letters or digits (two when surer still and at least 8 px high)."""
        alnum = sum(c.isalnum() for c in word.text)
        height = box[3] - box[1]
        if not MIN_TEXT_HEIGHT <= height <= MAX_TESSERACT_HEIGHT:
            return False
        if word.confidence >= 0.3 and any(_overlaps(box, r.box) for r in found):
            return True
        if word.confidence < self.settings.tesseract_confidence:
            return False
        # alone: three letters or digits, or two in a word of full text height read surely
        # (texture read as "at" in a 6 px word of an ultrasound frame)
        return alnum >= 3 or (alnum == 2 and height >= 8 and word.confidence >= 0.9)


#: How far (in line heights) :meth:`TextFinder._complete_lines` looks to either side of a line.
LINE_REACH = 8


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


def _covered(box: Box, regions: list[TextRegion], share: float = 0.9) -> bool:
    """True if ``share`` of ``box`` lies in one of ``regions`` (the same text found again)."""
    area = max(1, (box[2] - box[0]) * (box[3] - box[1]))
    for r in regions:
        w = min(box[2], r.box[2]) - max(box[0], r.box[0])
        h = min(box[3], r.box[3]) - max(box[1], r.box[1])
        if w > 0 and h > 0 and w * h >= share * area:
            return True
    return False


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


def _readable(text: str, conf: float) -> bool:
    """A reading worth its name: two letters or digits, or one Latin one read with certainty."""
    alnum = sum(c.isalnum() for c in text)
    latin = sum(c.isascii() and c.isalnum() for c in text)
    return (alnum >= 2 and conf >= READ_CONFIDENCE) or (latin == 1 and conf >= 0.9)


def _stacks(renderings: list[tuple[str, np.ndarray]]) -> list[list[tuple[str, np.ndarray]]]:
    """Renderings grouped for one detector pass each: same size, at most three to a group."""
    groups: list[list[tuple[str, np.ndarray]]] = []
    for name, img in renderings:
        for g in groups:
            if len(g) < 3 and g[0][1].shape == img.shape:
                g.append((name, img))
                break
        else:
            groups.append([(name, img)])
    return groups


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


def _grow_box(box: Box, by: int, shape: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = box
    return (max(0, x0 - by), max(0, y0 - by), min(shape[1], x1 + by), min(shape[0], y1 + by))


def _line_crop(img: np.ndarray, box: Box) -> np.ndarray:
    """The text line in ``box`` for the recogniser (at least 8 pixels high, upscaled if small)."""
    import cv2

    x0, y0, x1, y1 = box
    crop = img[y0:y1, x0:x1]
    if crop.shape[0] < 24:
        f = 32.0 / max(1, crop.shape[0])
        crop = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(crop)
