"""Find text in an 8-bit image: screen, detect with both engines, unite the boxes.

:meth:`TextFinder.find` works in three steps (and then follows faint lines, :mod:`lines`); the
pieces live in :mod:`~imagedepot.pixeltext.regions` (boxes, settings),
:mod:`~imagedepot.pixeltext.screen`, :mod:`~imagedepot.pixeltext.kernels` and
:mod:`~imagedepot.pixeltext.lines`:

1. **Screen** (:func:`candidate_regions`, OpenCV, a few milliseconds for 512 x 512): strokes of
   text are thin and of high contrast, so the white and black top-hats with a 9 x 9 element
   (after a 3 x 3 Gaussian that takes out pixel noise) keep them and drop flat background and
   smooth anatomy; runs (three of a 3 x 3 neighbourhood) of pixels of at least
   :attr:`DetectorSettings.contrast` grey levels are grouped (dilated along the line) into
   candidate areas, padded for context and merged. With ``screen: glyphs`` (the default) an
   area goes on only when it holds a row of glyphs (:func:`glyph_row`: letter-sized shapes side
   by side, their tops or bottoms aligned, in the strokes or in the area's own two-level
   split): anatomy edges, vessels and noise make candidate areas on most CT and MR slices but
   rarely such rows, so a text-free slice costs no network pass. The detector then reads each
   row with a little room around it (:meth:`TextFinder._confirmed`); an area goes on only
   when it finds text there (anatomy that passes the glyph screen, about one CT slice in ten,
   costs a few milliseconds, not a pass over most of the slice). An image without candidates
   has no text the detector could find: no network runs on it (the networks load when the
   first area passes). ``screen: candidates`` reads every candidate area; ``screen: full``
   skips screening and reads the whole image.
2. **Detect**: RapidOCR's DB detector reads each candidate area at full resolution (tiles of at
   most :attr:`DetectorSettings.tile` pixels with overlap, so a mammogram is tiled, never
   shrunk); areas whose strokes are small (text under :attr:`DetectorSettings.upscale_below`
   pixels high) are read at twice the size. The renderings of a frame go into the network's
   colour channels together, so one pass reads both. Probability above
   :attr:`DetectorSettings.det_threshold` gives text kernels; a kernel whose mean probability
   reaches :attr:`DetectorSettings.box_threshold` becomes a box, grown as DB grows its kernels
   (by area x 1.6 / perimeter). The recogniser reads every box in every rendering and keeps
   the best reading.
3. **Second engine**: Tesseract reads the line-shaped groups of strokes of the areas read in
   step 2 that no detector box covers and that hold characters (:func:`has_characters`: three glyph-sized
   strokes in a row, or a run of touching letters), in one call per frame (the pieces are
   stacked into one picture); its words of at least
   :attr:`DetectorSettings.tesseract_confidence` are added. Boxes of both engines are kept
   (united), each with its text, confidence and engine.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np

from imagedepot.pixeltext import engines, lines
from imagedepot.pixeltext.kernels import _kernels, kernel_box
from imagedepot.pixeltext.regions import (
    MAX_TESSERACT_HEIGHT,
    MAX_TEXT_HEIGHT,
    MIN_TEXT_HEIGHT,
    SCREENS,
    Area,
    Box,
    DetectorSettings,
    TextRegion,
    _grow_box,
    _overlaps,
    merge_boxes,
    tiles,
)
from imagedepot.pixeltext.screen import (
    GLYPHS_IN_SPLIT,
    GLYPHS_IN_STROKES,
    candidate_regions,
    glyph_row,
    has_characters,
)

__all__ = [
    "GLYPHS_IN_SPLIT",
    "GLYPHS_IN_STROKES",
    "MAX_TESSERACT_HEIGHT",
    "MAX_TEXT_HEIGHT",
    "MIN_TEXT_HEIGHT",
    "SCREENS",
    "Area",
    "Box",
    "DetectorSettings",
    "TextFinder",
    "TextRegion",
    "candidate_regions",
    "glyph_row",
    "has_characters",
    "merge_boxes",
    "tiles",
]

log = logging.getLogger(__name__)

#: A detector box counts when the recogniser reads it with this confidence...
READ_CONFIDENCE = 0.5


#: ... or when the detector is this sure (mean probability of its kernel) without a reading,
#: in a box no higher than this (large unread blobs are anatomy).
STRONG_KERNEL = 0.7


MAX_UNREAD_HEIGHT = 36


#: Room (in line heights, 16 pixels at least) around a row of glyphs that the detector reads to
#: confirm it as text (:meth:`TextFinder._confirmed`).
ROW_CONTEXT = 2


class TextFinder:
    """Both engines, once per process (see the module docstring).

    Whether the engines are installed is checked here (a missing one raises
    :class:`engines.EngineUnavailable`: no detector, no pass); the networks themselves are
    loaded when the first area passes the screen, so a worker that sees only text-free images
    (a CT series) never pays for them.
    """

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        import cv2

        self.settings = settings or DetectorSettings()
        engines.rapidocr_models()
        if self.settings.tesseract and engines.tesseract_path() is None:
            raise engines.EngineUnavailable(
                "tesseract is not installed (Debian: tesseract-ocr tesseract-ocr-eng); "
                "set pixel_text.tesseract: false to use RapidOCR alone"
            )
        cv2.setNumThreads(engines.threads())

    @functools.cached_property
    def detector(self) -> engines.DbDetector:
        """The DB text detector (loaded on first use)."""
        return engines.DbDetector()

    @functools.cached_property
    def recognizer(self) -> engines.Recognizer:
        """The recogniser (loaded on first use)."""
        return engines.Recognizer()

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
                    if area.rows and not self._confirmed(img, area, scale):
                        continue  # its rows of glyphs are not text to the detector
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

    def _confirmed(self, img: np.ndarray, area: Area, scale: int) -> bool:
        """True if the detector finds a text kernel on one of the rows of glyphs of ``area``
        (each read with :data:`ROW_CONTEXT` line heights of room around it).

        The glyph screen passes an area for one row of letter-shaped marks; in anatomy such a
        row is rare but not absent (about one CT slice in ten of the corpus). Reading a row
        with its surroundings costs a few milliseconds, the whole area (often most of a
        slice) a detector pass, a reading of every box and a Tesseract call (about 0.1 s): the
        whole area is read, by both engines, only when its rows hold text to the detector.
        Measured on the corpus (``benchmarks/pixels``): the same boxes and recall as reading
        every area the glyph screen passes; Tesseract alone finds no box the detector misses
        there (the run without it has the same recall), so the second engine is kept where the
        detector sees text, not where it sees none.
        """
        h, w = img.shape
        crops = merge_boxes(
            [_grow_box(r, max(16, ROW_CONTEXT * (r[3] - r[1])), (h, w)) for r in area.rows]
        )
        return any(self._boxes(img, crop, scale) for crop in crops)

    def _boxes(self, stack: np.ndarray, tile: Box, scale: int) -> list[tuple[Box, float]]:
        """The detector's legible boxes (image coordinates) and scores in ``tile`` of ``stack``
        (one rendering, or several stacked as colour planes), read at ``scale``."""
        import cv2

        x0, y0, x1, y1 = tile
        crop = stack[y0:y1, x0:x1]
        if scale != 1:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        out = []
        for *kernel, score in _kernels(self.detector.probability(crop), self.settings, scale):
            box = kernel_box(kernel, scale=scale, origin=(x0, y0), shape=stack.shape)
            if box[3] - box[1] >= MIN_TEXT_HEIGHT and box[2] - box[0] >= MIN_TEXT_HEIGHT // 2:
                out.append((box, score))  # others are too small to be legible
        return out

    def _complete_lines(
        self, img: np.ndarray, seeds: list[TextRegion], found: list[TextRegion], frame: int
    ) -> list[TextRegion]:
        """Lines of ``seeds`` followed where they run faint (:func:`lines.complete_lines`)."""
        return lines.complete_lines(self.detector, self.settings, img, seeds, found, frame)

    def _db(
        self,
        stack: np.ndarray,
        group: list[tuple[str, np.ndarray]],
        tile: Box,
        scale: int,
        frame: int,
    ) -> list[TextRegion]:
        found = self._boxes(stack, tile, scale)
        if not found:
            return []
        boxes = [b for b, _ in found]
        scores = [score for _, score in found]
        # every box in the first rendering; in the others only where that reading is not sure
        # (the recogniser is most of the time spent on an image with text)
        first = self.recognizer.read([_line_crop(group[0][1], b) for b in boxes])
        choices: list[list[tuple[str, float, str]]] = [[(t, c, group[0][0])] for t, c in first]
        unsure = [
            j for j, (t, c) in enumerate(first) if not (_readable(t, c) and c >= SURE_READING)
        ]
        for name, img in group[1:]:
            again = self.recognizer.read([_line_crop(img, boxes[j]) for j in unsure])
            for j, (t, c) in zip(unsure, again, strict=True):
                choices[j].append((t, c, name))
        out = []
        for j, (b, score) in enumerate(zip(boxes, scores, strict=True)):
            t, conf, rendering = max(choices[j], key=lambda c: (_readable(c[0], c[1]), c[1]))
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


#: A reading this sure (and readable) in the first rendering is not read again in the others.
SURE_READING = 0.9


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


def _line_crop(img: np.ndarray, box: Box) -> np.ndarray:
    """The text line in ``box`` for the recogniser (at least 8 pixels high, upscaled if small)."""
    import cv2

    x0, y0, x1, y1 = box
    crop = img[y0:y1, x0:x1]
    if crop.shape[0] < 24:
        f = 32.0 / max(1, crop.shape[0])
        crop = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(crop)
