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
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
    generate_uid,
)

from imagedepot.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["KINDS", "CorpusCase", "TextBox", "load_cases", "make_corpus", "make_series"]

#: The kinds of drawn text. ``safe`` is an allow-listed token (orientation marker ``L`` ``R``
#: ``A`` ``P`` ``H`` ``F``, scale label such as ``5 cm``); ``other`` is text that is neither an
#: identifier nor allow-listed (technical annotations such as ``kV 120`` or ``TR 500``).
KINDS = ("name", "id", "date", "accession", "institution", "other", "safe")

#: The header attributes whose values are drawn (keys of :attr:`CorpusCase.phi`).
PHI_KEYS = (
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "PatientBirthDate",
    "StudyDate",
    "InstitutionName",
)

SCALES = ("test", "bench")
CASES_FILE = "cases.json"
_FORMAT = "imagedepot-synthetic-burned-in"
_VERSION = 1


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextBox:
    """One drawn text and the tight box of its ink.

    Attributes
    ----------
    x0, y0, x1, y1
        Bounding box in pixel coordinates of the image (``x`` is the column, ``y`` the row);
        ``x1`` and ``y1`` are exclusive, so the ink is ``frame[y0:y1, x0:x1]``.
    text
        The string drawn.
    kind
        One of :data:`KINDS`.
    frames
        The 0-based frames that show the text; ``None`` means every frame.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    kind: str
    frames: tuple[int, ...] | None = None

    def on_frame(self, frame: int) -> bool:
        """True if the text is drawn on ``frame`` (0-based)."""
        return self.frames is None or frame in self.frames

    def to_dict(self) -> dict[str, Any]:
        """The box as JSON-ready values (``frames`` a list or ``None``)."""
        return {
            "x0": self.x0,
            "y0": self.y0,
            "x1": self.x1,
            "y1": self.y1,
            "text": self.text,
            "kind": self.kind,
            "frames": None if self.frames is None else list(self.frames),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextBox:
        """The inverse of :meth:`to_dict`."""
        frames = d.get("frames")
        return cls(
            x0=int(d["x0"]),
            y0=int(d["y0"]),
            x1=int(d["x1"]),
            y1=int(d["y1"]),
            text=str(d["text"]),
            kind=str(d["kind"]),
            frames=None if frames is None else tuple(int(f) for f in frames),
        )


@dataclass(frozen=True)
class CorpusCase:
    """One written DICOM file and its ground truth.

    Attributes
    ----------
    name
        Unique, file-name safe; the label of the variant and a number (``ct-corner-00``).
    path
        The DICOM file.
    modality
        The DICOM Modality (CT, MR, CR, DX, MG, US, SC, XA).
    boxes
        Every text drawn, empty for a text-free image.
    phi
        The fake identifying header values (keys :data:`PHI_KEYS`: PatientName as a DICOM PN
        such as ``DOE^JOHN``, PatientID, AccessionNumber, PatientBirthDate and StudyDate as
        ``YYYYMMDD``, InstitutionName). Drawn texts of kinds ``name`` ... ``institution`` are
        renderings of these; text-free cases carry them in the header only.
    series
        The SeriesInstanceUID shared by the slices of a volumetric series, else ``None``.
    """

    name: str
    path: Path
    modality: str
    boxes: tuple[TextBox, ...]
    phi: dict[str, str]
    series: str | None = None

    @property
    def text_free(self) -> bool:
        """True if no text is drawn in the image."""
        return not self.boxes

    def to_dict(self, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The case as JSON-ready values; ``path`` is made relative to ``root`` when given."""
        path = Path(self.path)
        if root is not None:
            path = path.relative_to(Path(root))
        return {
            "name": self.name,
            "path": path.as_posix(),
            "modality": self.modality,
            "series": self.series,
            "text_free": self.text_free,
            "phi": dict(self.phi),
            "boxes": [b.to_dict() for b in self.boxes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], root: str | os.PathLike[str] | None = None) -> CorpusCase:
        """The inverse of :meth:`to_dict` (a relative ``path`` is joined to ``root``)."""
        path = Path(d["path"])
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        return cls(
            name=str(d["name"]),
            path=path,
            modality=str(d["modality"]),
            boxes=tuple(TextBox.from_dict(b) for b in d.get("boxes", [])),
            phi={str(k): str(v) for k, v in d.get("phi", {}).items()},
            series=d.get("series"),
        )


# --------------------------------------------------------------------------------------------
# Fake identifiers
# --------------------------------------------------------------------------------------------

_SURNAMES = (
    "DOE", "SMITH", "GARCIA", "NGUYEN", "MUELLER", "ROSSI", "KOWALSKI", "OKAFOR", "TANAKA",
    "JOHANSSON", "MARTIN", "DUBOIS", "SILVA", "HOFFMANN", "OBRIEN", "PETROV", "LINDQVIST",
    "FERREIRA", "NAKAMURA", "ADEYEMI", "VAN DER BERG", "MORENO", "KLEIN", "BRENNAN", "WEBER",
    "FISCHER", "ALVAREZ", "HASSAN", "SCHMIDT", "CAMPBELL", "RAMIREZ", "BECKER",
)  # fmt: skip
_GIVEN_F = (
    "JANE", "MARIA", "ANNA", "SOFIA", "EMMA", "LUCIA", "HANNA", "GRACE", "AMARA", "YUKI",
    "ELENA", "CLARA", "INGRID", "FATIMA", "OLIVIA", "ROSA",
)  # fmt: skip
_GIVEN_M = (
    "JOHN", "PETER", "JAMES", "LUKAS", "MARCO", "DAVID", "AHMED", "KENJI", "OLAF", "TOMAS",
    "MIGUEL", "SAMUEL", "VIKTOR", "CHIDI", "PAUL", "HENRIK",
)  # fmt: skip
_INSTITUTIONS = (
    "NORTHFIELD GENERAL HOSPITAL", "ST. BRIGID MEDICAL CENTER", "LAKESIDE IMAGING CLINIC",
    "RIVERBEND UNIVERSITY HOSPITAL", "HIGHGATE RADIOLOGY", "MAPLE VALLEY HEALTH",
    "KLINIKUM SONNENBERG", "OSPEDALE SAN FAUSTO", "Westbrook Diagnostic Centre",
    "CLINIQUE DES TILLEULS",
)  # fmt: skip
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

#: Technical annotations per modality (kind ``other``).
_OTHER = {
    "CT": ("kV 120", "mA 250", "3.0 mm", "W 400 L 40", "Se 3", "Im 42", "HFS", "0.5 s"),
    "MR": ("TR 500", "TE 15", "T1 SE", "3.0 T", "FOV 240", "Se 5 Im 12", "ET 4", "NEX 2"),
    "CR": ("PA ERECT", "AP PORTABLE", "SUPINE", "kVp 110", "mAs 2.5", "EI 412"),
    "DX": ("PA ERECT", "AP SUPINE", "kVp 125", "mAs 3.2", "EI 388", "DAP 0.8"),
    "MG": ("kVp 29", "mAs 63", "Thk 52 mm", "12 daN", "W/Rh"),
    "US": ("MI 1.1", "TIs 0.3", "Gain 52", "DR 60", "FR 30 Hz", "C5-1", "ABD"),
    "SC": ("Page 1 of 2", "3D VR", "ZOOM 1.5", "Se 601", "Report"),
    "XA": ("LAO 30", "CRA 15", "15 fps", "FD 22 cm", "DAP 12.3"),
}
_SCALE_LABELS = ("5 cm", "10 mm", "2 cm", "1 cm", "50 mm")


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _date(rng: np.random.Generator, first: str, last: str) -> str:
    lo, hi = np.datetime64(first), np.datetime64(last)
    day = lo + np.timedelta64(int(rng.integers(int((hi - lo).astype(int)) + 1)), "D")
    return str(day).replace("-", "")


