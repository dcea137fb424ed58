"""The corpus plan: which cases each scale holds, and every case rendered (picture, texts,
header) but not yet written.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.uid import UID, generate_uid

from imagedepot.synthetic.backgrounds import (
    _chest,
    _ct_hu,
    _ct_picture,
    _ct_shape,
    _mammo,
    _mr,
    _sc_mono,
    _sc_rgb,
    _us,
    _xa,
)
from imagedepot.synthetic.fake_phi import _fake_phi, _phi_texts
from imagedepot.synthetic.ground_truth import TextBox
from imagedepot.synthetic.layout import _render, _Req
from imagedepot.synthetic.overlays import _ct_full_only, _ct_window_only, _overlay, _Styler
from imagedepot.synthetic.picture import _Picture

SCALES = ("test", "bench")


#: (label, count at scale "test", count at scale "bench", draws text)
_PLAN: tuple[tuple[str, int, int, bool], ...] = (
    ("ct-corner", 3, 20, True),
    ("ct-window-only", 1, 5, True),
    ("ct-full-only", 1, 5, True),
    ("mr-corner", 2, 16, True),
    ("cr-corner", 2, 8, True),
    ("dx-corner", 1, 6, True),
    ("mg-corner", 2, 2, True),
    ("us-corner", 2, 12, True),
    ("us-cine", 1, 4, True),
    ("us-cine-partial", 1, 3, True),
    ("sc-mono", 1, 8, True),
    ("sc-rgb", 1, 8, True),
    ("xa-cine", 1, 4, True),
    ("ct-free", 2, 20, False),
    ("mr-free", 2, 14, False),
    ("cr-free", 1, 5, False),
    ("dx-free", 1, 4, False),
    ("mg-free", 1, 2, False),
    ("us-free", 1, 8, False),
    ("us-cine-free", 1, 3, False),
    ("sc-mono-free", 1, 6, False),
    ("sc-rgb-free", 1, 5, False),
    ("xa-free", 1, 3, False),
)
#: (name of the case, written with RLE Lossless instead of Explicit VR Little Endian)
_RLE = frozenset({"ct-corner-01", "us-corner-00", "xa-cine-00"})
#: The volumetric CT series inside the corpus: (slices, text slices) per scale.
_VOLUME = {"test": (5, (2,)), "bench": (24, (0, 11))}


@dataclass
class _Rendered:
    """One case before it is written: pixels as pydicom decodes them, and the header."""

    name: str
    pic: _Picture
    background: np.ndarray
    pixels: np.ndarray
    boxes: tuple[TextBox, ...]
    phi: dict[str, str]
    header: dict[str, Any]
    rle: bool = False
    series: str | None = None


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(p.encode()) for p in parts)])


def _uid(seed: int, *parts: str) -> UID:
    return generate_uid(entropy_srcs=[f"imagedepot-synthetic-{seed}", *parts])


def _variant_picture(label: str, i: int, rng: np.random.Generator, scale: str) -> _Picture:
    base = label.removesuffix("-free")
    if base.startswith("ct"):
        abdomen = base == "ct-window-only" or (base != "ct-full-only" and i % 2 == 1)
        padding = base == "ct-window-only" or i % 3 == 2 or (base == "ct-full-only" and i % 2 == 0)
        hu, body = _ct_hu(_ct_shape(rng, abdomen=abdomen, padding=padding), rng, 512, 512)
        return _ct_picture(hu, body, 0.7 + 0.1 * float(rng.random()))
    if base == "mr" or base == "mr-corner":
        return _mr(rng, 256 if i % 2 == 0 else 512)
    if base in ("cr", "cr-corner", "dx", "dx-corner"):
        modality = base[:2].upper()
        mono1 = (i % 2 == 0) if base in ("cr-corner", "dx", "dx-corner") else (i % 2 == 1)
        bits = 12 if (modality == "CR" and i % 2 == 0) else 14
        return _chest(rng, 1024, bits, mono1, modality)
    if base in ("mg", "mg-corner"):
        mono1 = (i % 2 == 1) if base == "mg-corner" else (i % 2 == 0)
        rows, cols = (1664, 1280) if scale == "test" else (3328, 2560)
        return _mammo(rng, rows, cols, 12 if mono1 else 14, mono1, i % 2 == 0, i % 2 == 1)
    if base in ("us", "us-corner"):
        return _us(rng, 1)
    if base.startswith("us-cine"):
        return _us(rng, int(rng.integers(4, 9)))
    if base in ("sc-mono",):
        return _sc_mono(rng, 512, 512 if i % 2 == 0 else 640)
    if base in ("sc-rgb",):
        return _sc_rgb(rng, 480 if i % 2 == 0 else 512, 640 if i % 2 == 0 else 512)
    if base in ("xa", "xa-cine"):
        frames = int(rng.integers(4, 9))
        return _xa(rng, 512, 4 if f"{label}-{i:02d}" in _RLE else frames)  # RLE is slow
    raise ValueError(f"unknown variant {label!r}")


def _header(pic: _Picture, phi: dict[str, str], sex: str, time: str) -> dict[str, Any]:
    h = {
        "PatientName": phi["PatientName"],
        "PatientID": phi["PatientID"],
        "PatientBirthDate": phi["PatientBirthDate"],
        "PatientSex": sex,
        "StudyDate": phi["StudyDate"],
        "SeriesDate": phi["StudyDate"],
        "ContentDate": phi["StudyDate"],
        "StudyTime": time,
        "SeriesTime": time,
        "ContentTime": time,
        "AccessionNumber": phi["AccessionNumber"],
        "InstitutionName": phi["InstitutionName"],
        "ReferringPhysicianName": "",
        "Manufacturer": "IMAGEDEPOT SYNTHETIC",
        "StudyID": "1",
    }
    h.update(pic.attrs)
    return h


def _render_variant(label: str, i: int, seed: int, scale: str) -> _Rendered:
    name = f"{label}-{i:02d}"
    rng = _rng(seed, name)
    phi, sex, time = _fake_phi(rng)
    pic = _variant_picture(label, i, rng, scale)
    if label.endswith("-free"):
        background, pixels, boxes = _render(pic, [], rng)
    elif label == "ct-window-only":
        background, pixels, boxes = _render(pic, _ct_window_only(rng, pic, phi, time), rng)
    elif label == "ct-full-only":
        background, pixels, boxes = _render(pic, _ct_full_only(rng, pic, phi, time), rng)
    elif label == "us-cine-partial":
        reqs = _overlay(rng, pic, phi, time, partial=True)
        background, pixels, boxes = _render(pic, reqs, rng)
    else:
        touch = True if (label == "ct-corner" and i % 3 == 1) else None
        background, pixels, boxes = _render(pic, _overlay(rng, pic, phi, time, touch=touch), rng)
    if not label.endswith("-free") and not boxes:
        raise RuntimeError(f"{name}: no text could be placed")  # a bug in the plan
    return _Rendered(
        name, pic, background, pixels, boxes, phi, _header(pic, phi, sex, time), name in _RLE
    )


def _render_series(
    prefix: str, *, slices: int, rows: int, text_slices: Sequence[int], seed: int
) -> Iterator[_Rendered]:
    if slices < 1:
        raise ValueError(f"slices must be at least 1, not {slices}")
    if rows < 64:
        raise ValueError(f"rows must be at least 64, not {rows}")
    bad = [s for s in text_slices if not 0 <= s < slices]
    if bad:
        raise ValueError(f"text_slices {bad} outside 0..{slices - 1}")
    rng = _rng(seed, prefix)
    phi, sex, time = _fake_phi(rng)
    shape = _ct_shape(rng, abdomen=False, padding=bool(rng.random() < 0.5))
    texts = _phi_texts(rng, phi, time)
    study, series = _uid(seed, prefix, "study"), _uid(seed, prefix, "series")
    frame_of_ref = _uid(seed, prefix, "for")
    pixel, thickness = 0.75 * 512 / rows, 2.5
    half = pixel * rows / 2
    for k in range(slices):
        z = -1.0 + 2.0 * (k + 0.5) / slices
        slice_rng = _rng(seed, prefix, str(k))
        hu, body = _ct_hu(shape, slice_rng, rows, rows, z=0.8 * z)
        pic = _ct_picture(hu, body, pixel)
        reqs: list[_Req] = []
        if k in text_slices:
            st = _Styler(_rng(seed, prefix, "style"), pic)  # same style on every text slice
            block = st.block()
            reqs = [_Req(*texts["name"], "tl", **block), _Req(*texts["id"], "tl", **block)]
        background, pixels, boxes = _render(pic, reqs, _rng(seed, prefix, "layout"))
        if len(boxes) < len(reqs):
            raise ValueError(f"rows={rows}: slices too small for the name and ID overlay")
        location = thickness * k
        pic.attrs.update(
            {
                "ImagePositionPatient": [-half, -half, location],
                "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
                "SliceLocation": location,
                "SliceThickness": thickness,
                "FrameOfReferenceUID": frame_of_ref,
                "InstanceNumber": k + 1,
                "SeriesDescription": "CHEST 2.5 mm",
            }
        )
        header = _header(pic, phi, sex, time)
        header["StudyInstanceUID"] = study
        header["SeriesInstanceUID"] = series
        yield _Rendered(
            f"{prefix}-s{k:03d}", pic, background, pixels, boxes, phi, header, series=series
        )


def _render_corpus(seed: int, scale: str) -> Iterator[_Rendered]:
    """Every case of the corpus, rendered but not written (in the order written)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
    column = SCALES.index(scale)
    for label, n_test, n_bench, _ in _PLAN:
        for i in range((n_test, n_bench)[column]):
            yield _render_variant(label, i, seed, scale)
    slices, text_slices = _VOLUME[scale]
    yield from _render_series(
        "ct-volume", slices=slices, rows=512, text_slices=text_slices, seed=seed
    )
