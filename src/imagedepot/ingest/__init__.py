"""Ingest: find the inputs, group them into items, and account for every file.

DICOM files are grouped into studies and series by their UIDs (never by folder name), with or without a
file extension; DICOMDIR index files are set aside. Microscopy files count once per image (a multi-file
OME-TIFF set is one item). NIfTI files carry their JSON sidecar. Anything unreadable or not image data
is listed with the reason (the quarantine list): nothing is dropped silently, nothing is fatal.

Symbolic links are followed once when they point inside the inbox (:class:`InputWalk`); a link out of
the inbox, a dangling or looping link, or a second path to a file already found is a quarantined entry
of its own, so every entry of the inbox is counted.

Every DICOM file of a dataset must belong to the dataset's subject (:class:`SubjectCheck`): a file whose
Patient ID (or, where the sample sheet gives them, StudyInstanceUID / AccessionNumber) does not match is
quarantined, so another patient's file in a subject's folder is never staged under that subject's
pseudonym. Quarantine reasons never contain identifier values (they are written to ``results/``).

Modules: :mod:`.inventory` (:func:`scan`), :mod:`.walk` (:class:`InputWalk`), :mod:`.grouping`
(:func:`group_files`), :mod:`.dicom` (DICOM headers, :class:`SubjectCheck`), :mod:`.formats`
(NIfTI and microscopy files) and :mod:`.manifest` (:class:`Item`, :class:`Manifest`).
"""

from __future__ import annotations

from imagedepot.ingest.dicom import SUBJECT_ID_CHECKS, SubjectCheck, read_dicom_header
from imagedepot.ingest.formats import is_microscopy, is_nifti
from imagedepot.ingest.grouping import group_files
from imagedepot.ingest.inventory import scan
from imagedepot.ingest.manifest import Item, Manifest, files_fingerprint
from imagedepot.ingest.walk import InputWalk

__all__ = [
    "SUBJECT_ID_CHECKS",
    "InputWalk",
    "Item",
    "Manifest",
    "SubjectCheck",
    "files_fingerprint",
    "group_files",
    "is_microscopy",
    "is_nifti",
    "read_dicom_header",
    "scan",
]
