"""Background pictures per modality, imitated with numpy: CT, MR, chest and mammography
projections, ultrasound, secondary captures and angiography.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pydicom.tag import Tag
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
)

from imagedepot.synthetic.picture import _ell, _grid, _noise, _Picture, _smooth


@dataclass(frozen=True)
class _CTShape:
    cx: float
    cy: float
    ax: float
    by: float
    abdomen: bool
    padding: bool
    phase: float
    gas: tuple[tuple[float, float, float], ...]


def _ct_shape(rng: np.random.Generator, *, abdomen: bool, padding: bool) -> _CTShape:
    gas = tuple(
        (
            float(rng.uniform(-0.3, 0.1)),
            float(rng.uniform(0.0, 0.45)),
            float(rng.uniform(0.02, 0.05)),
        )
        for _ in range(int(rng.integers(2, 6)))
    )
    return _CTShape(
        cx=float(rng.uniform(-0.04, 0.04)),
        cy=float(rng.uniform(-0.04, 0.08)),
        ax=float(rng.uniform(0.72, 0.86)),
        by=float(rng.uniform(0.5, 0.62)),
        abdomen=abdomen,
        padding=padding,
        phase=float(rng.uniform(0, 2 * math.pi)),
        gas=gas,
    )


def _ct_hu(
    s: _CTShape, rng: np.random.Generator, rows: int, cols: int, z: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like axial slice in HU and its body mask; ``z`` in [-1, 1] moves along the body."""
    y, x = _grid(rows, cols)
    ax, by = s.ax * (1 - 0.04 * z * z), s.by * (1 - 0.03 * z)
    r2 = _ell(y, x, s.cy, s.cx, by, ax)
    body = r2 < 1.0
    tex = _smooth(rng, rows, cols, 10)
    hu = np.where(body, 40.0 + 10.0 * tex, -1000.0)
    hu = np.where(body & (r2 > 0.8), -95.0 + 8.0 * tex, hu)  # subcutaneous fat
    theta = np.arctan2((y - s.cy) / by, (x - s.cx) / ax)
    ring = (r2 > 0.6) & (r2 < 0.68)
    if s.abdomen:
        hu = np.where(ring & (np.cos(theta * 10 + s.phase) > 0.6), 650.0, hu)  # lower ribs
        liver = _ell(y, x, s.cy - 0.12 * by, s.cx - 0.38 * ax, 0.55 * by, 0.38 * ax) < 1
        hu = np.where(liver, 60.0 + 6.0 * tex, hu)
        for side in (-1.0, 1.0):
            kid = _ell(y, x, s.cy + 0.4 * by, s.cx + side * 0.3 * ax, 0.2 * by, 0.1 * ax) < 1
            hu = np.where(kid, 30.0, hu)
        for gx, gy, gr in s.gas:
            blob = _ell(y, x, s.cy + gy * by, s.cx + gx * ax + 0.3 * ax, gr, gr) < 1
            hu = np.where(blob & body, -900.0, hu)
    else:
        hu = np.where(ring & (np.cos(theta * 16 + s.phase) > -0.2), 700.0, hu)  # bone ring
        vessels = _smooth(rng, rows, cols, 56)  # bright dots in the lungs
        lung_ry = 0.62 * by * math.sqrt(max(0.2, 1 - 0.6 * z * z))
        for side in (-1.0, 1.0):
            lung = _ell(y, x, s.cy - 0.06 * by, s.cx + side * 0.4 * ax, lung_ry, 0.3 * ax) < 1
            hu = np.where(lung, np.where(vessels > 1.4, -200.0, -850.0 + 30.0 * tex), hu)
        heart = _ell(y, x, s.cy + 0.12 * by, s.cx + 0.1 * ax, 0.36 * by, 0.26 * ax) < 1
        hu = np.where(heart, 45.0 + 5.0 * tex, hu)
    sp = _ell(y, x, s.cy + 0.62 * by, s.cx, 0.14 * by, 0.1 * ax)
    hu = np.where(sp < 1, np.where(sp < 0.55, 250.0, 850.0), hu)  # vertebra
    ty = s.cy + by + 0.05
    table = (np.abs(y - ty - 0.05 * (x - s.cx) ** 2) < 0.008) & (np.abs(x - s.cx) < 0.85)
    hu = np.where(table, 150.0, hu)
    hu = hu + _noise(rng, (rows, cols), 11.0)
    if s.padding:
        hu = np.where(x * x + y * y > 1.0, -3024.0, hu)  # outside the reconstruction circle
    return hu, body


