"""Check outputs and release folders against independent readers, validators and spec models.

:func:`validate_path` checks one file or folder by its kind; :func:`validate_paths` walks
folders and checks every file by kind (one result each), which is the release check a data
steward runs on ``results/stage/<destination>`` before upload and that the deposit verbs run
first. The checkers, one module each:

=================  ==================================================================  ==========
kind               what is checked                                                      module
=================  ==================================================================  ==========
``dicom``          de-identification markers, private tags, IOD by ``dciodvfy``         dicom
``fhir-bundle``    ``fhir.resources`` models (R5 or R4B as declared), references        fhir
``pagetab``        PageTab JSON structure, root ``Study``, File Lists present           pagetab
``pagetab-tsv``    ``Submission`` / ``Study`` lines, File Lists present                 pagetab
``file-list``      ``Files`` first, every listed path present with its size             pagetab
``bagit``          ``bagit``: checksums and completeness                                bag
``ro-crate``       ``rocrate`` reads it; every local data entity present                crate
``manifest``       ``MANIFEST.sha256``: every checksum, nothing unlisted                 manifest
``ome-zarr``       ``ome-zarr-models``, arrays and labels readable                      ome
``ome-tiff``       ``ome-types`` OME-XML against the TIFF series                        ome
``nifti``          nibabel: shape, affine, scaling, data                                nifti
=================  ==================================================================  ==========

Walking a folder, an OME-Zarr folder is one result (not descended into); a bag is one result
and its files are walked too; files no checker handles are listed as skipped. Given
explicitly, a path of unknown kind is invalid. Nothing raises for a bad file: every problem is
listed in the result's ``errors``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from imagedepot.errors import ImagedepotError
from imagedepot.validate.base import ValidationResult
from imagedepot.validate.nifti import NIFTI_SUFFIXES, inspect_nifti
from imagedepot.validate.ome import TIFF_SUFFIXES, is_ome_zarr

log = logging.getLogger(__name__)

#: Names of folders never walked (temporaries and caches).
_SKIP_DIRS = frozenset({"__pycache__", ".snakemake"})


def detect_kind(path: str | Path) -> str:
    """What ``path`` is, from its layout, name and first bytes (``unknown`` when no checker
    handles it)."""
    from imagedepot.validate import bag, dicom, fhir, manifest, pagetab

    p = Path(path)
    name = p.name.lower()
    if is_ome_zarr(p):
        return "ome-zarr"
    if bag.is_bag(p):
        return "bagit"
    if p.is_dir():
        return "unknown"
    if p.name == manifest.MANIFEST_NAME:
        return "manifest"
    if name == "ro-crate-metadata.json":
        return "ro-crate"
    if name.endswith(TIFF_SUFFIXES):
        return "ome-tiff"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(".tsv"):
        return pagetab.tsv_kind(p) or "unknown"
    if name.endswith(".json"):
        doc = pagetab.read_json(p)
        if fhir.is_fhir_bundle(doc):
            return "fhir-bundle"
        if pagetab.is_pagetab(doc):
            return "pagetab"
        if pagetab.is_file_list_json(doc):
            return "file-list"
        return "unknown"
    if name.endswith(".dcm") or dicom.is_dicom(p):
        return "dicom"
    return "unknown"


def _check(p: Path, kind: str, result: ValidationResult, iod: bool) -> None:
    from imagedepot.validate import bag, crate, dicom, fhir, manifest, nifti, ome, pagetab

    if kind == "ome-zarr":
        ome.check_ome_zarr(p, result)
    elif kind == "ome-tiff":
        ome.check_ome_tiff(p, result)
    elif kind == "nifti":
        nifti.check_nifti(p, result)
    elif kind == "dicom":
        dicom.check_dicom(p, result, iod=iod)
    elif kind == "bagit":
        bag.check_bag(p, result)
    elif kind == "manifest":
        manifest.check_manifest(p, result)
    elif kind == "ro-crate":
        crate.check_crate(p, result)
    elif kind == "pagetab-tsv":
        pagetab.check_pagetab_tsv(p, result)
    elif kind in ("fhir-bundle", "pagetab", "file-list"):
        doc: Any = pagetab.read_json(p)
        if kind == "fhir-bundle":
            fhir.check_fhir_bundle(p, result, doc)
        elif kind == "pagetab":
            pagetab.check_pagetab(p, result, doc)
        elif doc is None:
            pagetab.check_file_list_tsv(p, result)
        else:
            pagetab.check_file_list_json(p, result, doc)
    else:
        result.errors.append(
            "no checker for this kind of file (DICOM, FHIR bundle, PageTab, File List, BagIt, "
            "RO-Crate, MANIFEST.sha256, OME-Zarr, OME-TIFF, NIfTI)"
        )


def validate_path(path: str | Path, *, iod: bool = True) -> ValidationResult:
    """Validate one file or folder by its kind (:func:`detect_kind`).

    ``iod=False`` skips the dciodvfy run on DICOM files. Never raises for a bad file.
    """
    p = Path(path)
    kind = detect_kind(p)
    result = ValidationResult(path=str(p), kind=kind)
    if not p.exists():
        result.errors.append("no such file or folder")
        return result
    try:
        _check(p, kind, result, iod)
    except Exception as exc:  # a checker's bug must not hide the other results
        log.exception("validate %s", p)
        result.errors.append(f"checker failed: {type(exc).__name__}: {exc}")
    return result


def _walk(folder: Path) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames.sort()
        keep = []
        for d in dirnames:
            sub = here / d
            if d in _SKIP_DIRS:
                continue
            if is_ome_zarr(sub):
                yield sub, "ome-zarr"
                continue
            if (sub / "bagit.txt").is_file():
                yield sub, "bagit"
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            p = here / f
            if p.is_file():
                yield p, detect_kind(p)


def validate_paths(paths: Iterable[str | Path], *, iod: bool = True) -> list[ValidationResult]:
    """Validate each path; folders are walked and every file checked by kind (see the module
    docstring). Results come in walking order, one per file, OME-Zarr folder or bag."""
    results: list[ValidationResult] = []
    for path in paths:
        p = Path(path)
        if not p.is_dir() or detect_kind(p) == "ome-zarr":
            results.append(validate_path(p, iod=iod))
            continue
        if detect_kind(p) == "bagit":
            results.append(validate_path(p, iod=iod))
        for item, kind in _walk(p):
            if kind == "unknown":
                results.append(ValidationResult(str(item), kind, skipped=True))
            else:
                results.append(validate_path(item, iod=iod))
    return results


class ReleaseCheckError(ImagedepotError):
    """A folder about to leave failed :func:`require_valid`; ``results`` has every check."""

    def __init__(self, message: str, results: list[ValidationResult]) -> None:
        self.results = results
        super().__init__(message)


#: Invalid paths named in a :class:`ReleaseCheckError` message (all are in its ``results``).
_NAMED = 10


def require_valid(folder: str | Path, what: str = "upload") -> list[ValidationResult]:
    """The release check: :func:`validate_paths` on ``folder``; raise
    :class:`ReleaseCheckError` naming the invalid files (and their first error) when any fails,
    or when nothing in it could be checked. Returns the results when all is valid."""
    results = validate_paths([folder])
    bad = [r for r in results if r.status == "invalid"]
    checked = [r for r in results if r.status != "skipped"]
    if not checked:
        raise ReleaseCheckError(f"refusing to {what} {folder}: nothing in it to check", results)
    if bad:
        lines = [f"{r.path} ({r.kind}): {r.errors[0]}" for r in bad[:_NAMED]]
        more = f"\n  ... and {len(bad) - _NAMED} more" if len(bad) > _NAMED else ""
        raise ReleaseCheckError(
            f"refusing to {what} {folder}: {len(bad)} of {len(checked)} file(s) fail "
            "`imagedepot validate`:\n  " + "\n  ".join(lines) + more,
            results,
        )
    log.info("release check: %d file(s) valid in %s", len(checked), folder)
    return results


__all__ = [
    "ReleaseCheckError",
    "ValidationResult",
    "detect_kind",
    "inspect_nifti",
    "require_valid",
    "validate_path",
    "validate_paths",
]
