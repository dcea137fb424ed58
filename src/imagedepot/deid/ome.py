"""De-identify OME metadata: OME-XML, OME-TIFF files and OME-Zarr stores.

:func:`clean_ome_xml` edits the XML tree (any OME schema namespace; elements are matched by local
name) and keeps it schema-valid: only optional attributes and elements are removed, and every
reference still points to an element that exists. What it does:

* ``Experimenter``: ``FirstName``, ``MiddleName``, ``LastName``, ``Email``, ``Institution`` and
  ``UserName`` removed; the element stays with a neutral ID (``Experimenter:0``...), and every
  reference to it (``ExperimenterRef``, ``Leader``, ``Annotator``) is renumbered with it;
  ``ExperimenterGroup``: ``Name`` removed, neutral ID.
* Text annotations (``CommentAnnotation``, ``TagAnnotation``, ``TermAnnotation``,
  ``MapAnnotation``, ``XMLAnnotation`` (Bio-Formats original metadata), ``TimestampAnnotation``,
  ``FileAnnotation``) removed with the ``AnnotationRef`` elements that point to them; numeric and
  boolean annotations kept.
* Every ``Description`` element, the ``Rights`` element, the ``Text`` of ROI shapes, the ``Name``
  of projects, datasets, folders, screens, plates, experimenter groups and ROIs, and the
  ``ExternalIdentifier``/``ExternalDescription`` of plates and wells removed.
* ``Image/@Name`` replaced by ``image_<n>`` unless it is a generic name (``Series 1``, ``label``,
  ``macro image``, ``thumbnail``...: :func:`is_generic_name`).
* ``AcquisitionDate`` and ``WellSample/@Timepoint`` shifted under
  ``retain_longitudinal_modified_dates``, kept under ``retain_longitudinal_full_dates``, removed
  otherwise.
* ``SerialNumber`` and ``LotNumber`` of instrument parts removed unless
  ``retain_device_identity``.
* ``UUID/@FileName`` set to the output file name (or removed). XML comments are dropped.

Pixels, channels (names, colours, wavelengths), physical sizes, planes, instruments (manufacturer,
model, objective) and all IDs other than experimenters' are left as they are.

:func:`deidentify_ome` also removes the auxiliary images of slide scanners (slide label, macro,
overview, thumbnail, preview series: :func:`imagedepot.pixeltext.series.is_auxiliary_name`) as
the policy's ``pixel_text.auxiliary_images`` says, keeping the OME-XML and the Zarr layout
consistent (:mod:`imagedepot.deid.auxiliary`; :func:`imagedepot.deid.omexml.remove_ome_images`).
The OME-XML is read with :func:`imagedepot.safeload.parse_xml` and written with
:func:`imagedepot.deid.omexml.serialize_xml`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.deid.omexml import namespace_prefixes, serialize_xml
from imagedepot.deid.pseudonym import Pseudonymizer, date_mode, shift_date_value
from imagedepot.errors import InputError
from imagedepot.io import atomic_path
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.pixeltext.series import is_auxiliary_name
from imagedepot.safeload import local_name, parse_xml

log = logging.getLogger(__name__)

#: Annotation elements removed (they hold free text, dates or files).
TEXT_ANNOTATIONS = frozenset(
    {
        "CommentAnnotation",
        "TagAnnotation",
        "TermAnnotation",
        "MapAnnotation",
        "XMLAnnotation",
        "TimestampAnnotation",
        "FileAnnotation",
    }
)
#: Elements whose optional ``Name`` attribute is removed.
NAMED_CONTAINERS = frozenset(
    {"Project", "Dataset", "Folder", "Screen", "Plate", "ExperimenterGroup", "ROI"}
)
_EXPERIMENTER_ATTRS = ("FirstName", "MiddleName", "LastName", "Email", "Institution", "UserName")
_GENERIC_IMAGE_NAME = re.compile(
    r"(?i)(series|image|label|macro|thumbnail|overview|preview)?[\s_#:-]*\d*"
)
#: TIFF tags blanked on every page (text that may identify: file, page, author, computer...).
TIFF_TEXT_TAGS = {269: "DocumentName", 285: "PageName", 315: "Artist", 316: "HostComputer"}
TIFF_TEXT_TAGS |= {33432: "Copyright", 51123: "MicroManagerMetadata"}
_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.btf", ".tif", ".tiff", ".btf")
_ZARR_ATTR_FILES = frozenset({".zattrs", "zarr.json", ".zmetadata"})


def is_generic_name(name: object) -> bool:
    """True when an image name says nothing about whom it shows (``Series 1``, ``image_0``,
    ``label image``...): such names are kept, others replaced by ``image_<n>``."""
    if not isinstance(name, str):
        return False
    return _GENERIC_IMAGE_NAME.fullmatch(name.strip()) is not None or is_auxiliary_name(name)


def is_ome_xml(text: str | bytes) -> bool:
    """True when ``text`` looks like an OME-XML document (root element ``OME``)."""
    head = text[:4096] if isinstance(text, str) else text[:4096].decode("latin-1")
    return bool(re.search(r"<(\w+:)?OME[\s>]", head))


def clean_ome_xml(
    xml: str,
    *,
    policy_options: Collection[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    file_name: str | None = None,
) -> tuple[str, dict[str, int]]:
    """Remove identifying metadata from an OME-XML document (see the module docstring).

    Parameters
    ----------
    xml
        The OME-XML document.
    policy_options
        De-identification option names.
    pseudonymizer, subject
        Keyed pseudonymiser and the subject's original ID (date offset).
    file_name
        Name of the file the XML describes (``UUID/@FileName`` is set to it); None removes
        ``FileName``.

    Returns
    -------
    tuple
        The cleaned XML (UTF-8 declaration, ASCII only: other characters as character
        references) and a summary of counts (no values).

    Raises
    ------
    ValueError
        ``xml`` is not well-formed OME-XML.
    """
    root = parse_xml(xml)
    if local_name(root.tag) != "OME":
        raise ValueError("the XML root element is not OME")
    summary: Counter[str] = Counter()
    mode = date_mode(policy_options)
    keep_devices = "retain_device_identity" in policy_options
    remap: dict[str, str] = {}
    removed_annotations: set[str] = set()
    counters = {"Experimenter": 0, "ExperimenterGroup": 0, "Image": 0}

    def drop(el: ET.Element) -> bool:
        """True when ``el`` is to be removed (counted)."""
        name = local_name(el.tag)
        if name in TEXT_ANNOTATIONS:
            if "ID" in el.attrib:
                removed_annotations.add(el.attrib["ID"])
            summary["annotations_removed"] += 1
            return True
        if name == "Description":
            summary["descriptions_removed"] += 1
            return True
        if name == "Rights":
            summary["rights_removed"] += 1
            return True
        if name == "AcquisitionDate":
            old = (el.text or "").strip()
            new = _date_value(old, mode, pseudonymizer, subject)
            _count_date(summary, old, new)
            if new is None:
                return True
            el.text = new
        return False

    def clean_attributes(el: ET.Element) -> None:
        name = local_name(el.tag)
        a = el.attrib
        if name in counters:
            n = counters[name]
            counters[name] += 1
            if name == "Experimenter":
                for attr in _EXPERIMENTER_ATTRS:
                    if a.pop(attr, None) is not None:
                        summary["experimenter_fields_removed"] += 1
            if name in ("Experimenter", "ExperimenterGroup") and "ID" in a:
                remap[a["ID"]] = f"{name}:{n}"
            image_name = a.get("Name")
            if name == "Image" and image_name is not None and not is_generic_name(image_name):
                a["Name"] = f"image_{n}"
                summary["image_names_replaced"] += 1
        if name in NAMED_CONTAINERS and a.pop("Name", None) is not None:
            summary["names_removed"] += 1
        if name == "WellSample" and "Timepoint" in a:
            new = _date_value(a["Timepoint"], mode, pseudonymizer, subject)
            _count_date(summary, a["Timepoint"], new)
            if new is None:
                del a["Timepoint"]
            else:
                a["Timepoint"] = new
        if a.pop("Text", None) is not None:
            summary["shape_texts_removed"] += 1
        if name in ("Plate", "Well"):
            for attr in ("ExternalIdentifier", "ExternalDescription"):
                if a.pop(attr, None) is not None:
                    summary["external_identifiers_removed"] += 1
        if not keep_devices:
            for attr in ("SerialNumber", "LotNumber"):
                if a.pop(attr, None) is not None:
                    summary["serial_numbers_removed"] += 1
        if name == "UUID" and "FileName" in a:
            if file_name:
                a["FileName"] = file_name
            else:
                del a["FileName"]
            summary["file_names_replaced"] += 1

    def walk(el: ET.Element) -> None:
        clean_attributes(el)
        for child in list(el):
            if drop(child):
                el.remove(child)
            else:
                walk(child)

    def fix_references(el: ET.Element) -> None:
        for child in list(el):
            if local_name(child.tag) == "AnnotationRef" and child.get("ID") in removed_annotations:
                el.remove(child)
                continue
            if local_name(child.tag) == "StructuredAnnotations":
                fix_references(child)
                if len(child) == 0:
                    el.remove(child)
                continue
            fix_references(child)
        for attr, value in list(el.attrib.items()):
            if value in remap and local_name(attr) in ("ID", "Annotator"):
                el.attrib[attr] = remap[value]

    walk(root)
    fix_references(root)
    summary["experimenters"] = counters["Experimenter"]
    summary["experimenter_groups"] = counters["ExperimenterGroup"]

    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + serialize_xml(root, namespace_prefixes(xml))
    text = text.encode("ascii", "xmlcharrefreplace").decode("ascii")
    return text, dict(sorted(summary.items()))


def _date_value(value: str, mode: str, pseudonymizer: Pseudonymizer, subject: str) -> str | None:
    if mode == "keep":
        return value
    if mode == "shift":
        return shift_date_value(value, pseudonymizer, subject)
    return None


def _count_date(summary: Counter[str], old: str, new: str | None) -> None:
    if new is None:
        summary["dates_removed"] += 1
    elif new == old:
        summary["dates_kept"] += 1
    else:
        summary["dates_shifted"] += 1


# --------------------------------------------------------------------------- reports


@dataclass
class OmeDeidReport:
    """What :func:`deidentify_ome` did (counts and pseudonymous names only)."""

    format: str
    output: str
    xml: dict[str, int] = field(default_factory=dict)
    xml_documents: int = 0
    zarr_names_replaced: int = 0
    zarr_fields_removed: int = 0
    zarr_dates: dict[str, int] = field(default_factory=dict)
    tiff_tags_cleaned: dict[str, int] = field(default_factory=dict)
    policy_options: list[str] = field(default_factory=list)
    auxiliary_images: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "format": self.format,
            "output": self.output,
            "xml": dict(self.xml),
            "xml_documents": self.xml_documents,
            "zarr_names_replaced": self.zarr_names_replaced,
            "zarr_fields_removed": self.zarr_fields_removed,
            "zarr_dates": dict(self.zarr_dates),
            "tiff_tags_cleaned": dict(self.tiff_tags_cleaned),
            "policy_options": list(self.policy_options),
            "auxiliary_images": [dict(d) for d in self.auxiliary_images],
        }

    def _add_xml(self, summary: dict[str, int]) -> None:
        merged = Counter(self.xml)
        merged.update(summary)
        self.xml = dict(sorted(merged.items()))
        self.xml_documents += 1


# --------------------------------------------------------------------------- OME-Zarr


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and (
        path.name.lower().endswith(".zarr")
        or any((path / n).is_file() for n in ("zarr.json", ".zgroup", ".zarray"))
    )


def _neutral_name(name: Any, index: int) -> tuple[Any, bool]:
    if is_generic_name(name):
        return name, False
    return f"image_{index}", True


def _clean_attrs(
    obj: Any,
    report: OmeDeidReport,
    *,
    index: int,
    mode: str,
    offset_ms: int,
    dates: Counter[str],
) -> Any:
    """Clean OME-Zarr attributes in place: image names, plate names and acquisition times."""
    if isinstance(obj, list):
        for v in obj:
            _clean_attrs(v, report, index=index, mode=mode, offset_ms=offset_ms, dates=dates)
        return obj
    if not isinstance(obj, dict):
        return obj
    for ms in obj.get("multiscales", []) if isinstance(obj.get("multiscales"), list) else []:
        if isinstance(ms, dict) and "name" in ms:
            ms["name"], changed = _neutral_name(ms["name"], index)
            report.zarr_names_replaced += changed
    omero = obj.get("omero")
    if isinstance(omero, dict) and "name" in omero:
        omero["name"], changed = _neutral_name(omero["name"], index)
        report.zarr_names_replaced += changed
    plate = obj.get("plate")
    if isinstance(plate, dict):
        if plate.pop("name", None) is not None:
            report.zarr_fields_removed += 1
        for acq in plate.get("acquisitions", []) or []:
            if not isinstance(acq, dict):
                continue
            for key in ("name", "description"):
                if acq.pop(key, None) is not None:
                    report.zarr_fields_removed += 1
            for key in ("starttime", "endtime"):
                if key not in acq:
                    continue
                if mode == "keep":
                    dates["kept"] += 1
                elif mode == "shift" and isinstance(acq[key], int):
                    acq[key] += offset_ms
                    dates["shifted"] += 1
                else:
                    del acq[key]
                    dates["removed"] += 1
    for key, value in obj.items():
        # consolidated metadata is keyed by node path ("1/.zattrs", "1"): the image index
        sub = index
        if isinstance(value, dict) and ("/" in key or key.isdigit() or key in _ZARR_ATTR_FILES):
            sub = _index_from_path(key)
        _clean_attrs(value, report, index=sub, mode=mode, offset_ms=offset_ms, dates=dates)
    return obj


def _index_from_path(path: str) -> int:
    parts = [p for p in path.split("/") if p and p not in _ZARR_ATTR_FILES | {".zarray", ".zgroup"}]
    return int(parts[-1]) if parts and parts[-1].isdigit() else 0


def _deid_zarr(
    src: Path,
    out: Path,
    *,
    options: frozenset[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    pixel_text: PixelTextSettings,
    force: bool,
) -> OmeDeidReport:
    report = OmeDeidReport(format="ome-zarr", output=out.name, policy_options=sorted(options))
    mode = date_mode(options)
    offset_ms = pseudonymizer.date_offset_days(subject) * 86_400_000
    dates: Counter[str] = Counter()
    with atomic_path(out, force=force, is_dir=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        _auxiliary_images(src, tmp, report, pixel_text)
        for dirpath, _dirnames, filenames in os.walk(tmp):
            folder = Path(dirpath)
            index = int(folder.name) if folder.name.isdigit() else 0
            for name in filenames:
                path = folder / name
                if name in _ZARR_ATTR_FILES:
                    try:
                        data = json.loads(path.read_text(encoding="utf-8"))
                    except (ValueError, UnicodeDecodeError) as exc:
                        raise InputError(src, f"invalid Zarr metadata file {name}") from exc
                    before = json.dumps(data, sort_keys=True)
                    _clean_attrs(
                        data, report, index=index, mode=mode, offset_ms=offset_ms, dates=dates
                    )
                    if json.dumps(data, sort_keys=True) != before:
                        path.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
                elif name.lower().endswith(".xml"):
                    text = path.read_text(encoding="utf-8", errors="replace")
                    if not is_ome_xml(text):
                        continue
                    try:
                        cleaned, summary = clean_ome_xml(
                            text,
                            policy_options=options,
                            pseudonymizer=pseudonymizer,
                            subject=subject,
                        )
                    except ValueError as exc:
                        raise InputError(src, f"invalid OME-XML in {name}: {exc}") from exc
                    path.write_text(cleaned, encoding="utf-8")
                    report._add_xml(summary)
    report.zarr_dates = dict(sorted(dates.items()))
    return report


def _auxiliary_images(
    src: Path, tmp: Path, report: OmeDeidReport, settings: PixelTextSettings
) -> None:
    """Screen the auxiliary series of the copy ``tmp`` and remove those the policy removes
    (:mod:`imagedepot.deid.auxiliary`); what cannot be done safely raises :class:`InputError`."""
    from imagedepot.deid import auxiliary as aux

    try:
        entries = aux.list_series(tmp)
    except (ValueError, OSError) as exc:
        raise InputError(src, f"auxiliary images: series cannot be listed ({exc})") from exc
    decisions = aux.screen(tmp, entries, settings)
    drop = {d.series for d in decisions if d.removed}
    try:
        if drop and tmp.is_dir():
            aux.remove_zarr_series(tmp, entries, drop)
        elif drop:
            aux.remove_tiff_series(tmp, drop)
    except (ValueError, OSError) as exc:
        raise InputError(src, f"auxiliary images cannot be removed: {exc}") from exc
    for d in decisions:
        log.info("series %d: %s", d.series, d.message)
    report.auxiliary_images = [d.to_dict() for d in decisions]


# --------------------------------------------------------------------------- OME-TIFF


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


# --------------------------------------------------------------------------- entry point


def deidentify_ome(
    src: Path,
    out: Path,
    *,
    policy_options: frozenset[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    pixel_text: PixelTextSettings | None = None,
    force: bool = False,
) -> OmeDeidReport:
    """De-identify the metadata of an OME-Zarr store or an OME-TIFF file, and remove its
    auxiliary images (slide label, macro, overview, thumbnail, preview) as the policy says;
    the pixels of the other images are unchanged.

    Parameters
    ----------
    src
        An OME-Zarr store (a folder named ``*.zarr`` or holding ``zarr.json``/``.zgroup``): copied,
        then ``OME/METADATA.ome.xml`` (any ``*.xml`` OME document) cleaned with
        :func:`clean_ome_xml` and the ``multiscales``/``omero`` image names, plate names and
        acquisition times of ``.zattrs``/``zarr.json``/``.zmetadata`` cleaned. Or a single-file
        (OME-)TIFF: copied, then the OME-XML ImageDescription rewritten in place (the old value
        zeroed), other ImageDescriptions blanked unless they only hold shapes, the DateTime tag
        handled like dates, and the DocumentName, PageName, Artist, HostComputer, Copyright and
        Micro-Manager tags blanked on every page. The pixel data bytes are not touched.
        In both, the auxiliary series are screened and removed as
        :mod:`imagedepot.deid.auxiliary` describes (``pixel_text.auxiliary_images``): from a
        store, their groups go and the others are renumbered, ``OME/series`` and the OME-XML
        follow; from an OME-TIFF, their IFDs are unlinked and their pixel bytes zeroed, the
        OME-XML follows. Each decision is in the report (``auxiliary_images``).
    out
        The output store (Zarr) or file (TIFF). For a TIFF, a path without a TIFF suffix is a
        folder that receives ``<pseudonym>.ome.tif``. Written atomically.
    policy_options, pseudonymizer, subject
        As for :func:`clean_ome_xml`.
    pixel_text
        The policy's ``pixel_text`` section (``auxiliary_images``, OCR settings); None: the
        defaults (every auxiliary image removed, nothing read).
    force
        Replace an existing output.

    Returns
    -------
    OmeDeidReport

    Raises
    ------
    InputError
        The input cannot be used, or an auxiliary image to remove cannot be removed safely
        (every image of a store is auxiliary; the first IFD of an OME-TIFF belongs to one...):
        the caller quarantines the item.
    """
    src, out = Path(src), Path(out)
    options = frozenset(policy_options)
    settings = pixel_text if pixel_text is not None else PixelTextSettings()
    if not src.exists():
        raise InputError(src, "input not found")
    if _is_zarr_store(src):
        report = _deid_zarr(
            src,
            out,
            options=options,
            pseudonymizer=pseudonymizer,
            subject=subject,
            pixel_text=settings,
            force=force,
        )
    elif src.is_file() and src.name.lower().endswith(_TIFF_SUFFIXES):
        target = out
        if not out.name.lower().endswith(_TIFF_SUFFIXES):
            target = out / f"{pseudonymizer.subject_id(subject)}.ome.tif"
        report = _deid_tiff(
            src,
            target,
            options=options,
            pseudonymizer=pseudonymizer,
            subject=subject,
            pixel_text=settings,
            force=force,
        )
    else:
        raise InputError(src, "not an OME-Zarr store or an OME-TIFF file")
    log.info(
        "de-identified %s metadata: %d OME-XML document(s), %d TIFF tag(s), %d Zarr name(s), "
        "%d auxiliary image(s) removed",
        report.format,
        report.xml_documents,
        sum(report.tiff_tags_cleaned.values()),
        report.zarr_names_replaced,
        sum(1 for d in report.auxiliary_images if d["action"] == "removed"),
    )
    return report
