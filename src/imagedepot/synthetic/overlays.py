"""What each case draws: identifiers, technical annotations and allow-listed markers, in
the grey levels and places of its kind of image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imagedepot.synthetic.fake_phi import _OTHER, _SCALE_LABELS, _phi_texts, _pick
from imagedepot.synthetic.fonts import _font_files
from imagedepot.synthetic.layout import Where, _Req
from imagedepot.synthetic.picture import Value, _Picture

_MARKERS = {
    "CT": (("R", "left"), ("L", "right"), ("A", "top"), ("P", "bottom")),
    "MR": (("R", "left"), ("L", "right"), ("H", "top"), ("F", "bottom")),
    "XA": (("R", "left"), ("L", "right")),
    "SC": (("R", "left"), ("L", "right")),
}


def _caps(pic: _Picture) -> tuple[int, int]:
    short = min(pic.rows, pic.cols)
    if short <= 300:
        return 8, 11
    if short <= 700:
        return 8, 16
    return 10, 20


def _anatomy_where(pic: _Picture, share: float = 0.3) -> Where:
    anatomy = pic.anatomy if pic.anatomy is not None else np.ones((pic.rows, pic.cols), bool)

    def where(x0: int, y0: int, x1: int, y1: int) -> bool:
        return bool(anatomy[y0:y1, x0:x1].mean() >= share)

    return where


def _value_where(pic: _Picture, lo: float, hi: float) -> Where:
    """Boxes whose background (frame 0, stored units) lies within [lo, hi]."""
    first = pic.image[0]

    def where(x0: int, y0: int, x1: int, y1: int) -> bool:
        region = first[y0:y1, x0:x1]
        return bool(region.min() >= lo and region.max() <= hi)

    return where


class _Styler:
    """Draws per-block text styles (font, size, antialiasing, value) from the case's RNG."""

    def __init__(self, rng: np.random.Generator, pic: _Picture) -> None:
        self.rng, self.pic = rng, pic
        self.fonts = len(_font_files())
        self.lo, self.hi = _caps(pic)

    def value(self, bright: bool = False) -> Value:
        pic, rng = self.pic, self.rng
        if pic.rgb:
            colours = pic.colours or ((255.0, 255.0, 255.0),)
            return colours[0] if bright else colours[int(rng.integers(len(colours)))]
        if bright or rng.random() < 0.65:
            return pic.white()
        if pic.bits_stored <= 8:
            return 140.0
        return round(pic.grey(float(rng.uniform(0.5, 0.6))))

    def block(self, bright: bool = False) -> dict[str, Any]:
        return {
            "font": int(self.rng.integers(self.fonts)),
            "cap": int(self.rng.integers(self.lo, self.hi + 1)),
            "antialias": bool(self.rng.random() < 0.75),
            "value": self.value(bright),
        }


def _overlay(
    rng: np.random.Generator,
    pic: _Picture,
    phi: dict[str, str],
    time: str,
    *,
    touch: bool | None = None,
    partial: bool = False,
) -> list[_Req]:
    """Typical overlays: a patient block, a study block, technical text, markers and scales."""
    st = _Styler(rng, pic)
    texts = _phi_texts(rng, phi, time)
    corners = [str(c) for c in rng.permutation(["tl", "tr", "bl", "br"])]
    reqs: list[_Req] = []

    patient = ["name", "id"] + (["dob"] if rng.random() < 0.7 else [])
    chances = (("institution", 0.7), ("study", 0.9), ("accession", 0.6))
    study = [k for k, p in chances if rng.random() < p]
    if pic.modality == "US":  # US devices write the header line across the top
        corners = ["tl", "tr", "bl", "br"]
    style = st.block()
    reqs += [_Req(*texts[k], corners[0], **style) for k in patient]
    name, ident = reqs[0], reqs[1]
    style = st.block()
    reqs += [_Req(*texts[k], corners[1], **style) for k in study]
    others = _OTHER[pic.modality]
    style = st.block()
    for i in rng.permutation(len(others))[: int(rng.integers(1, 4))]:
        reqs.append(_Req(others[int(i)], "other", corners[2], **style))
    style = st.block()
    if rng.random() < 0.6:
        reqs.append(_Req(_pick(rng, _SCALE_LABELS), "safe", corners[3], **style))
    markers = _MARKERS.get(pic.modality)
    if pic.modality in ("CR", "DX"):  # the lead marker near the top
        big = {**st.block(bright=True), "cap": st.hi}
        reqs.append(_Req(_pick(rng, ("R", "L")), "safe", "top", **big))
    elif pic.modality == "MG":  # laterality and view first, away from the chest wall
        side = str(pic.attrs["ImageLaterality"])
        corner = "tr" if side == "R" else "tl"
        big = {**st.block(bright=True), "cap": st.hi}
        reqs[:0] = [
            _Req(side, "safe", corner, **big),
            _Req(str(pic.attrs["ViewPosition"]), "other", corner, **big),
        ]
    elif markers is not None:
        style = st.block()
        for text, anchor in markers:
            if rng.random() < 0.6:
                reqs.append(_Req(text, "safe", anchor, **style))
    if touch is None:
        touch = bool(rng.random() < 0.35)
    if touch:  # one identifier over the anatomy, bright
        moved = (name, ident)[int(rng.integers(2))]
        moved.anchor, moved.where = "free", _anatomy_where(pic)
        moved.value = st.value(bright=True)
    if partial:
        n = pic.frames
        name.frames = tuple(range(n // 2, n))  # the name shows from mid-clip on
        counter = st.block(bright=True)
        reqs.append(_Req(f"1/{n}", "other", corners[3], frames=(0,), **counter))
        reqs += [_Req(f"{k + 1}/{n}", "other", "at", frames=(k,), **counter) for k in range(1, n)]
    return reqs


def _ct_window_only(
    rng: np.random.Generator, pic: _Picture, phi: dict[str, str], time: str
) -> list[_Req]:
    """Identifiers at 200-240 HU on soft tissue: bright in the window, faint in full range."""
    st = _Styler(rng, pic)
    texts = _phi_texts(rng, phi, time)
    tissue = _value_where(pic, 1024.0 - 150.0, 1024.0 + 150.0)
    reqs = []
    for k in ("name", "id", "dob", "accession"):
        style = st.block()
        style["value"] = 1024.0 + round(float(rng.uniform(200, 240)))
        reqs.append(_Req(*texts[k], "free", where=tissue, **style))
    style = st.block(bright=True)
    reqs += [_Req("R", "safe", "left", **style), _Req("L", "safe", "right", **style)]
    return reqs


def _ct_full_only(
    rng: np.random.Generator, pic: _Picture, phi: dict[str, str], time: str
) -> list[_Req]:
    """Identifiers at -650..-500 HU over air: seen in full range, black in the window."""
    st = _Styler(rng, pic)
    texts = _phi_texts(rng, phi, time)
    air = _value_where(pic, -4096.0, 1024.0 - 300.0)
    corners = [str(c) for c in rng.permutation(["tl", "tr", "bl", "br"])]
    reqs = []
    for keys, corner in ((("name", "id", "dob"), corners[0]), (("study", "accession"), corners[1])):
        style = st.block()
        style["value"] = 1024.0 + round(float(rng.uniform(-650, -500)))
        reqs += [_Req(*texts[k], corner, where=air, **style) for k in keys]
    return reqs
