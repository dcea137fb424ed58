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

Modules: :mod:`.moduli` (the moduli and the plan), :mod:`.xml_remap` (the OME-XML rewrite) and
:mod:`.lif` (Leica LIF).
"""

from __future__ import annotations

from imagedepot.convert.axes.lif import LifDimension, LifLayout, lif_dimensions, lif_layout
from imagedepot.convert.axes.moduli import (
    MODULO_NAMESPACE,
    Modulo,
    ModuloPlan,
    expand_channels,
    modulo,
    parse_xml_moduli,
    plan_moduli,
)
from imagedepot.convert.axes.xml_remap import XmlRemap, remap_for_moduli, remap_ome_xml

__all__ = [
    "MODULO_NAMESPACE",
    "LifDimension",
    "LifLayout",
    "Modulo",
    "ModuloPlan",
    "XmlRemap",
    "expand_channels",
    "lif_dimensions",
    "lif_layout",
    "modulo",
    "parse_xml_moduli",
    "plan_moduli",
    "remap_for_moduli",
    "remap_ome_xml",
]
