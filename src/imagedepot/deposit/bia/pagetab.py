"""The PageTab submission of one dataset (the REMBI model), as JSON and as PageTab TSV.

One dataset (one row of the sample sheet) is one BioStudies study: REMBI sections Biosample,
Specimen, Image Acquisition and one Study Component whose File List lists the dataset's files.

Required fields and where they come from (sample-sheet columns win over study metadata, which is
the ``study`` mapping of the destination in the config, or a YAML file given with
``--study-metadata``):

=======================================  ==========================================================
PageTab field                            source
=======================================  ==========================================================
Submission ``Title``                     sheet ``title``
Submission ``ReleaseDate`` (YYYY-MM-DD)  sheet ``release_date`` or study ``release_date``
Study ``Description``                    sheet ``description``
Study ``License``                        sheet ``license`` or study ``license``
author ``Name`` + affiliation            study ``authors`` (``name``, ``affiliation``; optional
                                         ``email``, ``orcid``, ``role``)
Biosample ``Organism`` scientific name   sheet ``organism``
Biosample ``Biological entity``          sheet ``biological_entity``, else ``sample``
Specimen ``Sample Preparation Protocol`` sheet ``sample_preparation`` or study ``sample_preparation``
Image Acquisition ``Imaging Method``     sheet ``imaging_method``
Image Acquisition ``Imaging Instrument`` sheet ``imaging_instrument``, study
                                         ``imaging_instrument``, else the OME-XML ``Instrument``
Image Acquisition ``Parameters``         sheet ``acquisition_parameters``, study
                                         ``acquisition_parameters``, else derived from the OME-XML
                                         ``Pixels`` (sizes, physical sizes, channels)
Study Component ``Name``/``File List``   dataset id / generated
=======================================  ==========================================================

Optional: sheet/study ``keywords`` (``;``-separated), study ``funding_statement``,
``acknowledgements``, ``growth_protocol``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from imagedepot.deposit.bia.study import StudyMetadata, _metadata_value, _split

#: The BioStudies collection of the BioImage Archive and the submission-tool template.
COLLECTION = "BioImages"


TEMPLATE = "BioImages.v4"


def attr(name: str, value: str, *, reference: bool = False) -> dict[str, Any]:
    """A PageTab attribute."""
    a: dict[str, Any] = {"name": name, "value": value}
    if reference:
        a["reference"] = True
    return a


def _attrs(pairs: Iterable[tuple[str, str | None]]) -> list[dict[str, Any]]:
    return [attr(n, v) for n, v in pairs if v not in (None, "")]


def section(
    type_: str,
    accno: str | None = None,
    attributes: list[dict[str, Any]] | None = None,
    subsections: list[Any] | None = None,
) -> dict[str, Any]:
    """A PageTab section."""
    s: dict[str, Any] = {"type": type_}
    if accno:
        s["accno"] = accno
    s["attributes"] = attributes or []
    if subsections:
        s["subsections"] = subsections
    return s


def _iter_sections(sec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield sec
    for sub in sec.get("subsections") or []:
        if isinstance(sub, list):
            yield from (s for s in sub if isinstance(s, dict))
        elif isinstance(sub, dict):
            yield from _iter_sections(sub)


def build_pagetab(
    dataset: str,
    meta: Mapping[str, str],
    study: StudyMetadata,
    file_list: str,
    image_summaries: Mapping[str, Mapping[str, str]],
    *,
    accno: str | None = None,
) -> dict[str, Any]:
    """The PageTab JSON submission of one dataset (REMBI sections; one Study Component).

    Attributes whose value is missing are left out, so :func:`validate_pagetab` names them.
    """
    instrument = _metadata_value(meta, study, "imaging_instrument") or " | ".join(
        dict.fromkeys(s["instrument"] for s in image_summaries.values() if s.get("instrument"))
    )
    parameters = _metadata_value(meta, study, "acquisition_parameters") or " | ".join(
        dict.fromkeys(s["parameters"] for s in image_summaries.values() if s.get("parameters"))
    )
    keywords = _split(meta.get("keywords", "")) or list(study.keywords)
    license_ = _metadata_value(meta, study, "license")
    orgs: dict[str, str] = {}
    for a in study.authors:
        orgs.setdefault(a.affiliation, f"o{len(orgs) + 1}")
    subsections: list[Any] = []
    for a in study.authors:
        subsections.append(
            section(
                "author",
                attributes=[
                    *_attrs(
                        [
                            ("Name", a.name),
                            ("E-mail", a.email),
                            ("Role", a.role),
                            ("ORCID", a.orcid),
                        ]
                    ),
                    attr("affiliation", orgs[a.affiliation], reference=True),
                ],
            )
        )
    addresses = {a.affiliation: a.address for a in study.authors if a.address}
    for name, acc in orgs.items():
        subsections.append(
            section("organization", acc, _attrs([("Name", name), ("Address", addresses.get(name))]))
        )
    titles = {
        "biosample": f"{dataset} biosample",
        "specimen": f"{dataset} specimen",
        "acquisition": f"{dataset} image acquisition",
    }
    organism = _metadata_value(meta, study, "organism")
    biosample = section(
        "Biosample",
        "Biosample-1",
        _attrs(
            [
                ("Title", titles["biosample"]),
                ("Biological entity", meta.get("biological_entity") or meta.get("sample")),
                ("Description", meta.get("sample") if meta.get("biological_entity") else None),
                ("Intrinsic variable", meta.get("intrinsic_variables")),
                ("Extrinsic variable", meta.get("extrinsic_variables")),
                ("Experimental variable", meta.get("experimental_variables")),
            ]
        ),
        [section("Organism", "Organism-1", _attrs([("Scientific name", organism)]))]
        if organism
        else None,
    )
    specimen = section(
        "Specimen",
        "Specimen-1",
        _attrs(
            [
                ("Title", titles["specimen"]),
                ("Sample Preparation Protocol", _metadata_value(meta, study, "sample_preparation")),
                ("Growth Protocol", _metadata_value(meta, study, "growth_protocol")),
            ]
        ),
    )
    method = (meta.get("imaging_method") or "").strip()
    acquisition = section(
        "Image Acquisition",
        "Image-Acquisition-1",
        _attrs(
            [
                ("Title", titles["acquisition"]),
                ("Imaging Instrument", instrument or None),
                ("Image Acquisition Parameters", parameters or None),
            ]
        ),
        [section("Imaging Method", "Imaging-Method-1", _attrs([("Ontology Value", method)]))]
        if method
        else None,
    )
    component = section(
        "Study Component",
        "Study-Component-1",
        _attrs(
            [
                ("Name", dataset),
                ("Description", meta.get("description")),
                ("File List", file_list),
            ]
        ),
        [
            section(
                "Associations",
                "Associations-1",
                _attrs(
                    [
                        ("Biosample", titles["biosample"]),
                        ("Specimen", titles["specimen"]),
                        ("Image acquisition", titles["acquisition"]),
                    ]
                ),
            )
        ],
    )
    subsections += [biosample, specimen, acquisition, component]
    study_attrs = _attrs(
        [
            ("Description", meta.get("description")),
            ("License", license_),
            ("Funding statement", study.funding_statement),
            ("Acknowledgements", study.acknowledgements),
        ]
    ) + [attr("Keyword", k) for k in keywords]
    doc: dict[str, Any] = {
        "type": "submission",
        "attributes": _attrs(
            [
                ("Title", meta.get("title")),
                ("ReleaseDate", _metadata_value(meta, study, "release_date")),
                ("AttachTo", COLLECTION),
                ("Template", TEMPLATE),
            ]
        ),
        "section": section("Study", None, study_attrs, subsections),
    }
    if accno:
        doc["accno"] = accno
    return doc


def _tsv_line(cells: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow(cells)
    return buf.getvalue()


def _tsv_attrs(attrs: Iterable[dict[str, Any]]) -> str:
    out = ""
    for a in attrs:
        name = f"<{a['name']}>" if a.get("reference") else a["name"]
        out += _tsv_line([name, a["value"]])
        for q in a.get("nmqual", []):
            out += _tsv_line([f"({q['name']})", q["value"]])
        for q in a.get("valqual", []):
            out += _tsv_line([f"[{q['name']}]", q["value"]])
    return out


def _tsv_table(keyword: str, items: list[dict[str, Any]], key: str) -> str:
    names: list[str] = []
    for it in items:
        for a in it.get("attributes", []):
            if a["name"] not in names:
                names.append(a["name"])
    out = _tsv_line([keyword, *names])
    for it in items:
        values = {a["name"]: a["value"] for a in it.get("attributes", [])}
        out += _tsv_line([it[key], *(values.get(n, "") for n in names)])
    return out


def _tsv_section(sec: dict[str, Any], parent: str | None, is_root: bool) -> str:
    head = [sec["type"]]
    if sec.get("accno") or (parent and not is_root):
        head.append(sec.get("accno", ""))
    if parent and not is_root:
        head.append(parent)
    out = "\n" + _tsv_line(head) + _tsv_attrs(sec.get("attributes", []))
    for f in sec.get("files", []):
        if isinstance(f, list):
            out += "\n" + _tsv_table("Files", f, "path")
        else:
            out += "\n" + _tsv_line(["File", f["path"]]) + _tsv_attrs(f.get("attributes", []))
    for lk in sec.get("links", []):
        if isinstance(lk, list):
            out += "\n" + _tsv_table("Links", lk, "url")
        else:
            out += "\n" + _tsv_line(["Link", lk["url"]]) + _tsv_attrs(lk.get("attributes", []))
    for sub in sec.get("subsections", []):
        if isinstance(sub, list):
            kind = sub[0]["type"] if sub else "Section"
            label = f"{kind}[{sec['accno']}]" if sec.get("accno") and not is_root else kind
            out += "\n" + _tsv_table(label, sub, "accno")
        else:
            # Direct children of the root need no parent; deeper ones name theirs.
            out += _tsv_section(sub, None if is_root else sec.get("accno"), False)
    return out


def pagetab_to_tsv(doc: dict[str, Any]) -> str:
    """Serialise a PageTab JSON submission as PageTab TSV (the format people read and edit)."""
    out = _tsv_line(["Submission", doc.get("accno") or ""]) + _tsv_attrs(doc.get("attributes", []))
    return out + _tsv_section(doc["section"], None, True)
