"""Identifying values in metadata: DICOM elements, JSON documents and OME-XML.

What each holds that identifies (kinds as in :data:`imagedepot.identifiers.matching.KINDS`):

* DICOM (every element, into sequences and private tags): person names (PN) and their family,
  given and middle parts; patient IDs, other patient IDs, issuer, accession number, study ID and
  other request/admission IDs; the birth date (kind ``birth_date``); every DA/DT value; patient
  and institution addresses; telephone numbers; institution name and department; station name and
  device serial number; every UID (UI) except SOP class and transfer syntax UIDs (keywords ending
  in ``ClassUID``, ``TransferSyntaxUID``, or values under ``1.2.840.10008.``).
* JSON (BIDS sidecars, DICOM JSON model): the values of identifying keys (``PatientName``,
  ``PatientID``, ``PatientBirthDate``, ``InstitutionName``, ``StationName``, keys ending in
  ``Date``/``DateTime``/``UID``...).
* OME-XML: experimenter names, e-mails, institutions and user names, group names, acquisition
  dates, timestamps, instrument serial and lot numbers, comments and descriptions.

De-identification (:mod:`imagedepot.deid.nifti`) harvests sidecars with :func:`harvest_json`;
the leak gate (:mod:`imagedepot.leakcheck.harvesting`) harvests whole original inputs with all
three.
"""

from __future__ import annotations

import re
from typing import Any

from imagedepot.identifiers.matching import Identifiers, fold
from imagedepot.safeload import local_name, parse_xml

