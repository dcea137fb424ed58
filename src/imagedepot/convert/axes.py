"""Non-spatial dimensions folded into Z, C or T, and how they are written.

OME's model has five axes. Readers fold any other dimension into Z, C or T and describe it with a
*modulo* (Bio-Formats ``CoreMetadata.moduloZ/C/T``, OME-XML's ``ModuloAlongZ/C/T`` annotation in
namespace ``openmicroscopy.org/omero/dimension/modulo``): the folded dimension is the inner part
of its parent, so index ``k`` along T holds time point ``k // n`` and modulo index ``k % n``.

What the converters do with them (:func:`plan_moduli`):

* A modulo along **C** stays in the channels; its labels (e.g. "λ 520 nm") are added to the channel
  names.
* A modulo along **Z or T** is not depth or time (a wavelength sweep, lifetime bins, SIM phases,
  SPIM rotations, illuminations): it moves into the channels, inner to the source's channels
  (``c' = c * n + k``), so Z and T keep only real depth and time and their physical spacing. That
  is the OME-model's own place for it (``ModuloAlongC``), and the only non-spatial, non-temporal
  axis NGFF 0.4 and 0.5 images have. Spectral moduli (``lambda``, ``spectra``...) give each
  channel its wavelength (OME-XML ``EmissionWavelength``, or ``ExcitationWavelength`` when the
  modulo says excitation).

:func:`remap_ome_xml` rewrites the source's OME-XML to describe the written layout (sizes,
channels, planes, physical sizes, modulo annotations), so ``OME/METADATA.ome.xml`` and the
OME-TIFF's XML agree with the pixels.
"""

from __future__ import annotations

import copy
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
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


# --------------------------------------------------------------------------- OME-XML


@dataclass
class XmlRemap:
    """How to rewrite one OME ``Image`` for the written layout.

    ``sizes``: new ``SizeX``... values by letter (``X Y Z C T``). ``channels``: per written
    channel, the index of the source ``Channel`` element to copy and attributes to set.
    ``physical``: ``PhysicalSizeX``... / ``TimeIncrement`` attribute values in µm / s (None:
    remove). ``plane``: maps a source plane ``(z, c, t)`` to the written one (None: the plane is
    dropped); None drops every ``Plane``. ``modulo_to_c``: the ``Z`` or ``T`` whose modulo moved
    to the channels (its annotation becomes ``ModuloAlongC``); ``drop_modulo``: moduli whose
    annotation no longer holds.
    """

    sizes: dict[str, int]
    channels: list[tuple[int, dict[str, str]]] | None = None
    physical: dict[str, float | None] = field(default_factory=dict)
    plane: Callable[[int, int, int], tuple[int, int, int] | None] | None = None
    modulo_to_c: str | None = None
    drop_modulo: set[str] = field(default_factory=set)


_PHYSICAL_UNITS = {
    "PhysicalSizeX": "µm",
    "PhysicalSizeY": "µm",
    "PhysicalSizeZ": "µm",
    "TimeIncrement": "s",
}


def remap_for_moduli(plan: ModuloPlan, image_index: int, names: Sequence[str | None]) -> XmlRemap:
    """The :class:`XmlRemap` of a series whose moduli are written as ``plan`` says."""
    t, c, z = plan.shape
    written_names, _, waves = expand_channels(plan, names, [None] * len(names))
    channels: list[tuple[int, dict[str, str]]] = []
    for k in range(c):
        c_src, _ = plan.channel(k)
        attrs: dict[str, str] = {"ID": f"Channel:{image_index}:{k}"}
        if written_names[k] and (plan.moved or not names[c_src]):
            attrs["Name"] = str(written_names[k])
        for kind, nm in waves[k].items():
            key = "EmissionWavelength" if kind == "emission" else "ExcitationWavelength"
            attrs[key] = f"{nm:g}"
            attrs[key + "Unit"] = "nm"
        channels.append((c_src, attrs))
    moved = {m.along for m in plan.moved}
    to_c = next(iter(moved)) if len(moved) == 1 and plan.kept is None else None
    drop = set() if to_c else moved

    def plane(z_: int, c_: int, t_: int) -> tuple[int, int, int] | None:
        return plan.written_coords(z_, c_, t_)

    return XmlRemap(
        sizes={"Z": z, "C": c, "T": t},
        channels=channels,
        plane=plane,
        modulo_to_c=to_c,
        drop_modulo=drop,
    )


