"""Units and colours of OME-XML: lengths to micrometres, times to seconds, ``Color`` to ``RRGGBB``."""

from __future__ import annotations

import math

_MICRO = ("µ", "μ", "u")  # micro sign, Greek mu, ASCII
#: Length units of OME-XML (UnitsLength) to micrometres. "pixel" and "reference frame" have none.
LENGTH_TO_UM: dict[str, float] = {
    "Ym": 1e30, "Zm": 1e27, "Em": 1e24, "Pm": 1e21, "Tm": 1e18, "Gm": 1e15, "Mm": 1e12,
    "km": 1e9, "hm": 1e8, "dam": 1e7, "m": 1e6, "dm": 1e5, "cm": 1e4, "mm": 1e3, "µm": 1.0,
    "nm": 1e-3, "pm": 1e-6, "fm": 1e-9, "am": 1e-12, "zm": 1e-15, "ym": 1e-18, "Å": 1e-4,
    "thou": 25.4, "li": 2116.6666666666665, "in": 25400.0, "ft": 304800.0, "yd": 914400.0,
    "mi": 1609344000.0, "ua": 1.495978707e17, "ly": 9.4607304725808e21, "pc": 3.0856775814913673e22,
    "pt": 352.77777777777777,
}  # fmt: skip
#: Time units of OME-XML (UnitsTime) to seconds.
TIME_TO_S: dict[str, float] = {
    "Ys": 1e24, "Zs": 1e21, "Es": 1e18, "Ps": 1e15, "Ts": 1e12, "Gs": 1e9, "Ms": 1e6, "ks": 1e3,
    "hs": 1e2, "das": 10.0, "s": 1.0, "ds": 0.1, "cs": 1e-2, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9,
    "ps": 1e-12, "fs": 1e-15, "as": 1e-18, "zs": 1e-21, "ys": 1e-24, "min": 60.0, "h": 3600.0,
    "d": 86400.0,
}  # fmt: skip


def _micro(unit: str) -> str:
    unit = unit.strip()
    for m in _MICRO[1:]:
        if unit.startswith(m) and len(unit) > 1 and unit[1:] in ("m", "s"):
            return "µ" + unit[1:]
    return unit


def length_um(value: float | str | None, unit: str | None = "µm") -> float | None:
    """A length in micrometres, or None when missing, not positive or in a unit without size."""
    if value is None:
        return None
    factor = LENGTH_TO_UM.get(_micro(unit or "µm"))
    try:
        v = float(value) * factor if factor is not None else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) and v > 0 else None


def time_s(value: float | str | None, unit: str | None = "s") -> float | None:
    """A time increment in seconds, or None."""
    if value is None:
        return None
    factor = TIME_TO_S.get(_micro(unit or "s"))
    try:
        v = float(value) * factor if factor is not None else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) and v > 0 else None


def color_hex(value: int | str | None) -> str | None:
    """OME-XML Color (signed 32-bit RGBA integer) as ``RRGGBB``."""
    if value is None:
        return None
    try:
        v = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{(v >> 24) & 0xFF:02X}{(v >> 16) & 0xFF:02X}{(v >> 8) & 0xFF:02X}"


def color_int(hex_rgb: str) -> int:
    """``RRGGBB`` as the signed RGBA integer of OME-XML (alpha 255)."""
    v = (int(hex_rgb, 16) << 8) | 0xFF
    return v - (1 << 32) if v >= (1 << 31) else v
