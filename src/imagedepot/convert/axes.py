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

Leica LIF (:func:`lif_layout`): Bio-Formats 7's LIF reader reports an XZ (or XT) line scan with
its Z (or T) positions as Y, and folds wavelength sweeps (LIF ``DimID`` 5 and 9) into Z or T
without a modulo. The LIF ``DimensionDescription`` elements Bio-Formats keeps in the series' original
metadata give the real dimensions and their memory strides; when they agree with the sizes
Bio-Formats reports, each written row is read as the memory line it is (Bio-Formats plane
``line // SizeY``, row ``line % SizeY``): line scans get Z (or T) back with Y = 1 and their step
from the dimension's length, sweeps become channels with their wavelengths. Anything else (another
``DimID``, padded rows, sizes that disagree, RGB) is written as Bio-Formats reports it, with the
reason in the report. Not handled: LIF tile scans beyond what Bio-Formats splits into series,
FLIM/TCSPC data, and line scans in other formats.
"""

from __future__ import annotations

import copy
import math
import re
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
    from imagedepot.convert.microscopy.ome_xml import XML_DECLARATION, register_namespaces

    if not remaps:
        return text
    register_namespaces(text)
    root = ET.fromstring(text)  # noqa: S314 - the source file's own OME-XML, see microscopy.ome_xml._parse_xml
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


# --------------------------------------------------------------------------- Leica LIF

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
