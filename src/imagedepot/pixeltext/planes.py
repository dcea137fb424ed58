"""Text in image planes that are not DICOM: the auxiliary images of microscopy outputs.

:func:`find_text_in_planes` renders each plane of channels with
:func:`imagedepot.pixeltext.render.render_channels` and reads it with the same engines and
settings as DICOM pixel data (:func:`imagedepot.pixeltext.dicom.finder`). What counts is every
region whose whole text is not an allowed token of the policy, whatever ``pixel_text.mode`` says:
an auxiliary image has no header whose identifiers ``blank_phi`` could look for, and it is
removed whole rather than blanked.
"""

from __future__ import annotations

import numpy as np

from imagedepot.pixeltext import identifiers as ids
from imagedepot.pixeltext.detect import TextRegion
from imagedepot.pixeltext.dicom import PixelTextSettings, finder
from imagedepot.pixeltext.render import render_channels


def find_text_in_planes(planes: np.ndarray, settings: PixelTextSettings) -> list[TextRegion]:
    """Regions of text that is not an allowed token, in every plane of ``planes``.

    Parameters
    ----------
    planes
        ``(n, c, y, x)``: n planes (time points and z sections) of c channels.
    settings
        The policy's ``pixel_text`` section (engines, screen, allow-list).

    Returns
    -------
    list of TextRegion
        Boxes in plane pixel coordinates, ``frame`` the plane's index. Raises
        :class:`imagedepot.pixeltext.engines.EngineUnavailable` when an engine is missing.
    """
    if planes.ndim != 4:
        raise ValueError(f"expected (n, c, y, x) planes, got shape {planes.shape}")
    tf = finder(settings.detector)

    def allowed(region: TextRegion) -> bool:
        return ids.allowed(region.text, region.confidence, settings.allow_patterns)

    found: list[TextRegion] = []
    seen: set[tuple[int, tuple[int, int, int, int], str, str]] = set()
    for i in range(planes.shape[0]):
        for r in tf.find_frame(render_channels(planes[i]), frame=i, keep=allowed):
            key = (r.frame, r.box, r.engine, r.text)
            if key not in seen and not allowed(r):
                seen.add(key)
                found.append(r)
    return found


__all__ = ["find_text_in_planes"]
