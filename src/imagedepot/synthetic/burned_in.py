"""A synthetic DICOM corpus with text burned into the pixel data, and its exact ground truth.

Everything here is made by code from a seed: the backgrounds are numpy imitations of what each
modality looks like (no real image is used), the identifiers are invented from lists of fake
names, and the corpus is therefore free of real patient data and released as CC0. The same seed
gives byte-identical files.

:func:`make_corpus` writes a mix of CT, MR, CR, DX, MG, US, SC and XA images: about half of them
carry overlays (patient name, ID, birth date, study date, accession number, institution,
technical annotations and allow-listed tokens such as ``L``/``R`` markers and ``5 cm`` scale
labels), the others are text free but textured (CT noise, speckle, grey-scale bars, tick marks)
so that a detector is tempted. ``cases.json`` next to the files lists every case with the
tight box of each text it drew (:class:`TextBox`); the DICOM headers carry the same fake
identifiers and never declare Burned In Annotation.

Grey levels
-----------
Each text is drawn at one of these values (stored pixel values unless said otherwise):

* *white*: the top of the stored range (``2**BitsStored - 1``; 2047 for the signed 12-bit CT);
  on MONOCHROME1 the bottom of the range (0), which a viewer shows as white;
* *grey*: 50-60 % of the display range, which is the file's VOI window for MR, CR, DX and MG
  (inverted on MONOCHROME1 so the text still displays brighter than the background), and for
  CT the range from air (-1000 HU) to white; 140 for 8-bit grey images; for colour images one
  of white, grey, yellow, green or cyan;
* CT only, case ``ct-full-only-*``: -650..-500 HU over air, which a full-range rendering shows
  but the soft-tissue window of the file (centre 40, width 400 HU) clips to black together with
  the air around it;
* CT only, case ``ct-window-only-*``: 200..240 HU over soft tissue, which the soft-tissue window
  shows brightly but a full-range rendering (padding at -3024 HU up to bone) hardly separates
  from the tissue.

Ground truth
------------
Every text is rendered alone into a Pillow ``L`` mask, the faint antialiasing fringe (mask
< 48) is dropped, and the box is the tight bounding box of the remaining ink. The text is then
alpha-blended into the quantised background by that mask, so every pixel that differs from the
text-free background lies in some box of its frame. Boxes of texts shown on the same frames
never overlap.

Modules: :mod:`.ground_truth` (:class:`TextBox`, :class:`CorpusCase`), :mod:`.fake_phi` (fake
identifiers), :mod:`.fonts` (fonts and ink), :mod:`.picture` and :mod:`.backgrounds` (background
pictures per modality), :mod:`.layout` (placing and burning texts), :mod:`.overlays` (what each
case draws), :mod:`.corpus_plan` (the cases of each scale, rendered); this module writes them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless

from imagedepot.errors import InputError
from imagedepot.synthetic.corpus_plan import _render_corpus, _render_series, _Rendered, _uid
from imagedepot.synthetic.fonts import MAX_INK, MIN_INK
from imagedepot.synthetic.ground_truth import KINDS, PHI_KEYS, CorpusCase, TextBox

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "MAX_INK",
    "MIN_INK",
    "PHI_KEYS",
    "CorpusCase",
    "TextBox",
    "load_cases",
    "make_corpus",
    "make_series",
]


CASES_FILE = "cases.json"
_FORMAT = "imagedepot-synthetic-burned-in"
_VERSION = 1


def _write(r: _Rendered, out: Path, seed: int) -> CorpusCase:
    pic = r.pic
    path = out / f"{r.name}.dcm"
    sop = _uid(seed, r.name, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(pic.sop_class)
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = pic.sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = _uid(seed, r.name, "study")
    ds.SeriesInstanceUID = _uid(seed, r.name, "series")
    ds.Modality = pic.modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if pic.modality in ("CT", "MR"):
        ds.FrameOfReferenceUID = _uid(seed, r.name, "for")
        ds.ImagePositionPatient = [-pic.cols / 2.0, -pic.rows / 2.0, 0.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    elif pic.modality not in ("CR", "DX", "MG"):
        ds.PatientOrientation = ""
    for keyword, value in r.header.items():
        setattr(ds, keyword, value)
    arr = r.pixels[0] if pic.frames == 1 else r.pixels
    ds.set_pixel_data(arr, pic.photometric, pic.bits_stored, generate_instance_uid=False)
    if r.rle:
        ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return CorpusCase(r.name, path, pic.modality, r.boxes, dict(r.phi), r.series)


def _write_cases(out: Path, cases: Sequence[CorpusCase], **info: Any) -> Path:
    doc = {
        "format": _FORMAT,
        "version": _VERSION,
        **info,
        "license": "CC0-1.0",
        "note": "synthetic images made by code; every identifier is fake",
        "cases": [c.to_dict(out) for c in cases],
    }
    path = out / CASES_FILE
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def make_corpus(
    out: str | os.PathLike[str], *, seed: int = 0, scale: str = "test"
) -> list[CorpusCase]:
    """Write the synthetic burned-in text corpus and its ground truth.

    Parameters
    ----------
    out
        Folder for the DICOM files (``<name>.dcm``) and ``cases.json``; created if missing,
        files of the same names are overwritten.
    seed
        Seeds every random choice; the same seed gives byte-identical files.
    scale
        ``"test"``: 36 files, the largest 1280 x 1664 (mammograms), written in about a second or
        two. ``"bench"``: 195 files, mostly 512 x 512, with four full-size 2560 x 3328
        mammograms, for benchmarks.

    Returns
    -------
    list of CorpusCase
        In the order of ``cases.json``. About half are text free (every modality).
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    cases = [_write(r, root, seed) for r in _render_corpus(seed, scale)]
    _write_cases(root, cases, seed=seed, scale=scale)
    logger.info(
        "wrote %d synthetic cases (%d text free) under %s",
        len(cases),
        sum(c.text_free for c in cases),
        root,
    )
    return cases