def _fake_phi(rng: np.random.Generator) -> tuple[dict[str, str], str, str]:
    """Fake header identifiers, the patient's sex and the study time (HHMMSS)."""
    sex = "F" if rng.random() < 0.5 else "M"
    given = _pick(rng, _GIVEN_F if sex == "F" else _GIVEN_M)
    surname = _pick(rng, _SURNAMES)
    style = int(rng.integers(3))
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, 9))
    pid = (digits[:7], digits[:8], "ZX" + digits[:6])[style]
    study = _date(rng, "2016-01-01", "2024-12-31")
    acc = ("A" + digits[1:8], study + digits[5:9], "RAD" + digits[2:8])[int(rng.integers(3))]
    phi = {
        "PatientName": f"{surname}^{given}",
        "PatientID": pid,
        "AccessionNumber": acc,
        "PatientBirthDate": _date(rng, "1930-01-01", "2012-12-31"),
        "StudyDate": study,
        "InstitutionName": _pick(rng, _INSTITUTIONS),
    }
    time = f"{int(rng.integers(7, 20)):02d}{int(rng.integers(60)):02d}{int(rng.integers(60)):02d}"
    return phi, sex, time


def _fmt_date(d: str, style: int) -> str:
    y, m, day = d[:4], d[4:6], d[6:8]
    return (
        f"{y}{m}{day}",
        f"{y}-{m}-{day}",
        f"{day}.{m}.{y}",
        f"{m}/{day}/{y}",
        f"{day}-{_MONTHS[int(m) - 1]}-{y}",
    )[style % 5]


def _fmt_name(pn: str, style: int) -> str:
    surname, given = pn.split("^", 1)
    return (pn, f"{surname}, {given}", f"{given} {surname}")[style % 3]


def _phi_texts(
    rng: np.random.Generator, phi: dict[str, str], time: str
) -> dict[str, tuple[str, str]]:
    """Renderings of the identifiers as overlays draw them: ``{field: (text, kind)}``."""
    ds = int(rng.integers(5))  # one date style per image, as a device would
    pid = phi["PatientID"]
    dob = _fmt_date(phi["PatientBirthDate"], ds)
    study = _fmt_date(phi["StudyDate"], ds)
    hhmm = f"{time[:2]}:{time[2:4]}"
    acc = phi["AccessionNumber"]
    return {
        "name": (_fmt_name(phi["PatientName"], int(rng.integers(3))), "name"),
        "id": (_pick(rng, (f"ID: {pid}", pid, f"MRN {pid}", f"Pat ID {pid}")), "id"),
        "dob": (_pick(rng, (f"DOB: {dob}", dob, f"Born {dob}")), "date"),
        "study": (_pick(rng, (study, f"{study} {hhmm}", f"Study: {study}")), "date"),
        "accession": (_pick(rng, (f"ACC {acc}", f"Acc#: {acc}", acc)), "accession"),
        "institution": (phi["InstitutionName"], "institution"),
    }


# --------------------------------------------------------------------------------------------
# Fonts and ink
# --------------------------------------------------------------------------------------------

_FONT_DIR = Path("/usr/share/fonts")  # Debian: fonts-dejavu-core, fonts-liberation
_FONT_FILES = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "LiberationSans-Regular.ttf")
#: Ink heights of drawn texts lie in [MIN_INK, MAX_INK] pixels.
MIN_INK, MAX_INK = 8, 20
#: Mask values below this (the faint antialiasing fringe) are not drawn.
_FRINGE = 48

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.cache
def _font_files() -> tuple[Path | None, ...]:
    """The font files found (in :data:`_FONT_FILES` order); ``(None,)`` = Pillow's default."""
    found: list[Path | None] = []
    for name in _FONT_FILES:
        hits = sorted(_FONT_DIR.rglob(name)) if _FONT_DIR.is_dir() else []
        if hits:
            found.append(hits[0])
    if not found:
        logger.warning("none of %s under %s; using Pillow's default font", _FONT_FILES, _FONT_DIR)
        found.append(None)
    return tuple(found)


@functools.cache
def _font(index: int, size: int) -> _Font:
    path = _font_files()[index]
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size)


def _cap_height(index: int, size: int) -> int:
    """Ink height of a capital ``H`` at ``size``."""
    _, top, _, bottom = _font(index, size).getbbox("H")
    return int(bottom) - int(top)


@functools.cache
def _font_size(index: int, cap: int) -> int:
    """The smallest font size whose capitals are at least ``cap`` pixels high."""
    size = max(6, round(cap * 100 / max(30, _cap_height(index, 100))) - 2)
    while _cap_height(index, size) < cap and size < 4 * cap:
        size += 1
    return size


@functools.cache
def _ink(index: int, size: int, text: str, antialias: bool) -> np.ndarray:
    """The text's mask (uint8, 0 = no ink), cropped to the tight box of its ink."""
    font = _font(index, size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    pad = 4
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    draw = ImageDraw.Draw(img)
    if not antialias:
        draw.fontmode = "1"  # crisp bitmap-like text, as many devices burn it
    draw.text((pad - left, pad - top), text, fill=255, font=font)
    mask = np.array(img, dtype=np.uint8)
    mask[mask < _FRINGE] = 0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"text {text!r} draws no ink")
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
    crop.flags.writeable = False
    return crop


# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------

Value = float | tuple[float, float, float]


@dataclass
class _Picture:
    """A text-free image in stored pixel units, and what is needed to draw text and a header.

    ``image`` is float32, ``(frames, rows, columns)`` or ``(frames, rows, columns, 3)``.
    ``display`` is the pair of stored values shown darkest and brightest (grey levels are
    fractions of it; reversed on MONOCHROME1). ``anatomy`` marks the body or the ultrasound
    sector, for texts placed on it.
    """

    modality: str
    sop_class: str
    image: np.ndarray
    photometric: str
    bits_stored: int
    signed: bool = False
    display: tuple[float, float] = (0.0, 255.0)
    anatomy: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    colours: tuple[tuple[float, float, float], ...] = ()

    @property
    def rows(self) -> int:
        return int(self.image.shape[1])

    @property
    def cols(self) -> int:
        return int(self.image.shape[2])

    @property
    def frames(self) -> int:
        return int(self.image.shape[0])

    @property
    def rgb(self) -> bool:
        return self.image.ndim == 4

    @property
    def vrange(self) -> tuple[int, int]:
        if self.signed:
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1

    @property
    def dtype(self) -> type[np.integer[Any]]:
        if self.bits_stored <= 8:
            return np.uint8
        return np.int16 if self.signed else np.uint16

    def white(self) -> float:
        lo, hi = self.vrange
        return float(hi if self.display[1] >= self.display[0] else lo)

    def grey(self, fraction: float) -> float:
        dark, bright = self.display
        return dark + fraction * (bright - dark)

    def quantised(self) -> np.ndarray:
        lo, hi = self.vrange
        return np.clip(np.rint(self.image), lo, hi).astype(self.dtype)


