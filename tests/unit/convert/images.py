"""Small microscopy test images written with tifffile, and an independent 2x2 mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def pattern(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Random pixels over the dtype's useful range (distinct per position)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.normal(100.0, 30.0, size=shape).astype(dt)
    hi = min(int(np.iinfo(dt).max), 60000)
    lo = max(int(np.iinfo(dt).min), -1000)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)


def write_ome_tiff(path: Path, images: list[dict]) -> Path:
    """Write an OME-TIFF with one series per entry: ``data`` (TCZYX) and OME metadata keys."""
    with tifffile.TiffWriter(path, ome=True) as tw:
        for image in images:
            meta = {"axes": "TCZYX", **image.get("metadata", {})}
            tw.write(
                image["data"],
                metadata=meta,
                photometric="minisblack",
                tile=(16, 16),
                compression="zlib",
            )
    return path


def mean_2x2(a: np.ndarray) -> np.ndarray:
    """Reference 2x2 block mean over the last two axes (odd edges repeated), half to even."""
    pad = [(0, 0)] * (a.ndim - 2) + [(0, a.shape[-2] % 2), (0, a.shape[-1] % 2)]
    p = np.pad(a, pad, mode="edge").astype(np.float64)
    shape = (*p.shape[:-2], p.shape[-2] // 2, 2, p.shape[-1] // 2, 2)
    m = p.reshape(shape).mean(axis=(-3, -1))
    if a.dtype.kind in "iu":
        m = np.rint(m)
    return m.astype(a.dtype)


def pyramid(a: np.ndarray, levels: int) -> list[np.ndarray]:
    """Reference pyramid of ``a`` (TCZYX)."""
    out = [a]
    for _ in range(1, levels):
        out.append(mean_2x2(out[-1]))
    return out
