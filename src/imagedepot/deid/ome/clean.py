"""Cleaning OME-XML: :func:`clean_ome_xml` (what it removes: :mod:`imagedepot.deid.ome`)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Collection

from imagedepot.deid.omexml import namespace_prefixes, serialize_xml
from imagedepot.deid.pseudonym import Pseudonymizer, date_mode, shift_date_value
from imagedepot.pixeltext.series import is_auxiliary_name
from imagedepot.safeload import local_name, parse_xml

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
