"""Identifiers of a subject's original inputs: the set the leak gate looks for, and where
metadata holds them.

This package sits below de-identification (:mod:`imagedepot.deid`), clinical linkage
(:mod:`imagedepot.clinical`) and the leak gate (:mod:`imagedepot.leakcheck`), and imports none of
them: all three use the same set and the same harvesting of JSON and OME-XML metadata.

* :mod:`~imagedepot.identifiers.matching`: :class:`Identifiers`, the set of values with their
  kinds, the rules that drop values and the matcher (case, accents and separators ignored).
* :mod:`~imagedepot.identifiers.metadata`: which DICOM elements, JSON keys (BIDS sidecars, the
  DICOM JSON model) and OME-XML elements are identifying, and their harvesting.
"""

from __future__ import annotations

from imagedepot.identifiers.matching import KINDS, PLACEHOLDERS, STOPWORDS, Identifiers, as_text
from imagedepot.identifiers.metadata import dicom_kind, harvest_json, harvest_ome_xml

__all__ = [
    "KINDS",
    "PLACEHOLDERS",
    "STOPWORDS",
    "Identifiers",
    "as_text",
    "dicom_kind",
    "harvest_json",
    "harvest_ome_xml",
]
