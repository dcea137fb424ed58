"""OME-XML trees: serialising with the document's own namespace prefixes, and removing ``Image``
elements (the OME-XML side of removing auxiliary series, :mod:`imagedepot.deid.auxiliary`).

:mod:`imagedepot.deid.ome` cleans OME-XML with the same serialiser. Parsing is
:func:`imagedepot.safeload.parse_xml` (no DTD).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Collection
from xml.sax.saxutils import escape, quoteattr

from imagedepot.safeload import local_name, parse_xml


def remove_ome_images(
    xml: str, drop: Collection[int], ifd_map: dict[int, int] | None = None
) -> str:
    """The OME-XML without the ``Image`` elements at positions ``drop`` (0-based, document order)
    and the ``ImageRef`` elements that point to them (datasets, folders, well samples).

    ``ifd_map`` (OME-TIFF) maps the old index of every TIFF IFD kept to its new index: the
    ``TiffData/@IFD`` of the images kept are renumbered with it, and each block's planes must
    stay consecutive IFDs. The result has an XML declaration and keeps the document's namespace
    prefixes. Raises ``ValueError`` for XML that is not OME, a position out of range, or a block
    of planes that removing IFDs would split.
    """
    root = parse_xml(xml)
    if local_name(root.tag) != "OME":
        raise ValueError("the XML root element is not OME")
    images = [el for el in root if local_name(el.tag) == "Image"]
    bad = sorted(i for i in drop if not 0 <= i < len(images))
    if bad:
        raise ValueError(f"image index {bad[0]} out of range ({len(images)} images)")
    removed = {images[i].get("ID") for i in drop} - {None}
    for i in sorted(drop):
        root.remove(images[i])
    for parent in root.iter():
        for child in list(parent):
            if local_name(child.tag) == "ImageRef" and child.get("ID") in removed:
                parent.remove(child)
    if ifd_map is not None:
        for i, image in enumerate(images):
            if i not in drop:
                _renumber_tiff_data(image, ifd_map)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + serialize_xml(root, namespace_prefixes(xml))


def _renumber_tiff_data(image: ET.Element, ifd_map: dict[int, int]) -> None:
    """Renumber the ``TiffData/@IFD`` of one image with ``ifd_map`` (old -> new IFD index)."""
    pixels = next((el for el in image if local_name(el.tag) == "Pixels"), None)
    if pixels is None:
        return
    size = 1
    for key in ("SizeC", "SizeZ", "SizeT"):
        size *= int(pixels.get(key, "1") or 1)
    for block in (el for el in pixels if local_name(el.tag) == "TiffData"):
        first = int(block.get("IFD", "0"))
        default = 1 if "IFD" in block.attrib else size
        count = int(block.get("PlaneCount", str(default)))
        olds = range(first, first + max(count, 1))
        news = [ifd_map.get(k) for k in olds]
        start = news[0]
        if start is None or news != list(range(start, start + len(news))):
            raise ValueError(
                f"{image.get('ID')}: its TiffData block at IFD {first} would be split by the "
                "IFDs removed"
            )
        if start != first:
            block.set("IFD", str(start))


def namespace_prefixes(xml: str | bytes) -> dict[str, str]:
    """Namespace URI -> prefix as declared in the document (first declaration wins)."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    out: dict[str, str] = {}
    for _event, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):  # noqa: S314
        out.setdefault(uri, prefix)
    return out


def serialize_xml(root: ET.Element, prefixes: dict[str, str] | None = None) -> str:
    """Serialise an element tree keeping the document's namespace prefixes (ElementTree would
    rename them ``ns0``...), declared on the root element; no XML declaration.

    ``prefixes`` maps namespace URIs to the prefixes wanted (``""``: default namespace).
    """
    wanted = prefixes or {}
    element_ns: dict[str, str] = {}  # uri -> prefix used on elements ("" = default)
    attribute_ns: dict[str, str] = {}  # uri -> prefix used on attributes (never "")
    taken: set[str] = set()

    def fresh() -> str:
        n = 0
        while f"ns{n}" in taken:
            n += 1
        return f"ns{n}"

    def element_prefix(uri: str) -> str:
        if uri not in element_ns:
            p = wanted.get(uri, "")
            if p in taken:
                p = fresh()
            element_ns[uri] = p
            taken.add(p)
        return element_ns[uri]

    def attribute_prefix(uri: str) -> str:
        p = element_ns.get(uri) or attribute_ns.get(uri)
        if not p:
            p = wanted.get(uri, "")
            if not p or p in taken:
                p = fresh()
            attribute_ns[uri] = p
            taken.add(p)
        return p

    def split(name: str) -> tuple[str, str]:
        if name.startswith("{"):
            uri, local = name[1:].split("}", 1)
            return uri, local
        return "", name

    def write(el: ET.Element, default: str, out: list[str]) -> None:
        uri, local = split(el.tag)
        extra = ""
        if uri:
            p = element_prefix(uri)
            tag = f"{p}:{local}" if p else local
            if not p and default != uri:
                extra, default = f' xmlns="{uri}"', uri
        else:
            tag = local
            if default:
                extra, default = ' xmlns=""', ""
        out.append(f"<{tag}{extra}")
        for key, value in el.attrib.items():
            a_uri, a_local = split(key)
            name = f"{attribute_prefix(a_uri)}:{a_local}" if a_uri else a_local
            out.append(f" {name}={quoteattr(value)}")
        if len(el) == 0 and not el.text:
            out.append("/>")
        else:
            out.append(">")
            if el.text:
                out.append(escape(el.text))
            for child in el:
                write(child, default, out)
            out.append(f"</{tag}>")
        if el.tail:
            out.append(escape(el.tail))

    root_uri, _ = split(root.tag)
    if root_uri:
        element_prefix(root_uri)
    parts: list[str] = []
    write(root, root_uri if root_uri and element_ns[root_uri] == "" else "", parts)
    declarations = [f' xmlns:{p}="{u}"' for u, p in element_ns.items() if p]
    declarations += [f' xmlns:{p}="{u}"' for u, p in attribute_ns.items()]
    if root_uri and element_ns[root_uri] == "":
        declarations.insert(0, f' xmlns="{root_uri}"')
    parts[0] += "".join(declarations)
    return "".join(parts)
