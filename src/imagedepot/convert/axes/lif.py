"""Leica LIF: line scans and wavelength sweeps that Bio-Formats reports as other axes, mapped
back from the LIF dimension descriptions (:func:`lif_layout`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

#: LIF ``DimID`` values (Leica's image file format description).
LIF_DIMS = {1: "X", 2: "Y", 3: "Z", 4: "T", 5: "λ", 9: "λex", 10: "tile"}
_LIF_KEY = re.compile(r"^(?P<prefix>.*)DimensionDescription #(?P<n>\d+)\|(?P<attr>\w+)$")
_LIF_CHANNEL_KEY = re.compile(r"^(?P<prefix>.*)ChannelDescription #(?P<n>\d+)\|BytesInc$")


@dataclass(frozen=True)
class LifDimension:
    """One ``DimensionDescription`` of a LIF image."""

    dim_id: int
    n: int
    origin: float
    length: float
    unit: str
    bytes_inc: int


@dataclass(frozen=True)
class LifLayout:
    """How a LIF image's memory lines map to written ``t, c, z, y`` (see :func:`lif_layout`).

    Every dimension but X advances whole lines of the memory block (``strides`` in lines, by
    written axis); Bio-Formats reads line ``L`` as row ``L % rows`` of its plane ``L // rows``.
    """

    shape: tuple[int, int, int, int]  # t, c, z, y
    rows: int  # Bio-Formats' SizeY (lines per plane it reads)
    t_stride: int
    z_stride: int
    y_stride: int
    channel_stride: int  # source channels
    lambda_strides: tuple[int, ...]  # lambda dimensions, outer first
    lambda_sizes: tuple[int, ...]
    physical: dict[str, float | None]
    channel_names: list[str]
    wavelengths: list[dict[str, float]]
    description: dict[str, Any]

    def line(self, t: int, c: int, z: int, y: int) -> int:
        """Memory line of row ``y`` of written plane ``(t, c, z)``."""
        inner = math.prod(self.lambda_sizes)
        c_src, rest = divmod(c, inner)
        line = t * self.t_stride + z * self.z_stride + y * self.y_stride
        line += c_src * self.channel_stride
        for size, stride in zip(
            reversed(self.lambda_sizes), reversed(self.lambda_strides), strict=True
        ):
            rest, k = divmod(rest, size)
            line += k * stride
        return line


def lif_dimensions(series_metadata: dict[str, str]) -> tuple[list[LifDimension], list[int]] | None:
    """The ``DimensionDescription``\\s and channel ``BytesInc``\\s of one Bio-Formats LIF series,
    from its original metadata (keys ``...DimensionDescription #n|DimID``...); None when they are
    missing or more than one image's are there."""
    groups: dict[str, dict[int, dict[str, str]]] = {}
    for key, value in series_metadata.items():
        m = _LIF_KEY.match(key)
        if m:
            groups.setdefault(m["prefix"], {}).setdefault(int(m["n"]), {})[m["attr"]] = value
    if len(groups) != 1:
        return None
    ((prefix, found),) = groups.items()
    dims = []
    try:
        for n in sorted(found):
            a = found[n]
            dims.append(
                LifDimension(
                    dim_id=int(a["DimID"]),
                    n=int(a["NumberOfElements"]),
                    origin=float(a.get("Origin", "0") or 0),
                    length=float(a.get("Length", "0") or 0),
                    unit=str(a.get("Unit", "")),
                    bytes_inc=int(a["BytesInc"]),
                )
            )
        channels = {
            int(m["n"]): int(series_metadata[key])
            for key in series_metadata
            if (m := _LIF_CHANNEL_KEY.match(key)) and m["prefix"] == prefix
        }
    except (KeyError, ValueError):
        return None
    return dims, [channels[k] for k in sorted(channels)]


def _step(dim: LifDimension, factors: dict[str, float]) -> float | None:
    factor = factors.get(dim.unit)
    if factor is None or dim.n < 2 or dim.length == 0:
        return None
    return abs(dim.length) * factor / (dim.n - 1)


def lif_layout(
    dims: list[LifDimension],
    channel_bytes: list[int],
    *,
    bf_sizes: dict[str, int],
    bf_physical: dict[str, float | None],
    bytes_per_pixel: int,
) -> tuple[LifLayout | None, str | None]:
    """The written layout of a LIF image whose dimensions Bio-Formats folds or swaps.

    Handled (Bio-Formats 7 ``LIFReader`` reports them otherwise):

    * **XZ and XT line scans** (no Y dimension): Bio-Formats reads Z (or T) as Y. Written: Z (or
      T) as Z (or T), Y = 1, the Z step (or time increment) from the dimension's first-to-last
      length over ``n - 1``; no Y pixel size.
    * **Wavelength sweeps** (``DimID`` 5, emission, and 9, excitation): Bio-Formats folds them
      into Z (when there is no Z) or T. Written as channels, inner to the detector channels,
      each with its wavelength (``Origin + k * Length / (n - 1)``).

    Returns ``(None, None)`` when Bio-Formats' layout is already right, ``(None, reason)`` when the
    image needs one of these but cannot be mapped safely (it is then written as Bio-Formats
    reports it, and the reason goes into the report), else ``(layout, None)``.
    """
    from imagedepot.convert.microscopy.units import LENGTH_TO_UM, TIME_TO_S

    ids = [d.dim_id for d in dims]
    lambdas = [d for d in dims if d.dim_id in (5, 9) and d.n > 1]
    line_scan = 2 not in ids and any(i in (3, 4) for i in ids)
    if not line_scan and not lambdas:
        return None, None
    unknown = sorted({d.dim_id for d in dims if d.dim_id not in LIF_DIMS and d.n > 1})
    if unknown:
        return None, f"LIF dimensions {unknown} not interpreted"
    if not ids or ids[0] != 1 or dims[0].bytes_inc != bytes_per_pixel:
        return None, "X is not the first, contiguous LIF dimension"
    x = dims[0]
    rest = [d for d in dims[1:] if d.dim_id != 10]
    row = next((d for d in rest if d.dim_id == 2), None) or next(
        d for d in rest if d.dim_id in (3, 4)
    )
    c_n = len(channel_bytes) or 1
    strides: list[tuple[str, int, int]] = [(str(d.dim_id), d.n, d.bytes_inc) for d in rest]
    if c_n > 1:
        steps = sorted(b for b in channel_bytes)
        strides.append(("C", c_n, steps[1] - steps[0]))
    # Bio-Formats reads a plane as SizeY lines of X pixels, back to back: a memory line.
    unit = x.n * bytes_per_pixel
    if (
        any(b % unit for _, n, b in strides if n > 1)
        or min((b for _, n, b in strides if n > 1), default=unit) != unit
    ):
        return None, "LIF strides are not whole lines (padded rows?)"
    lines = {name: b // unit for name, _, b in strides}
    total = math.prod(n for _, n, _ in strides)
    expected = bf_sizes["image_count"] * bf_sizes["y"]
    if bf_sizes["x"] != x.n or bf_sizes["y"] != row.n or total != expected:
        return None, (
            f"LIF dimensions {[(d.dim_id, d.n) for d in dims]} do not match Bio-Formats' sizes "
            f"{bf_sizes}"
        )
    # Every line is covered once: the strides, sorted, must be a mixed radix over the lines.
    covered = 1
    for _, n, b in sorted(strides, key=lambda s: s[2]):
        if b // unit != covered and n > 1:
            return None, "LIF strides overlap or leave gaps"
        covered *= n if n > 1 else 1
    by_id = {d.dim_id: d for d in rest}
    z = by_id.get(3)
    t = by_id.get(4)
    physical = dict(bf_physical)
    note = []
    if row.dim_id != 2:
        physical["y"] = None
        if row.dim_id == 3:
            physical["z"] = _step(row, LENGTH_TO_UM)
            note.append(f"XZ line scan: Bio-Formats' {row.n} rows are written as {row.n} Z planes")
        else:
            physical["t"] = _step(row, TIME_TO_S | {"Ks": 1000.0})
            note.append(
                f"XT line scan: Bio-Formats' {row.n} rows are written as {row.n} time points"
            )
    if z is not None and z is not row and physical.get("z") is None:
        physical["z"] = _step(z, LENGTH_TO_UM)
    if t is not None and t is not row and physical.get("t") is None:
        physical["t"] = _step(t, TIME_TO_S | {"Ks": 1000.0})
    names: list[str] = []
    waves: list[dict[str, float]] = []
    sizes = tuple(d.n for d in lambdas)
    for c in range(c_n * math.prod(sizes)):
        c_src, rest_c = divmod(c, math.prod(sizes))
        parts = [f"C{c_src}"] if c_n > 1 else []
        wave: dict[str, float] = {}
        ks: list[int] = []
        for size in reversed(sizes):
            rest_c, k = divmod(rest_c, size)
            ks.insert(0, k)
        for d, k in zip(lambdas, ks, strict=True):
            step = d.length / (d.n - 1) if d.n > 1 else 0.0
            factor = {"m": 1e9, "nm": 1.0, "um": 1e3, "µm": 1e3}.get(d.unit)
            value = round((d.origin + k * step) * factor, 6) if factor else None
            kind = "excitation" if d.dim_id == 9 else "emission"
            if value is not None and value > 0:
                wave[kind] = value
                parts.append(f"{'λex' if d.dim_id == 9 else 'λ'} {value:.4g} nm")
            else:
                parts.append(f"{'λex' if d.dim_id == 9 else 'λ'} {k}")
        names.append(" ".join(parts))
        waves.append(wave)
    if lambdas:
        note.append(
            f"{' x '.join(str(n) for n in sizes)} wavelength positions that Bio-Formats folds "
            "into Z or T are written as channels"
        )
    layout = LifLayout(
        shape=(
            t.n if t is not None else 1,
            c_n * math.prod(sizes),
            z.n if z is not None else 1,
            row.n if row.dim_id == 2 else 1,
        ),
        rows=row.n,
        t_stride=lines["4"] if t is not None else 0,
        z_stride=lines["3"] if z is not None else 0,
        y_stride=1 if row.dim_id == 2 else 0,
        channel_stride=lines.get("C", 0),
        lambda_strides=tuple(lines[str(d.dim_id)] for d in lambdas),
        lambda_sizes=sizes,
        physical=physical,
        channel_names=names,
        wavelengths=waves,
        description={
            "source": "LIF dimension descriptions (Bio-Formats original metadata)",
            "dimensions": [
                {"DimID": d.dim_id, "name": LIF_DIMS.get(d.dim_id, "?"), "size": d.n} for d in dims
            ],
            "notes": note,
        },
    )
    return layout, None
