"""Clinical records linked to de-identified imaging: read, re-key, shift, clean.

* :mod:`~imagedepot.clinical.reading`: CSV/TSV, FHIR Bundle and NDJSON input (:func:`read_clinical`).
* :mod:`~imagedepot.clinical.linking`: one subject's records re-keyed, dates shifted, free text
  checked (:func:`link_clinical`).
* :mod:`~imagedepot.clinical.records`: value sets (ICD-10, LOINC measurements) and record types.

The FHIR resources made of the linked facts are :mod:`imagedepot.fhir.clinical`.
"""

from __future__ import annotations

from imagedepot.clinical.linking import link_clinical, text_is_safe
from imagedepot.clinical.reading import read_clinical
from imagedepot.clinical.records import ICD10, ICD10_CM, ClinicalInput, ClinicalLinkage
from imagedepot.deid.pseudonym import date_mode

__all__ = [
    "ICD10",
    "ICD10_CM",
    "ClinicalInput",
    "ClinicalLinkage",
    "date_mode",
    "link_clinical",
    "read_clinical",
    "text_is_safe",
]
