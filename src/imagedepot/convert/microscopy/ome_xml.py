"""OME-XML as the microscopy converters read and write it: a source's parsed, the
metadata-only copy of the bioformats2raw layout, and a minimal one made from the series.
"""

from __future__ import annotations

import contextlib
import io
import xml.etree.ElementTree as ET
from typing import Any

from imagedepot.convert import SeriesInfo
from imagedepot.convert.microscopy.units import color_hex, color_int, length_um, time_s

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _parse_xml(text: str) -> ET.Element:
    # The OME-XML comes from the file being converted. Python's expat parser does not fetch external
    # entities, and expat >= 2.4.1 (bundled with supported Pythons) caps entity expansion.
    return ET.fromstring(text)  # noqa: S314


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_ome_xml(text: str) -> list[dict[str, Any]]:
    """Per OME Image: ``name``, sizes, ``physical_size`` (µm, s) and ``channels`` (name, colour)."""
    root = _parse_xml(text)
    images = []
    for image in (el for el in root if _local(el.tag) == "Image"):
        pixels = next((el for el in image if _local(el.tag) == "Pixels"), None)
        if pixels is None:
            continue
        a = pixels.attrib
        channels = [
            {
                "name": ch.get("Name"),
                "color": color_hex(ch.get("Color")),
                "samples": int(ch.get("SamplesPerPixel", "1") or 1),
            }
            for ch in pixels
            if _local(ch.tag) == "Channel"
        ]
        images.append(
            {
                "name": image.get("Name"),
                "size": {k: int(a.get(f"Size{k.upper()}", "1")) for k in "tczyx"},
                "physical_size": {
                    "x": length_um(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit", "µm")),
                    "y": length_um(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit", "µm")),
                    "z": length_um(a.get("PhysicalSizeZ"), a.get("PhysicalSizeZUnit", "µm")),
                    "t": time_s(a.get("TimeIncrement"), a.get("TimeIncrementUnit", "s")),
                },
                "channels": channels,
            }
        )
    return images


def register_namespaces(text: str) -> None:
    """Register the namespace prefixes of ``text`` so ElementTree writes them back as they were."""
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):  # noqa: S314
        with contextlib.suppress(ValueError):
            ET.register_namespace(prefix, uri)


def metadata_only_ome_xml(text: str) -> str:
    """The OME-XML with pixel references removed, as the bioformats2raw layout requires.

    ``TiffData``, ``BinData`` and ``BinaryOnly`` elements are dropped and each ``Pixels`` gets a
    ``MetadataOnly`` element (after its channels, where the schema puts it). Everything else is
    kept as it was.
    """
    namespaces: dict[str, str] = {}
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):  # noqa: S314
        namespaces.setdefault(prefix, uri)
    root = _parse_xml(text)
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    for prefix, uri in namespaces.items():
        with contextlib.suppress(ValueError):
            ET.register_namespace(prefix, uri)
    for child in list(root):
        if _local(child.tag) == "BinaryOnly":
            root.remove(child)
    for pixels in root.iter(f"{{{ns}}}Pixels" if ns else "Pixels"):
        for child in list(pixels):
            if _local(child.tag) in ("TiffData", "BinData"):
                pixels.remove(child)
        if not any(_local(c.tag) == "MetadataOnly" for c in pixels):
            position = sum(1 for c in pixels if _local(c.tag) == "Channel")
            pixels.insert(position, ET.Element(f"{{{ns}}}MetadataOnly" if ns else "MetadataOnly"))
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def ome_xml_from_series(series: list[SeriesInfo]) -> str:
    """Minimal OME-XML describing ``series`` (for sources that have none)."""
    import tifffile

    omexml = tifffile.OmeXml()
    for info in series:
        t, c, z, y, x = info.shape
        meta: dict[str, Any] = {"axes": "TCZYX", "Name": info.name or f"Image {info.index}"}
        meta.update(_ome_physical(info))
        channel = _ome_channels(info)
        if channel:
            meta["Channel"] = channel
        omexml.addimage(
            dtype=info.dtype, shape=info.shape, storedshape=(t * c * z, 1, 1, y, x, 1), **meta
        )
    return str(omexml.tostring())


def _ome_physical(info: SeriesInfo) -> dict[str, Any]:
    """tifffile OmeXml keywords for the physical sizes (µm, s) that are known."""
    keys = {"x": "PhysicalSizeX", "y": "PhysicalSizeY", "z": "PhysicalSizeZ", "t": "TimeIncrement"}
    return {keys[k]: v for k, v in info.physical_size.items() if v is not None and k in keys}


def _ome_channels(info: SeriesInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if info.channel_names and all(n is not None for n in info.channel_names):
        out["Name"] = list(info.channel_names)
    if info.channel_colors and all(c is not None for c in info.channel_colors):
        out["Color"] = [color_int(str(c)) for c in info.channel_colors]
    return out
