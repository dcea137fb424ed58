"""De-identifying a single-file OME-TIFF: a copy whose text tags and OME-XML are rewritten in place."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from imagedepot.deid.ome.clean import clean_ome_xml, is_ome_xml
from imagedepot.deid.ome.report import OmeDeidReport, _auxiliary_images
from imagedepot.deid.pseudonym import Pseudonymizer, date_mode
from imagedepot.errors import InputError
from imagedepot.io import atomic_path
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.safeload import local_name, parse_xml

#: TIFF tags blanked on every page (text that may identify: file, page, author, computer...).
TIFF_TEXT_TAGS = {269: "DocumentName", 285: "PageName", 315: "Artist", 316: "HostComputer"}
TIFF_TEXT_TAGS |= {33432: "Copyright", 51123: "MicroManagerMetadata"}
_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.btf", ".tif", ".tiff", ".btf")


def _tiff_datetime(value: str, mode: str, pseudonymizer: Pseudonymizer, subject: str) -> str:
    """TIFF DateTime (``YYYY:MM:DD HH:MM:SS``) per the dates mode ("" when removed)."""
    if mode == "keep":
        return value
    m = re.fullmatch(r"\s*(\d{4}):(\d{2}):(\d{2})(.*)", value)
    if mode == "shift" and m:
        try:
            day = pseudonymizer.shift_date(m.group(1) + m.group(2) + m.group(3), subject)
        except ValueError:
            return ""
        return f"{day[:4]}:{day[4:6]}:{day[6:]}{m.group(4)}"
    return ""


def _keep_description(text: str) -> bool:
    """Non-OME ImageDescription values known to hold only shapes (tifffile, ImageJ headers)."""
    t = text.strip()
    if t.startswith("ImageJ="):
        return all(
            re.fullmatch(r"[A-Za-z]+=[\w.+-]*", line) for line in t.splitlines() if line.strip()
        )
    if t.startswith("{"):
        try:
            data = json.loads(t)
        except ValueError:
            return False
        return isinstance(data, dict) and set(data) <= {"shape", "axes", "dtype"}
    return not t


def _deid_tiff(
    src: Path,
    target: Path,
    *,
    options: frozenset[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    pixel_text: PixelTextSettings,
    force: bool,
) -> OmeDeidReport:
    import tifffile

    report = OmeDeidReport(format="ome-tiff", output=target.name, policy_options=sorted(options))
    mode = date_mode(options)
    tags: Counter[str] = Counter()
    with atomic_path(target, force=force) as tmp:
        shutil.copyfile(src, tmp)
        try:
            with tifffile.TiffFile(tmp, mode="r+") as tif:
                for page in tif.pages:
                    page_tags = getattr(page, "tags", None)
                    if page_tags is None:
                        continue
                    for tag in list(page_tags.values()):
                        new, summary = _new_tag_value(
                            tag, mode, options, pseudonymizer, subject, target
                        )
                        if new is None:
                            continue
                        tag.overwrite(new)
                        tags[str(tag.name)] += 1
                        if summary is not None:
                            report._add_xml(summary)
        except tifffile.TiffFileError as exc:
            raise InputError(src, f"not a readable TIFF file ({exc})") from exc
        _auxiliary_images(src, tmp, report, pixel_text)
    report.tiff_tags_cleaned = dict(sorted(tags.items()))
    return report


def _new_tag_value(
    tag: Any,
    mode: str,
    options: frozenset[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    target: Path,
) -> tuple[str | None, dict[str, int] | None]:
    """The cleaned value of a TIFF tag (None to leave it) and the OME-XML summary if any."""
    if tag.code not in (270, 306) and tag.code not in TIFF_TEXT_TAGS:
        return None, None
    value = tag.value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None, None
    if tag.code == 306:
        new = _tiff_datetime(value, mode, pseudonymizer, subject)
        return (None if new == value else new), None
    if tag.code in TIFF_TEXT_TAGS:
        return ("" if value else None), None
    if is_ome_xml(value):
        _check_single_file(value, target)
        try:
            cleaned, summary = clean_ome_xml(
                value,
                policy_options=options,
                pseudonymizer=pseudonymizer,
                subject=subject,
                file_name=target.name,
            )
        except ValueError as exc:
            raise InputError(target.name, f"invalid OME-XML: {exc}") from exc
        return cleaned, summary
    return (None if _keep_description(value) else ""), None


def _check_single_file(xml: str, target: Path) -> None:
    root = parse_xml(xml)
    names = {
        el.attrib["FileName"]
        for el in root.iter()
        if local_name(el.tag) == "UUID" and "FileName" in el.attrib
    }
    if len(names) > 1 or any(local_name(el.tag) == "BinaryOnly" for el in root.iter()):
        raise InputError(
            target.name,
            "multi-file OME-TIFF sets and companion OME-XML files are not supported: "
            "convert them to OME-Zarr first",
        )
