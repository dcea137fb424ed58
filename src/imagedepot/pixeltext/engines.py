"""The OCR engines, loaded from installed packages with no network.

Two engines, their boxes united (:mod:`imagedepot.pixeltext.detect`):

* RapidOCR's PP-OCRv4 models (ONNX, inside the ``rapidocr-onnxruntime`` wheel): the DB text
  detector gives a text-probability map; the CRNN recogniser reads each box at its own width.
  Run here with onnxruntime (and OpenCV) on the CPU, one thread per process (the workflow
  parallelises over processes; :func:`threads`).
* Tesseract 5 (Debian's ``tesseract-ocr`` with ``tesseract-ocr-eng``): the ``tesseract``
  program on a PNG on standard input, TSV out, page segmentation mode 11 (sparse text).

:func:`engine_info` gives what provenance records: engine names, versions and the SHA-256 of
every model file used. A missing engine is an :class:`EngineUnavailable` error; callers decide
(de-identification fails closed: no detector, no pass).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Detector input sides are multiples of this (the DB network's stride).
STRIDE = 32
#: Black pixels framing every detector input.
MARGIN = 16
#: Mean and scale of the detector's input normalisation (PP-OCR: (x/255 - 0.5) / 0.5).
_NORM = 0.5
#: Seconds a Tesseract call may take before it counts as failed.
TESSERACT_TIMEOUT = 120


class EngineUnavailable(RuntimeError):
    """An OCR engine or its model is not installed."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


@functools.cache
def rapidocr_models() -> dict[str, Path]:
    """Paths of the detector and recogniser models inside the installed wheel (found without
    importing the package, which loads its whole pipeline: that waits for the recogniser)."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(
            "rapidocr-onnxruntime is not installed (pip install rapidocr-onnxruntime)"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        raise EngineUnavailable("onnxruntime is not installed (pip install onnxruntime)")
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    models = {
        "det": root / "ch_PP-OCRv4_det_infer.onnx",
        "rec": root / "ch_PP-OCRv4_rec_infer.onnx",
    }
    for kind, path in models.items():
        if not path.is_file():
            raise EngineUnavailable(f"RapidOCR {kind} model missing from the wheel: {path.name}")
    return models


def threads() -> int:
    """Threads per process for onnxruntime and OpenCV: ``IMAGEDEPOT_OCR_THREADS``, default 1.

    The workflow runs one process per core; threads on top of that contend for the same cores
    (measured: OpenCV's own threads cost a third more CPU time per screened image).
    """
    return max(1, int(os.environ.get("IMAGEDEPOT_OCR_THREADS", "1")))


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


class DbDetector:
    """PP-OCRv4 DB text detector: an 8-bit image in, a text-probability map (same size) out."""

    def __init__(self) -> None:
        self.session = _session(rapidocr_models()["det"])
        self.input = self.session.get_inputs()[0].name

    def probability(self, img: np.ndarray) -> np.ndarray:
        """Probability of text per pixel of ``img``, as float32 H x W.

        ``img`` is H x W uint8, or H x W x C (C at most 3) uint8 whose planes are different
        renderings of the same pixels: the network's colour channels take one each (the first
        twice when there are two), so text that shows in any of them is found in one pass.

        The image is framed by :data:`MARGIN` black pixels (text touching the border is missed
        without context) and padded (not resized) to multiples of :data:`STRIDE`, so pixels keep
        their scale: callers upscale small text and tile large images themselves.
        """
        h, w = img.shape[:2]
        planes = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
        if not 1 <= len(planes) <= 3:
            raise ValueError(f"the detector takes 1 to 3 planes, given {len(planes)}")
        # the first rendering takes two of the three channels (measured: text that shows in
        # it alone is found as well as with it alone; with one channel each it is cut short)
        planes = [planes[0], *planes][:3] if len(planes) < 3 else planes
        m = MARGIN
        ph, pw = -(-(h + 2 * m) // STRIDE) * STRIDE, -(-(w + 2 * m) // STRIDE) * STRIDE
        batch = np.zeros((1, 3, ph, pw), dtype=np.float32)
        for c, plane in enumerate(planes):
            batch[0, c, m : m + h, m : m + w] = plane
        batch = (batch / 255.0 - _NORM) / _NORM
        out = self.session.run(None, {self.input: batch})[0]
        return np.asarray(out[0, 0, m : m + h, m : m + w], dtype=np.float32)


#: Narrowest recogniser input (pixels, at its height of 48): a crop is read at its own width,
#: not padded to RapidOCR's default of 320 (the network's cost grows with the width; measured on
#: the corpus's 794 crops: 21.3 -> 13.4 CPU s, readings the same but for spaces and a few
#: letters either way).
REC_MIN_WIDTH = 48


class Recognizer:
    """PP-OCRv4 CRNN recogniser: crops of text lines in, (text, confidence) out.

    Each crop is read alone at its own width (:data:`REC_MIN_WIDTH` at least): batches would
    pad every crop to the widest of them.
    """

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
        except ImportError as exc:  # pragma: no cover - same wheel as the models
            raise EngineUnavailable("rapidocr-onnxruntime recogniser not importable") from exc
        self.impl = TextRecognizer(
            {
                "model_path": os.fspath(rapidocr_models()["rec"]),
                "rec_batch_num": 1,
                "rec_img_shape": [3, 48, REC_MIN_WIDTH],
                "intra_op_num_threads": threads(),
                "inter_op_num_threads": 1,
                "use_cuda": False,
                "use_dml": False,
            }
        )

    def read(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence (0-1) of each crop (H x W uint8 grey)."""
        if not crops:
            return []
        import cv2

        bgr = [cv2.cvtColor(c, cv2.COLOR_GRAY2BGR) for c in crops]
        result, _ = self.impl(bgr)
        return [(str(t), float(s)) for t, s in result]


