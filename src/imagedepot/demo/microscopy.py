"""The demo's OME-TIFF: a 2-channel z-stack of fluorescent cells with an experimenter in
its OME-XML.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imagedepot.demo.cohort import EXPERIMENTER, MICROSCOPY_ACQUISITION
from imagedepot.demo.phantoms import _rng

_OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _cells(rng: np.random.Generator, nz: int, ny: int, nx: int) -> npt.NDArray[np.uint16]:
    """Fluorescent cells, axes (c, z, y, x): c0 nuclei (DAPI), c1 cytoplasm (GFP)."""
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    ncells = 24
    cy = rng.uniform(20, ny - 20, ncells)
    cx = rng.uniform(20, nx - 20, ncells)
    radius = rng.uniform(5, 9, ncells)
    gfp_level = rng.uniform(0.3, 1.0, ncells)
    nuclei = np.zeros((ny, nx))
    cyto = np.zeros((ny, nx))
    for i in range(ncells):
        r2 = (y - cy[i]) ** 2 + (x - cx[i]) ** 2
        nuclei += np.exp(-r2 / (2 * radius[i] ** 2)) ** 2
        cyto += gfp_level[i] * np.exp(-r2 / (2 * (2.4 * radius[i]) ** 2))
    focus = np.exp(-0.5 * ((np.arange(nz) - (nz - 1) / 2) / 1.0) ** 2)
    data = np.empty((2, nz, ny, nx))
    for z in range(nz):
        data[0, z] = 120 + 3000 * focus[z] * nuclei
        data[1, z] = 150 + 1400 * focus[z] * cyto
    data += rng.normal(0.0, 20.0, data.shape)
    return np.clip(np.rint(data), 0, 65535).astype(np.uint16)


def _sub(
    parent: ET.Element, tag: str, attrib: dict[str, str] | None = None, text: str | None = None
) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib or {})
    if text is not None:
        el.text = text
    return el


def _ome_xml(shape: tuple[int, int, int, int], name: str) -> str:
    """OME-XML (2016-06) for a (c, z, y, x) uint16 stack stored plane by plane in XYZCT order."""
    nc, nz, ny, nx = shape
    e = EXPERIMENTER
    ome = ET.Element(
        "OME",
        {
            "xmlns": _OME_NS,
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:schemaLocation": f"{_OME_NS} {_OME_NS}/ome.xsd",
            "UUID": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'urn:imagedepot:demo:' + name)}",
            "Creator": "imagedepot demo",
        },
    )
    experimenter = {
        "ID": "Experimenter:0",
        "FirstName": e.first,
        "LastName": e.last,
        "Email": e.email,
        "Institution": e.institution,
        "UserName": e.username,
    }
    _sub(ome, "Experimenter", experimenter)
    instrument = _sub(ome, "Instrument", {"ID": "Instrument:0"})
    maker = "Example Optics"
    _sub(instrument, "Microscope", {"Manufacturer": maker, "Model": "EX-1000", "Type": "Inverted"})
    objective = {
        "ID": "Objective:0:0",
        "Manufacturer": maker,
        "Model": "Plan Apo 20x",
        "LensNA": "0.75",
        "NominalMagnification": "20.0",
        "Immersion": "Air",
    }
    _sub(instrument, "Objective", objective)
    image = _sub(ome, "Image", {"ID": "Image:0", "Name": name})
    # Children of Image in the order the schema requires.
    _sub(image, "AcquisitionDate", text=MICROSCOPY_ACQUISITION)
    _sub(image, "ExperimenterRef", {"ID": "Experimenter:0"})
    description = f"NIH/3T3 fibroblasts, DAPI and GFP, imaged by {e.first} {e.last} ({e.email})."
    _sub(image, "Description", text=description)
    _sub(image, "InstrumentRef", {"ID": "Instrument:0"})
    _sub(image, "ObjectiveSettings", {"ID": "Objective:0:0"})
    sizes = {"SizeX": nx, "SizeY": ny, "SizeZ": nz, "SizeC": nc, "SizeT": 1}
    pixels_attrib = {
        "ID": "Pixels:0",
        "DimensionOrder": "XYZCT",
        "Type": "uint16",
        "SignificantBits": "16",
        "Interleaved": "false",
        "BigEndian": "false",
        **{key: str(n) for key, n in sizes.items()},
        "PhysicalSizeX": "0.325",
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": "0.325",
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": "1.0",
        "PhysicalSizeZUnit": "µm",
    }
    pixels = _sub(image, "Pixels", pixels_attrib)
    channels = (("DAPI", "-16776961", "461"), ("GFP", "16711935", "510"))  # RGBA colours
    for c, (label, color, emission) in enumerate(channels):
        channel = {
            "ID": f"Channel:0:{c}",
            "Name": label,
            "SamplesPerPixel": "1",
            "Color": color,
            "EmissionWavelength": emission,
            "EmissionWavelengthUnit": "nm",
        }
        _sub(pixels, "Channel", channel)
    _sub(pixels, "TiffData", {"IFD": "0", "PlaneCount": str(nc * nz)})
    _sub(image, "AnnotationRef", {"ID": "Annotation:0"})
    _sub(image, "AnnotationRef", {"ID": "Annotation:1"})
    annotations = _sub(ome, "StructuredAnnotations")
    comment = _sub(annotations, "CommentAnnotation", {"ID": "Annotation:0"})
    note = f"Slide prepared and imaged by {e.first} {e.last}; ask {e.email}."
    _sub(comment, "Value", text=note)
    mapping = _sub(_sub(annotations, "MapAnnotation", {"ID": "Annotation:1"}), "Value")
    _sub(mapping, "M", {"K": "specimen"}, "specimen-A17")
    _sub(mapping, "M", {"K": "operator"}, f"{e.first} {e.last}")
    body = ET.tostring(ome, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _write_ome_tiff(path: Path) -> None:
    """Write the (c, z, y, x) stack as 6 pages with our own OME-XML in the first page.

    tifffile's OME writer gained Experimenter elements only in 2026.2.24, so the XML is built here
    and tifffile writes a plain multi-page TIFF around it (``ome=False`` keeps our description).
    """
    import tifffile

    data = _cells(_rng("cells"), 3, 256, 256)
    nc, nz, ny, nx = data.shape
    xml = _ome_xml((nc, nz, ny, nx), "cells")
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path,
        data.reshape(-1, *data.shape[2:]),
        photometric="minisblack",
        description=xml.encode("utf-8"),
        metadata=None,
        ome=False,
        software="imagedepot demo",
    )
