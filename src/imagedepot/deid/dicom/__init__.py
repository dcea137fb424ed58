"""De-identify DICOM files: PS3.15 Basic Application Level Confidentiality Profile plus options.

:func:`deidentify_dicom` reads DICOM Part 10 files (never modifying them), applies the profile
to every attribute, at every depth of every sequence and in the File Meta Information, and
writes new files named after their (remapped) SOP Instance UID, never after the input names.

What each resolved action (:func:`imagedepot.deid.profile.action_for`) does here:

Combination codes (``X/Z``, ``Z/D``, ``X/D``, ``X/Z/D``) are first resolved from the
attribute's type in the file's IOD (:func:`imagedepot.deid.profile.resolve_combination`,
types from :mod:`imagedepot.deid.iod`), so that no Type 1 attribute is emptied, no Type 2
removed and no Type 3 sequence left without items. ``X`` removed. ``Z`` emptied (an empty
sequence for a sequence the IOD has as Type 2 or that the tables do not know; removed where
it is Type 3 or not in the IOD, and logged as ``X``). ``D`` a dummy value of the VR
(``ANONYMIZED``, ``19000101``, ``0``...; a remapped UID for UIDs); for a sequence, the items
are kept and every value in them gets its own action, free text that the table does not list
becoming ``ANONYMIZED`` (Code Meaning too: code values and schemes stay, and name the concept),
so a Type 1 sequence such as Content Sequence or Verifying Observer Sequence keeps its structure
and none of its text.
``K`` kept; sequences are kept but every item is cleaned. ``U`` every UID value is
replaced by :meth:`Pseudonymizer.uid` (the same original gives the same replacement in every
file, every run with the same key, so references across a series and inside sequences stay
consistent); well-known UIDs of the DICOM registry (transfer syntaxes, SOP classes, coding
schemes) are kept. ``C`` (clean) depends on the value representation:

* DA, DT: shifted back by the subject's offset (:meth:`Pseudonymizer.shift_date`); a value
  that is not a date is emptied. TM: kept (the shift is whole days, so the time of day stays).
* Free text (LO, SH, ST, LT, UT, UC): names, IDs, birth dates, addresses and similar values
  of the file itself (collected before cleaning) are cut out, as are date-like strings, runs
  of six or more digits and e-mail addresses.
* AE titles: replaced by a keyed pseudonym (``AE`` + 12 characters).
* Sequences: kept, every item cleaned, and free text anywhere inside cleaned as above
  (coded values such as Code Value are left alone).
* Anything else (binary values, overlay and curve bitmaps): removed, as no cleaner could
  vouch for it.

Attributes the table does not list:

* Standard attributes are kept, except person names (removed), dates and times (treated like
  the table's date attributes: removed, shifted or kept per the longitudinal options) and UIDs
  that are not class or transfer-syntax UIDs (remapped like ``U``).
* Public tags unknown to pydicom's data dictionary and retired group lengths are removed.
* Private attributes are removed; under ``retain_safe_private`` the curated list in
  ``imagedepot/data/safe_private.json`` is kept (with its private creators).

A deid recipe (:mod:`imagedepot.deid.recipe`), when the policy names one, runs next, on what
the profile left: it can remove, empty, replace, add or shift more, never keep what the profile
removed; its actions are logged like the profile's, with ``"rule": "recipe:<line>"``.

Then at the top level: Patient's Name and Patient ID become the subject's pseudonym, and
Patient Identity Removed, De-identification Method (+ Code Sequence, CID 7050; the recipe's
hash as one more value of the text) and Longitudinal Temporal Information Modified (MODIFIED
also when the recipe moved dates) are set, whatever the recipe said. The File Meta Information
is rebuilt from scratch (PS3.15 E.1.1): only class, instance (remapped) and transfer syntax UIDs
survive, and the 128-byte preamble is zeroed.

Pixel data (:mod:`imagedepot.deid.pixels`): a file that may carry burned-in text (Burned In
Annotation YES; or absent with modality US, XA, RF, SC or OT or a Secondary Capture SOP class;
or matched by a pixel-cleaning rule, which exists because that kind of image carries text) is
refused (:class:`InputError`) unless the policy has ``clean_pixel_data`` and a rule that cleans
matches it; matching rules blank their rectangles in every frame (decoding compressed data; the
output is then uncompressed) and Burned In Annotation is set to NO. Otherwise the pixel data
element is copied byte for byte from the input (no decoding, no re-encoding). Under
``clean_recognizable_visual_features`` a file flagged as recognisable (Recognizable Visual
Features YES, or external-camera photography, modality XC, without that attribute) is refused:
this module does not deface images.

Inputs are checked fail-closed (:class:`InputError` naming the file): not DICOM Part 10, no
transfer syntax, no SOP Instance or Class UID, no Study or Series Instance UID, truncated (the
last element shorter than its length, a partial element after it, an unclosed sequence, image
attributes without pixel data; a file cut exactly between two non-pixel elements cannot be told
from a complete one), a Patient ID differing from the other files of the call, a duplicate
instance, a UID unfit for a file name, a recipe value that does not fit its attribute. DICOMDIR
files are skipped, and so, with ``skip_bad_files``, are files that are not DICOM at all (a
README, a JSON export beside the images: no DICM prefix and no DICOM attributes). Reading uses ``defer_size`` (:data:`DEFER_SIZE`): large values (pixel data,
private blobs) are not read unless needed, so refused files and removed blobs cost little.

Files can be processed by several worker processes (``workers``): each file is read, cleaned
and written by one worker, into the same temporary output folder; results come back in input
order, so outputs, report and action log do not depend on the number of workers. Caches (UIDs,
dates, rule decisions) are bounded, so a worker's memory does not grow with the number of files.

The package's modules, lowest first (a module imports only those above it):

* :mod:`~imagedepot.deid.dicom.reading`: reading inputs, the checks for truncated and
  non-DICOM files, DICOMDIR skipped
* :mod:`~imagedepot.deid.dicom.report`: :class:`DeidReport`
* :mod:`~imagedepot.deid.dicom.action_log`: the per-file action log (hashed old values)
* :mod:`~imagedepot.deid.dicom.plan`: the compiled profile plan (tag -> operation) and the
  safe-private list
* :mod:`~imagedepot.deid.dicom.remap`: UID, date and AE remapping, scrubbing free text
* :mod:`~imagedepot.deid.dicom.dataset`: applying the plan to a data set (sequences, private
  tags, dummy and cleaned values)
* :mod:`~imagedepot.deid.dicom.pixel_cleaning`: pixel-cleaning rules, burned-in text (OCR),
  thumbnails, recognizable visual features
* :mod:`~imagedepot.deid.dicom.conformance`: De-identification Method and its Code Sequence
* :mod:`~imagedepot.deid.dicom.writing`: writing files (pixel data copied byte for byte)
* :mod:`~imagedepot.deid.dicom.engine`: the per-file engine (:class:`_Engine`)
* :mod:`~imagedepot.deid.dicom.sampling`: which slices of a series the text detector reads
* :mod:`~imagedepot.deid.dicom.workers`: worker processes and results in input order
* :mod:`~imagedepot.deid.dicom.batch`: :func:`deidentify_dicom`
* :mod:`~imagedepot.deid.dicom.patients`: one folder of many patients
  (:func:`find_patients`, :func:`deidentify_dicom_patients`)
"""

from __future__ import annotations

from imagedepot.deid.dicom.action_log import ACTION_HASH_CHARS
from imagedepot.deid.dicom.batch import deidentify_dicom
from imagedepot.deid.dicom.engine import _Engine
from imagedepot.deid.dicom.patients import deidentify_dicom_patients, find_patients, infer_subject
from imagedepot.deid.dicom.plan import safe_private_attributes
from imagedepot.deid.dicom.report import DeidReport

__all__ = [
    "ACTION_HASH_CHARS",
    "DeidReport",
    "_Engine",
    "deidentify_dicom",
    "deidentify_dicom_patients",
    "find_patients",
    "infer_subject",
    "safe_private_attributes",
]