def _ct_picture(hu: np.ndarray, body: np.ndarray, pixel: float) -> _Picture:
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "RescaleIntercept": -1024,
        "RescaleSlope": 1,
        "RescaleType": "HU",
        "WindowCenter": 40,
        "WindowWidth": 400,
        "PixelSpacing": [pixel, pixel],
        "SliceThickness": 3.0,
        "KVP": 120,
    }
    return _Picture(
        "CT",
        CTImageStorage,
        (hu + 1024.0)[np.newaxis],
        "MONOCHROME2",
        12,
        signed=True,
        display=(24.0, 2047.0),  # air (-1000 HU) .. white
        anatomy=body,
        attrs=attrs,
    )


def _mr(rng: np.random.Generator, size: int) -> _Picture:
    y, x = _grid(size, size)
    cy, cx = rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04)
    ry, rx = rng.uniform(0.8, 0.9), rng.uniform(0.64, 0.74)
    r2 = _ell(y, x, cy, cx, ry, rx)
    head = r2 < 1.0
    tex = _smooth(rng, size, size, 14)
    v = np.where(head, 1700.0 + 100.0 * tex, 0.0)  # scalp fat
    v = np.where(r2 < 0.86, 160.0, v)  # skull
    brain = 1000.0 + 220.0 * np.tanh(2.5 * tex) + 60.0 * _smooth(rng, size, size, 40)
    v = np.where(r2 < 0.78, brain, v)
    for side in (-1.0, 1.0):
        vent = _ell(y, x, cy - 0.05, cx + side * 0.09, 0.2, 0.05) < 1
        v = np.where(vent, 260.0, v)
    v = v * (1.0 + 0.15 * _smooth(rng, size, size, 3))
    n1 = _noise(rng, (size, size), 22.0)
    n2 = _noise(rng, (size, size), 22.0)
    v = np.sqrt((v + n1) ** 2 + n2**2)  # Rician noise
    c, w = float(round(rng.uniform(950, 1100))), float(round(rng.uniform(1900, 2300)))
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY", "M"],
        "WindowCenter": c,
        "WindowWidth": w,
        "PixelSpacing": [240.0 / size, 240.0 / size],
        "SliceThickness": 5.0,
        "MagneticFieldStrength": 3.0,
        "ScanningSequence": "SE",
        "SequenceVariant": "NONE",
    }
    return _Picture(
        "MR",
        MRImageStorage,
        v[np.newaxis],
        "MONOCHROME2",
        12,
        display=(c - w / 2, c + w / 2),
        anatomy=head,
        attrs=attrs,
    )


def _projection(
    d: np.ndarray, bits: int, mono1: bool, lo: float, hi: float
) -> tuple[np.ndarray, tuple[float, float], float, float]:
    """Brightness ``d`` (0..1) as stored values, the display pair and the window (C, W)."""
    top = 0.92 * (2**bits - 1)
    stored = (1.0 - d) * top + (2**bits - 1 - top) if mono1 else d * top
    w = (hi - lo) * top
    c = (lo + hi) / 2 * top
    if mono1:
        c = 2**bits - 1 - top + (1.0 - (lo + hi) / 2) * top
        return stored, (c + w / 2, c - w / 2), c, w
    return stored, (c - w / 2, c + w / 2), c, w


