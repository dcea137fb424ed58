"""What both writers put in their :class:`~imagedepot.convert.ConvertReport`: what the reader
tells, and one entry per image written.
"""

from __future__ import annotations

from typing import Any

from imagedepot.convert import AXES, ConvertReport, ImageSource, SeriesInfo
from imagedepot.convert.microscopy.pyramid import Shape5


def _start_report(report: ConvertReport, source: ImageSource, versions: dict[str, str]) -> None:
    """Fill what the reader tells (again, when a conversion is retried with another reader)."""
    report.tool = source.reader
    report.reader_fallback = source.fallback
    report.inputs = source.used_files()
    report.input_count = len(report.inputs)
    report.versions = {**source.versions(), **versions}
    report.messages = list(source.notes)
    report.images = []


def _image_report(info: SeriesInfo, levels: list[Shape5], path: str) -> dict[str, Any]:
    return {
        "path": path,
        "series": info.index,
        "name": info.name,
        "axes": "".join(AXES),
        "shape": list(info.shape),
        "dtype": info.dtype,
        "physical_size": dict(info.physical_size),
        "channel_names": list(info.channel_names),
        "levels": [list(s) for s in levels],
        **({"layout": info.layout} if info.layout else {}),
    }
