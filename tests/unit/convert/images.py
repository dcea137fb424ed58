"""Small microscopy test images written with tifffile, and an independent 2x2 mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def pattern(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Random pixels over the dtype's useful range (distinct per position)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.normal(100.0, 30.0, size=shape).astype(dt)
    hi = min(int(np.iinfo(dt).max), 60000)
    lo = max(int(np.iinfo(dt).min), -1000)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)


def write_ome_tiff(path: Path, images: list[dict]) -> Path:
    """Write an OME-TIFF with one series per entry: ``data`` (TCZYX) and OME metadata keys."""
    with tifffile.TiffWriter(path, ome=True) as tw:
        for image in images:
            meta = {"axes": "TCZYX", **image.get("metadata", {})}
            tw.write(
                image["data"],
                metadata=meta,
                photometric="minisblack",
                tile=(16, 16),
                compression="zlib",
            )
    return path


def mean_2x2(a: np.ndarray) -> np.ndarray:
    """Reference 2x2 block mean over the last two axes (odd edges repeated), half to even."""
    pad = [(0, 0)] * (a.ndim - 2) + [(0, a.shape[-2] % 2), (0, a.shape[-1] % 2)]
    p = np.pad(a, pad, mode="edge").astype(np.float64)
    shape = (*p.shape[:-2], p.shape[-2] // 2, 2, p.shape[-1] // 2, 2)
    m = p.reshape(shape).mean(axis=(-3, -1))
    if a.dtype.kind in "iu":
        m = np.rint(m)
    return m.astype(a.dtype)


def pyramid(a: np.ndarray, levels: int) -> list[np.ndarray]:
    """Reference pyramid of ``a`` (TCZYX)."""
    out = [a]
    for _ in range(1, levels):
        out.append(mean_2x2(out[-1]))
    return out


OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def write_multifile_ome_tiff(
    folder: Path,
    data: np.ndarray,
    *,
    name: str = "multi",
    physical_size: dict[str, float] | None = None,
    channel_names: list[str] | None = None,
) -> list[Path]:
    """Write ``data`` (TCZYX) as a multi-file OME-TIFF: one file per time point, each file with
    the whole OME-XML and ``TiffData`` blocks naming every file by UUID."""
    import uuid

    t_n, c_n, z_n, y_n, x_n = data.shape
    names = [f"{name}_t{t}.ome.tif" for t in range(t_n)]
    uids = [f"urn:uuid:{uuid.uuid4()}" for _ in range(t_n)]
    ps = physical_size or {}
    sizes = "".join(
        f' {key}="{ps[axis]}"'
        for axis, key in (
            ("x", "PhysicalSizeX"),
            ("y", "PhysicalSizeY"),
            ("z", "PhysicalSizeZ"),
            ("t", "TimeIncrement"),
        )
        if axis in ps
    )
    channels = "".join(
        f'<Channel ID="Channel:0:{c}" SamplesPerPixel="1"'
        + (f' Name="{channel_names[c]}"' if channel_names else "")
        + "/>"
        for c in range(c_n)
    )
    blocks = "".join(
        f'<TiffData FirstT="{t}" IFD="0" PlaneCount="{c_n * z_n}">'
        f'<UUID FileName="{names[t]}">{uids[t]}</UUID></TiffData>'
        for t in range(t_n)
    )
    paths = []
    for t in range(t_n):
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{OME_NS}" UUID="{uids[t]}">'
            f'<Image ID="Image:0" Name="{name}"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" '
            f'Type="{data.dtype.name}" SizeX="{x_n}" SizeY="{y_n}" SizeZ="{z_n}" SizeC="{c_n}" '
            f'SizeT="{t_n}"{sizes}>{channels}{blocks}</Pixels></Image></OME>'
        )
        path = folder / names[t]
        tifffile.imwrite(
            path,
            data[t].reshape(c_n * z_n, y_n, x_n),
            description=xml,
            metadata=None,
            photometric="minisblack",
        )
        paths.append(path)
    return paths


INSTRUMENTED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="urn:uuid:{uuid}">
<Instrument ID="Instrument:0">
  <Microscope Manufacturer="Acme" Model="Confocal 9" Type="Inverted"/>
  <Laser ID="LightSource:0" Wavelength="488" WavelengthUnit="nm" Type="SolidState"/>
  <Detector ID="Detector:0" Type="PMT" Model="GaAsP"/>
  <Objective ID="Objective:0" NominalMagnification="63" LensNA="1.4" Immersion="Oil"
             Correction="PlanApo"/>
</Instrument>
<Image ID="Image:0" Name="cells">
  <AcquisitionDate>2024-03-01T10:00:00</AcquisitionDate>
  <InstrumentRef ID="Instrument:0"/>
  <ObjectiveSettings ID="Objective:0" RefractiveIndex="1.518"/>
  <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SignificantBits="12" SizeX="40"
          SizeY="30" SizeZ="3" SizeC="2" SizeT="1" PhysicalSizeX="100" PhysicalSizeXUnit="nm"
          PhysicalSizeY="0.1" PhysicalSizeZ="0.5">
    <Channel ID="Channel:0:0" Name="GFP" SamplesPerPixel="1" ExcitationWavelength="488"
             EmissionWavelength="520" Fluor="EGFP">
      <LightSourceSettings ID="LightSource:0" Attenuation="0.1"/>
      <DetectorSettings ID="Detector:0" Gain="1.25"/>
    </Channel>
    <Channel ID="Channel:0:1" Name="DAPI" SamplesPerPixel="1" ExcitationWavelength="405"/>
    <TiffData IFD="0" PlaneCount="6"/>
    <Plane TheZ="2" TheC="1" TheT="0" ExposureTime="0.05" ExposureTimeUnit="s"/>
  </Pixels>
</Image>
</OME>
"""


def write_instrumented_ome_tiff(path: Path) -> np.ndarray:
    """An OME-TIFF with instrument, objective and channel settings, planes stored XYCZT."""
    import uuid

    data = pattern((1, 2, 3, 30, 40), "uint16", seed=9) >> 4  # 12 significant bits
    pages = np.transpose(data, (0, 2, 1, 3, 4)).reshape(6, 30, 40)  # c fastest, then z
    xml = INSTRUMENTED_XML.format(uuid=uuid.uuid4())
    tifffile.imwrite(path, pages, description=xml, metadata=None, photometric="minisblack")
    return data