def _chest(rng: np.random.Generator, size: int, bits: int, mono1: bool, modality: str) -> _Picture:
    y, x = _grid(size, size)
    cx = rng.uniform(-0.05, 0.05)
    torso = _ell(y, x, 0.5, cx, 1.1, rng.uniform(0.82, 0.92)) < 1
    torso |= (np.abs(x - cx) < 0.14) & (y < -0.4)  # neck
    d = np.where(torso, 0.52, 0.05)
    for side in (-1.0, 1.0):
        lung = _ell(y, x, -0.02, cx + side * 0.37, 0.58, 0.26) < 1
        ribs = np.sin(2 * math.pi * (y * 5.0 + 2.2 * (np.abs(x - cx) - 0.3) ** 2)) > 0.6
        d = np.where(lung, np.where(ribs, 0.34, 0.22), d)
    heart = _ell(y, x, 0.25, cx + 0.08, 0.3, 0.25) < 1
    d = np.where(heart, 0.6, d)
    spine = (np.abs(x - cx) < 0.055) & torso
    d = np.where(spine, 0.7 + 0.04 * (np.sin(y * 60) > 0), d)
    d = d + 0.03 * _smooth(rng, size, size, 8) + _noise(rng, (size, size), 0.008)
    d = np.clip(d, 0.0, 1.0)
    stored, display, c, w = _projection(d, bits, mono1, 0.02, 0.85)
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "WindowCenter": round(c),
        "WindowWidth": round(w),
        "ImagerPixelSpacing": [0.17, 0.17],
        "BodyPartExamined": "CHEST",
        "ViewPosition": "PA",
        "PatientOrientation": ["R", "F"],
    }
    if modality == "DX":
        attrs["PresentationIntentType"] = "FOR PRESENTATION"
        sop = DigitalXRayImageStorageForPresentation
    else:
        sop = ComputedRadiographyImageStorage
    photometric = "MONOCHROME1" if mono1 else "MONOCHROME2"
    return _Picture(
        modality, sop, stored[np.newaxis], photometric, bits, display=display, anatomy=torso,
        attrs=attrs,
    )  # fmt: skip


def _mammo(
    rng: np.random.Generator, rows: int, cols: int, bits: int, mono1: bool, right: bool, mlo: bool
) -> _Picture:
    y, _ = _grid(rows, cols)
    u = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / np.float32(
        cols
    )  # distance from chest wall
    if not right:
        u = u[:, ::-1]
    r2 = (u / rng.uniform(0.62, 0.78)) ** 2 + ((y - rng.uniform(-0.1, 0.1)) / 0.82) ** 2
    breast = r2 < 1.0
    t = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    gland = 0.5 + 0.5 * np.tanh(2.0 * _smooth(rng, rows, cols, 20))
    d = np.where(breast, 0.22 + 0.25 * np.sqrt(t) * gland + 0.12 * t, 0.03)
    d = d + np.where(breast, 0.03 * _smooth(rng, rows, cols, 90), 0.0)
    if mlo:
        pect = u < 0.32 * (1.0 - (y + 1.0) / 1.3)
        d = np.where(pect & breast, 0.62 + 0.02 * gland, d)
    d = np.clip(d + _noise(rng, (rows, cols), 0.006), 0.0, 1.0)
    stored, display, c, w = _projection(d, bits, mono1, 0.1, 0.75)
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "PresentationIntentType": "FOR PRESENTATION",
        "WindowCenter": round(c),
        "WindowWidth": round(w),
        "ImagerPixelSpacing": [0.07, 0.07],
        "BodyPartExamined": "BREAST",
        "ImageLaterality": "R" if right else "L",
        "Laterality": "R" if right else "L",
        "ViewPosition": "MLO" if mlo else "CC",
        "PatientOrientation": ["A", "R"] if not right else ["P", "L"],
    }
    photometric = "MONOCHROME1" if mono1 else "MONOCHROME2"
    return _Picture(
        "MG", DigitalMammographyXRayImageStorageForPresentation, stored[np.newaxis],
        photometric, bits, display=display, anatomy=breast, attrs=attrs,
    )  # fmt: skip


_US_COLOURS = (
    (255.0, 255.0, 255.0),
    (150.0, 150.0, 150.0),
    (255.0, 230.0, 0.0),
    (40.0, 230.0, 40.0),
    (0.0, 220.0, 255.0),
)