def make_series(
    out: str | os.PathLike[str],
    *,
    slices: int = 20,
    rows: int = 512,
    text_slices: Sequence[int] = (),
    seed: int = 0,
) -> list[CorpusCase]:
    """Write a volumetric CT series with name and ID burned into some slices only.

    The slices (``ct-series-s000.dcm`` ...) share the Study, Series and Frame of Reference
    UIDs; Instance Number increases from 1 and Image Position Patient steps 2.5 mm along z.
    The cases are added to ``out/cases.json`` (replacing cases of the same names).

    Parameters
    ----------
    out
        Folder for the files; created if missing.
    slices
        Number of slices.
    rows
        Rows and columns of each (square) slice; from 256 up the overlay always fits, below
        a ``ValueError`` may say it does not.
    text_slices
        0-based slice indices that get the name and ID overlay, at the same place on each.
    seed
        Seeds every random choice.

    Returns
    -------
    list of CorpusCase
        One per slice in slice order, all with the same :attr:`CorpusCase.series`.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rendered = _render_series(
        "ct-series", slices=slices, rows=rows, text_slices=tuple(text_slices), seed=seed
    )
    cases = [_write(r, root, seed) for r in rendered]
    names = {c.name for c in cases}
    previous = load_cases(root) if (root / CASES_FILE).is_file() else []
    _write_cases(root, [c for c in previous if c.name not in names] + cases, seed=seed)
    return cases


def load_cases(out: str | os.PathLike[str]) -> list[CorpusCase]:
    """Read the ground truth written by :func:`make_corpus` or :func:`make_series`.

    Paths in ``cases.json`` are relative to ``out``; the returned cases carry ``out / path``.
    """
    root = Path(out)
    path = root / CASES_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no ground truth here; write it with make_corpus") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise InputError(path, f"not a {_FORMAT} file")
    return [CorpusCase.from_dict(d, root) for d in doc["cases"]]
