"""Moduli: dimensions folded into Z, C or T, read from OME-XML or made for a reader, and
the plan that moves those along Z or T into the channels (:func:`plan_moduli`).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Namespace of OME's modulo XMLAnnotation.
MODULO_NAMESPACE = "openmicroscopy.org/omero/dimension/modulo"
#: Modulo types (lower case, Bio-Formats' constants and OME-XML's values) that are wavelengths.
SPECTRAL_TYPES = frozenset(
    {"lambda", "spectra", "spectrum", "wavelength", "emission", "excitation"}
)
#: Units of spectral moduli to nanometres.
NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "pm": 1e-3, "m": 1e9, "mm": 1e6, "Å": 0.1}
#: Short names used in channel labels.
SYMBOLS = {"lambda": "λ", "spectra": "λ", "spectrum": "λ", "wavelength": "λ"}


@dataclass(frozen=True)
class Modulo:
    """A dimension folded into Z, C or T (inner to its parent).

    Attributes
    ----------
    along
        ``Z``, ``C`` or ``T``.
    type
        Lower-case type: ``lambda``, ``spectra``, ``lifetime``, ``phase``, ``rotation``,
        ``angle``, ``illumination``, ``other``... (``other`` when the source gives none).
    size
        Number of elements.
    start, step, unit, labels, description
        Values of the elements (``start + k * step`` in ``unit``) or their ``labels``; the
        source's free-text ``description`` (OME ``TypeDescription``).
    """

    along: str
    type: str
    size: int
    start: float = 0.0
    step: float = 1.0
    unit: str | None = None
    labels: tuple[str, ...] | None = None
    description: str | None = None

    @property
    def spectral(self) -> bool:
        """Whether the elements are wavelengths."""
        return self.type in SPECTRAL_TYPES

    @property
    def excitation(self) -> bool:
        """Whether a spectral modulo sweeps the excitation (not the emission) wavelength."""
        text = f"{self.type} {self.description or ''}".lower()
        return "excitation" in text or "lambdaex" in text

    def value(self, k: int) -> float:
        """Value of element ``k`` (in :attr:`unit`)."""
        return self.start + k * self.step

    def wavelength_nm(self, k: int) -> float | None:
        """Element ``k`` as a wavelength in nm, or None (not spectral, or no length unit: values
        without a unit are taken for indices, not wavelengths)."""
        if not self.spectral or not self.unit:
            return None
        if self.labels is not None:
            try:
                v = float(self.labels[k])
            except ValueError:
                return None
        else:
            v = self.value(k)
        factor = NM.get(self.unit.strip().replace("μ", "µ"))
        if factor is None or not math.isfinite(v * factor) or v * factor <= 0:
            return None
        return v * factor

    def label(self, k: int) -> str:
        """Label of element ``k``: its own label, or ``"<type> <value> <unit>"``."""
        if self.labels is not None:
            return str(self.labels[k])
        symbol = SYMBOLS.get(self.type, self.type)
        unit = f" {self.unit}" if self.unit else ""
        return f"{symbol} {self.value(k):g}{unit}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for the conversion report."""
        out: dict[str, Any] = {"along": self.along, "type": self.type, "size": self.size}
        if self.labels is not None:
            out["labels"] = list(self.labels)
        else:
            out["values"] = [self.value(k) for k in range(self.size)]
        if self.unit:
            out["unit"] = self.unit
        if self.description:
            out["description"] = self.description
        return out


def modulo(
    along: str,
    type_: str | None,
    size: int,
    *,
    start: float | None = None,
    step: float | None = None,
    end: float | None = None,
    unit: str | None = None,
    labels: Sequence[str] | None = None,
    description: str | None = None,
) -> Modulo:
    """Build a :class:`Modulo`, normalising the type (``None`` or the parent's own name give
    ``other``) and deriving ``step`` from ``end`` when only that is given."""
    kind = (type_ or "").strip().lower()
    if not kind or kind == along.lower() or kind in ("z", "c", "t"):
        kind = "other"
    first = float(start) if start is not None else 0.0
    if step is None or step == 0:
        step = (float(end) - first) / (size - 1) if end is not None and size > 1 else 1.0
    return Modulo(
        along=along,
        type=kind,
        size=int(size),
        start=first,
        step=float(step),
        unit=(unit or None),
        labels=tuple(str(x) for x in labels) if labels else None,
        description=description or None,
    )