@dataclass(frozen=True)
class Word:
    """A word Tesseract found: box ``(x0, y0, x1, y1)`` (ends exclusive), text, confidence 0-1."""

    box: tuple[int, int, int, int]
    text: str
    confidence: float


@functools.cache
def tesseract_path() -> str | None:
    """The ``tesseract`` program, or ``None``."""
    return shutil.which("tesseract")


@functools.cache
def tesseract_version() -> str | None:
    """Tesseract's version line (``tesseract 5.3.0``), or ``None`` when it is not installed."""
    exe = tesseract_path()
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def tesseract_words(img: np.ndarray, *, psm: int = 11) -> list[Word]:
    """Words Tesseract reads in ``img`` (H x W uint8), one process call.

    Raises :class:`EngineUnavailable` when the program is missing or fails.
    """
    import cv2

    exe = tesseract_path()
    if exe is None:
        raise EngineUnavailable("tesseract is not installed (Debian: tesseract-ocr, -eng)")
    ok, png = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise EngineUnavailable("cannot encode the image for tesseract")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        proc = subprocess.run(
            [exe, "stdin", "stdout", "--psm", str(psm), "-l", "eng", "tsv"],
            input=png.tobytes(),
            capture_output=True,
            timeout=TESSERACT_TIMEOUT,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnavailable(f"tesseract failed ({type(exc).__name__})") from exc
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EngineUnavailable(f"tesseract failed: {msg[-1] if msg else proc.returncode}")
    words = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 12 or parts[0] != "5":
            continue
        text = parts[11].strip()
        try:
            x, y, w, h = (int(p) for p in parts[6:10])
            conf = float(parts[10])
        except ValueError:
            continue
        if text and conf >= 0:
            words.append(Word((x, y, x + w, y + h), text, conf / 100.0))
    return words


@functools.cache
def engine_info() -> dict[str, Any]:
    """Engines, versions and model SHA-256, for provenance (what is missing says so)."""
    info: dict[str, Any] = {}
    try:
        models = rapidocr_models()
        info["rapidocr"] = {
            "package": "rapidocr-onnxruntime",
            "version": _version("rapidocr-onnxruntime"),
            "onnxruntime": _version("onnxruntime"),
            "models": {
                kind: {"file": path.name, "sha256": _sha256(path)} for kind, path in models.items()
            },
        }
    except EngineUnavailable as exc:
        info["rapidocr"] = {"error": str(exc)}
    version = tesseract_version()
    info["tesseract"] = (
        {"program": "tesseract", "version": version, "language": "eng"}
        if version
        else {"error": "tesseract is not installed"}
    )
    return info