def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres normalised to [-1, 1]: ``y`` as (rows, 1), ``x`` as (1, cols)."""
    y = (np.arange(rows, dtype=np.float32) + 0.5) * np.float32(2.0 / rows) - 1.0
    x = (np.arange(cols, dtype=np.float32) + 0.5) * np.float32(2.0 / cols) - 1.0
    return y[:, None], x[None, :]


def _ell(y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Squared elliptical radius (< 1 inside)."""
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def _smooth(rng: np.random.Generator, rows: int, cols: int, cells: int) -> np.ndarray:
    """Smooth noise of unit-ish amplitude: a random grid upsampled bicubically."""
    grid = rng.standard_normal((cells, max(2, round(cells * cols / rows)))).astype(np.float32)
    img = Image.fromarray(grid).resize((cols, rows), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise (float32)."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


@dataclass(frozen=True)
class _CTShape:
    cx: float
    cy: float
    ax: float
    by: float
    abdomen: bool
    padding: bool
    phase: float
    gas: tuple[tuple[float, float, float], ...]


def _ct_shape(rng: np.random.Generator, *, abdomen: bool, padding: bool) -> _CTShape:
    gas = tuple(
        (
            float(rng.uniform(-0.3, 0.1)),
            float(rng.uniform(0.0, 0.45)),
            float(rng.uniform(0.02, 0.05)),
        )
        for _ in range(int(rng.integers(2, 6)))
    )
    return _CTShape(
        cx=float(rng.uniform(-0.04, 0.04)),
        cy=float(rng.uniform(-0.04, 0.08)),
        ax=float(rng.uniform(0.72, 0.86)),
        by=float(rng.uniform(0.5, 0.62)),
        abdomen=abdomen,
        padding=padding,
        phase=float(rng.uniform(0, 2 * math.pi)),
        gas=gas,
    )


def _ct_hu(
    s: _CTShape, rng: np.random.Generator, rows: int, cols: int, z: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like axial slice in HU and its body mask; ``z`` in [-1, 1] moves along the body."""
    y, x = _grid(rows, cols)
    ax, by = s.ax * (1 - 0.04 * z * z), s.by * (1 - 0.03 * z)
    r2 = _ell(y, x, s.cy, s.cx, by, ax)
    body = r2 < 1.0
    tex = _smooth(rng, rows, cols, 10)
    hu = np.where(body, 40.0 + 10.0 * tex, -1000.0)
    hu = np.where(body & (r2 > 0.8), -95.0 + 8.0 * tex, hu)  # subcutaneous fat
    theta = np.arctan2((y - s.cy) / by, (x - s.cx) / ax)
    ring = (r2 > 0.6) & (r2 < 0.68)
    if s.abdomen:
        hu = np.where(ring & (np.cos(theta * 10 + s.phase) > 0.6), 650.0, hu)  # lower ribs
        liver = _ell(y, x, s.cy - 0.12 * by, s.cx - 0.38 * ax, 0.55 * by, 0.38 * ax) < 1
        hu = np.where(liver, 60.0 + 6.0 * tex, hu)
        for side in (-1.0, 1.0):
            kid = _ell(y, x, s.cy + 0.4 * by, s.cx + side * 0.3 * ax, 0.2 * by, 0.1 * ax) < 1
            hu = np.where(kid, 30.0, hu)
        for gx, gy, gr in s.gas:
            blob = _ell(y, x, s.cy + gy * by, s.cx + gx * ax + 0.3 * ax, gr, gr) < 1
            hu = np.where(blob & body, -900.0, hu)
    else:
        hu = np.where(ring & (np.cos(theta * 16 + s.phase) > -0.2), 700.0, hu)  # bone ring
        vessels = _smooth(rng, rows, cols, 56)  # bright dots in the lungs
        lung_ry = 0.62 * by * math.sqrt(max(0.2, 1 - 0.6 * z * z))
        for side in (-1.0, 1.0):
            lung = _ell(y, x, s.cy - 0.06 * by, s.cx + side * 0.4 * ax, lung_ry, 0.3 * ax) < 1
            hu = np.where(lung, np.where(vessels > 1.4, -200.0, -850.0 + 30.0 * tex), hu)
        heart = _ell(y, x, s.cy + 0.12 * by, s.cx + 0.1 * ax, 0.36 * by, 0.26 * ax) < 1
        hu = np.where(heart, 45.0 + 5.0 * tex, hu)
    sp = _ell(y, x, s.cy + 0.62 * by, s.cx, 0.14 * by, 0.1 * ax)
    hu = np.where(sp < 1, np.where(sp < 0.55, 250.0, 850.0), hu)  # vertebra
    ty = s.cy + by + 0.05
    table = (np.abs(y - ty - 0.05 * (x - s.cx) ** 2) < 0.008) & (np.abs(x - s.cx) < 0.85)
    hu = np.where(table, 150.0, hu)
    hu = hu + _noise(rng, (rows, cols), 11.0)
    if s.padding:
        hu = np.where(x * x + y * y > 1.0, -3024.0, hu)  # outside the reconstruction circle
    return hu, body


def _ct_picture(hu: np.ndarray, body: np.ndarray, pixel: float) -> _Picture:
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "RescaleIntercept": -1024,
        "RescaleSlope": 1,
        "RescaleType": "HU",
        "WindowCenter": 40,
        "WindowWidth": 400,
        "PixelSpacing": [pixel, pixel],
        "SliceThickness": 3.0,
        "KVP": 120,
    }
    return _Picture(
        "CT",
        CTImageStorage,
        (hu + 1024.0)[np.newaxis],
        "MONOCHROME2",
        12,
        signed=True,
        display=(24.0, 2047.0),  # air (-1000 HU) .. white
        anatomy=body,
        attrs=attrs,
    )


def _mr(rng: np.random.Generator, size: int) -> _Picture:
    y, x = _grid(size, size)
    cy, cx = rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04)
    ry, rx = rng.uniform(0.8, 0.9), rng.uniform(0.64, 0.74)
    r2 = _ell(y, x, cy, cx, ry, rx)
    head = r2 < 1.0
    tex = _smooth(rng, size, size, 14)
    v = np.where(head, 1700.0 + 100.0 * tex, 0.0)  # scalp fat
    v = np.where(r2 < 0.86, 160.0, v)  # skull
    brain = 1000.0 + 220.0 * np.tanh(2.5 * tex) + 60.0 * _smooth(rng, size, size, 40)
    v = np.where(r2 < 0.78, brain, v)
    for side in (-1.0, 1.0):
        vent = _ell(y, x, cy - 0.05, cx + side * 0.09, 0.2, 0.05) < 1
        v = np.where(vent, 260.0, v)
    v = v * (1.0 + 0.15 * _smooth(rng, size, size, 3))
    n1 = _noise(rng, (size, size), 22.0)
    n2 = _noise(rng, (size, size), 22.0)
    v = np.sqrt((v + n1) ** 2 + n2**2)  # Rician noise
    c, w = float(round(rng.uniform(950, 1100))), float(round(rng.uniform(1900, 2300)))
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY", "M"],
        "WindowCenter": c,
        "WindowWidth": w,
        "PixelSpacing": [240.0 / size, 240.0 / size],
        "SliceThickness": 5.0,
        "MagneticFieldStrength": 3.0,
        "ScanningSequence": "SE",
        "SequenceVariant": "NONE",
    }
    return _Picture(
        "MR",
        MRImageStorage,
        v[np.newaxis],
        "MONOCHROME2",
        12,
        display=(c - w / 2, c + w / 2),
        anatomy=head,
        attrs=attrs,
    )


def _projection(
    d: np.ndarray, bits: int, mono1: bool, lo: float, hi: float
) -> tuple[np.ndarray, tuple[float, float], float, float]:
    """Brightness ``d`` (0..1) as stored values, the display pair and the window (C, W)."""
    top = 0.92 * (2**bits - 1)
    stored = (1.0 - d) * top + (2**bits - 1 - top) if mono1 else d * top
    w = (hi - lo) * top
    c = (lo + hi) / 2 * top
    if mono1:
        c = 2**bits - 1 - top + (1.0 - (lo + hi) / 2) * top
        return stored, (c + w / 2, c - w / 2), c, w
    return stored, (c - w / 2, c + w / 2), c, w


def _chest(rng: np.random.Generator, size: int, bits: int, mono1: bool, modality: str) -> _Picture:
    y, x = _grid(size, size)
    cx = rng.uniform(-0.05, 0.05)
    torso = _ell(y, x, 0.5, cx, 1.1, rng.uniform(0.82, 0.92)) < 1
    torso |= (np.abs(x - cx) < 0.14) & (y < -0.4)  # neck
    d = np.where(torso, 0.52, 0.05)
    for side in (-1.0, 1.0):
        lung = _ell(y, x, -0.02, cx + side * 0.37, 0.58, 0.26) < 1
        ribs = np.sin(2 * math.pi * (y * 5.0 + 2.2 * (np.abs(x - cx) - 0.3) ** 2)) > 0.6
        d = np.where(lung, np.where(ribs, 0.34, 0.22), d)
    heart = _ell(y, x, 0.25, cx + 0.08, 0.3, 0.25) < 1
    d = np.where(heart, 0.6, d)
    spine = (np.abs(x - cx) < 0.055) & torso
    d = np.where(spine, 0.7 + 0.04 * (np.sin(y * 60) > 0), d)
    d = d + 0.03 * _smooth(rng, size, size, 8) + _noise(rng, (size, size), 0.008)
    d = np.clip(d, 0.0, 1.0)
    stored, display, c, w = _projection(d, bits, mono1, 0.02, 0.85)
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "WindowCenter": round(c),
        "WindowWidth": round(w),
        "ImagerPixelSpacing": [0.17, 0.17],
        "BodyPartExamined": "CHEST",
        "ViewPosition": "PA",
        "PatientOrientation": ["R", "F"],
    }
    if modality == "DX":
        attrs["PresentationIntentType"] = "FOR PRESENTATION"
        sop = DigitalXRayImageStorageForPresentation
    else:
        sop = ComputedRadiographyImageStorage
    photometric = "MONOCHROME1" if mono1 else "MONOCHROME2"
    return _Picture(
        modality, sop, stored[np.newaxis], photometric, bits, display=display, anatomy=torso,
        attrs=attrs,
    )  # fmt: skip


def _mammo(
    rng: np.random.Generator, rows: int, cols: int, bits: int, mono1: bool, right: bool, mlo: bool
) -> _Picture:
    y, _ = _grid(rows, cols)
    u = (np.arange(cols, dtype=np.float32) + 0.5)[None, :] / np.float32(
        cols
    )  # distance from chest wall
    if not right:
        u = u[:, ::-1]
    r2 = (u / rng.uniform(0.62, 0.78)) ** 2 + ((y - rng.uniform(-0.1, 0.1)) / 0.82) ** 2
    breast = r2 < 1.0
    t = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    gland = 0.5 + 0.5 * np.tanh(2.0 * _smooth(rng, rows, cols, 20))
    d = np.where(breast, 0.22 + 0.25 * np.sqrt(t) * gland + 0.12 * t, 0.03)
    d = d + np.where(breast, 0.03 * _smooth(rng, rows, cols, 90), 0.0)
    if mlo:
        pect = u < 0.32 * (1.0 - (y + 1.0) / 1.3)
        d = np.where(pect & breast, 0.62 + 0.02 * gland, d)
    d = np.clip(d + _noise(rng, (rows, cols), 0.006), 0.0, 1.0)
    stored, display, c, w = _projection(d, bits, mono1, 0.1, 0.75)
    attrs = {
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "PresentationIntentType": "FOR PRESENTATION",
        "WindowCenter": round(c),
        "WindowWidth": round(w),
        "ImagerPixelSpacing": [0.07, 0.07],
        "BodyPartExamined": "BREAST",
        "ImageLaterality": "R" if right else "L",
        "Laterality": "R" if right else "L",
        "ViewPosition": "MLO" if mlo else "CC",
        "PatientOrientation": ["A", "R"] if not right else ["P", "L"],
    }
    photometric = "MONOCHROME1" if mono1 else "MONOCHROME2"
    return _Picture(
        "MG", DigitalMammographyXRayImageStorageForPresentation, stored[np.newaxis],
        photometric, bits, display=display, anatomy=breast, attrs=attrs,
    )  # fmt: skip


_US_COLOURS = (
    (255.0, 255.0, 255.0),
    (150.0, 150.0, 150.0),
    (255.0, 230.0, 0.0),
    (40.0, 230.0, 40.0),
    (0.0, 220.0, 255.0),
)


def _us(rng: np.random.Generator, frames: int, rows: int = 480, cols: int = 640) -> _Picture:
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :]
    ax, ay = cols / 2 + rng.uniform(-20, 20), rng.uniform(30, 50)
    r = np.hypot(xx - ax, yy - ay)
    th = np.arctan2(xx - ax, yy - ay)
    r0, r1 = rng.uniform(20, 40), rows - rng.uniform(25, 45)
    half = math.radians(rng.uniform(32, 40))
    sector = (r > r0) & (r < r1) & (np.abs(th) < half)
    depth = (r - r0) / (r1 - r0)
    echo = 0.55 + 0.25 * _smooth(rng, rows, cols, 6)
    rb = rng.uniform(0.2, 0.35)
    echo = echo + 0.6 * np.exp(-(((depth - rb - 0.02 * np.sin(th * 7)) / 0.012) ** 2))
    atten = 1.0 - 0.45 * depth
    cyst_c = (ay + (r1 - ay) * rng.uniform(0.5, 0.7), ax + rng.uniform(-60, 60))
    cyst_r = (rng.uniform(25, 45), rng.uniform(35, 60))
    img = np.zeros((frames, rows, cols, 3), dtype=np.float32)
    for k in range(frames):
        cyst = ((yy - cyst_c[0] - 1.5 * k) / cyst_r[0]) ** 2 + ((xx - cyst_c[1]) / cyst_r[1]) ** 2
        e = np.where(cyst < 1, 0.08, echo)
        e = e + np.where(np.abs(cyst - 1) < 0.08, 0.5, 0.0)  # bright rim
        sp = np.sqrt(-2.0 * np.log1p(-rng.random((rows, cols), dtype=np.float32)))  # Rayleigh
        sp = (
            sp + np.roll(sp, 1, axis=0) + np.roll(sp, 1, axis=1) + np.roll(sp, (1, 1), (0, 1))
        ) / 4
        v = np.where(sector, np.clip(110.0 * e * atten * sp, 0, 255), 0.0)
        img[k] = v[..., None]
    # tick marks along the sector edge (one per "cm") and a grey-scale bar: not text
    for i in range(1, 12):
        rr = r0 + i * (r1 - r0) / 12
        ty, tx = int(ay + rr * math.cos(half)), int(ax + rr * math.sin(half)) + 6
        if 0 <= ty < rows - 3 and 0 <= tx < cols - 3:
            img[:, ty : ty + 3, tx : tx + 3] = 200.0
    y0, y1 = int(rows * 0.28), int(rows * 0.72)
    ramp = np.linspace(255.0, 0.0, y1 - y0)[:, None, None]
    img[:, y0:y1, cols - 26 : cols - 18] = ramp
    sop = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    attrs: dict[str, Any] = {"ImageType": ["ORIGINAL", "PRIMARY", "ABDOMINAL"]}
    if frames > 1:
        attrs["FrameTime"] = 33.3
        attrs["FrameIncrementPointer"] = Tag(0x0018, 0x1063)
    return _Picture("US", sop, img, "RGB", 8, anatomy=sector, attrs=attrs, colours=_US_COLOURS)


def _sc_mono(rng: np.random.Generator, rows: int, cols: int) -> _Picture:
    inner = min(rows, cols) - 2 * int(rng.integers(40, 70))
    hu, body = _ct_hu(_ct_shape(rng, abdomen=bool(rng.random() < 0.5), padding=False), rng,
                      inner, inner)  # fmt: skip
    shot = np.clip((hu + 160.0) / 400.0 * 255.0, 0, 255)
    img = np.zeros((rows, cols), dtype=np.float32)
    anatomy = np.zeros((rows, cols), dtype=bool)
    y0, x0 = (rows - inner) // 2, (cols - inner) // 2
    img[y0 : y0 + inner, x0 : x0 + inner] = shot
    anatomy[y0 : y0 + inner, x0 : x0 + inner] = body
    img[y0 - 2, x0 - 2 : x0 + inner + 2] = 90.0  # viewport frame
    img[y0 + inner + 1, x0 - 2 : x0 + inner + 2] = 90.0
    img[y0 - 2 : y0 + inner + 2, x0 - 2] = 90.0
    img[y0 - 2 : y0 + inner + 2, x0 + inner + 1] = 90.0
    attrs = {"ImageType": ["DERIVED", "SECONDARY"], "ConversionType": "WSD"}
    return _Picture(
        "SC", SecondaryCaptureImageStorage, img[np.newaxis], "MONOCHROME2", 8,
        anatomy=anatomy, attrs=attrs,
    )  # fmt: skip


def _hot(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)[..., None]
    return 255.0 * np.clip(np.concatenate([2.5 * s, 2.5 * s - 0.9, 3.0 * s - 2.0], -1), 0, 1)


def _sc_rgb(rng: np.random.Generator, rows: int, cols: int) -> _Picture:
    y, x = _grid(rows, cols)
    r2 = _ell(y, x, rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), 0.7, 0.6 * rows / cols)
    h = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    s = h * (0.65 + 0.3 * _smooth(rng, rows, cols, 9)) + 0.15 * (x - y) * h
    img = np.where((r2 < 1)[..., None], _hot(s), 0.0)
    y0, y1 = int(rows * 0.2), int(rows * 0.8)
    bar = _hot(np.linspace(1.0, 0.0, y1 - y0))[:, None, :]
    img[y0:y1, cols - 30 : cols - 16] = bar  # colour bar: not text
    attrs = {"ImageType": ["DERIVED", "SECONDARY"], "ConversionType": "WSD"}
    colours = ((255.0, 255.0, 255.0), (255.0, 230.0, 0.0), (150.0, 150.0, 150.0))
    return _Picture(
        "SC", SecondaryCaptureImageStorage, img[np.newaxis], "RGB", 8, anatomy=r2 < 1,
        attrs=attrs, colours=colours,
    )  # fmt: skip


def _xa(rng: np.random.Generator, size: int, frames: int) -> _Picture:
    y, x = _grid(size, size)
    rr = np.sqrt(x * x + y * y)
    fieldmask = rr < 0.96
    base = 165.0 - 45.0 * rr**2 + 10.0 * _smooth(rng, size, size, 6)
    tree = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(tree)
    stack = [(size * rng.uniform(0.3, 0.5), size * 0.12, rng.uniform(1.2, 1.9), 9.0)]
    segments = 0
    while stack and segments < 300:
        px, py, ang, width = stack.pop()
        for _ in range(int(rng.integers(6, 13))):
            ang += rng.normal(0.0, 0.22)
            step = rng.uniform(14, 30)
            nx, ny = px + step * math.cos(ang), py + step * math.sin(ang)
            draw.line([(px, py), (nx, ny)], fill=255, width=max(1, round(width)))
            segments += 1
            if width > 2.5 and rng.random() < 0.3:
                turn = rng.uniform(0.5, 1.1) * (1 if rng.random() < 0.5 else -1)
                stack.append((nx, ny, ang + turn, width * 0.7))
            px, py, width = nx, ny, max(1.5, width * 0.95)
    half = tree.resize((size // 2, size // 2), Image.Resampling.BILINEAR)
    vessel = np.asarray(half.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255
    img = np.zeros((frames, size, size), dtype=np.float32)
    for k in range(frames):
        contrast = 95.0 * min(1.0, (k + 1) / max(1.0, frames * 0.6))
        v = base - contrast * vessel + _noise(rng, (size, size), 4.0)
        img[k] = np.where(fieldmask, v, 0.0)
    attrs: dict[str, Any] = {
        "ImageType": ["ORIGINAL", "PRIMARY", "SINGLE PLANE"],
        "FrameTime": 66.7,
        "FrameIncrementPointer": Tag(0x0018, 0x1063),
        "PositionerPrimaryAngle": 30.0,
        "PositionerSecondaryAngle": 15.0,
        "KVP": 80,
    }
    return _Picture(
        "XA", XRayAngiographicImageStorage, img, "MONOCHROME2", 8, anatomy=fieldmask,
        attrs=attrs,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Text placement and burning
# --------------------------------------------------------------------------------------------

Where = Callable[[int, int, int, int], bool]


@dataclass
class _Req:
    """One text to draw: where (``anchor``), how big (cap height in px), in which value."""

    text: str
    kind: str
    anchor: str  # tl tr bl br left right top bottom free at
    cap: int
    font: int
    value: Value
    antialias: bool = True
    frames: tuple[int, ...] | None = None
    where: Where | None = None
    at: tuple[int, int] | None = None


def _frames_meet(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    return a is None or b is None or bool(set(a) & set(b))


class _Layout:
    """Places ink boxes in corners, at edges or freely, without overlaps."""

    def __init__(self, rows: int, cols: int, rng: np.random.Generator) -> None:
        self.rows, self.cols, self.rng = rows, cols, rng
        short = min(rows, cols)
        self.mx = int(rng.integers(3, max(5, short // 30)))
        self.my = int(rng.integers(3, max(5, short // 30)))
        self.gap = int(rng.integers(2, 6))
        self.cursor = {"tl": self.my, "tr": self.my, "bl": rows - self.my, "br": rows - self.my}
        self.placed: list[tuple[int, int, int, int, tuple[int, ...] | None]] = []

    def _free(self, x: int, y: int, w: int, h: int, frames: tuple[int, ...] | None) -> bool:
        if x < 0 or y < 0 or x + w > self.cols or y + h > self.rows:
            return False
        pad = 2
        for x0, y0, x1, y1, f in self.placed:
            if not _frames_meet(f, frames):
                continue
            if x < x1 + pad and x + w + pad > x0 and y < y1 + pad and y + h + pad > y0:
                return False
        return True

    def _spot(self, req: _Req, w: int, h: int) -> tuple[int, int] | None:
        a, rows, cols = req.anchor, self.rows, self.cols
        jy = int(self.rng.integers(-(rows // 12), rows // 12 + 1))
        jx = int(self.rng.integers(-(cols // 12), cols // 12 + 1))
        if a == "at" and req.at is not None:
            return req.at
        if a in ("tl", "bl"):
            x = self.mx
        elif a in ("tr", "br"):
            x = cols - self.mx - w
        if a in ("tl", "tr"):
            return x, self.cursor[a]
        if a in ("bl", "br"):
            return x, self.cursor[a] - h
        if a == "left":
            return self.mx, rows // 2 - h // 2 + jy
        if a == "right":
            return cols - self.mx - w, rows // 2 - h // 2 + jy
        if a == "top":
            return cols // 2 - w // 2 + jx, self.my
        if a == "bottom":
            return cols // 2 - w // 2 + jx, rows - self.my - h
        raise ValueError(f"unknown anchor {a!r}")

    def place(self, req: _Req) -> tuple[int, int, np.ndarray] | None:
        """The top-left corner of the ink and its mask, or ``None`` when it does not fit."""
        caps = (
            range(req.cap, MIN_INK - 1, -1)
            if req.anchor != "free"
            else (req.cap, max(MIN_INK, req.cap - 4))
        )
        for cap in caps:
            mask = _ink(req.font, _font_size(req.font, cap), req.text, req.antialias)
            h, w = mask.shape
            if h > MAX_INK:  # descenders (``,`` ``p`` ``/``) make the ink taller than the caps
                continue
            if req.anchor == "free":
                spot = None
                for _ in range(300):
                    x = int(self.rng.integers(0, max(1, self.cols - w)))
                    y = int(self.rng.integers(0, max(1, self.rows - h)))
                    if self._free(x, y, w, h, req.frames) and (
                        req.where is None or req.where(x, y, x + w, y + h)
                    ):
                        spot = (x, y)
                        break
            else:
                spot = self._spot(req, w, h)
                if spot is not None and not (
                    self._free(*spot, w, h, req.frames)
                    and (req.where is None or req.where(spot[0], spot[1], spot[0] + w, spot[1] + h))
                ):
                    spot = None
            if spot is None:
                continue
            x, y = spot
            self.placed.append((x, y, x + w, y + h, req.frames))
            if req.anchor in ("tl", "tr"):
                self.cursor[req.anchor] = y + h + self.gap
            elif req.anchor in ("bl", "br"):
                self.cursor[req.anchor] = y - self.gap
            return x, y, mask
        return None


def _burn(
    img: np.ndarray,
    mask: np.ndarray,
    x: int,
    y: int,
    value: Value,
    frames: tuple[int, ...] | None,
    vrange: tuple[int, int],
) -> None:
    """Alpha-blend ``value`` into ``img`` (integer, frames first) by ``mask`` with top-left (x, y).

    Where the mask is 0 the pixels keep their values exactly.
    """
    h, w = mask.shape
    alpha = mask.astype(np.float64) / 255.0
    sel: Any = slice(None) if frames is None else list(frames)
    region = img[sel, y : y + h, x : x + w].astype(np.float64)
    if img.ndim == 4:
        alpha = alpha[..., None]
    v = np.asarray(value, dtype=np.float64)
    blended = region * (1.0 - alpha) + v * alpha
    img[sel, y : y + h, x : x + w] = np.clip(np.rint(blended), *vrange).astype(img.dtype)


def _render(
    pic: _Picture, reqs: Sequence[_Req], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[TextBox, ...]]:
    """The quantised background, the image with the texts burned in, and the boxes.

    A request anchored ``at`` without a spot goes where the previous text went (per-frame
    counters that replace each other).
    """
    background = pic.quantised()
    burned = background.copy()
    layout = _Layout(pic.rows, pic.cols, rng)
    boxes: list[TextBox] = []
    last: tuple[int, int] | None = None
    for req in reqs:
        if req.anchor == "at" and req.at is None:
            if last is None:
                continue
            req.at = last
        spot = layout.place(req)
        if spot is None:
            continue
        x, y, mask = spot
        last = (x, y)
        _burn(burned, mask, x, y, req.value, req.frames, pic.vrange)
        h, w = mask.shape
        boxes.append(TextBox(x, y, x + w, y + h, req.text, req.kind, req.frames))
    return background, burned, tuple(boxes)


# --------------------------------------------------------------------------------------------
# What each case draws
# --------------------------------------------------------------------------------------------

_MARKERS = {
    "CT": (("R", "left"), ("L", "right"), ("A", "top"), ("P", "bottom")),
    "MR": (("R", "left"), ("L", "right"), ("H", "top"), ("F", "bottom")),
    "XA": (("R", "left"), ("L", "right")),
    "SC": (("R", "left"), ("L", "right")),
}


def _caps(pic: _Picture) -> tuple[int, int]:
    short = min(pic.rows, pic.cols)
    if short <= 300:
        return 8, 11
    if short <= 700:
        return 8, 16
    return 10, 20


def _anatomy_where(pic: _Picture, share: float = 0.3) -> Where:
    anatomy = pic.anatomy if pic.anatomy is not None else np.ones((pic.rows, pic.cols), bool)

    def where(x0: int, y0: int, x1: int, y1: int) -> bool:
        return bool(anatomy[y0:y1, x0:x1].mean() >= share)

    return where


def _value_where(pic: _Picture, lo: float, hi: float) -> Where:
    """Boxes whose background (frame 0, stored units) lies within [lo, hi]."""
    first = pic.image[0]

    def where(x0: int, y0: int, x1: int, y1: int) -> bool:
        region = first[y0:y1, x0:x1]
        return bool(region.min() >= lo and region.max() <= hi)

    return where


class _Styler:
    """Draws per-block text styles (font, size, antialiasing, value) from the case's RNG."""

    def __init__(self, rng: np.random.Generator, pic: _Picture) -> None:
        self.rng, self.pic = rng, pic
        self.fonts = len(_font_files())
        self.lo, self.hi = _caps(pic)

    def value(self, bright: bool = False) -> Value:
        pic, rng = self.pic, self.rng
        if pic.rgb:
            colours = pic.colours or ((255.0, 255.0, 255.0),)
            return colours[0] if bright else colours[int(rng.integers(len(colours)))]
        if bright or rng.random() < 0.65:
            return pic.white()
        if pic.bits_stored <= 8:
            return 140.0
        return round(pic.grey(float(rng.uniform(0.5, 0.6))))

    def block(self, bright: bool = False) -> dict[str, Any]:
        return {
            "font": int(self.rng.integers(self.fonts)),
            "cap": int(self.rng.integers(self.lo, self.hi + 1)),
            "antialias": bool(self.rng.random() < 0.75),
            "value": self.value(bright),
        }


def _overlay(
    rng: np.random.Generator,
    pic: _Picture,
    phi: dict[str, str],
    time: str,
    *,
    touch: bool | None = None,
    partial: bool = False,
) -> list[_Req]:
    """Typical overlays: a patient block, a study block, technical text, markers and scales."""
    st = _Styler(rng, pic)
    texts = _phi_texts(rng, phi, time)
    corners = [str(c) for c in rng.permutation(["tl", "tr", "bl", "br"])]
    reqs: list[_Req] = []

    patient = ["name", "id"] + (["dob"] if rng.random() < 0.7 else [])
    chances = (("institution", 0.7), ("study", 0.9), ("accession", 0.6))
    study = [k for k, p in chances if rng.random() < p]
    if pic.modality == "US":  # US devices write the header line across the top
        corners = ["tl", "tr", "bl", "br"]
    style = st.block()
    reqs += [_Req(*texts[k], corners[0], **style) for k in patient]
    name, ident = reqs[0], reqs[1]
    style = st.block()
    reqs += [_Req(*texts[k], corners[1], **style) for k in study]
    others = _OTHER[pic.modality]
    style = st.block()
    for i in rng.permutation(len(others))[: int(rng.integers(1, 4))]:
        reqs.append(_Req(others[int(i)], "other", corners[2], **style))
    style = st.block()
    if rng.random() < 0.6:
        reqs.append(_Req(_pick(rng, _SCALE_LABELS), "safe", corners[3], **style))
    markers = _MARKERS.get(pic.modality)
    if pic.modality in ("CR", "DX"):  # the lead marker near the top
        big = {**st.block(bright=True), "cap": st.hi}
        reqs.append(_Req(_pick(rng, ("R", "L")), "safe", "top", **big))
    elif pic.modality == "MG":  # laterality and view first, away from the chest wall
        side = str(pic.attrs["ImageLaterality"])
        corner = "tr" if side == "R" else "tl"
        big = {**st.block(bright=True), "cap": st.hi}
        reqs[:0] = [
            _Req(side, "safe", corner, **big),
            _Req(str(pic.attrs["ViewPosition"]), "other", corner, **big),
        ]
    elif markers is not None:
        style = st.block()
        for text, anchor in markers:
            if rng.random() < 0.6:
                reqs.append(_Req(text, "safe", anchor, **style))
    if touch is None:
        touch = bool(rng.random() < 0.35)
    if touch:  # one identifier over the anatomy, bright
        moved = (name, ident)[int(rng.integers(2))]
        moved.anchor, moved.where = "free", _anatomy_where(pic)
        moved.value = st.value(bright=True)
    if partial:
        n = pic.frames
        name.frames = tuple(range(n // 2, n))  # the name shows from mid-clip on
        counter = st.block(bright=True)
        reqs.append(_Req(f"1/{n}", "other", corners[3], frames=(0,), **counter))
        reqs += [_Req(f"{k + 1}/{n}", "other", "at", frames=(k,), **counter) for k in range(1, n)]
    return reqs


def _ct_window_only(
    rng: np.random.Generator, pic: _Picture, phi: dict[str, str], time: str
) -> list[_Req]:
    """Identifiers at 200-240 HU on soft tissue: bright in the window, faint in full range."""
    st = _Styler(rng, pic)
    texts = _phi_texts(rng, phi, time)
    tissue = _value_where(pic, 1024.0 - 150.0, 1024.0 + 150.0)
    reqs = []
    for k in ("name", "id", "dob", "accession"):
        style = st.block()
        style["value"] = 1024.0 + round(float(rng.uniform(200, 240)))
        reqs.append(_Req(*texts[k], "free", where=tissue, **style))
    style = st.block(bright=True)
    reqs += [_Req("R", "safe", "left", **style), _Req("L", "safe", "right", **style)]
    return reqs


def _ct_full_only(
    rng: np.random.Generator, pic: _Picture, phi: dict[str, str], time: str
) -> list[_Req]:
    """Identifiers at -650..-500 HU over air: seen in full range, black in the window."""
    st = _Styler(rng, pic)
    texts = _phi_texts(rng, phi, time)
    air = _value_where(pic, -4096.0, 1024.0 - 300.0)
    corners = [str(c) for c in rng.permutation(["tl", "tr", "bl", "br"])]
    reqs = []
    for keys, corner in ((("name", "id", "dob"), corners[0]), (("study", "accession"), corners[1])):
        style = st.block()
        style["value"] = 1024.0 + round(float(rng.uniform(-650, -500)))
        reqs += [_Req(*texts[k], corner, where=air, **style) for k in keys]
    return reqs


# --------------------------------------------------------------------------------------------
# The corpus plan
# --------------------------------------------------------------------------------------------

#: (label, count at scale "test", count at scale "bench", draws text)
_PLAN: tuple[tuple[str, int, int, bool], ...] = (
    ("ct-corner", 3, 20, True),
    ("ct-window-only", 1, 5, True),
    ("ct-full-only", 1, 5, True),
    ("mr-corner", 2, 16, True),
    ("cr-corner", 2, 8, True),
    ("dx-corner", 1, 6, True),
    ("mg-corner", 2, 2, True),
    ("us-corner", 2, 12, True),
    ("us-cine", 1, 4, True),
    ("us-cine-partial", 1, 3, True),
    ("sc-mono", 1, 8, True),
    ("sc-rgb", 1, 8, True),
    ("xa-cine", 1, 4, True),
    ("ct-free", 2, 20, False),
    ("mr-free", 2, 14, False),
    ("cr-free", 1, 5, False),
    ("dx-free", 1, 4, False),
    ("mg-free", 1, 2, False),
    ("us-free", 1, 8, False),
    ("us-cine-free", 1, 3, False),
    ("sc-mono-free", 1, 6, False),
    ("sc-rgb-free", 1, 5, False),
    ("xa-free", 1, 3, False),
)
#: (name of the case, written with RLE Lossless instead of Explicit VR Little Endian)
_RLE = frozenset({"ct-corner-01", "us-corner-00", "xa-cine-00"})
#: The volumetric CT series inside the corpus: (slices, text slices) per scale.
_VOLUME = {"test": (5, (2,)), "bench": (24, (0, 11))}


@dataclass
class _Rendered:
    """One case before it is written: pixels as pydicom decodes them, and the header."""

    name: str
    pic: _Picture
    background: np.ndarray
    pixels: np.ndarray
    boxes: tuple[TextBox, ...]
    phi: dict[str, str]
    header: dict[str, Any]
    rle: bool = False
    series: str | None = None


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(p.encode()) for p in parts)])


def _uid(seed: int, *parts: str) -> UID:
    return generate_uid(entropy_srcs=[f"imagedepot-synthetic-{seed}", *parts])


def _variant_picture(label: str, i: int, rng: np.random.Generator, scale: str) -> _Picture:
    base = label.removesuffix("-free")
    if base.startswith("ct"):
        abdomen = base == "ct-window-only" or (base != "ct-full-only" and i % 2 == 1)
        padding = base == "ct-window-only" or i % 3 == 2 or (base == "ct-full-only" and i % 2 == 0)
        hu, body = _ct_hu(_ct_shape(rng, abdomen=abdomen, padding=padding), rng, 512, 512)
        return _ct_picture(hu, body, 0.7 + 0.1 * float(rng.random()))
    if base == "mr" or base == "mr-corner":
        return _mr(rng, 256 if i % 2 == 0 else 512)
    if base in ("cr", "cr-corner", "dx", "dx-corner"):
        modality = base[:2].upper()
        mono1 = (i % 2 == 0) if base in ("cr-corner", "dx", "dx-corner") else (i % 2 == 1)
        bits = 12 if (modality == "CR" and i % 2 == 0) else 14
        return _chest(rng, 1024, bits, mono1, modality)
    if base in ("mg", "mg-corner"):
        mono1 = (i % 2 == 1) if base == "mg-corner" else (i % 2 == 0)
        rows, cols = (1664, 1280) if scale == "test" else (3328, 2560)
        return _mammo(rng, rows, cols, 12 if mono1 else 14, mono1, i % 2 == 0, i % 2 == 1)
    if base in ("us", "us-corner"):
        return _us(rng, 1)
    if base.startswith("us-cine"):
        return _us(rng, int(rng.integers(4, 9)))
    if base in ("sc-mono",):
        return _sc_mono(rng, 512, 512 if i % 2 == 0 else 640)
    if base in ("sc-rgb",):
        return _sc_rgb(rng, 480 if i % 2 == 0 else 512, 640 if i % 2 == 0 else 512)
    if base in ("xa", "xa-cine"):
        frames = int(rng.integers(4, 9))
        return _xa(rng, 512, 4 if f"{label}-{i:02d}" in _RLE else frames)  # RLE is slow
    raise ValueError(f"unknown variant {label!r}")


def _header(pic: _Picture, phi: dict[str, str], sex: str, time: str) -> dict[str, Any]:
    h = {
        "PatientName": phi["PatientName"],
        "PatientID": phi["PatientID"],
        "PatientBirthDate": phi["PatientBirthDate"],
        "PatientSex": sex,
        "StudyDate": phi["StudyDate"],
        "SeriesDate": phi["StudyDate"],
        "ContentDate": phi["StudyDate"],
        "StudyTime": time,
        "SeriesTime": time,
        "ContentTime": time,
        "AccessionNumber": phi["AccessionNumber"],
        "InstitutionName": phi["InstitutionName"],
        "ReferringPhysicianName": "",
        "Manufacturer": "IMAGEDEPOT SYNTHETIC",
        "StudyID": "1",
    }
    h.update(pic.attrs)
    return h


def _render_variant(label: str, i: int, seed: int, scale: str) -> _Rendered:
    name = f"{label}-{i:02d}"
    rng = _rng(seed, name)
    phi, sex, time = _fake_phi(rng)
    pic = _variant_picture(label, i, rng, scale)
    if label.endswith("-free"):
        background, pixels, boxes = _render(pic, [], rng)
    elif label == "ct-window-only":
        background, pixels, boxes = _render(pic, _ct_window_only(rng, pic, phi, time), rng)
    elif label == "ct-full-only":
        background, pixels, boxes = _render(pic, _ct_full_only(rng, pic, phi, time), rng)
    elif label == "us-cine-partial":
        reqs = _overlay(rng, pic, phi, time, partial=True)
        background, pixels, boxes = _render(pic, reqs, rng)
    else:
        touch = True if (label == "ct-corner" and i % 3 == 1) else None
        background, pixels, boxes = _render(pic, _overlay(rng, pic, phi, time, touch=touch), rng)
    if not label.endswith("-free") and not boxes:
        raise RuntimeError(f"{name}: no text could be placed")  # a bug in the plan
    return _Rendered(
        name, pic, background, pixels, boxes, phi, _header(pic, phi, sex, time), name in _RLE
    )


def _render_series(
    prefix: str, *, slices: int, rows: int, text_slices: Sequence[int], seed: int
) -> Iterator[_Rendered]:
    if slices < 1:
        raise ValueError(f"slices must be at least 1, not {slices}")
    if rows < 64:
        raise ValueError(f"rows must be at least 64, not {rows}")
    bad = [s for s in text_slices if not 0 <= s < slices]
    if bad:
        raise ValueError(f"text_slices {bad} outside 0..{slices - 1}")
    rng = _rng(seed, prefix)
    phi, sex, time = _fake_phi(rng)
    shape = _ct_shape(rng, abdomen=False, padding=bool(rng.random() < 0.5))
    texts = _phi_texts(rng, phi, time)
    study, series = _uid(seed, prefix, "study"), _uid(seed, prefix, "series")
    frame_of_ref = _uid(seed, prefix, "for")
    pixel, thickness = 0.75 * 512 / rows, 2.5
    half = pixel * rows / 2
    for k in range(slices):
        z = -1.0 + 2.0 * (k + 0.5) / slices
        slice_rng = _rng(seed, prefix, str(k))
        hu, body = _ct_hu(shape, slice_rng, rows, rows, z=0.8 * z)
        pic = _ct_picture(hu, body, pixel)
        reqs: list[_Req] = []
        if k in text_slices:
            st = _Styler(_rng(seed, prefix, "style"), pic)  # same style on every text slice
            block = st.block()
            reqs = [_Req(*texts["name"], "tl", **block), _Req(*texts["id"], "tl", **block)]
        background, pixels, boxes = _render(pic, reqs, _rng(seed, prefix, "layout"))
        if len(boxes) < len(reqs):
            raise ValueError(f"rows={rows}: slices too small for the name and ID overlay")
        location = thickness * k
        pic.attrs.update(
            {
                "ImagePositionPatient": [-half, -half, location],
                "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
                "SliceLocation": location,
                "SliceThickness": thickness,
                "FrameOfReferenceUID": frame_of_ref,
                "InstanceNumber": k + 1,
                "SeriesDescription": "CHEST 2.5 mm",
            }
        )
        header = _header(pic, phi, sex, time)
        header["StudyInstanceUID"] = study
        header["SeriesInstanceUID"] = series
        yield _Rendered(
            f"{prefix}-s{k:03d}", pic, background, pixels, boxes, phi, header, series=series
        )


def _render_corpus(seed: int, scale: str) -> Iterator[_Rendered]:
    """Every case of the corpus, rendered but not written (in the order written)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
    column = SCALES.index(scale)
    for label, n_test, n_bench, _ in _PLAN:
        for i in range((n_test, n_bench)[column]):
            yield _render_variant(label, i, seed, scale)
    slices, text_slices = _VOLUME[scale]
    yield from _render_series(
        "ct-volume", slices=slices, rows=512, text_slices=text_slices, seed=seed
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


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
