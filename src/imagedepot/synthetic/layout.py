"""Text placement and burning: where each text goes (corners, clear of anatomy, boxes
apart) and its ink blended into the picture, with the tight box of that ink.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imagedepot.synthetic.fonts import MAX_INK, MIN_INK, _font_size, _ink
from imagedepot.synthetic.ground_truth import TextBox
from imagedepot.synthetic.picture import Value, _Picture

Where = Callable[[int, int, int, int], bool]


@dataclass
class _Req:
    """One text to draw: where (``anchor``), how big (cap height in px), in which value."""

    text: str
    kind: str
    anchor: str  # tl tr bl br left right top bottom free at
    cap: int
    font: int
    value: Value
    antialias: bool = True
    frames: tuple[int, ...] | None = None
    where: Where | None = None
    at: tuple[int, int] | None = None


def _frames_meet(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    return a is None or b is None or bool(set(a) & set(b))


class _Layout:
    """Places ink boxes in corners, at edges or freely, without overlaps."""

    def __init__(self, rows: int, cols: int, rng: np.random.Generator) -> None:
        self.rows, self.cols, self.rng = rows, cols, rng
        short = min(rows, cols)
        self.mx = int(rng.integers(3, max(5, short // 30)))
        self.my = int(rng.integers(3, max(5, short // 30)))
        self.gap = int(rng.integers(2, 6))
        self.cursor = {"tl": self.my, "tr": self.my, "bl": rows - self.my, "br": rows - self.my}
        self.placed: list[tuple[int, int, int, int, tuple[int, ...] | None]] = []

    def _free(self, x: int, y: int, w: int, h: int, frames: tuple[int, ...] | None) -> bool:
        if x < 0 or y < 0 or x + w > self.cols or y + h > self.rows:
            return False
        pad = 2
        for x0, y0, x1, y1, f in self.placed:
            if not _frames_meet(f, frames):
                continue
            if x < x1 + pad and x + w + pad > x0 and y < y1 + pad and y + h + pad > y0:
                return False
        return True

    def _spot(self, req: _Req, w: int, h: int) -> tuple[int, int] | None:
        a, rows, cols = req.anchor, self.rows, self.cols
        jy = int(self.rng.integers(-(rows // 12), rows // 12 + 1))
        jx = int(self.rng.integers(-(cols // 12), cols // 12 + 1))
        if a == "at" and req.at is not None:
            return req.at
        if a in ("tl", "bl"):
            x = self.mx
        elif a in ("tr", "br"):
            x = cols - self.mx - w
        if a in ("tl", "tr"):
            return x, self.cursor[a]
        if a in ("bl", "br"):
            return x, self.cursor[a] - h
        if a == "left":
            return self.mx, rows // 2 - h // 2 + jy
        if a == "right":
            return cols - self.mx - w, rows // 2 - h // 2 + jy
        if a == "top":
            return cols // 2 - w // 2 + jx, self.my
        if a == "bottom":
            return cols // 2 - w // 2 + jx, rows - self.my - h
        raise ValueError(f"unknown anchor {a!r}")

    def place(self, req: _Req) -> tuple[int, int, np.ndarray] | None:
        """The top-left corner of the ink and its mask, or ``None`` when it does not fit."""
        caps = (
            range(req.cap, MIN_INK - 1, -1)
            if req.anchor != "free"
            else (req.cap, max(MIN_INK, req.cap - 4))
        )
        for cap in caps:
            mask = _ink(req.font, _font_size(req.font, cap), req.text, req.antialias)
            h, w = mask.shape
            if h > MAX_INK:  # descenders (``,`` ``p`` ``/``) make the ink taller than the caps
                continue
            if req.anchor == "free":
                spot = None
                for _ in range(300):
                    x = int(self.rng.integers(0, max(1, self.cols - w)))
                    y = int(self.rng.integers(0, max(1, self.rows - h)))
                    if self._free(x, y, w, h, req.frames) and (
                        req.where is None or req.where(x, y, x + w, y + h)
                    ):
                        spot = (x, y)
                        break
            else:
                spot = self._spot(req, w, h)
                if spot is not None and not (
                    self._free(*spot, w, h, req.frames)
                    and (req.where is None or req.where(spot[0], spot[1], spot[0] + w, spot[1] + h))
                ):
                    spot = None
            if spot is None:
                continue
            x, y = spot
            self.placed.append((x, y, x + w, y + h, req.frames))
            if req.anchor in ("tl", "tr"):
                self.cursor[req.anchor] = y + h + self.gap
            elif req.anchor in ("bl", "br"):
                self.cursor[req.anchor] = y - self.gap
            return x, y, mask
        return None


def _burn(
    img: np.ndarray,
    mask: np.ndarray,
    x: int,
    y: int,
    value: Value,
    frames: tuple[int, ...] | None,
    vrange: tuple[int, int],
) -> None:
    """Alpha-blend ``value`` into ``img`` (integer, frames first) by ``mask`` with top-left (x, y).

    Where the mask is 0 the pixels keep their values exactly.
    """
    h, w = mask.shape
    alpha = mask.astype(np.float64) / 255.0
    sel: Any = slice(None) if frames is None else list(frames)
    region = img[sel, y : y + h, x : x + w].astype(np.float64)
    if img.ndim == 4:
        alpha = alpha[..., None]
    v = np.asarray(value, dtype=np.float64)
    blended = region * (1.0 - alpha) + v * alpha
    img[sel, y : y + h, x : x + w] = np.clip(np.rint(blended), *vrange).astype(img.dtype)


def _render(
    pic: _Picture, reqs: Sequence[_Req], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[TextBox, ...]]:
    """The quantised background, the image with the texts burned in, and the boxes.

    A request anchored ``at`` without a spot goes where the previous text went (per-frame
    counters that replace each other).
    """
    background = pic.quantised()
    burned = background.copy()
    layout = _Layout(pic.rows, pic.cols, rng)
    boxes: list[TextBox] = []
    last: tuple[int, int] | None = None
    for req in reqs:
        if req.anchor == "at" and req.at is None:
            if last is None:
                continue
            req.at = last
        spot = layout.place(req)
        if spot is None:
            continue
        x, y, mask = spot
        last = (x, y)
        _burn(burned, mask, x, y, req.value, req.frames, pic.vrange)
        h, w = mask.shape
        boxes.append(TextBox(x, y, x + w, y + h, req.text, req.kind, req.frames))
    return background, burned, tuple(boxes)
