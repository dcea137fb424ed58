"""PageTab validation.

:func:`validate_pagetab` checks the structure of the PageTab specification and the required REMBI
fields (listed in :mod:`imagedepot.deposit.bia.pagetab`); each error names the section, the field
and where to set it (:data:`FIELD_SOURCES`).
"""

from __future__ import annotations

import re
from typing import Any

from imagedepot.deposit.bia.pagetab import COLLECTION, _iter_sections

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


#: Where each required field comes from, for error messages: (section type, attribute) -> hint.
FIELD_SOURCES: dict[tuple[str, str], str] = {
    ("Submission", "Title"): "sample sheet column 'title'",
    ("Submission", "ReleaseDate"): "sample sheet column 'release_date' or study 'release_date' "
    "(YYYY-MM-DD)",
    ("Submission", "AttachTo"): "set by imagedepot (BioImages)",
    ("Study", "Description"): "sample sheet column 'description'",
    ("Study", "License"): "sample sheet column 'license' or study 'license' (CC0 or CC BY 4.0)",
    ("Study", "author"): "study 'authors' (name and affiliation)",
    ("author", "Name"): "study 'authors[].name'",
    ("author", "affiliation"): "study 'authors[].affiliation'",
    ("organization", "Name"): "study 'authors[].affiliation'",
    ("Biosample", "Title"): "set by imagedepot",
    ("Biosample", "Biological entity"): "sample sheet column 'biological_entity' or 'sample'",
    ("Biosample", "Organism"): "sample sheet column 'organism'",
    ("Organism", "Scientific name"): "sample sheet column 'organism'",
    ("Specimen", "Title"): "set by imagedepot",
    ("Specimen", "Sample Preparation Protocol"): "sample sheet column 'sample_preparation' or "
    "study 'sample_preparation'",
    ("Image Acquisition", "Title"): "set by imagedepot",
    ("Image Acquisition", "Imaging Instrument"): "sample sheet column 'imaging_instrument', study "
    "'imaging_instrument', or an Instrument in the image's OME-XML",
    ("Image Acquisition", "Image Acquisition Parameters"): "sample sheet column "
    "'acquisition_parameters', study 'acquisition_parameters', or the image's OME-XML Pixels",
    ("Image Acquisition", "Imaging Method"): "sample sheet column 'imaging_method'",
    ("Imaging Method", "Ontology Value"): "sample sheet column 'imaging_method'",
    ("Study Component", "Name"): "set by imagedepot (dataset id)",
    ("Study Component", "Description"): "sample sheet column 'description'",
    ("Study Component", "File List"): "set by imagedepot",
    ("Study Component", "Associations"): "set by imagedepot",
}


def _where(section_type: str, name: str) -> str:
    hint = FIELD_SOURCES.get((section_type, name))
    return f"; set it from {hint}" if hint else ""


def _check_attributes(attrs: Any, where: str, problems: list[str]) -> dict[str, list[str]]:
    """Check an attribute list; return name (lower case) -> values."""
    found: dict[str, list[str]] = {}
    if not isinstance(attrs, list):
        problems.append(f"{where}: 'attributes' must be a list")
        return found
    for i, a in enumerate(attrs):
        if not isinstance(a, dict):
            problems.append(f"{where}: attributes[{i}] must be an object with name and value")
            continue
        name, value = a.get("name"), a.get("value")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: attributes[{i}]: 'name' must be non-empty text")
            continue
        if not isinstance(value, str):
            problems.append(f"{where}: attribute {name!r}: 'value' must be text")
            continue
        for q in ("nmqual", "valqual"):
            if q in a and not isinstance(a[q], list):
                problems.append(f"{where}: attribute {name!r}: {q!r} must be a list")
        found.setdefault(name.strip().lower(), []).append(value)
    return found


