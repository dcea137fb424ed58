"""Burned-in text in a DICOM data set: find, decide, blank, verify (fail closed).

:func:`clean_pixel_text` is what de-identification runs on every image; :func:`find_text` is
what the leak gate runs on every staged image. Both read every frame in both renderings
(:mod:`imagedepot.pixeltext.render`) with both engines (:mod:`imagedepot.pixeltext.detect`).

What is blanked is the policy's ``deidentification.pixel_text`` (:class:`PixelTextSettings`):

``blank_all`` (default)
    every region of text except those whose whole text is an allowed token
    (:data:`imagedepot.pixeltext.identifiers.DEFAULT_ALLOW`, or the policy's ``allow`` list);
``blank_phi``
    regions whose text matches an identifier of the file's header or of the sample and consent
    sheets (:class:`~imagedepot.pixeltext.identifiers.Identifiers`), and regions read with
    confidence under :attr:`PixelTextSettings.min_confidence` (what cannot be read cannot be
    shown to be harmless);
``quarantine``
    any text that is not allowed quarantines the image.

Blanked boxes are grown by :attr:`PixelTextSettings.dilate` pixels (along the line by half the
box's height at least) and filled, in every frame,
with the value that displays darkest. Then detection runs again on the new pixel data: the image
passes only if nothing that the mode would blank remains; otherwise :class:`PixelTextError`
carries the reason and the boxes. A text-free image is left as it is (its pixel data are not
touched at all).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.pixeltext import identifiers as ids
from imagedepot.pixeltext.detect import Box, DetectorSettings, TextFinder, TextRegion, merge_boxes
from imagedepot.pixeltext.render import Renderer, frames

log = logging.getLogger(__name__)

#: Rounds of blanking and reading again before an image with text left is refused.
ROUNDS = 3
#: What ``deidentification.pixel_text.mode`` may say.
MODES = ("blank_all", "blank_phi", "quarantine")
#: What ``deidentification.pixel_text.ocr_series`` may say.
SERIES_MODES = ("all", "sample")
#: What ``deidentification.pixel_text.auxiliary_images`` may say (slide label, macro, overview,
#: thumbnail and preview series of microscopy outputs: :mod:`imagedepot.deid.auxiliary`).
AUXILIARY_MODES = ("remove", "ocr")
#: Modalities whose single-frame series ``ocr_series: sample`` may sample.
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})

#: Transfer syntaxes pydicom can encode losslessly (tried in this order of preference).
_LOSSLESS = {
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
}
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


class PixelTextError(ValueError):
    """Text that cannot be made safe: the image is quarantined (reason and boxes)."""

    def __init__(self, reason: str, regions: list[TextRegion] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.regions = list(regions or [])
        self.before: np.ndarray | None = None
        self.after: np.ndarray | None = None


@dataclass(frozen=True)
class PixelTextSettings:
    """The policy's ``deidentification.pixel_text`` section."""

    mode: str = "blank_all"
    allow: tuple[str, ...] = ids.DEFAULT_ALLOW
    ocr_series: str = "all"
    sample_every: int = 10
    dilate: int = 4
    min_confidence: float = 0.6
    auxiliary_images: str = "remove"
    detector: DetectorSettings = field(default_factory=DetectorSettings)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"pixel_text.mode must be one of {', '.join(MODES)} (given {self.mode!r})"
            )
        if self.ocr_series not in SERIES_MODES:
            raise ValueError(
                f"pixel_text.ocr_series must be one of {', '.join(SERIES_MODES)} "
                f"(given {self.ocr_series!r})"
            )
        if self.auxiliary_images not in AUXILIARY_MODES:
            raise ValueError(
                f"pixel_text.auxiliary_images must be one of {', '.join(AUXILIARY_MODES)} "
                f"(given {self.auxiliary_images!r})"
            )
        if self.sample_every < 1 or self.dilate < 0:
            raise ValueError("pixel_text.sample_every must be >= 1 and dilate >= 0")
        ids.compile_allow(self.allow)

    @classmethod
    def from_config(cls, section: dict[str, Any] | None) -> PixelTextSettings:
        """From the policy's mapping (missing keys take their defaults)."""
        s = dict(section or {})
        det_keys = set(DetectorSettings.__dataclass_fields__)
        det = DetectorSettings(**{k: s.pop(k) for k in list(s) if k in det_keys})
        if "allow" in s:
            s["allow"] = tuple(str(p) for p in s["allow"])
        return cls(detector=det, **s)

    @functools.cached_property
    def allow_patterns(self) -> tuple[Any, ...]:
        """The allow-list, compiled."""
        return ids.compile_allow(self.allow)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for provenance."""
        return {
            "mode": self.mode,
            "allow": list(self.allow),
            "ocr_series": self.ocr_series,
            "sample_every": self.sample_every,
            "dilate": self.dilate,
            "min_confidence": self.min_confidence,
            "auxiliary_images": self.auxiliary_images,
            **self.detector.to_dict(),
        }


@functools.cache
def finder(detector: DetectorSettings) -> TextFinder:
    """The engines for ``detector`` settings, loaded once per process."""
    return TextFinder(detector)


@dataclass
class PixelTextResult:
    """What :func:`clean_pixel_text` found and did."""

    found: list[TextRegion] = field(default_factory=list)
    blanked: list[Box] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    before: np.ndarray | None = None  # rendering of the first frame with text (thumbnails)
    after: np.ndarray | None = None
    encoding: str = ""

    @property
    def changed(self) -> bool:
        """True when pixel data were blanked."""
        return bool(self.blanked)

    def to_dict(self, *, keep_text: bool = False) -> dict[str, Any]:
        """For the action log and provenance: boxes, engines, confidences; text only on
        request (recognised text may be an identifier and stays in the trusted zone)."""
        regions = []
        for r in self.found:
            d = r.to_dict()
            if not keep_text:
                d.pop("text")
            regions.append(d)
        return {
            "regions": regions,
            "blanked": [list(b) for b in self.blanked],
            "frames_read": self.frames,
            "seconds": round(self.seconds, 3),
        }


def would_blank(region: TextRegion, settings: PixelTextSettings, known: ids.Identifiers) -> bool:
    """True if the mode blanks ``region`` (or, after blanking, would have to)."""
    if ids.allowed(region.text, region.confidence, settings.allow_patterns):
        return False
    if settings.mode == "blank_phi":
        if region.confidence < settings.min_confidence:
            return True
        return known.match(region.text) is not None
    return True


def _dedupe(regions: list[TextRegion]) -> list[TextRegion]:
    seen: set[tuple[Box, str, str]] = set()
    out = []
    for r in regions:
        key = (r.box, r.engine, r.text)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def find_text(
    ds: Any, settings: PixelTextSettings, arr: np.ndarray | None = None
) -> tuple[list[TextRegion], np.ndarray]:
    """Every text region in every frame of ``ds`` (both renderings), and the decoded frames."""
    pixels = frames(ds) if arr is None else arr
    renderer = Renderer(ds)
    tf = finder(settings.detector)

    def keep(region: TextRegion) -> bool:
        return ids.allowed(region.text, region.confidence, settings.allow_patterns)

    found: list[TextRegion] = []
    for i in range(pixels.shape[0]):
        found.extend(tf.find_frame(renderer.renderings(pixels[i]), frame=i, keep=keep))
    return _dedupe(found), pixels


def _inside(box: Box, kept: list[Box]) -> bool:
    """True if most of ``box`` lies in regions left on purpose (an allowed token that the
    blanking of its neighbours cut and that now reads differently)."""
    area = max(1, (box[2] - box[0]) * (box[3] - box[1]))
    for k in kept:
        w = min(box[2], k[2]) - max(box[0], k[0])
        h = min(box[3], k[3]) - max(box[1], k[1])
        if w > 0 and h > 0 and w * h >= 0.5 * area:
            return True
    return False


def _grow(box: Box, by: int, shape: tuple[int, ...]) -> Box:
    """``box`` grown by ``by`` pixels, and along the line by half its height (the ends of a
    line of text over bright anatomy are the part a detector sees least)."""
    x0, y0, x1, y1 = box
    bx = max(by, (y1 - y0) // 2)
    return (max(0, x0 - bx), max(0, y0 - by), min(shape[1], x1 + bx), min(shape[0], y1 + by))


def clean_pixel_text(
    ds: Any, settings: PixelTextSettings, known: ids.Identifiers, *, may_blank: bool = True
) -> PixelTextResult:
    """Find, blank and verify burned-in text in ``ds`` (modified in place when text is blanked).

    Blanking runs in up to :data:`ROUNDS` rounds (text hidden beside other text is sometimes
    seen only once its neighbours are gone); the last reading must find nothing the mode would
    blank. Returns what was found and blanked; raises :class:`PixelTextError` when the image must
    be quarantined (mode ``quarantine``, or ``may_blank`` false (the policy lacks
    clean_pixel_data), and text found; or text left after blanking) and ``ValueError`` when the
    pixel data cannot be decoded or stored.
    """
    t0 = time.perf_counter()
    found, pixels = find_text(ds, settings)
    result = PixelTextResult(found=found, frames=int(pixels.shape[0]))
    to_blank = [r for r in found if would_blank(r, settings, known)]
    if not to_blank:
        result.seconds = time.perf_counter() - t0
        return result
    renderer = Renderer(ds)
    first = min(r.frame for r in to_blank)
    before = renderer.renderings(pixels[first])[0][1]
    if settings.mode == "quarantine" or not may_blank:
        why = (
            "pixel_text.mode is quarantine"
            if settings.mode == "quarantine"
            else "clean_pixel_data is not in the policy"
        )
        err = PixelTextError(
            f"text in the pixel data ({len(to_blank)} region(s)) and {why}", to_blank
        )
        err.before = before
        raise err
    shape = pixels.shape[1:3]
    kept = [r.box for r in found if not would_blank(r, settings, known)]
    cleaned = np.array(pixels, copy=True)
    boxes: list[Box] = []
    left = to_blank
    for _ in range(ROUNDS):
        boxes = merge_boxes(boxes + [_grow(r.box, settings.dilate, shape) for r in left])
        for i in range(cleaned.shape[0]):
            fill = renderer.background(pixels[i])
            for x0, y0, x1, y1 in boxes:
                cleaned[i, y0:y1, x0:x1, ...] = fill
        remaining, _ = find_text(ds, settings, cleaned)
        result.found.extend(r for r in remaining if r not in result.found)
        left = [
            r for r in remaining if would_blank(r, settings, known) and not _inside(r.box, kept)
        ]
        if not left:
            break
    result.blanked = boxes
    result.before = before
    result.after = renderer.renderings(cleaned[first])[0][1]
    if left:
        err = PixelTextError(
            f"text left after blanking ({len(left)} region(s)); not safe to release", left
        )
        err.before, err.after = before, result.after
        raise err
    result.encoding = store_pixels(ds, cleaned)
    result.seconds = time.perf_counter() - t0
    return result


def store_pixels(ds: Any, arr: np.ndarray) -> str:
    """Store ``arr`` as the pixel data of ``ds``: in its transfer syntax when that is
    uncompressed or lossless and pydicom can encode it, else Explicit VR Little Endian.

    Returns what was done, for the action log.
    """
    from pydicom.uid import UID

    tsyntax = str(ds.file_meta.TransferSyntaxUID)
    photometric = str(ds.get("PhotometricInterpretation") or "").strip()
    if photometric.startswith("YBR") and int(ds.get("SamplesPerPixel") or 1) == 3:
        photometric = "RGB"  # pydicom decoded YBR to RGB
    data = arr if int(ds.get("NumberOfFrames") or 1) > 1 else arr[0]
    try:
        ds.set_pixel_data(data, photometric, int(ds.BitsStored), generate_instance_uid=False)
    except (AttributeError, ValueError, RuntimeError, NotImplementedError, TypeError) as exc:
        raise ValueError(f"cannot store the cleaned pixel data ({type(exc).__name__})") from exc
    if tsyntax in _UNCOMPRESSED:
        if tsyntax != str(ds.file_meta.TransferSyntaxUID):
            ds.file_meta.TransferSyntaxUID = UID(tsyntax)
        return f"re-encoded in the original transfer syntax {UID(tsyntax).name}"
    if tsyntax in _LOSSLESS:
        try:
            ds.compress(UID(tsyntax), data, generate_instance_uid=False)
            return f"re-encoded in the original transfer syntax {_LOSSLESS[tsyntax]}"
        except Exception as exc:  # encoder plugins raise many types
            log.info("cannot re-encode as %s (%s)", _LOSSLESS[tsyntax], exc)
            ds.set_pixel_data(data, photometric, int(ds.BitsStored), generate_instance_uid=False)
    return (
        f"original transfer syntax {UID(tsyntax).name} not re-encodable losslessly here: "
        "written as Explicit VR Little Endian"
    )


def mask_boxes(mask: np.ndarray) -> list[Box]:
    """Boxes ``(x0, y0, x1, y1)`` (end exclusive) around the connected areas of a boolean
    ``rows x columns`` mask, such as the area a pixel-cleaning rule blanked."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [
        (int(x), int(y), int(x + w), int(y + h))
        for x, y, w, h, _ in stats[1:count]  # label 0 is outside the mask
    ]


def write_thumbnails(
    result: PixelTextResult, folder: Path, name: str, *, size: int = 320
) -> list[Path]:
    """Before/after PNGs (boxes outlined in red) of the first frame with text, in ``folder``.

    These show burned-in text: they belong to the trusted zone and are never staged.
    """
    import cv2

    if result.before is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for tag, img in (("before", result.before), ("after", result.after)):
        if img is None:
            continue
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        boxes = result.blanked or [r.box for r in result.found]
        for x0, y0, x1, y1 in boxes:
            cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 255), max(1, img.shape[1] // 400))
        f = size / max(rgb.shape[:2])
        if f < 1:
            rgb = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        path = folder / f"{name}.{tag}.png"
        cv2.imwrite(str(path), rgb)
        written.append(path)
    return written