def _us(rng: np.random.Generator, frames: int, rows: int = 480, cols: int = 640) -> _Picture:
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :]
    ax, ay = cols / 2 + rng.uniform(-20, 20), rng.uniform(30, 50)
    r = np.hypot(xx - ax, yy - ay)
    th = np.arctan2(xx - ax, yy - ay)
    r0, r1 = rng.uniform(20, 40), rows - rng.uniform(25, 45)
    half = math.radians(rng.uniform(32, 40))
    sector = (r > r0) & (r < r1) & (np.abs(th) < half)
    depth = (r - r0) / (r1 - r0)
    echo = 0.55 + 0.25 * _smooth(rng, rows, cols, 6)
    rb = rng.uniform(0.2, 0.35)
    echo = echo + 0.6 * np.exp(-(((depth - rb - 0.02 * np.sin(th * 7)) / 0.012) ** 2))
    atten = 1.0 - 0.45 * depth
    cyst_c = (ay + (r1 - ay) * rng.uniform(0.5, 0.7), ax + rng.uniform(-60, 60))
    cyst_r = (rng.uniform(25, 45), rng.uniform(35, 60))
    img = np.zeros((frames, rows, cols, 3), dtype=np.float32)
    for k in range(frames):
        cyst = ((yy - cyst_c[0] - 1.5 * k) / cyst_r[0]) ** 2 + ((xx - cyst_c[1]) / cyst_r[1]) ** 2
        e = np.where(cyst < 1, 0.08, echo)
        e = e + np.where(np.abs(cyst - 1) < 0.08, 0.5, 0.0)  # bright rim
        sp = np.sqrt(-2.0 * np.log1p(-rng.random((rows, cols), dtype=np.float32)))  # Rayleigh
        sp = (
            sp + np.roll(sp, 1, axis=0) + np.roll(sp, 1, axis=1) + np.roll(sp, (1, 1), (0, 1))
        ) / 4
        v = np.where(sector, np.clip(110.0 * e * atten * sp, 0, 255), 0.0)
        img[k] = v[..., None]
    # tick marks along the sector edge (one per "cm") and a grey-scale bar: not text
    for i in range(1, 12):
        rr = r0 + i * (r1 - r0) / 12
        ty, tx = int(ay + rr * math.cos(half)), int(ax + rr * math.sin(half)) + 6
        if 0 <= ty < rows - 3 and 0 <= tx < cols - 3:
            img[:, ty : ty + 3, tx : tx + 3] = 200.0
    y0, y1 = int(rows * 0.28), int(rows * 0.72)
    ramp = np.linspace(255.0, 0.0, y1 - y0)[:, None, None]
    img[:, y0:y1, cols - 26 : cols - 18] = ramp
    sop = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    attrs: dict[str, Any] = {"ImageType": ["ORIGINAL", "PRIMARY", "ABDOMINAL"]}
    if frames > 1:
        attrs["FrameTime"] = 33.3
        attrs["FrameIncrementPointer"] = Tag(0x0018, 0x1063)
    return _Picture("US", sop, img, "RGB", 8, anatomy=sector, attrs=attrs, colours=_US_COLOURS)


def _sc_mono(rng: np.random.Generator, rows: int, cols: int) -> _Picture:
    inner = min(rows, cols) - 2 * int(rng.integers(40, 70))
    hu, body = _ct_hu(_ct_shape(rng, abdomen=bool(rng.random() < 0.5), padding=False), rng,
                      inner, inner)  # fmt: skip
    shot = np.clip((hu + 160.0) / 400.0 * 255.0, 0, 255)
    img = np.zeros((rows, cols), dtype=np.float32)
    anatomy = np.zeros((rows, cols), dtype=bool)
    y0, x0 = (rows - inner) // 2, (cols - inner) // 2
    img[y0 : y0 + inner, x0 : x0 + inner] = shot
    anatomy[y0 : y0 + inner, x0 : x0 + inner] = body
    img[y0 - 2, x0 - 2 : x0 + inner + 2] = 90.0  # viewport frame
    img[y0 + inner + 1, x0 - 2 : x0 + inner + 2] = 90.0
    img[y0 - 2 : y0 + inner + 2, x0 - 2] = 90.0
    img[y0 - 2 : y0 + inner + 2, x0 + inner + 1] = 90.0
    attrs = {"ImageType": ["DERIVED", "SECONDARY"], "ConversionType": "WSD"}
    return _Picture(
        "SC", SecondaryCaptureImageStorage, img[np.newaxis], "MONOCHROME2", 8,
        anatomy=anatomy, attrs=attrs,
    )  # fmt: skip