def remap_ome_xml(text: str, remaps: dict[int, XmlRemap]) -> str:
    """The OME-XML ``text`` with images ``remaps`` rewritten (others unchanged)."""
    from imagedepot.convert.microscopy import XML_DECLARATION, register_namespaces

    if not remaps:
        return text
    register_namespaces(text)
    root = ET.fromstring(text)  # noqa: S314 - the source file's own OME-XML, see microscopy._parse_xml
    images = [el for el in root if _local(el.tag) == "Image"]
    renamed: dict[str, str] = {}
    dropped: set[str] = set()
    for index, remap in remaps.items():
        if index >= len(images):
            continue
        image = images[index]
        pixels = next((el for el in image if _local(el.tag) == "Pixels"), None)
        if pixels is None:
            continue
        for letter, n in remap.sizes.items():
            pixels.set(f"Size{letter}", str(n))
        for key, value in remap.physical.items():
            if value is None:
                pixels.attrib.pop(key, None)
                pixels.attrib.pop(key + "Unit", None)
            else:
                pixels.set(key, f"{value:.12g}")
                pixels.set(key + "Unit", _PHYSICAL_UNITS[key])
        if remap.channels is not None:
            _rewrite_channels(pixels, remap.channels)
        planes = [el for el in pixels if _local(el.tag) == "Plane"]
        for p in planes:
            new = None
            if remap.plane is not None:
                try:
                    new = remap.plane(
                        int(p.get("TheZ", "0")), int(p.get("TheC", "0")), int(p.get("TheT", "0"))
                    )
                except ValueError:
                    new = None
            if new is None:
                pixels.remove(p)
            else:
                p.set("TheZ", str(new[0]))
                p.set("TheC", str(new[1]))
                p.set("TheT", str(new[2]))
        refs = {
            str(ref.get("ID"))
            for holder in (image, pixels)
            for ref in holder
            if _local(ref.tag) == "AnnotationRef"
        }
        if remap.modulo_to_c:
            for ref in refs:
                renamed[ref] = remap.modulo_to_c
        for letter in remap.drop_modulo:
            dropped.update(f"{ref}|{letter}" for ref in refs)
    for sa in (el for el in root if _local(el.tag) == "StructuredAnnotations"):
        for annotation in sa:
            ident = str(annotation.get("ID"))
            if not annotation.get("Namespace", "").endswith("modulo"):
                continue
            for holder in list(annotation.iter()):
                for along in list(holder):
                    name = _local(along.tag)
                    if not name.startswith("ModuloAlong"):
                        continue
                    letter = name[-1]
                    if f"{ident}|{letter}" in dropped:
                        holder.remove(along)
                    elif renamed.get(ident) == letter:
                        along.tag = along.tag[: -len(name)] + "ModuloAlongC"
    return XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n"


def _rewrite_channels(pixels: ET.Element, channels: list[tuple[int, dict[str, str]]]) -> None:
    old = [el for el in pixels if _local(el.tag) == "Channel"]
    if not old:
        return
    position = list(pixels).index(old[0])
    for el in old:
        pixels.remove(el)
    for k, (source, attrs) in enumerate(channels):
        el = copy.deepcopy(old[min(source, len(old) - 1)])
        for key, value in attrs.items():
            el.set(key, value)
        # LightPath and other children keep their content; nested IDs stay unique by channel.
        pixels.insert(position + k, el)


__all__ = [
    "MODULO_NAMESPACE",
    "Modulo",
    "ModuloPlan",
    "XmlRemap",
    "expand_channels",
    "modulo",
    "parse_xml_moduli",
    "plan_moduli",
    "remap_for_moduli",
    "remap_ome_xml",
]
