"""Series sampling for the text detector under ``ocr_series: sample``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagedepot.pixeltext.dicom import (
    VOLUME_MODALITIES,
    PixelTextSettings,
)


def _header(path: Path) -> Any:
    from pydicom import dcmread

    try:
        return dcmread(
            os.fspath(path),
            stop_before_pixels=True,
            specific_tags=["SeriesInstanceUID", "Modality", "InstanceNumber", "NumberOfFrames"],
        )
    except Exception:  # unreadable files are refused later, by the real read
        return None


def _ocr_plan(
    files: Sequence[Path], settings: PixelTextSettings
) -> tuple[frozenset[str], dict[str, str]]:
    """Files the text detector does not read at first under ``ocr_series: sample``, and the
    Series Instance UID of every file of the sampled series (headers read once).

    Only single-frame series of volume modalities (CT, MR, PT, NM) are sampled: the first,
    middle and last slice and every ``sample_every``-th (by Instance Number) are read; when any
    of them has text (or is refused), the whole series is read (see :func:`deidentify_dicom`).
    """
    if settings.ocr_series != "sample":
        return frozenset(), {}
    series: dict[str, list[tuple[int, str]]] = {}
    for path in files:
        ds = _header(path)
        if ds is None:
            continue
        modality = str(ds.get("Modality") or "").strip().upper()
        if modality not in VOLUME_MODALITIES or int(ds.get("NumberOfFrames") or 1) > 1:
            continue
        try:
            number = int(ds.get("InstanceNumber") or 0)
        except (TypeError, ValueError):
            number = 0
        series.setdefault(str(ds.get("SeriesInstanceUID") or ""), []).append((number, str(path)))
    skip: set[str] = set()
    series_of: dict[str, str] = {}
    for uid, members in series.items():
        if not uid or len(members) < 4:
            continue
        members.sort()
        n = len(members)
        keep = {0, n // 2, n - 1, *range(0, n, settings.sample_every)}
        skip.update(p for i, (_, p) in enumerate(members) if i not in keep)
        series_of.update((p, uid) for _, p in members)
    return frozenset(skip), series_of
