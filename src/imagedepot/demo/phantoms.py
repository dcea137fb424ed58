"""Synthetic pixels from seeded generators: MR and CT phantoms, and screen and ultrasound
captures with text burned in.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from imagedepot.demo.cohort import DEMO_SEED, SC_SHAPE, US_SHAPE, _Subject


def _rng(part: str) -> np.random.Generator:
    """An independent generator per part, so changing one part leaves the others' bytes alone."""
    return np.random.default_rng([DEMO_SEED, zlib.crc32(part.encode())])


def _grid(ny: int, nx: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Normalised (y, x) coordinates in [-1, 1], rows top to bottom (patient anterior first)."""
    y, x = np.mgrid[-1 : 1 : ny * 1j, -1 : 1 : nx * 1j]
    return y, x


def _inside(
    y: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
    cy: float,
    cx: float,
    ry: float,
    rx: float,
) -> npt.NDArray[np.bool_]:
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1.0


def _head_mr(rng: np.random.Generator, nz: int, ny: int, nx: int) -> npt.NDArray[np.uint16]:
    """T1-like head phantom, axes (z, y, x), 12-bit values: scalp bright, CSF dark."""
    y, x = _grid(ny, nx)
    vol = np.zeros((nz, ny, nx))
    for k, z in enumerate(np.linspace(-0.9, 0.9, nz)):
        s = np.sqrt(1.0 - 0.7 * z**2)
        img = np.where(_inside(y, x, 0, 0, 0.92 * s, 0.78 * s), 1100.0, 0.0)
        img[_inside(y, x, 0, 0, 0.86 * s, 0.72 * s)] = 120.0  # skull
        img[_inside(y, x, 0, 0, 0.80 * s, 0.66 * s)] = 700.0  # brain
        if abs(z) < 0.4:
            img[_inside(y, x, -0.05, -0.12, 0.30, 0.07)] = 250.0  # lateral ventricles
            img[_inside(y, x, -0.05, 0.12, 0.30, 0.07)] = 250.0
        vol[k] = img
    vol += rng.normal(0.0, 15.0, vol.shape)
    return np.clip(np.rint(vol), 0, 4095).astype(np.uint16)


def _body_ct(
    rng: np.random.Generator, region: str, nz: int, ny: int, nx: int
) -> npt.NDArray[np.float64]:
    """CT phantom in Hounsfield units, axes (z, y, x)."""
    y, x = _grid(ny, nx)
    vol = np.full((nz, ny, nx), -1000.0)
    for k in range(nz):
        img = vol[k]
        if region == "HEAD":
            img[_inside(y, x, 0, 0, 0.90, 0.76)] = 1200.0
            img[_inside(y, x, 0, 0, 0.82, 0.68)] = 35.0
            img[_inside(y, x, -0.05, -0.12, 0.28, 0.07)] = 5.0
            img[_inside(y, x, -0.05, 0.12, 0.28, 0.07)] = 5.0
        else:
            img[_inside(y, x, 0.05, 0, 0.62, 0.92)] = -100.0  # fat
            img[_inside(y, x, 0.05, 0, 0.56, 0.86)] = 40.0  # soft tissue
            if region == "CHEST":
                img[_inside(y, x, 0.0, -0.42, 0.42, 0.30)] = -850.0
                img[_inside(y, x, 0.0, 0.42, 0.42, 0.30)] = -850.0
                img[_inside(y, x, -0.05, 0.08, 0.25, 0.22)] = 50.0  # heart
            else:
                img[_inside(y, x, -0.05, -0.38, 0.30, 0.30)] = 60.0  # liver
                img[_inside(y, x, 0.30, -0.32, 0.12, 0.08)] = 30.0  # kidneys
                img[_inside(y, x, 0.30, 0.32, 0.12, 0.08)] = 30.0
            img[_inside(y, x, 0.45, 0.0, 0.10, 0.10)] = 700.0  # vertebra
    return vol + rng.normal(0.0, 8.0, vol.shape)


# 3x5 block glyphs for the characters burned into the secondary capture.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "A": "010101111101101", "E": "111100110100111",
    "J": "001001001101111", "M": "101111111101101", "N": "110101101101101",
    "O": "111101101101111", "R": "110101110101101", "^": "010101000000000",
}  # fmt: skip


def _burn_text(img: npt.NDArray[np.uint8], text: str, top: int, left: int, scale: int = 2) -> None:
    """Draw ``text`` with 3x5 block glyphs, value 255, ``scale`` pixels per glyph cell."""
    for n, char in enumerate(text):
        bits = _GLYPHS.get(char)
        if bits is None:
            continue
        cell = np.array([int(b) for b in bits], dtype=bool).reshape(5, 3)
        block = np.kron(cell, np.ones((scale, scale), dtype=bool))
        x0 = left + n * 4 * scale
        region = img[top : top + 5 * scale, x0 : x0 + 3 * scale]
        region[block] = 255


def _screen_capture(rng: np.random.Generator, subject: _Subject) -> npt.NDArray[np.uint8]:
    """A 128x128 'patient protocol' screen: table-like grey blocks, name and MRN in the top rows
    (inside :data:`SC_TEXT_REGION`)."""
    img = np.full(SC_SHAPE, 16, dtype=np.uint8)
    for row in range(34, 120, 10):
        img[row : row + 6, 6:122] = 60 + rng.integers(0, 60, 1, dtype=np.uint8)
    _burn_text(img, subject.name, top=2, left=4)
    _burn_text(img, subject.patient_id, top=16, left=4)
    return img


def _ultrasound_capture(rng: np.random.Generator, subject: _Subject) -> npt.NDArray[np.uint8]:
    """A 96x128 B-mode-like sector (speckle) with the name burned in at the bottom left."""
    ny, nx = US_SHAPE
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    r = np.hypot(y + 10.0, x - nx / 2)
    theta = np.arctan2(x - nx / 2, y + 10.0)
    sector = (r > 20) & (r < ny + 5) & (np.abs(theta) < 0.6)
    img = np.zeros(US_SHAPE, dtype=np.uint8)
    img[sector] = rng.integers(30, 160, int(sector.sum()), dtype=np.uint8)
    _burn_text(img, subject.name, top=ny - 12, left=2, scale=2)
    return img
