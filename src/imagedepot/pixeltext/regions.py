"""Boxes, text regions and the detector's settings: what the other modules of
:mod:`imagedepot.pixeltext` pass between them, and plain geometry on boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Area:
    """A candidate area of an image, the height of the strokes seen in it, its line-shaped
    groups of strokes (``children``) and, after the glyph screen, its rows of glyphs."""

    box: Box
    stroke_height: int = 0
    children: list[Box] = field(default_factory=list)
    rows: list[Box] = field(default_factory=list)


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


def _within(inner: Box, outer: Box) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def _grow_box(box: Box, by: int, shape: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = box
    return (max(0, x0 - by), max(0, y0 - by), min(shape[1], x1 + by), min(shape[0], y1 + by))


def _covered(box: Box, regions: list[TextRegion], share: float = 0.9) -> bool:
    """True if ``share`` of ``box`` lies in one of ``regions`` (the same text found again)."""
    area = max(1, (box[2] - box[0]) * (box[3] - box[1]))
    for r in regions:
        w = min(box[2], r.box[2]) - max(box[0], r.box[0])
        h = min(box[3], r.box[3]) - max(box[1], r.box[1])
        if w > 0 and h > 0 and w * h >= share * area:
            return True
    return False


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
