"""DICOM series to NIfTI with ``dcm2niix``.

One call converts one series (the files of one SeriesInstanceUID, grouped by ``imagedepot scan``).
``dcm2niix`` reads a folder: the series' own folder when it holds exactly the listed files (no
other file, no subfolder), else a private temporary folder where the files are linked under
neutral names (``000000.dcm``...). The originals are never written to, and neither their names
nor their folders (which may carry PHI) reach the outputs or the report: in dcm2niix's messages
they become ``<input>/000000.dcm``... The output names come from ``name`` only; ``dcm2niix``'s
``%`` placeholders (patient name, IDs, dates...) are refused. Files in Deflated Explicit VR Little
Endian, which dcm2niix refuses, are inflated with pydicom into the private folder (pixel data
unchanged) and the conversion is run again.

The sidecar is written with ``-ba n`` (dcm2niix's own BIDS anonymisation off) on purpose: the NIfTI
de-identifier (:mod:`imagedepot.deid`) owns cleaning, applies the cohort's policy to the sidecar and
the NIfTI header (``descrip``, ``aux_file``) and must see everything that could leak in order to
record what it removed. An output of this step is therefore identifiable and stays in the trusted
zone until de-identified.

Several outputs from one series
-------------------------------
dcm2niix writes one NIfTI per volume it can stack. A series may give several: echoes of a
multi-echo sequence (``_e1``, ``_e2``...), slices in different orientations such as a three-plane
localizer (``_i00001``...), phase and magnitude (``_ph``), real and imaginary parts, overlays
(``_ROI1``), cardiac trigger times (``_t178``)... Every one is kept, with its sidecar (and
``.bval``/``.bvec`` for diffusion), and recorded in :attr:`ConvertReport.images
<imagedepot.convert.ConvertReport.images>` with:

* ``path``, ``sidecar`` (or None), ``extra_files``; ``shape``, ``dtype``, ``zooms`` (mm, then
  seconds), ``axcodes`` (:func:`nibabel.aff2axcodes`), ``scl_slope``/``scl_inter``;
* ``postfix``: what dcm2niix appended to ``name`` (``""`` for the plain output);
* ``echo``: the sidecar's ``EchoNumber`` (None when absent);
* ``flags``: from the postfix and the sidecar's ``ImageType``/``SeriesDescription``/
  ``ProtocolName`` (see :data:`POSTFIX_FLAGS` and :func:`output_flags`): ``localizer``,
  ``derived``, ``phase``, ``real``, ``imaginary``, ``overlay``, ``motion_corrected``, ``adc``,
  ``resampled``. Flags inform later steps (the BIDS layout sends localizers and derived images to
  their own folders); they never drop an output.

Rules for awkward series
------------------------
1. **No image** (structured reports, presentation states, key objects... alone in the "series"):
   :class:`NoImageError`, an :class:`~imagedepot.errors.InputError` whose reason says what the
   files are (read with pydicom, only on this failure path) and quotes dcm2niix.
2. **Irregular slice positions** (a missing slice, uneven spacing, gantry tilt): a NIfTI volume
   has one slice spacing and no shear, so the stacked output would put slices at the wrong place.
   dcm2niix then warns ``Interslice distance varies`` and also writes a resampled copy (``_Eq``
   for spacing, ``_Tilt`` for tilt). With ``irregular_slices="quarantine"`` (default) the series
   raises :class:`~imagedepot.errors.InputError` quoting dcm2niix. With ``"resample"`` only the
   resampled volumes are kept (flag ``resampled``; they get a copy of the stack's sidecar): their
   slices sit where the DICOM says, but voxel values between the acquired slices are
   interpolated. The dropped stack is named in :attr:`ConvertReport.messages`. Without a
   resampled copy the series is quarantined in both modes.
3. **Unknown slice direction** (dcm2niix: ``Unable to determine slice direction``) on an output
   with more than one slice: :class:`~imagedepot.errors.InputError` (slices may be flipped).
4. **Files left out** (duplicates removed by dcm2niix, a non-image object inside an image series):
   the outputs are kept and a message says how many input files are in no NIfTI and why.
5. **Read-back**: every NIfTI is opened with nibabel; a bad shape, an affine that is not finite or
   is singular, no qform/sform, non-finite scaling, or a data block shorter than the header says
   raises :class:`~imagedepot.errors.InputError`. The data block is checked by size (the gzip
   trailer of ``.nii.gz``), not decoded: the NIfTI de-identifier reads every byte next, with the
   gzip checksum.

Known limit: for Enhanced (multi-frame) MR files whose Manufacturer is Siemens or GE, dcm2niix
orders 4-D frames by vendor convention rather than by DimensionIndexValues; on synthetic files
that follow only the standard, volumes and slices come out interleaved without any warning (see
``tests/unit/convert/test_nifti_geometry.py::test_enhanced_4d_labelled_siemens``). Classic
single-frame series and 3-D enhanced files are not affected.

Modules: :mod:`.series` (:func:`convert_dicom_series`), :mod:`.inputs` (the series' files as
dcm2niix reads them), :mod:`.dcm2niix_tool` (finding, asking and running dcm2niix) and
:mod:`.outputs` (reading back and flagging its outputs; rules 2, 3 and 5).
"""

from __future__ import annotations

from imagedepot.convert.nifti.dcm2niix_tool import dcm2niix_version, find_dcm2niix
from imagedepot.convert.nifti.outputs import IRREGULAR_SLICE_MODES, check_nifti, output_flags
from imagedepot.convert.nifti.series import NAME_PATTERN, NoImageError, convert_dicom_series

__all__ = [
    "IRREGULAR_SLICE_MODES",
    "NAME_PATTERN",
    "NoImageError",
    "check_nifti",
    "convert_dicom_series",
    "dcm2niix_version",
    "find_dcm2niix",
    "output_flags",
]