def _check_section(
    sec: Any, where: str, problems: list[str], accnos: set[str], *, in_table: bool = False
) -> None:
    if not isinstance(sec, dict):
        problems.append(f"{where}: a section must be an object")
        return
    type_ = sec.get("type")
    if not isinstance(type_, str) or not type_.strip():
        problems.append(f"{where}: section 'type' must be non-empty text")
        type_ = "?"
    label = f"{where} ({type_})"
    accno = sec.get("accno")
    if accno is not None:
        if not isinstance(accno, str) or not accno.strip():
            problems.append(f"{label}: 'accno' must be non-empty text when given")
        elif accno in accnos:
            problems.append(f"{label}: accno {accno!r} used twice")
        else:
            accnos.add(accno)
    _check_attributes(sec.get("attributes", []), label, problems)
    if in_table and any(sec.get(k) for k in ("files", "links", "subsections")):
        problems.append(
            f"{label}: a section in a sections table cannot hold files, links or subsections"
        )
    for i, f in enumerate(_flatten(sec.get("files", []), f"{label}: files", problems)):
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not f["path"]:
            problems.append(f"{label}: files[{i}] needs a non-empty 'path'")
        else:
            _check_attributes(f.get("attributes", []), f"{label}: file {f['path']!r}", problems)
    for i, lk in enumerate(_flatten(sec.get("links", []), f"{label}: links", problems)):
        if not isinstance(lk, dict) or not isinstance(lk.get("url"), str) or not lk["url"]:
            problems.append(f"{label}: links[{i}] needs a non-empty 'url'")
    subs = sec.get("subsections", [])
    if not isinstance(subs, list):
        problems.append(f"{label}: 'subsections' must be a list")
        return
    for i, sub in enumerate(subs):
        if isinstance(sub, list):
            types = {s.get("type") for s in sub if isinstance(s, dict)}
            if len(types) > 1:
                problems.append(f"{label}: subsections[{i}]: a sections table holds one type")
            for j, s in enumerate(sub):
                _check_section(s, f"{label} > [{i}][{j}]", problems, accnos, in_table=True)
        else:
            _check_section(sub, f"{label} > [{i}]", problems, accnos)


def _flatten(items: Any, where: str, problems: list[str]) -> list[Any]:
    if not isinstance(items, list):
        problems.append(f"{where} must be a list")
        return []
    out: list[Any] = []
    for x in items:
        out.extend(x if isinstance(x, list) else [x])
    return out


def _require(attrs: dict[str, list[str]], section_type: str, name: str, label: str) -> list[str]:
    values = [v for v in attrs.get(name.lower(), []) if v.strip()]
    if not values:
        return [f"{label}: required field {name!r} is missing{_where(section_type, name)}"]
    return []


def validate_pagetab(doc: Any) -> list[str]:
    """Check a PageTab JSON submission: the structure of the PageTab specification and, for BioImage
    Archive submissions (``AttachTo: BioImages``), the required REMBI sections and fields.

    Returns the problems (empty when valid); each names the section, the field and where it comes from.
    """
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["submission: the PageTab document must be a JSON object"]
    if doc.get("type", "submission") != "submission":
        problems.append("submission: 'type' must be 'submission'")
    if "accno" in doc and doc["accno"] is not None and not isinstance(doc["accno"], str):
        problems.append("submission: 'accno' must be text")
    sub_attrs = _check_attributes(doc.get("attributes", []), "Submission", problems)
    root = doc.get("section")
    if not isinstance(root, dict):
        problems.append("Submission: the root section ('section') is missing")
        return problems
    _check_section(root, "Study", problems, set())
    problems += _require(sub_attrs, "Submission", "Title", "Submission")
    release = [v for v in sub_attrs.get("releasedate", []) if v.strip()]
    if release and not _DATE_RE.match(release[0]):
        problems.append(f"Submission: ReleaseDate {release[0]!r} is not a date (YYYY-MM-DD)")
    if COLLECTION.lower() not in [v.lower() for v in sub_attrs.get("attachto", [])]:
        return problems
    problems += _require(sub_attrs, "Submission", "ReleaseDate", "Submission")
    problems += _validate_rembi(root)
    return problems


