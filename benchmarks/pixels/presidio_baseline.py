"""Baseline for burned-in text: Microsoft Presidio's ``DicomImageRedactorEngine`` told to redact
every word that Tesseract reads (Presidio's best case for recall).

Usage (in the Presidio venv made by ``benchmarks/pixels/setup_presidio.sh``)::

    bash benchmarks/pixels/setup_presidio.sh                 # once: makes .venv-presidio
    .venv-presidio/bin/python benchmarks/pixels/presidio_baseline.py \\
        --in-dir CORPUS --out-dir OUT > presidio.jsonl

Every ``*.dcm`` under ``--in-dir`` (recursively, sorted) is redacted into the same relative path
under ``--out-dir``, and one JSON line per file goes to stdout::

    {"file": "a/b.dcm", "seconds": 0.41, "seconds_total": 0.45,
     "boxes": [{"left": 22, "top": 25, "width": 119, "height": 20, "entity_type": "OCR_TEXT"}]}
    {"file": "c.dcm", "error": "TypeError: Cannot handle this data type: (1, 1, 512), |u1"}

``seconds`` is the Presidio call (OCR, analysis, boxes, fill); ``seconds_total`` adds reading and
writing the file. Boxes are in pixels of the stored image (identical boxes listed once; a word
that several recognizers hit keeps the first one's ``entity_type``). A file Presidio raises on is
reported with ``error`` and the loop goes on (nothing is written for it). Anything a library
prints goes to stderr, so stdout is only the JSON lines. :func:`run_subprocess` drives the CLI
from another interpreter (the project's own venv).

Why a separate venv: ``presidio-image-redactor`` 0.0.62 requires ``opencv-python<5`` (pip would
replace the project's opencv-python 5.x with 4.x) and brings python-gdcm, spaCy and the Azure
Document Intelligence client; the project's venv is left alone. The pins are in
``benchmarks/pixels/requirements-presidio.txt``.

Configuration (what this baseline runs, and why)
------------------------------------------------
NLP engine: a **blank spaCy pipeline**
    ``SpacyNlpEngine`` whose ``nlp`` is set to ``{"en": spacy.blank("en")}`` before the
    ``AnalyzerEngine`` sees it, so ``load()`` never runs: Presidio's default would load (and try to
    download) ``en_core_web_lg``, which cannot be installed here (no model downloads). The blank
    pipeline only tokenises: no NER, no lemmas, no vectors.
Recognizers (``--recognizer``)
    ``all`` (the baseline): **one catch-all** ``PatternRecognizer``, entity ``OCR_TEXT``, regex
    :data:`CATCH_ALL_REGEX` (a whitespace-separated token with at least one letter or digit,
    matched whole, so one result per OCR word), score 1.0, and nothing else in the registry. Every
    word Tesseract returns that has a letter or digit is redacted: "redact all text", Presidio's
    best case for recall; what is missed, Tesseract did not read. Tokens of punctuation only
    (``|``, ``--``) are not redacted (mostly OCR noise from edges).
    ``default``: Presidio's predefined recognizers (dates, phone and ID numbers, e-mail, ...; its
    spaCy NER recognizer finds nothing on the blank pipeline): Presidio out of the box, minus NER.
    ``metadata``: the header deny list (below) alone.
``use_metadata=True`` (Presidio's default; ``--no-metadata`` turns it off)
    The engine adds a deny-list ``PatternRecognizer`` (entity ``PERSON``, case-insensitive, whole
    words) built from the header: the value of every element whose name contains "name" or
    "patient" (PatientName, PatientID, PatientBirthDate, PatientSex, InstitutionName,
    ReferringPhysicianName, ...; not AccessionNumber nor the study dates), also with ``^``/``-``
    turned to spaces, upper/lower/title-cased and split into parts, plus ``M``, ``F``, ``X``,
    ``U`` and ``[M]`` ... It is a regex recognizer and works with the blank pipeline. With the
    catch-all it adds nothing (its hits are words already matched).
``fill="background"`` (Presidio's default is ``"contrast"``)
    Greyscale: each box is filled with the most common stored value of the four corner regions
    (``crop_ratio=0.75``, Presidio's default: corners of 0.375 x the size). On a clean black
    background that is the background (the text reads as blanked, as the project's own redactor
    fills); on a noisy background, where no grey level repeats much, the most common value is
    often the text's own (saturated) value, and the boxes come out white. ``"contrast"`` fills with
    (corner maximum - that value). Colour: the box takes the colour of the pixel nearest the
    image centre (Presidio shrinks the image to 1 x 1 with nearest-neighbour), or its inverse for
    ``"contrast"``. Either way the words' boxes are filled solid; a check that compares only the
    text pixels before and after can miss a fill that equals the text value.
``padding_width=25`` (Presidio's default)
    A 25-pixel border of the most common value is added around the 8-bit image before OCR (so
    text at the edge is read); boxes are shifted back. Boxes are Tesseract's word boxes exactly:
    Presidio does not grow them.
OCR: ``TesseractOCR`` with Presidio's defaults
    ``pytesseract.image_to_data`` with no extra options (``eng``, page segmentation 3), no
    confidence threshold, on Presidio's rendering: greyscale pixel data (after the VOI LUT when
    the header has a window) scaled to 0..255 *inverted* (``(max - v) / (max - min)``, whatever the
    photometric interpretation), colour data cast to 8 bits. ``OMP_THREAD_LIMIT=1`` is set for
    Tesseract unless already set (as the project's own engine runs it; on 2 cores it is also
    faster: about 0.4 s instead of 0.55 s for a 512 x 512 image).

Limitations (Presidio 0.0.62, pydicom 3.0, Pillow 13; measured on synthetic files)
    * multi-frame pixel data (``NumberOfFrames > 1``, grey or colour) raises ``TypeError: Cannot
      handle this data type`` (Presidio issues #1731 and #1737: only one frame would be analysed);
    * PALETTE COLOR raises ``ValueError: Invalid mode for data type`` (treated as RGB); only
      MONOCHROME1/2 are treated as grey, everything else as 8-bit, 3-sample colour;
    * MONOCHROME1 is rendered like MONOCHROME2 (same inversion), which Tesseract still read;
    * compressed pixel data is decoded and written back as RLE Lossless (through python-gdcm),
      whatever its transfer syntax was;
    * text over bright anatomy (low contrast after rescaling to 8 bits) is often not read, so not
      redacted;
    * a file without pixel data raises (reported as an error); a uniform image gives a NumPy
      warning and no boxes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: A token (whitespace-separated, matched whole) with at least one letter or digit.
CATCH_ALL_REGEX = r"(?<!\S)\S*[^\W_]\S*"
#: The entity type of the catch-all recognizer.
CATCH_ALL_ENTITY = "OCR_TEXT"
#: Defaults of :func:`redact` (see the module docstring).
DEFAULT_FILL = "background"
DEFAULT_PADDING = 25
DEFAULT_CROP_RATIO = 0.75
#: Which recognizers the analyzer has (see the module docstring).
RECOGNIZER_MODES = ("all", "default", "metadata")

_ENGINES: dict[str, Any] = {}


def build_engine(recognizer: str = "all") -> Any:
    """A ``DicomImageRedactorEngine`` on a blank spaCy pipeline with the chosen recognizers."""
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_image_redactor import (
        DicomImageRedactorEngine,
        ImageAnalyzerEngine,
        TesseractOCR,
    )

    if recognizer not in RECOGNIZER_MODES:
        raise ValueError(f"recognizer must be one of {RECOGNIZER_MODES}, not {recognizer!r}")
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract (a subprocess) reads it
    # The e-mail recognizer calls tldextract.extract, which fetches the public suffix list from
    # the web before it falls back to its bundled copy: use the bundled copy only.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
    nlp_engine.nlp = {"en": spacy.blank("en")}  # loaded: AnalyzerEngine will not call load()
    registry = RecognizerRegistry(supported_languages=["en"])
    if recognizer == "all":
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity=CATCH_ALL_ENTITY,
                name="CatchAllTokenRecognizer",
                patterns=[Pattern(name="any_token", regex=CATCH_ALL_REGEX, score=1.0)],
                supported_language="en",
            )
        )
    elif recognizer == "metadata":
        # A registry must not be empty (AnalyzerEngine would load the predefined recognizers):
        # one that never matches, so only the header deny list (use_metadata) is left.
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity="NOTHING",
                name="NeverMatches",
                patterns=[Pattern(name="never", regex=r"(?!)", score=0.0)],
                supported_language="en",
            )
        )
    # "default": the registry stays empty, so AnalyzerEngine loads Presidio's predefined
    # recognizers (its spaCy NER recognizer finds nothing on the blank pipeline).
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
    image_analyzer = ImageAnalyzerEngine(analyzer_engine=analyzer, ocr=TesseractOCR())
    return DicomImageRedactorEngine(image_analyzer_engine=image_analyzer)


def _engine(recognizer: str) -> Any:
    if recognizer not in _ENGINES:
        _ENGINES[recognizer] = build_engine(recognizer)
    return _ENGINES[recognizer]


def _plain(box: dict[str, Any]) -> dict[str, Any]:
    """A box of plain JSON types (Presidio's may hold numpy integers and floats)."""
    out: dict[str, Any] = {}
    for key, value in box.items():
        if hasattr(value, "item"):
            value = value.item()
        out[key] = value
    return out


def redact(
    src: Path,
    dst: Path,
    *,
    recognizer: str = "all",
    use_metadata: bool = True,
    fill: str = DEFAULT_FILL,
    padding_width: int = DEFAULT_PADDING,
    crop_ratio: float = DEFAULT_CROP_RATIO,
) -> dict[str, Any]:
    """Redact the burned-in text of the DICOM file ``src`` into ``dst`` with Presidio.

    Returns ``{"seconds": ..., "seconds_total": ..., "boxes": [...]}``: the time of the Presidio
    call, the time including reading and writing, and the boxes filled (``left``, ``top``,
    ``width``, ``height`` in pixels of the stored image, with Presidio's ``entity_type``;
    identical boxes listed once). Raises whatever Presidio or pydicom raises.
    """
    import pydicom

    engine = _engine(recognizer)
    t0 = time.perf_counter()
    ds = pydicom.dcmread(src)
    t1 = time.perf_counter()
    redacted, boxes = engine.redact_and_return_bbox(
        ds,
        fill=fill,
        padding_width=padding_width,
        crop_ratio=crop_ratio,
        use_metadata=use_metadata,
    )
    t2 = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    redacted.save_as(dst)
    t3 = time.perf_counter()
    unique: list[dict[str, Any]] = []
    seen: set[tuple[int, int, int, int]] = set()
    for box in map(_plain, boxes):
        key = (box["left"], box["top"], box["width"], box["height"])
        if key not in seen:
            seen.add(key)
            unique.append(box)
    return {
        "seconds": round(t2 - t1, 4),
        "seconds_total": round(t3 - t0, 4),
        "boxes": unique,
    }


def _dicom_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--in-dir", type=Path, required=True, help="searched for *.dcm")
    parser.add_argument("--out-dir", type=Path, required=True, help="redacted files, same tree")
    parser.add_argument(
        "--recognizer",
        choices=RECOGNIZER_MODES,
        default="all",
        help="all: every OCR'd word (the baseline); default: Presidio's predefined recognizers; "
        "metadata: only the header deny list",
    )
    parser.add_argument(
        "--no-metadata", action="store_true", help="use_metadata=False (no header deny list)"
    )
    parser.add_argument("--fill", choices=("background", "contrast"), default=DEFAULT_FILL)
    parser.add_argument("--padding", type=int, default=DEFAULT_PADDING, help="padding_width")
    args = parser.parse_args(argv)
    if not args.in_dir.is_dir():
        parser.error(f"--in-dir {args.in_dir} is not a directory")

    out = sys.stdout
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON lines
        _engine(args.recognizer)
        print(f"engine ready in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
        n = errors = 0
        for src in _dicom_files(args.in_dir):
            rel = src.relative_to(args.in_dir)
            record: dict[str, Any] = {"file": rel.as_posix()}
            try:
                record.update(
                    redact(
                        src,
                        args.out_dir / rel,
                        recognizer=args.recognizer,
                        use_metadata=not args.no_metadata,
                        fill=args.fill,
                        padding_width=args.padding,
                    )
                )
            except Exception as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
                errors += 1
            n += 1
            print(json.dumps(record), file=out, flush=True)
        print(f"{n} files, {errors} errors, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def run_subprocess(
    python: str | Path, in_dir: Path, out_dir: Path, extra_args: Sequence[str] = ()
) -> Iterator[dict[str, Any]]:
    """Run this CLI with the interpreter ``python`` (the Presidio venv's) and yield its records.

    Needs nothing of Presidio in the calling interpreter; stderr passes through.
    """
    cmd = [str(python), str(Path(__file__).resolve()), "--in-dir", str(in_dir)]
    cmd += ["--out-dir", str(out_dir), *extra_args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                yield json.loads(line)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


if __name__ == "__main__":
    sys.exit(main())
