"""Code systems, identifier systems and value maps of the bundles (DICOM body parts to SNOMED CT)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

DUO_SYSTEM = "http://purl.obolibrary.org/obo/duo.owl"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_UID_SYSTEM = "urn:dicom:uid"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ENDPOINT_TYPE_SYSTEM = "urn:imagedepot:endpoint-type"
ENDPOINT_SYSTEM = "urn:imagedepot:endpoint"
SOURCE_DIGEST_SYSTEM = "urn:imagedepot:source-sha256"
PIPELINE_SYSTEM = "urn:imagedepot:pipeline"
UID_NS = uuid.UUID("6f1c2a8e-3b1d-4f6e-9a57-2d7c1e9b0a41")
BIA_STUDY_URL = "https://www.ebi.ac.uk/biostudies/bioimages/studies/{accession}"


#: DICOM Body Part Examined → SNOMED CT (code, display), after PS3.16 Annex L.
BODY_PARTS: Mapping[str, tuple[str, str]] = {
    "ABDOMEN": ("113345001", "Abdominal structure"),
    "BRAIN": ("12738006", "Brain structure"),
    "BREAST": ("76752008", "Breast structure"),
    "CHEST": ("51185008", "Thoracic structure"),
    "CSPINE": ("122494005", "Cervical spine structure"),
    "EXTREMITY": ("66019005", "Limb structure"),
    "FOOT": ("56459004", "Foot structure"),
    "HAND": ("85562004", "Hand structure"),
    "HEAD": ("69536005", "Head structure"),
    "HEART": ("80891009", "Heart structure"),
    "HIP": ("24136001", "Hip joint structure"),
    "KNEE": ("72696002", "Knee region structure"),
    "LIVER": ("10200004", "Liver structure"),
    "LSPINE": ("122496007", "Lumbar spine structure"),
    "NECK": ("45048000", "Neck structure"),
    "PELVIS": ("12921003", "Pelvic structure"),
    "SHOULDER": ("16982005", "Shoulder region structure"),
    "TSPINE": ("122495006", "Thoracic spine structure"),
    "WHOLEBODY": ("38266002", "Entire body as a whole"),
}