def _validate_rembi(root: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if root.get("type") != "Study":
        problems.append("Study: the root section must have type 'Study'")
    rattrs = _check_attributes(root.get("attributes", []), "Study", [])
    problems += _require(rattrs, "Study", "Description", "Study")
    problems += _require(rattrs, "Study", "License", "Study")
    sections = list(_iter_sections(root))[1:]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for s in sections:
        by_type.setdefault(str(s.get("type", "")).lower(), []).append(s)
    orgs = {
        s.get("accno"): _check_attributes(s.get("attributes", []), "organization", [])
        for s in by_type.get("organization", []) + by_type.get("organisation", [])
    }
    authors = by_type.get("author", [])
    if not authors:
        problems.append(
            f"Study: at least one 'author' section is required{_where('Study', 'author')}"
        )
    for n, a in enumerate(authors, 1):
        label = f"Study > author {n}"
        aattrs = _check_attributes(a.get("attributes", []), label, [])
        problems += _require(aattrs, "author", "Name", label)
        refs = [
            x.get("value")
            for x in a.get("attributes", [])
            if isinstance(x, dict) and str(x.get("name", "")).lower() == "affiliation"
        ]
        if not refs:
            problems.append(
                f"{label}: required field 'affiliation' is missing{_where('author', 'affiliation')}"
            )
        for ref in refs:
            if ref not in orgs:
                problems.append(f"{label}: affiliation {ref!r} names no organization section")
            else:
                problems += _require(
                    orgs[ref], "organization", "Name", f"Study > organization {ref}"
                )
    titles: dict[str, set[str]] = {}
    for kind, required in (
        ("Biosample", ("Title", "Biological entity")),
        ("Specimen", ("Title", "Sample Preparation Protocol")),
        ("Image Acquisition", ("Title", "Imaging Instrument", "Image Acquisition Parameters")),
    ):
        found = by_type.get(kind.lower(), [])
        if not found:
            problems.append(f"Study: a {kind!r} section is required")
        for s in found:
            label = f"{kind} {s.get('accno') or ''}".strip()
            a = _check_attributes(s.get("attributes", []), label, [])
            for name in required:
                problems += _require(a, kind, name, label)
            titles.setdefault(kind.lower(), set()).update(a.get("title", []))
            subs = list(_iter_sections(s))[1:]
            if kind == "Biosample":
                org = [x for x in subs if str(x.get("type", "")).lower() == "organism"]
                if not org:
                    problems.append(
                        f"{label}: required field 'Organism' is missing{_where(kind, 'Organism')}"
                    )
                for o in org:
                    oa = _check_attributes(o.get("attributes", []), f"{label} > Organism", [])
                    problems += _require(oa, "Organism", "Scientific name", f"{label} > Organism")
            if kind == "Image Acquisition":
                meth = [x for x in subs if str(x.get("type", "")).lower() == "imaging method"]
                if not meth:
                    problems.append(
                        f"{label}: required field 'Imaging Method' is missing{_where(kind, 'Imaging Method')}"
                    )
                for m in meth:
                    ma = _check_attributes(m.get("attributes", []), f"{label} > Imaging Method", [])
                    problems += _require(
                        ma, "Imaging Method", "Ontology Value", f"{label} > Imaging Method"
                    )
    components = by_type.get("study component", [])
    if not components:
        problems.append("Study: a 'Study Component' section is required")
    for s in components:
        label = f"Study Component {s.get('accno') or ''}".strip()
        a = _check_attributes(s.get("attributes", []), label, [])
        for name in ("Name", "Description", "File List"):
            problems += _require(a, "Study Component", name, label)
        assoc = [
            x
            for x in list(_iter_sections(s))[1:]
            if str(x.get("type", "")).lower() == "associations"
        ]
        if not assoc:
            problems.append(
                f"{label}: required field 'Associations' is missing{_where('Study Component', 'Associations')}"
            )
        for x in assoc:
            xa = _check_attributes(x.get("attributes", []), f"{label} > Associations", [])
            for kind, key in (
                ("biosample", "Biosample"),
                ("specimen", "Specimen"),
                ("image acquisition", "Image acquisition"),
            ):
                vals = xa.get(key.lower(), [])
                if not vals:
                    problems.append(f"{label} > Associations: required field {key!r} is missing")
                for v in vals:
                    if v not in titles.get(kind, set()):
                        problems.append(
                            f"{label} > Associations: {key} {v!r} matches no {kind} section title"
                        )
    return problems
