"""Fonts (system TrueType fonts, else Pillow's own) and the ink mask of a text at a given
cap height.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)


_FONT_DIR = Path("/usr/share/fonts")  # Debian: fonts-dejavu-core, fonts-liberation
_FONT_FILES = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "LiberationSans-Regular.ttf")
#: Ink heights of drawn texts lie in [MIN_INK, MAX_INK] pixels.
MIN_INK, MAX_INK = 8, 20
#: Mask values below this (the faint antialiasing fringe) are not drawn.
_FRINGE = 48

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.cache
def _font_files() -> tuple[Path | None, ...]:
    """The font files found (in :data:`_FONT_FILES` order); ``(None,)`` = Pillow's default."""
    found: list[Path | None] = []
    for name in _FONT_FILES:
        hits = sorted(_FONT_DIR.rglob(name)) if _FONT_DIR.is_dir() else []
        if hits:
            found.append(hits[0])
    if not found:
        logger.warning("none of %s under %s; using Pillow's default font", _FONT_FILES, _FONT_DIR)
        found.append(None)
    return tuple(found)


@functools.cache
def _font(index: int, size: int) -> _Font:
    path = _font_files()[index]
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size)


def _cap_height(index: int, size: int) -> int:
    """Ink height of a capital ``H`` at ``size``."""
    _, top, _, bottom = _font(index, size).getbbox("H")
    return int(bottom) - int(top)


@functools.cache
def _font_size(index: int, cap: int) -> int:
    """The smallest font size whose capitals are at least ``cap`` pixels high."""
    size = max(6, round(cap * 100 / max(30, _cap_height(index, 100))) - 2)
    while _cap_height(index, size) < cap and size < 4 * cap:
        size += 1
    return size


@functools.cache
def _ink(index: int, size: int, text: str, antialias: bool) -> np.ndarray:
    """The text's mask (uint8, 0 = no ink), cropped to the tight box of its ink."""
    font = _font(index, size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    pad = 4
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    draw = ImageDraw.Draw(img)
    if not antialias:
        draw.fontmode = "1"  # crisp bitmap-like text, as many devices burn it
    draw.text((pad - left, pad - top), text, fill=255, font=font)
    mask = np.array(img, dtype=np.uint8)
    mask[mask < _FRINGE] = 0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"text {text!r} draws no ink")
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
    crop.flags.writeable = False
    return crop