_DICOM_ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "IssuerOfAdmissionID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "MedicalRecordLocator",
        "ServiceEpisodeID",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
    }
)
_DICOM_INSTITUTION_KEYWORDS = frozenset(
    {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName"}
)
#: UIDs that name a syntax or a coding scheme, not an instance: kept by de-identification.
_DICOM_NON_INSTANCE_UIDS = frozenset(
    {
        "TransferSyntaxUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "ContextUID",
    }
)
_DICOM_DEVICE_KEYWORDS = frozenset({"StationName", "DeviceSerialNumber", "DetectorID", "DeviceID"})


def dicom_kind(keyword: str, vr: str) -> str | None:
    """Kind of identifier a DICOM element holds, from its keyword and VR (None: not harvested)."""
    if keyword == "PatientBirthDate":
        return "birth_date"
    if vr == "PN":
        return "person_name"
    if vr in ("DA", "DT"):
        return "date"
    if vr == "UI":
        if keyword.endswith("ClassUID") or keyword in _DICOM_NON_INSTANCE_UIDS:
            return None
        return "uid"
    if keyword in _DICOM_ID_KEYWORDS:
        return "id"
    if keyword in _DICOM_INSTITUTION_KEYWORDS:
        return "institution"
    if keyword in _DICOM_DEVICE_KEYWORDS:
        return "device"
    if keyword.endswith("Address"):
        return "address"
    if keyword.endswith(("TelephoneNumbers", "TelecomInformation")):
        return "phone"
    return None


def _norm_key(key: str) -> str:
    return re.sub(r"[^0-9a-z]", "", key.lower())


_JSON_KEY_KINDS: dict[str, str] = {
    _norm_key(k): v
    for k, v in {
        "PatientName": "person_name",
        "OtherPatientNames": "person_name",
        "PatientBirthName": "person_name",
        "PatientMotherBirthName": "person_name",
        "ReferringPhysicianName": "person_name",
        "PerformingPhysicianName": "person_name",
        "OperatorsName": "person_name",
        "OperatorName": "person_name",
        "PhysiciansOfRecord": "person_name",
        "NameOfPhysiciansReadingStudy": "person_name",
        "RequestingPhysician": "person_name",
        "Experimenter": "person_name",
        "Author": "person_name",
        "PatientID": "id",
        "OtherPatientIDs": "id",
        "IssuerOfPatientID": "id",
        "AccessionNumber": "id",
        "StudyID": "id",
        "MedicalRecordLocator": "id",
        "PatientBirthDate": "birth_date",
        "InstitutionName": "institution",
        "InstitutionAddress": "institution",
        "InstitutionalDepartmentName": "institution",
        "PatientAddress": "address",
        "PatientTelephoneNumbers": "phone",
        "StationName": "device",
        "DeviceSerialNumber": "device",
        "ComputerName": "device",
        "HostComputer": "device",
        "UserName": "username",
        "User": "username",
        "Email": "email",
    }.items()
}


def _json_key_kind(key: str) -> str | None:
    nk = _norm_key(key)
    if nk in _JSON_KEY_KINDS:
        return _JSON_KEY_KINDS[nk]
    if nk.endswith("birthdate"):
        return "birth_date"
    if nk.endswith(("date", "datetime")):
        return "date"
    if nk.endswith("uid") and not nk.endswith(("classuid", "transfersyntaxuid")):
        return "uid"
    return None


def harvest_json(obj: Any, ids: Identifiers | None = None) -> Identifiers:
    """Add the identifying values of a parsed JSON document (sidecar, DICOM JSON model) to
    ``ids`` (a new :class:`Identifiers` when None) and return it."""
    ids = Identifiers() if ids is None else ids
    _harvest_json(obj, ids)
    return ids


def _harvest_json(obj: Any, ids: Identifiers) -> None:
    from pydicom.datadict import keyword_for_tag

    if isinstance(obj, dict):
        for key, value in obj.items():
            key = str(key)
            # DICOM JSON model: {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "..."}]}}
            if re.fullmatch(r"[0-9A-Fa-f]{8}", key) and isinstance(value, dict) and "vr" in value:
                tag = int(key, 16)
                kind = dicom_kind(keyword_for_tag(tag) or "", str(value["vr"]))
                for v in value.get("Value", []) or []:
                    if isinstance(v, dict) and kind == "person_name":
                        for group in v.values():
                            ids.add(group, kind)
                    elif isinstance(v, dict):
                        _harvest_json(v, ids)
                    elif kind is not None:
                        ids.add(v, kind)
                continue
            kind = _json_key_kind(key)
            if kind is not None and isinstance(value, str | int):
                ids.add(value, kind)
            elif kind is not None and isinstance(value, list):
                for v in value:
                    if isinstance(v, str | int):
                        ids.add(v, kind)
            else:
                _harvest_json(value, ids)
    elif isinstance(obj, list):
        for v in obj:
            _harvest_json(v, ids)


def harvest_ome_xml(text: str, ids: Identifiers) -> None:
    try:
        root = parse_xml(text)
    except ValueError:
        ids.add_dates(text)
        return
    for el in root.iter():
        name = local_name(el.tag)
        a = el.attrib
        if name == "Experimenter":
            parts = [a.get(k, "") for k in ("FirstName", "MiddleName", "LastName")]
            if any(parts):
                given, middle, family = parts
                ids.add_person_name(f"{family}^{given}^{middle}")
            if a.get("Email"):
                ids.add(a["Email"], "email")
            if a.get("Institution"):
                ids.add(a["Institution"], "institution")
            if a.get("UserName"):
                ids.add(a["UserName"], "username")
        elif name in ("ExperimenterGroup", "Project", "Dataset", "Screen", "Plate", "Folder"):
            if a.get("Name") and name == "ExperimenterGroup":
                ids.add(a["Name"], "text")
        elif name in ("AcquisitionDate",) or name == "TimestampAnnotation":
            ids.add_dates("".join(el.itertext()))
        elif name in ("Description", "CommentAnnotation", "RightsHolder"):
            ids.add_text("".join(el.itertext()))
        elif name == "M":
            key = fold(a.get("K", ""))
            value = (el.text or "").strip()
            if any(w in key for w in ("user", "operator", "experimenter", "owner", "author")):
                ids.add_person_name(value)
                ids.add(value, "username")
            elif "date" in key or "time" in key:
                ids.add_dates(value)
        for attr in ("SerialNumber", "LotNumber"):
            if a.get(attr):
                ids.add(a[attr], "device")
        if name == "WellSample" and a.get("Timepoint"):
            ids.add_dates(a["Timepoint"])
