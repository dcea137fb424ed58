"""Image metadata from the staged OME-XML.

The instrument and acquisition parameters the archive shows, used where neither the sample sheet
nor the study metadata gives them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def ome_summary(xml_path: str | Path) -> dict[str, str]:
    """Instrument and acquisition parameters described by an OME-XML file (what the archive shows).

    The file is the de-identified OME-XML this package wrote (trusted input).
    """
    root = ET.parse(xml_path).getroot()  # noqa: S314 - our own de-identified output
    out: dict[str, str] = {}
    instruments = []
    for inst in root.iter():
        if _local(inst.tag) != "Instrument":
            continue
        parts = []
        for child in inst:
            kind = _local(child.tag)
            if kind == "Microscope":
                desc = " ".join(v for v in (child.get("Manufacturer"), child.get("Model")) if v)
                mtype = child.get("Type")
                if mtype:
                    desc += f" ({mtype.lower()})"
                if desc.strip():
                    parts.append(f"microscope {desc.strip()}")
            elif kind == "Objective":
                desc = " ".join(v for v in (child.get("Manufacturer"), child.get("Model")) if v)
                extra = []
                if child.get("NominalMagnification"):
                    extra.append(f"{float(child.get('NominalMagnification', 0)):g}x")
                if child.get("LensNA"):
                    extra.append(f"NA {child.get('LensNA')}")
                if child.get("Immersion"):
                    extra.append(f"{child.get('Immersion', '').lower()} immersion")
                parts.append(
                    "objective " + " ".join([desc, *([", ".join(extra)] if extra else [])]).strip()
                )
        if parts:
            instruments.append("; ".join(parts))
    if instruments:
        out["instrument"] = " | ".join(dict.fromkeys(instruments))
    params = []
    for px in root.iter():
        if _local(px.tag) != "Pixels":
            continue
        dims = "x".join(px.get(f"Size{a}", "?") for a in "TCZYX")
        desc = f"{px.get('Type', '?')} pixels, TCZYX {dims}"
        sizes = []
        for ax in "XYZ":
            v = px.get(f"PhysicalSize{ax}")
            if v:
                sizes.append(f"{ax} {float(v):g} {px.get(f'PhysicalSize{ax}Unit', 'µm')}")
        if sizes:
            desc += "; pixel size " + ", ".join(sizes)
        chans = []
        for ch in px:
            if _local(ch.tag) != "Channel":
                continue
            c = ch.get("Name") or ch.get("ID") or "channel"
            if ch.get("EmissionWavelength"):
                c += f" (emission {float(ch.get('EmissionWavelength', 0)):g} {ch.get('EmissionWavelengthUnit', 'nm')})"
            chans.append(c)
        if chans:
            desc += "; channels " + ", ".join(chans)
        params.append(desc)
    if params:
        out["parameters"] = " | ".join(dict.fromkeys(params))
        out["channels"] = "; ".join(
            ch.get("Name", "")
            for ch in root.iter()
            if _local(ch.tag) == "Channel" and ch.get("Name")
        )
    return out


def _ome_xml_of(image: Path) -> Path | None:
    for cand in (image / "OME" / "METADATA.ome.xml", image / "METADATA.ome.xml"):
        if cand.is_file():
            return cand
    return None
