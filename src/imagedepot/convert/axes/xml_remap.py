"""The source's OME-XML rewritten to describe the written layout (:func:`remap_ome_xml`)."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imagedepot.convert.axes.moduli import ModuloPlan, _local, expand_channels


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
