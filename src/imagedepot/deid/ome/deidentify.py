"""The entry point, :func:`deidentify_ome`: an OME-Zarr store or an OME-TIFF file."""

from __future__ import annotations

import logging
from pathlib import Path

from imagedepot.deid.ome.ometiff import _TIFF_SUFFIXES, _deid_tiff
from imagedepot.deid.ome.omezarr import _deid_zarr, _is_zarr_store
from imagedepot.deid.ome.report import OmeDeidReport
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError
from imagedepot.pixeltext.dicom import PixelTextSettings

log = logging.getLogger(__name__)


def deidentify_ome(
    src: Path,
    out: Path,
    *,
    policy_options: frozenset[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    pixel_text: PixelTextSettings | None = None,
    force: bool = False,
) -> OmeDeidReport:
    """De-identify the metadata of an OME-Zarr store or an OME-TIFF file, and remove its
    auxiliary images (slide label, macro, overview, thumbnail, preview) as the policy says;
    the pixels of the other images are unchanged.

    Parameters
    ----------
    src
        An OME-Zarr store (a folder named ``*.zarr`` or holding ``zarr.json``/``.zgroup``): copied,
        then ``OME/METADATA.ome.xml`` (any ``*.xml`` OME document) cleaned with
        :func:`clean_ome_xml` and the ``multiscales``/``omero`` image names, plate names and
        acquisition times of ``.zattrs``/``zarr.json``/``.zmetadata`` cleaned. Or a single-file
        (OME-)TIFF: copied, then the OME-XML ImageDescription rewritten in place (the old value
        zeroed), other ImageDescriptions blanked unless they only hold shapes, the DateTime tag
        handled like dates, and the DocumentName, PageName, Artist, HostComputer, Copyright and
        Micro-Manager tags blanked on every page. The pixel data bytes are not touched.
        In both, the auxiliary series are screened and removed as
        :mod:`imagedepot.deid.auxiliary` describes (``pixel_text.auxiliary_images``): from a
        store, their groups go and the others are renumbered, ``OME/series`` and the OME-XML
        follow; from an OME-TIFF, their IFDs are unlinked and their pixel bytes zeroed, the
        OME-XML follows. Each decision is in the report (``auxiliary_images``).
    out
        The output store (Zarr) or file (TIFF). For a TIFF, a path without a TIFF suffix is a
        folder that receives ``<pseudonym>.ome.tif``. Written atomically.
    policy_options, pseudonymizer, subject
        As for :func:`clean_ome_xml`.
    pixel_text
        The policy's ``pixel_text`` section (``auxiliary_images``, OCR settings); None: the
        defaults (every auxiliary image removed, nothing read).
    force
        Replace an existing output.

    Returns
    -------
    OmeDeidReport

    Raises
    ------
    InputError
        The input cannot be used, or an auxiliary image to remove cannot be removed safely
        (every image of a store is auxiliary; the first IFD of an OME-TIFF belongs to one...):
        the caller quarantines the item.
    """
    src, out = Path(src), Path(out)
    options = frozenset(policy_options)
    settings = pixel_text if pixel_text is not None else PixelTextSettings()
    if not src.exists():
        raise InputError(src, "input not found")
    if _is_zarr_store(src):
        report = _deid_zarr(
            src,
            out,
            options=options,
            pseudonymizer=pseudonymizer,
            subject=subject,
            pixel_text=settings,
            force=force,
        )
    elif src.is_file() and src.name.lower().endswith(_TIFF_SUFFIXES):
        target = out
        if not out.name.lower().endswith(_TIFF_SUFFIXES):
            target = out / f"{pseudonymizer.subject_id(subject)}.ome.tif"
        report = _deid_tiff(
            src,
            target,
            options=options,
            pseudonymizer=pseudonymizer,
            subject=subject,
            pixel_text=settings,
            force=force,
        )
    else:
        raise InputError(src, "not an OME-Zarr store or an OME-TIFF file")
    log.info(
        "de-identified %s metadata: %d OME-XML document(s), %d TIFF tag(s), %d Zarr name(s), "
        "%d auxiliary image(s) removed",
        report.format,
        report.xml_documents,
        sum(report.tiff_tags_cleaned.values()),
        report.zarr_names_replaced,
        sum(1 for d in report.auxiliary_images if d["action"] == "removed"),
    )
    return report