def parse_xml_moduli(root: ET.Element) -> list[list[Modulo]]:
    """Per OME ``Image`` of ``root``: the moduli its modulo annotations declare."""
    annotations: dict[str, list[Modulo]] = {}
    for sa in (el for el in root if _local(el.tag) == "StructuredAnnotations"):
        for annotation in sa:
            if not annotation.get("Namespace", "").endswith("modulo"):
                continue
            found = []
            for along in annotation.iter():
                name = _local(along.tag)
                if not name.startswith("ModuloAlong") or name[-1] not in "ZCT":
                    continue
                labels = [
                    (lab.text or "").strip() for lab in along if _local(lab.tag) == "Label"
                ] or None
                start = _float(along.get("Start"))
                end = _float(along.get("End"))
                step = _float(along.get("Step"))
                if labels:
                    size = len(labels)
                elif start is not None and end is not None:
                    size = round((end - start) / (step or 1.0)) + 1
                else:
                    continue
                if size < 1:
                    continue
                found.append(
                    modulo(
                        name[-1],
                        along.get("Type"),
                        size,
                        start=start,
                        step=step,
                        end=end,
                        unit=along.get("Unit"),
                        labels=labels,
                        description=along.get("TypeDescription"),
                    )
                )
            if annotation.get("ID"):
                annotations[str(annotation.get("ID"))] = found
    images = []
    for image in (el for el in root if _local(el.tag) == "Image"):
        refs = [
            ref.get("ID")
            for holder in (image, *[el for el in image if _local(el.tag) == "Pixels"])
            for ref in holder
            if _local(ref.tag) == "AnnotationRef"
        ]
        moduli: dict[str, Modulo] = {}
        for ref in refs:
            for m in annotations.get(str(ref), []):
                moduli.setdefault(m.along, m)
        images.append([moduli[a] for a in "ZCT" if a in moduli])
    return images


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass(frozen=True)
class ModuloPlan:
    """How one series' moduli are written (see the module docstring).

    ``sizes`` are the source's ``z, c, t`` sizes (moduli folded in). ``moved`` are the moduli
    along Z and T that go into the channels (outer first: Z's, then T's); ``kept`` the one along
    C, if any. ``notes`` say what was not possible.
    """

    sizes: tuple[int, int, int]
    moved: tuple[Modulo, ...] = ()
    kept: Modulo | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def inner(self) -> int:
        """Channels added per source channel (product of the moved moduli's sizes)."""
        return math.prod(m.size for m in self.moved)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Written ``t, c, z`` sizes."""
        z, c, t = self.sizes
        for m in self.moved:
            if m.along == "Z":
                z //= m.size
            else:
                t //= m.size
        return t, c * self.inner, z

    def source_coords(self, t: int, c: int, z: int) -> tuple[int, int, int]:
        """Source ``(z, c, t)`` of written plane ``(t, c, z)``."""
        c_src, rest = divmod(c, self.inner)
        for m in reversed(self.moved):
            rest, k = divmod(rest, m.size)
            if m.along == "Z":
                z = z * m.size + k
            else:
                t = t * m.size + k
        return z, c_src, t

    def written_coords(self, z: int, c: int, t: int) -> tuple[int, int, int]:
        """Written ``(z, c, t)`` of source plane ``(z, c, t)``."""
        inner = 0
        for m in self.moved:
            if m.along == "Z":
                z, k = divmod(z, m.size)
            else:
                t, k = divmod(t, m.size)
            inner = inner * m.size + k
        return z, c * self.inner + inner, t

    def channel(self, c: int) -> tuple[int, list[tuple[Modulo, int]]]:
        """Source channel of written channel ``c`` and its index along each modulo."""
        c_src, rest = divmod(c, self.inner)
        picks: list[tuple[Modulo, int]] = []
        for m in reversed(self.moved):
            rest, k = divmod(rest, m.size)
            picks.insert(0, (m, k))
        if self.kept is not None:
            picks.insert(0, (self.kept, c_src % self.kept.size))
        return c_src, picks

    def describe(self) -> dict[str, Any]:
        """For the conversion report."""
        return {
            "moved_to_c": [m.to_dict() for m in self.moved],
            "in_c": self.kept.to_dict() if self.kept else None,
            "channel_order": "source channel outer, "
            + ", ".join(f"{m.type} (from {m.along})" for m in self.moved)
            + " inner"
            if self.moved
            else "as the source",
        }


def plan_moduli(moduli: Sequence[Modulo], sizes: tuple[int, int, int]) -> ModuloPlan | None:
    """Plan for the moduli of a series with source ``z, c, t`` ``sizes``; None when there is
    nothing to do (no modulo longer than 1)."""
    z, c, t = sizes
    notes = []
    moved = []
    kept = None
    for m in moduli:
        if m.size <= 1:
            continue
        parent = {"Z": z, "C": c, "T": t}[m.along]
        if parent % m.size:
            notes.append(
                f"modulo {m.type} along {m.along} ({m.size}) does not divide size {parent}; "
                "left as the source reports it"
            )
            continue
        if m.along == "C":
            kept = m
        else:
            moved.append(m)
    moved.sort(key=lambda m: "ZT".index(m.along))
    if not moved and kept is None:
        return ModuloPlan(sizes, notes=tuple(notes)) if notes else None
    return ModuloPlan(sizes, tuple(moved), kept, tuple(notes))


def expand_channels(
    plan: ModuloPlan, names: Sequence[str | None], colors: Sequence[str | None]
) -> tuple[list[str | None], list[str | None], list[dict[str, float]]]:
    """Written channels' names, colours and wavelengths (``{"emission": nm}`` or
    ``{"excitation": nm}``) from the source channels'."""
    out_names: list[str | None] = []
    out_colors: list[str | None] = []
    waves: list[dict[str, float]] = []
    _, c_written, _ = plan.shape
    for c in range(c_written):
        c_src, picks = plan.channel(c)
        base = names[c_src] if c_src < len(names) else None
        if not base and plan.moved and plan.sizes[1] > 1:
            base = f"C{c_src}"
        labels = [m.label(k) for m, k in picks if m is not plan.kept]
        if not base and plan.kept is not None:
            labels.insert(0, plan.kept.label(c_src % plan.kept.size))
        parts = [p for p in (base, *labels) if p]
        out_names.append(" ".join(parts) if parts else None)
        out_colors.append(colors[c_src] if c_src < len(colors) and not plan.moved else None)
        wave: dict[str, float] = {}
        for m, k in picks:
            nm = m.wavelength_nm(k)
            if nm is not None:
                wave["excitation" if m.excitation else "emission"] = nm
        waves.append(wave)
    return out_names, out_colors, waves