def _hot(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)[..., None]
    return 255.0 * np.clip(np.concatenate([2.5 * s, 2.5 * s - 0.9, 3.0 * s - 2.0], -1), 0, 1)


def _sc_rgb(rng: np.random.Generator, rows: int, cols: int) -> _Picture:
    y, x = _grid(rows, cols)
    r2 = _ell(y, x, rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), 0.7, 0.6 * rows / cols)
    h = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    s = h * (0.65 + 0.3 * _smooth(rng, rows, cols, 9)) + 0.15 * (x - y) * h
    img = np.where((r2 < 1)[..., None], _hot(s), 0.0)
    y0, y1 = int(rows * 0.2), int(rows * 0.8)
    bar = _hot(np.linspace(1.0, 0.0, y1 - y0))[:, None, :]
    img[y0:y1, cols - 30 : cols - 16] = bar  # colour bar: not text
    attrs = {"ImageType": ["DERIVED", "SECONDARY"], "ConversionType": "WSD"}
    colours = ((255.0, 255.0, 255.0), (255.0, 230.0, 0.0), (150.0, 150.0, 150.0))
    return _Picture(
        "SC", SecondaryCaptureImageStorage, img[np.newaxis], "RGB", 8, anatomy=r2 < 1,
        attrs=attrs, colours=colours,
    )  # fmt: skip


def _xa(rng: np.random.Generator, size: int, frames: int) -> _Picture:
    y, x = _grid(size, size)
    rr = np.sqrt(x * x + y * y)
    fieldmask = rr < 0.96
    base = 165.0 - 45.0 * rr**2 + 10.0 * _smooth(rng, size, size, 6)
    tree = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(tree)
    stack = [(size * rng.uniform(0.3, 0.5), size * 0.12, rng.uniform(1.2, 1.9), 9.0)]
    segments = 0
    while stack and segments < 300:
        px, py, ang, width = stack.pop()
        for _ in range(int(rng.integers(6, 13))):
            ang += rng.normal(0.0, 0.22)
            step = rng.uniform(14, 30)
            nx, ny = px + step * math.cos(ang), py + step * math.sin(ang)
            draw.line([(px, py), (nx, ny)], fill=255, width=max(1, round(width)))
            segments += 1
            if width > 2.5 and rng.random() < 0.3:
                turn = rng.uniform(0.5, 1.1) * (1 if rng.random() < 0.5 else -1)
                stack.append((nx, ny, ang + turn, width * 0.7))
            px, py, width = nx, ny, max(1.5, width * 0.95)
    half = tree.resize((size // 2, size // 2), Image.Resampling.BILINEAR)
    vessel = np.asarray(half.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255
    img = np.zeros((frames, size, size), dtype=np.float32)
    for k in range(frames):
        contrast = 95.0 * min(1.0, (k + 1) / max(1.0, frames * 0.6))
        v = base - contrast * vessel + _noise(rng, (size, size), 4.0)
        img[k] = np.where(fieldmask, v, 0.0)
    attrs: dict[str, Any] = {
        "ImageType": ["ORIGINAL", "PRIMARY", "SINGLE PLANE"],
        "FrameTime": 66.7,
        "FrameIncrementPointer": Tag(0x0018, 0x1063),
        "PositionerPrimaryAngle": 30.0,
        "PositionerSecondaryAngle": 15.0,
        "KVP": 80,
    }
    return _Picture(
        "XA", XRayAngiographicImageStorage, img, "MONOCHROME2", 8, anatomy=fieldmask,
        attrs=attrs,
    )  # fmt: skip
