"""Harvest the identifiers of the original inputs (:func:`harvest`), and their OCR-tolerant form
for text in pixels (:func:`text_identifiers`).

What is harvested
-----------------
Every file of the originals (folders are searched recursively; inside a Zarr store, only its
metadata files):

* DICOM files: every element, into sequences and private tags.
* NIfTI: the text fields of the header (``descrip``, ``aux_file``, ``db_name``, ``intent_name``...)
  and the text of every extension (DICOM extensions are harvested as DICOM, JSON ones as JSON).
* JSON files (BIDS sidecars, DICOM JSON model, Zarr metadata).
* OME-XML: ``*.ome.xml`` files such as ``OME/METADATA.ome.xml`` and the first ImageDescription of
  a TIFF; the TIFF ``Artist``, ``HostComputer`` and ``DateTime`` tags.
* ``extra`` strings given by the caller (the subject's original ID, clinical values...).

Which DICOM elements, JSON keys and OME-XML elements are identifying is
:mod:`imagedepot.identifiers.metadata`; which values are kept, and how they are matched,
:mod:`imagedepot.identifiers.matching`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError
from imagedepot.identifiers import Identifiers, as_text, dicom_kind, harvest_json, harvest_ome_xml
from imagedepot.leakcheck.formats import (
    DICOM_SUFFIXES,
    JSON_NAMES,
    TIFF_MAGIC,
    TIFF_SUFFIXES,
    dicom_values,
    is_nifti_name,
    load_nifti_header,
    nifti_texts,
    read_dicom,
    sniff,
    walk_dicom,
)
from imagedepot.pixeltext.identifiers import Identifiers as TextIdentifiers

log = logging.getLogger(__name__)


def _harvest_dicom_dataset(ds: Any, ids: Identifiers) -> None:
    for _location, elem in walk_dicom(ds):
        vr = str(getattr(elem, "VR", "") or "")
        kind = dicom_kind(getattr(elem, "keyword", "") or "", vr)
        if kind is None:
            continue
        for v in dicom_values(elem):
            if kind == "uid":
                for part in v.split("\\"):
                    ids.add_uid(part)
            else:
                for part in v.split("\\") if kind != "address" else [v]:
                    ids.add(part, kind)


def _harvest_tiff(path: Path, ids: Identifiers) -> None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            for tag in page.tags.values():
                value = tag.value
                if not isinstance(value, str | bytes):
                    continue
                text = as_text(value)
                if tag.code == 270 and "<OME" in text[:2048]:
                    harvest_ome_xml(text, ids)
                elif tag.code == 315:  # Artist
                    ids.add_person_name(text)
                    ids.add(text, "username")
                elif tag.code == 316:  # HostComputer
                    ids.add(text, "device")
                elif tag.code == 306:  # DateTime
                    ids.add_dates(text)
                elif tag.code == 51123:  # Micro-Manager metadata (JSON)
                    with contextlib.suppress(ValueError):
                        harvest_json(json.loads(text), ids)
    except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as exc:
        log.debug("not a readable TIFF, skipped in harvest: %s", type(exc).__name__)


def _harvest_nifti(path: Path, ids: Identifiers) -> None:
    hdr = load_nifti_header(path)
    if hdr is None:
        return
    for _location, content_kind, content in nifti_texts(hdr):
        if content_kind == "dicom":
            _harvest_dicom_dataset(content, ids)
            continue
        text = content.strip("\x00 ")
        if not text:
            continue
        if content_kind == "raw" and text[:1] in "{[":
            try:
                harvest_json(json.loads(text), ids)
                continue
            except ValueError:
                pass
        if content_kind == "raw" and text.lstrip().startswith("<") and "<OME" in text[:2048]:
            harvest_ome_xml(text, ids)
            continue
        ids.add_text(text)


def _iter_input_files(paths: Sequence[Path]) -> Iterator[Path]:
    """Every file of the inputs, skipping Zarr chunk files (only Zarr metadata files are read)."""
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(p, "original input not found")
        if p.is_file():
            yield p
            continue
        zarr_dirs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            in_zarr = (
                os.path.dirname(dirpath) in zarr_dirs
                or dirpath.lower().endswith(".zarr")
                or bool({"zarr.json", ".zgroup", ".zarray"} & set(filenames))
            )
            if in_zarr:
                zarr_dirs.add(dirpath)
            for name in sorted(filenames):
                if in_zarr and not (name in JSON_NAMES or name.lower().endswith((".json", ".xml"))):
                    continue
                yield Path(dirpath) / name


def harvest(originals: Sequence[Path], extra: Iterable[str] = ()) -> Identifiers:
    """Collect the identifiers of the original inputs.

    Parameters
    ----------
    originals
        Files or folders (searched recursively): DICOM, NIfTI (+ JSON sidecars), OME-TIFF,
        OME-Zarr (``OME/METADATA.ome.xml``) and any JSON file.
    extra
        More identifiers given by the caller (the subject's original ID, clinical values...),
        kind ``extra``; person-name parsing is not applied to them.

    Returns
    -------
    Identifiers
        See the module docstring for what is harvested, and :mod:`imagedepot.identifiers.matching`
        for the rules that drop values.
    """
    ids = Identifiers()
    n_files = 0
    for path in _iter_input_files(list(originals)):
        n_files += 1
        name = path.name.lower()
        suffix = path.suffix.lower()
        if is_nifti_name(name):
            _harvest_nifti(path, ids)
        elif suffix == ".json" or name in JSON_NAMES:
            try:
                harvest_json(json.loads(path.read_text(encoding="utf-8")), ids)
            except (ValueError, UnicodeDecodeError, OSError):
                log.debug("unreadable JSON skipped in harvest")
        elif name.endswith(".xml"):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if "<OME" in text[:4096]:
                harvest_ome_xml(text, ids)
        else:
            head = sniff(path)
            is_tiff = suffix in TIFF_SUFFIXES or head[:4] in TIFF_MAGIC
            if is_tiff:
                _harvest_tiff(path, ids)
            if head[128:132] == b"DICM":
                # also when it looks like a TIFF: a DICOM preamble may hold a TIFF header
                ds = read_dicom(path, force=False)
                if ds is not None:
                    _harvest_dicom_dataset(ds, ids)
            elif is_tiff:
                pass
            elif suffix in DICOM_SUFFIXES or suffix == "":
                ds = read_dicom(path, force=True)
                if ds is not None:
                    _harvest_dicom_dataset(ds, ids)
    for value in extra:
        ids.add(value, "extra")
    log.info("harvested %d identifiers from %d original files: %s", len(ids), n_files, ids.counts())
    return ids


def text_identifiers(originals: Sequence[Path], extra: Iterable[str] = ()) -> TextIdentifiers:
    """OCR-tolerant identifiers of the original DICOM headers and ``extra`` values."""
    from imagedepot.pixeltext.identifiers import from_dataset

    out = TextIdentifiers()
    for value in extra:
        out.add(value, "id")
    for path in _iter_input_files(list(originals)):
        if sniff(path)[128:132] != b"DICM":
            continue
        ds = read_dicom(path, force=False)
        if ds is not None:
            out.update(from_dataset(ds))
    return out
