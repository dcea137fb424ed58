"""Converters from instrument formats to open formats.

* :func:`imagedepot.convert.nifti.convert_dicom_series`: one DICOM series to NIfTI with a BIDS
  sidecar (``dcm2niix``).
* :func:`imagedepot.convert.microscopy.convert_to_ome_zarr` and
  :func:`imagedepot.convert.microscopy.convert_to_ome_tiff`: a microscopy image (every series of
  it) to OME-Zarr or to pyramidal OME-TIFF, read with tifffile or Bio-Formats
  (:mod:`imagedepot.convert.bioformats`).

This module holds what they share and imports no heavy library: the report every converter returns,
and the reader interface (:class:`ImageSource`) through which the microscopy writers stream pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

#: Axis order of every microscopy image handled here (OME-Zarr and OME-TIFF outputs alike).
AXES = ("t", "c", "z", "y", "x")


@dataclass
class ConvertReport:
    """What one conversion did.

    Attributes
    ----------
    step
        ``convert_nifti``, ``convert_ome_zarr`` or ``convert_ome_tiff``.
    inputs
        Input files, as given (DICOM series) or as used by the reader (every file of a multi-file
        image).
    outputs
        Output paths: the NIfTI, JSON, bval and bvec files, or the ``.ome.zarr`` folder or the
        ``.ome.tif`` file.
    input_count
        Number of input files.
    tool
        What converted: ``dcm2niix``, ``tifffile`` or ``bioformats`` (the reader for microscopy).
    versions
        Versions of the tools that touched the data (``dcm2niix``, ``bioformats``, ``tifffile``,
        ``zarr``...).
    arguments
        Exact command line of an external tool (``dcm2niix``), with temporary folders shown as
        ``<input>`` and ``<output>``.
    options
        The options of the call (levels, chunks, compression, NGFF version...).
    images
        One entry per output image: path, shape (for microscopy ``t, c, z, y, x``), dtype, physical
        sizes, channel names, pyramid levels; for NIfTI, shape, voxel sizes and orientation.
    messages
        Warnings and notes from the tool.
    reader_fallback
        Microscopy with ``reader="auto"``: set when the first reader (tifffile) could not read the
        file and Bio-Formats read it instead: ``from``, ``to`` and ``reason`` (what the first
        reader said). None when the first reader was used.
    """

    step: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    input_count: int = 0
    tool: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    reader_fallback: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


@dataclass
class SeriesInfo:
    """One image (series) of a microscopy file, as a reader sees it.

    Attributes
    ----------
    shape
        ``(t, c, z, y, x)`` sizes. RGB samples count as channels.
    dtype
        NumPy dtype name of the pixels (native byte order): ``uint8``, ``int16``, ``float32``...
    physical_size
        Pixel size in micrometres for ``x``, ``y``, ``z`` and the time increment in seconds for
        ``t``; ``None`` where the source does not say.
    channel_names, channel_colors
        Per channel: the name, and the display colour as ``RRGGBB`` hex; ``None`` where unknown.
    row_block
        Rows the reader decodes at once (strip or tile height; the plane height when the plane is
        stored as one block). Readers are asked for whole multiples of it.
    layout
        How the source's dimensions became ``t, c, z, y, x`` when that is not one to one (moduli
        moved into the channels, a line scan's Z or T taken back from Y...); None otherwise.
        Reported with the image.
    """

    index: int
    name: str | None
    shape: tuple[int, int, int, int, int]
    dtype: str
    physical_size: dict[str, float | None]
    channel_names: list[str | None]
    channel_colors: list[str | None]
    row_block: int = 0
    layout: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


class ImageSource(Protocol):
    """A microscopy file opened for streaming: metadata up front, pixels a band of rows at a time.

    Implementations: :class:`imagedepot.convert.microscopy.TiffSource` and
    :class:`imagedepot.convert.bioformats.BioFormatsSource`.
    """

    path: Path
    reader: str
    series: list[SeriesInfo]
    #: Notes for the report (e.g. resolutions in the source that are recomputed, not copied).
    notes: list[str]
    #: Set when ``reader="auto"`` fell back to this reader: ``from``, ``to``, ``reason``.
    fallback: dict[str, str] | None

    def read_rows(self, series: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Return rows ``y0:y1`` of one plane as a ``(y1 - y0, x)`` array of the series dtype."""
        ...

    def ome_xml(self) -> str:
        """OME-XML describing every series (the source's own where it has one)."""
        ...

    def used_files(self) -> list[str]:
        """Every file the reader opened (all files of a multi-file image)."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the reading library."""
        ...

    def close(self) -> None:
        """Release files (and Java objects)."""
        ...


__all__ = ["AXES", "ConvertReport", "ImageSource", "SeriesInfo"]
