"""FHIR linkage: one transaction Bundle per dataset, built from de-identified outputs only.

:func:`bundle_dataset` builds a dataset's bundle from its clean items, runs the leak gate on it
and writes it; :func:`push_bundle` POSTs a bundle to a FHIR server.

* :mod:`~imagedepot.fhir.build`: what a bundle holds (:func:`build_bundle`), Device and Provenance.
* :mod:`~imagedepot.fhir.imaging`: ImagingStudy, Specimen, the Patient's characteristics, age.
* :mod:`~imagedepot.fhir.clinical`: Encounter, Condition and Observation of clinical records.
* :mod:`~imagedepot.fhir.bundle`: entries, stable full URLs, conditional creates, references.
* :mod:`~imagedepot.fhir.releases`: R5 and R4B shapes, validation with ``fhir.resources``.
* :mod:`~imagedepot.fhir.inputs`: items, DICOM studies read back, endpoints, source checksums.
* :mod:`~imagedepot.fhir.dataset`: one dataset from the stage folders, leak gate, status file.
* :mod:`~imagedepot.fhir.push`: the transaction POST with retries.
* :mod:`~imagedepot.fhir.terminology`: code and identifier systems, body parts.
"""

from __future__ import annotations

from imagedepot.fhir.build import BundleOptions, build_bundle
from imagedepot.fhir.bundle import BundleBuilder, check_references, urn_for
from imagedepot.fhir.clinical import clinical_resources
from imagedepot.fhir.dataset import ClinicalSettings, bundle_dataset, item_path
from imagedepot.fhir.inputs import EndpointSpec, ItemOutcome, endpoints_for, source_digest
from imagedepot.fhir.push import FhirPushError, push_bundle
from imagedepot.fhir.releases import RELEASES, FhirError, release
from imagedepot.fhir.terminology import BODY_PARTS, DICOM_UID_SYSTEM

__all__ = [
    "BODY_PARTS",
    "DICOM_UID_SYSTEM",
    "RELEASES",
    "BundleBuilder",
    "BundleOptions",
    "ClinicalSettings",
    "EndpointSpec",
    "FhirError",
    "FhirPushError",
    "ItemOutcome",
    "build_bundle",
    "bundle_dataset",
    "check_references",
    "clinical_resources",
    "endpoints_for",
    "item_path",
    "push_bundle",
    "release",
    "source_digest",
    "urn_for",
]
