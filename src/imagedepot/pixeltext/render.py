"""DICOM pixel data as 8-bit images for OCR.

Burned-in text is drawn at whatever value the device chose: often the top of the stored range,
sometimes a grey that only shows in the window the user looked at. Every frame is therefore
rendered twice (:func:`renderings`):

* ``full``: the modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence) applied, then
  the frame's whole range mapped linearly to 0-255;
* ``window``: the first VOI window of the file (Window Center/Width, or a VOI LUT) after the
  modality LUT; without one, the 0.5-99.5 percentile range; then equalised locally (CLAHE), so
  that grey text on grey tissue stands out.

MONOCHROME1 is inverted so that what a viewer shows as bright is bright. Colour images (RGB;
YBR is converted to RGB by pydicom when decoding; palette colour through its lookup tables) are
rendered as the maximum of the three channels (``full``: text of any colour bright on dark) and
as their minimum (``minimum``: white text on a saturated colour, which the maximum hides); 8-bit
colour has no window. Frames are decoded once (:func:`frames`), as
``(frames, rows, columns[, samples])``.

Planes that are not DICOM (the channels of a microscopy image, :func:`render_channels`) are
rendered the same way: each channel stretched over its own range (8-bit colour kept), then
one channel as ``full`` and ``window`` (0.5-99.5 percentiles, equalised locally), several as
their maximum (``full``) and minimum (``minimum``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The two renderings of every grey frame, in the order :func:`renderings` returns them
#: (colour frames: ``full`` and ``minimum``).
RENDERINGS = ("full", "window")


def frames(ds: Any) -> np.ndarray:
    """The decoded pixel data of ``ds`` as ``(frames, rows, columns[, samples])``.

    Raises ``ValueError`` (a short reason) when the pixel data cannot be decoded.
    """
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom's decoders raise many types
        raise ValueError(f"cannot decode pixel data ({type(exc).__name__}: {exc})") from exc
    n = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if n == 1:
        arr = arr[np.newaxis]
    if samples == 1 and arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


def _stretch(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    y = (x.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(y, 0, 255).astype(np.uint8)


def _first(value: Any) -> Any:
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return value
    return value[0]


def _window(ds: Any) -> tuple[float, float] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c, w = float(_first(center)), float(_first(width))
    except (TypeError, ValueError, IndexError):
        return None
    if w <= 1:
        return None
    return c - w / 2.0, c + w / 2.0


def _local_contrast(img: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation: grey text on grey tissue stands out."""
    import cv2

    return np.asarray(cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(img))


def render_channels(plane: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Renderings of one plane of channels ``(c, y, x)`` (any numeric type) for OCR.

    One channel: ``[("full", img), ("window", img)]`` as a grey DICOM frame without a window;
    several (RGB or fluorescence): ``[("full", max), ("minimum", min)]`` over the channels.
    Each channel is first stretched over its own range (except 8-bit colour, kept as it is).
    Each image is H x W uint8.
    """
    if plane.ndim != 3 or min(plane.shape) < 1:
        raise ValueError(f"expected a (c, y, x) plane, got shape {plane.shape}")
    if plane.dtype == np.uint8 and plane.shape[0] > 1:
        chans = plane
    else:
        x = plane.astype(np.float32)
        chans = np.stack([_stretch(ch, float(ch.min()), float(ch.max())) for ch in x])
    if chans.shape[0] == 1:
        grey = np.ascontiguousarray(chans[0])
        p0, p1 = np.percentile(grey[:: max(1, grey.shape[0] // 256)], (0.5, 99.5))
        return [("full", grey), ("window", _local_contrast(_stretch(grey, float(p0), float(p1))))]
    return [
        ("full", np.ascontiguousarray(chans.max(axis=0))),
        ("minimum", np.ascontiguousarray(chans.min(axis=0))),
    ]


class Renderer:
    """Renders the frames of one data set (the LUT decisions are made once per file)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
        self.samples = int(ds.get("SamplesPerPixel") or 1)
        self.window = _window(ds)
        self.has_voi_lut = "VOILUTSequence" in ds and self.window is None
        self.has_modality = (
            "RescaleSlope" in ds or "RescaleIntercept" in ds or ("ModalityLUTSequence" in ds)
        )

    def _modality(self, frame: np.ndarray) -> np.ndarray:
        if not self.has_modality:
            return frame
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(frame, self.ds))

    def renderings(self, frame: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``[("full", img), ("window", img)]`` of one frame, each H x W uint8
        (``[("full", img), ("minimum", img)]`` for colour)."""
        if self.samples == 3 or self.photometric == "PALETTE COLOR":
            rgb = frame
            if self.photometric == "PALETTE COLOR":
                from pydicom.pixels import apply_color_lut

                rgb = np.asarray(apply_color_lut(frame, self.ds))
                if rgb.dtype != np.uint8:
                    rgb = (rgb.astype(np.float32) / 257.0).astype(np.uint8)
            rgb = (
                rgb.astype(np.uint8)
                if rgb.dtype == np.uint8
                else _stretch(rgb, 0, float(rgb.max() or 1))
            )
            # the channel maximum shows text of any colour on dark; the minimum shows white
            # text on a saturated colour (white on red is 255 in the red channel of both)
            return [
                ("full", np.ascontiguousarray(rgb.max(axis=-1))),
                ("minimum", np.ascontiguousarray(rgb.min(axis=-1))),
            ]
        x = self._modality(frame)
        lo, hi = float(x.min()), float(x.max())
        full = _stretch(x, lo, hi)
        if self.has_voi_lut:
            from pydicom.pixels import apply_voi_lut

            v = np.asarray(apply_voi_lut(x, self.ds))
            win = _stretch(v, float(v.min()), float(v.max()))
        else:
            bounds = self.window
            if bounds is None:
                p0, p1 = np.percentile(x[:: max(1, x.shape[0] // 256)], (0.5, 99.5))
                bounds = (float(p0), float(p1))
            win = _stretch(x, *bounds)
        if self.photometric == "MONOCHROME1":
            full = 255 - full
            win = 255 - win
        return [("full", full), ("window", _local_contrast(win))]

    def background(self, frame: np.ndarray) -> Any:
        """The stored value that displays darkest in ``frame`` (what blanked pixels get)."""
        if self.samples == 3 or self.photometric == "PALETTE COLOR":
            return 0
        if self.photometric == "MONOCHROME1":
            return frame.max()
        return frame.min()
