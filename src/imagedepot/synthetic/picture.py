"""A background picture before text is burned in (:class:`_Picture`), and the noise and
shape helpers the modalities' pictures are made with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

Value = float | tuple[float, float, float]


@dataclass
class _Picture:
    """A text-free image in stored pixel units, and what is needed to draw text and a header.

    ``image`` is float32, ``(frames, rows, columns)`` or ``(frames, rows, columns, 3)``.
    ``display`` is the pair of stored values shown darkest and brightest (grey levels are
    fractions of it; reversed on MONOCHROME1). ``anatomy`` marks the body or the ultrasound
    sector, for texts placed on it.
    """

    modality: str
    sop_class: str
    image: np.ndarray
    photometric: str
    bits_stored: int
    signed: bool = False
    display: tuple[float, float] = (0.0, 255.0)
    anatomy: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    colours: tuple[tuple[float, float, float], ...] = ()

    @property
    def rows(self) -> int:
        return int(self.image.shape[1])

    @property
    def cols(self) -> int:
        return int(self.image.shape[2])

    @property
    def frames(self) -> int:
        return int(self.image.shape[0])

    @property
    def rgb(self) -> bool:
        return self.image.ndim == 4

    @property
    def vrange(self) -> tuple[int, int]:
        if self.signed:
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1

    @property
    def dtype(self) -> type[np.integer[Any]]:
        if self.bits_stored <= 8:
            return np.uint8
        return np.int16 if self.signed else np.uint16

    def white(self) -> float:
        lo, hi = self.vrange
        return float(hi if self.display[1] >= self.display[0] else lo)

    def grey(self, fraction: float) -> float:
        dark, bright = self.display
        return dark + fraction * (bright - dark)

    def quantised(self) -> np.ndarray:
        lo, hi = self.vrange
        return np.clip(np.rint(self.image), lo, hi).astype(self.dtype)


def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres normalised to [-1, 1]: ``y`` as (rows, 1), ``x`` as (1, cols)."""
    y = (np.arange(rows, dtype=np.float32) + 0.5) * np.float32(2.0 / rows) - 1.0
    x = (np.arange(cols, dtype=np.float32) + 0.5) * np.float32(2.0 / cols) - 1.0
    return y[:, None], x[None, :]


def _ell(y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Squared elliptical radius (< 1 inside)."""
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def _smooth(rng: np.random.Generator, rows: int, cols: int, cells: int) -> np.ndarray:
    """Smooth noise of unit-ish amplitude: a random grid upsampled bicubically."""
    grid = rng.standard_normal((cells, max(2, round(cells * cols / rows)))).astype(np.float32)
    img = Image.fromarray(grid).resize((cols, rows), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise (float32)."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
