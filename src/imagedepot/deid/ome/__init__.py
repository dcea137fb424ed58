"""De-identify OME metadata: OME-XML, OME-TIFF files and OME-Zarr stores.

:func:`clean_ome_xml` edits the XML tree (any OME schema namespace; elements are matched by local
name) and keeps it schema-valid: only optional attributes and elements are removed, and every
reference still points to an element that exists. What it does:

* ``Experimenter``: ``FirstName``, ``MiddleName``, ``LastName``, ``Email``, ``Institution`` and
  ``UserName`` removed; the element stays with a neutral ID (``Experimenter:0``...), and every
  reference to it (``ExperimenterRef``, ``Leader``, ``Annotator``) is renumbered with it;
  ``ExperimenterGroup``: ``Name`` removed, neutral ID.
* Text annotations (``CommentAnnotation``, ``TagAnnotation``, ``TermAnnotation``,
  ``MapAnnotation``, ``XMLAnnotation`` (Bio-Formats original metadata), ``TimestampAnnotation``,
  ``FileAnnotation``) removed with the ``AnnotationRef`` elements that point to them; numeric and
  boolean annotations kept.
* Every ``Description`` element, the ``Rights`` element, the ``Text`` of ROI shapes, the ``Name``
  of projects, datasets, folders, screens, plates, experimenter groups and ROIs, and the
  ``ExternalIdentifier``/``ExternalDescription`` of plates and wells removed.
* ``Image/@Name`` replaced by ``image_<n>`` unless it is a generic name (``Series 1``, ``label``,
  ``macro image``, ``thumbnail``...: :func:`is_generic_name`).
* ``AcquisitionDate`` and ``WellSample/@Timepoint`` shifted under
  ``retain_longitudinal_modified_dates``, kept under ``retain_longitudinal_full_dates``, removed
  otherwise.
* ``SerialNumber`` and ``LotNumber`` of instrument parts removed unless
  ``retain_device_identity``.
* ``UUID/@FileName`` set to the output file name (or removed). XML comments are dropped.

Pixels, channels (names, colours, wavelengths), physical sizes, planes, instruments (manufacturer,
model, objective) and all IDs other than experimenters' are left as they are.

:func:`deidentify_ome` also removes the auxiliary images of slide scanners (slide label, macro,
overview, thumbnail, preview series: :func:`imagedepot.pixeltext.series.is_auxiliary_name`) as
the policy's ``pixel_text.auxiliary_images`` says, keeping the OME-XML and the Zarr layout
consistent (:mod:`imagedepot.deid.auxiliary`; :func:`imagedepot.deid.omexml.remove_ome_images`).
The OME-XML is read with :func:`imagedepot.safeload.parse_xml` and written with
:func:`imagedepot.deid.omexml.serialize_xml`.

Modules: :mod:`.clean` (OME-XML), :mod:`.omezarr` (OME-Zarr stores), :mod:`.ometiff` (OME-TIFF
files), :mod:`.report` (the report and the auxiliary-image step both share) and
:mod:`.deidentify` (:func:`deidentify_ome`).
"""

from __future__ import annotations

from imagedepot.deid.ome.clean import (
    NAMED_CONTAINERS,
    TEXT_ANNOTATIONS,
    clean_ome_xml,
    is_generic_name,
    is_ome_xml,
)
from imagedepot.deid.ome.deidentify import deidentify_ome
from imagedepot.deid.ome.ometiff import TIFF_TEXT_TAGS
from imagedepot.deid.ome.report import OmeDeidReport
from imagedepot.pixeltext.series import is_auxiliary_name
from imagedepot.safeload import parse_xml

__all__ = [
    "NAMED_CONTAINERS",
    "TEXT_ANNOTATIONS",
    "TIFF_TEXT_TAGS",
    "OmeDeidReport",
    "clean_ome_xml",
    "deidentify_ome",
    "is_auxiliary_name",
    "is_generic_name",
    "is_ome_xml",
    "parse_xml",
]
