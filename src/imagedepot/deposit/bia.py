"""BioImage Archive: stage a BioStudies PageTab submission and deposit it.

Two steps, as everywhere in imagedepot: a local, idempotent *stage* and a network *deposit*.

:func:`stage_bia` (local, in the default run) reads what ``imagedepot stage`` copied for a ``bia``
destination (``results/stage/<destination>/<dataset>/<item>/...``, checked against its manifest), the
items' sample-sheet metadata (``results/ingest/items/<item>.json``) and study-level metadata, and writes
one package per dataset under ``results/bia/<destination>/<dataset>/``::

    bagit.txt  bag-info.txt  manifest-sha256.txt  tagmanifest-sha256.txt      BagIt 1.0 bag
    data/ro-crate-metadata.json                 RO-Crate 1.1 (root = data/)
    data/submission/pagetab.json                PageTab submission (what the API receives)
    data/submission/pagetab.tsv                 the same in PageTab TSV, for humans
    data/submission/MANIFEST.sha256             checksums of data/upload/ (sha256sum -c format)
    data/submission/package.json                dataset, policy, content hash, counts
    data/upload/<dataset>/                      exactly what goes to the secret FTP directory:
        <dataset>-filelist.tsv / .json          the File List (``Files`` column first)
        <item>/<item>.ome.zarr/ ...             the de-identified images
        <item>/provenance.json                  what made them (no inbox paths)

One dataset (one row of the sample sheet) is one BioStudies study: REMBI sections Biosample,
Specimen, Image Acquisition and one Study Component whose File List lists the dataset's files.
An OME-Zarr image is one File List row (its folder), as the archive takes ``.zarr`` folders whole.

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
``acknowledgements``, ``growth_protocol``. :func:`validate_pagetab` checks the structure of the PageTab
specification and these fields; each error names the section, the field and where to set it.

The bag makes the package immutable: :func:`verify_bag` re-hashes every file, and
:func:`deposit_bia` refuses a package changed after staging. The content hash (of the upload
checksums and the PageTab) identifies what was deposited in the state database.

:func:`deposit_bia` (network, a separate target) uploads ``data/upload/`` to the secret FTP directory
(parallel streams; an interrupted file resumes with ``REST``), verifies every file's content by reading
it back (``RETR``) and comparing its SHA-256 with the bag manifest's (neither the FTP area nor the
BioStudies user-file listing offers a checksum), replaces any remote copy that differs, and re-checks
every size with ``SIZE`` after ``TYPE I``. A file above ``download_verify_limit`` bytes is refused
rather than trusted on its size. It then logs in to the BioStudies submission API (``POST
/auth/login`` -> session token, sent as ``X-Session-Token``) and submits the PageTab JSON (``POST
/submissions``), reporting the accession. ``dry_run`` stops after the verified upload. Only packages whose policy allows a public archive get
this far: the policy is checked when staging and again before any upload.
"""

from __future__ import annotations

import contextlib
import csv
import ftplib
import hashlib
import io
import json
import logging
import netrc
import os
import re
import shutil
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot import __version__
from imagedepot.deposit.retry import RetryPolicy, is_transient, retry_call
from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT, HashSink, over_limit_message
from imagedepot.errors import ConfigError, ImagedepotError, PolicyError
from imagedepot.io import atomic_path, file_record, iter_files, read_json, sha256_file, write_text
from imagedepot.provenance import data_time, now, tool_versions

log = logging.getLogger(__name__)

#: Version of the package layout written by :func:`stage_bia`.
PACKAGE_VERSION = 1
#: The BioStudies collection of the BioImage Archive and the submission-tool template.
COLLECTION = "BioImages"
TEMPLATE = "BioImages.v4"
#: Accepted licences (what the BioImage Archive offers) and their URLs for the RO-Crate.
LICENSES = {
    "CC0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC BY 4.0": "https://creativecommons.org/licenses/by/4.0/",
}
BAGIT_VERSION = "1.0"
ROCRATE_CONTEXT = "https://w3id.org/ro/crate/1.1/context"
ROCRATE_SPEC = "https://w3id.org/ro/crate/1.1"
#: Package paths (relative to the bag root).
UPLOAD_DIR = "data/upload"
SUBMISSION_DIR = "data/submission"

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f\\*?\"<>|:]")


# --------------------------------------------------------------------------------------------
# Errors


class BiaValidationError(ImagedepotError):
    """The PageTab or File List misses required fields or breaks the PageTab structure."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "BioImage Archive submission is not valid:\n  " + "\n  ".join(self.problems)
        )


class BagError(ImagedepotError):
    """A package changed after staging (or is not a bag): refused."""

    def __init__(self, path: str | Path, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(
            f"{self.path}: package changed after staging or damaged; refusing it "
            f"(re-stage it):\n  {shown}{more}"
        )


class DepositError(ImagedepotError):
    """An upload or submission failed (after retries); the message holds no secret."""


class ApiError(DepositError):
    """The BioStudies API answered with an error."""

    def __init__(self, status: int, message: str, details: Sequence[str] = ()) -> None:
        self.status = self.status_code = status
        self.details = list(details)
        text = f"BioStudies API error {status}: {message}"
        if self.details:
            text += "\n  " + "\n  ".join(self.details)
        super().__init__(text)


# --------------------------------------------------------------------------------------------
# Study-level metadata


@dataclass(frozen=True)
class Author:
    """A study author (REMBI Study: contributors)."""

    name: str
    affiliation: str
    email: str | None = None
    orcid: str | None = None
    role: str | None = None
    address: str | None = None


@dataclass
class StudyMetadata:
    """What the sample sheet does not carry: authors, licence, release date and protocol defaults."""

    authors: list[Author] = field(default_factory=list)
    license: str | None = None
    release_date: str | None = None
    keywords: list[str] = field(default_factory=list)
    funding_statement: str | None = None
    acknowledgements: str | None = None
    sample_preparation: str | None = None
    growth_protocol: str | None = None
    imaging_instrument: str | None = None
    acquisition_parameters: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, source: str = "study") -> StudyMetadata:
        """Build from a mapping (config or YAML); unknown keys and wrong types raise ConfigError."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        authors = []
        for i, a in enumerate(data.pop("authors", None) or []):
            if not isinstance(a, Mapping) or not a.get("name") or not a.get("affiliation"):
                raise ConfigError(f"{source}: authors[{i}]: give at least 'name' and 'affiliation'")
            extra = sorted(set(a) - set(Author.__dataclass_fields__))
            if extra:
                raise ConfigError(f"{source}: authors[{i}]: unknown key(s) {', '.join(extra)}")
            authors.append(Author(**{k: str(v) for k, v in a.items() if v is not None}))
        keywords = data.pop("keywords", None) or []
        if isinstance(keywords, str):
            keywords = _split(keywords)
        if not isinstance(keywords, list):
            raise ConfigError(f"{source}: keywords: give a list or a ';'-separated string")
        for key, value in data.items():
            if value is not None and not isinstance(value, str | int | float):
                raise ConfigError(f"{source}: {key}: give a text value")
        text = {k: (None if v is None else str(v)) for k, v in data.items()}
        return cls(authors=authors, keywords=[str(k) for k in keywords], **text)


def load_study_metadata(path: str | Path) -> StudyMetadata:
    """Read study metadata from a YAML (or JSON) file."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read study metadata ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{p}: study metadata must be a mapping of keys to values")
    return StudyMetadata.from_mapping(data, str(p))


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(";") if t.strip()]


# --------------------------------------------------------------------------------------------
# PageTab model helpers (plain JSON structures, as the API takes them)


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


# --------------------------------------------------------------------------------------------
# PageTab validation


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


def _iter_sections(sec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield sec
    for sub in sec.get("subsections") or []:
        if isinstance(sub, list):
            yield from (s for s in sub if isinstance(s, dict))
        elif isinstance(sub, dict):
            yield from _iter_sections(sub)


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


def validate_file_list(
    header: Sequence[str], rows: Sequence[Sequence[str]], upload_root: str | Path | None = None
) -> list[str]:
    """Check a File List table: ``Files`` first, one path per row, paths the archive accepts.

    With ``upload_root``, every path must exist under it (a file, or a ``.zarr`` folder).
    """
    problems: list[str] = []
    if not header or header[0] != "Files":
        problems.append("File List: the first column of the header must be 'Files'")
    if len(set(header)) != len(header) or any(not h.strip() for h in header):
        problems.append("File List: column names must be unique and non-empty")
    if not rows:
        problems.append("File List: no file listed")
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            problems.append(f"File List: row {n}: {len(row)} cells for {len(header)} columns")
            continue
        path = row[0]
        why = _path_problem(path)
        if why:
            problems.append(f"File List: row {n}: path {path!r} {why}")
            continue
        if path in seen:
            problems.append(f"File List: row {n}: path {path!r} listed twice")
        seen.add(path)
        if upload_root is not None and not (Path(upload_root) / path).exists():
            problems.append(f"File List: row {n}: {path!r} is not in the upload folder")
    return problems


def _path_problem(path: str) -> str | None:
    if not path:
        return "is empty"
    if _BAD_PATH_CHARS.search(path):
        return 'has a character the archive does not accept (control, \\ * ? " < > | :)'
    if path.startswith("/") or path.endswith("/") or "//" in path:
        return "must be relative, without leading, trailing or double '/'"
    if any(part in (".", "..") for part in path.split("/")):
        return "must not contain '.' or '..' parts"
    return None


# --------------------------------------------------------------------------------------------
# PageTab TSV


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


# --------------------------------------------------------------------------------------------
# Image metadata from the staged OME-XML


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def ome_summary(xml_path: str | Path) -> dict[str, str]:
    """Instrument and acquisition parameters described by an OME-XML file (what the archive shows).

    The file is the de-identified OME-XML this package wrote (trusted input).
    """
    root = ET.parse(xml_path).getroot()  # noqa: S314 - our own de-identified output
    out: dict[str, str] = {}
    instruments = []
    for inst in root.iter():
        if _local(inst.tag) != "Instrument":
            continue
        parts = []
        for child in inst:
            kind = _local(child.tag)
            if kind == "Microscope":
                desc = " ".join(v for v in (child.get("Manufacturer"), child.get("Model")) if v)
                mtype = child.get("Type")
                if mtype:
                    desc += f" ({mtype.lower()})"
                if desc.strip():
                    parts.append(f"microscope {desc.strip()}")
            elif kind == "Objective":
                desc = " ".join(v for v in (child.get("Manufacturer"), child.get("Model")) if v)
                extra = []
                if child.get("NominalMagnification"):
                    extra.append(f"{float(child.get('NominalMagnification', 0)):g}x")
                if child.get("LensNA"):
                    extra.append(f"NA {child.get('LensNA')}")
                if child.get("Immersion"):
                    extra.append(f"{child.get('Immersion', '').lower()} immersion")
                parts.append(
                    "objective " + " ".join([desc, *([", ".join(extra)] if extra else [])]).strip()
                )
        if parts:
            instruments.append("; ".join(parts))
    if instruments:
        out["instrument"] = " | ".join(dict.fromkeys(instruments))
    params = []
    for px in root.iter():
        if _local(px.tag) != "Pixels":
            continue
        dims = "x".join(px.get(f"Size{a}", "?") for a in "TCZYX")
        desc = f"{px.get('Type', '?')} pixels, TCZYX {dims}"
        sizes = []
        for ax in "XYZ":
            v = px.get(f"PhysicalSize{ax}")
            if v:
                sizes.append(f"{ax} {float(v):g} {px.get(f'PhysicalSize{ax}Unit', 'µm')}")
        if sizes:
            desc += "; pixel size " + ", ".join(sizes)
        chans = []
        for ch in px:
            if _local(ch.tag) != "Channel":
                continue
            c = ch.get("Name") or ch.get("ID") or "channel"
            if ch.get("EmissionWavelength"):
                c += f" (emission {float(ch.get('EmissionWavelength', 0)):g} {ch.get('EmissionWavelengthUnit', 'nm')})"
            chans.append(c)
        if chans:
            desc += "; channels " + ", ".join(chans)
        params.append(desc)
    if params:
        out["parameters"] = " | ".join(dict.fromkeys(params))
        out["channels"] = "; ".join(
            ch.get("Name", "")
            for ch in root.iter()
            if _local(ch.tag) == "Channel" and ch.get("Name")
        )
    return out


def _ome_xml_of(image: Path) -> Path | None:
    for cand in (image / "OME" / "METADATA.ome.xml", image / "METADATA.ome.xml"):
        if cand.is_file():
            return cand
    return None


# --------------------------------------------------------------------------------------------
# Staging


@dataclass
class BiaStageReport:
    """What :func:`stage_bia` packaged."""

    destination: str
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(self.__dict__)


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link (same file system, no extra space) or copy; the bag checksums guard both."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _dataset_dirs(staged: Path) -> list[Path]:
    return sorted(p for p in staged.iterdir() if p.is_dir() and not p.name.startswith("."))


def _tree_digest(folder: Path) -> tuple[str, int, int]:
    """sha256 over the sorted ``<sha256>  <relative path>`` lines of a folder; total size; count."""
    lines = []
    total = 0
    for p in iter_files(folder):
        r = file_record(p, folder)
        lines.append(f"{r['sha256']}  {r['path']}\n")
        total += r["size"]
    return hashlib.sha256("".join(lines).encode()).hexdigest(), total, len(lines)


def _metadata_value(
    meta: Mapping[str, str], study: StudyMetadata, column: str, study_key: str | None = None
) -> str | None:
    v = (meta.get(column) or "").strip()
    if v:
        return v
    sv = getattr(study, study_key or column, None) if (study_key or column) else None
    return str(sv).strip() if sv else None


def _file_list_rows(
    dataset: str, upload_ds: Path, items: Sequence[str]
) -> tuple[list[str], list[list[str]], dict[str, dict[str, str]]]:
    """File List rows for the upload tree of one dataset; also the OME summaries per image."""
    header = [
        "Files",
        "Item",
        "Type",
        "Format",
        "Size (bytes)",
        "Files in folder",
        "Checksum",
        "Channels",
    ]
    rows: list[list[str]] = []
    summaries: dict[str, dict[str, str]] = {}
    for item in items:
        base = upload_ds / item
        for entry in sorted(base.iterdir()):
            rel = f"{dataset}/{item}/{entry.name}"
            if entry.is_dir() and entry.name.endswith(".zarr"):
                digest, size, count = _tree_digest(entry)
                xml = _ome_xml_of(entry)
                summary = ome_summary(xml) if xml else {}
                summaries[rel] = summary
                rows.append(
                    [
                        rel,
                        item,
                        "image",
                        "OME-Zarr",
                        str(size),
                        str(count),
                        f"sha256-tree:{digest}",
                        summary.get("channels", ""),
                    ]
                )
            elif entry.is_dir():
                for p in iter_files(entry):
                    r = file_record(p, upload_ds)
                    rows.append(
                        [
                            f"{dataset}/{r['path']}",
                            item,
                            "supporting file",
                            p.suffix.lstrip(".") or "file",
                            str(r["size"]),
                            "1",
                            f"sha256:{r['sha256']}",
                            "",
                        ]
                    )
            else:
                r = file_record(entry, upload_ds)
                if entry.name == "provenance.json":
                    kind, fmt = "provenance record", "JSON"
                elif entry.name.endswith((".ome.tif", ".ome.tiff")):
                    kind, fmt = "image", "OME-TIFF"
                else:
                    kind, fmt = "supporting file", entry.suffix.lstrip(".") or "file"
                rows.append(
                    [rel, item, kind, fmt, str(r["size"]), "1", f"sha256:{r['sha256']}", ""]
                )
    return header, rows, summaries


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


def _rocrate(
    dataset: str,
    meta: Mapping[str, str],
    study: StudyMetadata,
    bag_data: Path,
    provenances: Sequence[dict[str, Any]],
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """RO-Crate 1.1 metadata for the bag's payload (crate root = ``data/``)."""
    files = [file_record(p, bag_data) for p in iter_files(bag_data)]
    file_ids = [f["path"] for f in files if f["path"] != "ro-crate-metadata.json"]
    license_ = _metadata_value(meta, study, "license") or ""
    people = [
        {
            "@id": (f"https://orcid.org/{a.orcid}" if a.orcid else f"#author-{i}"),
            "@type": "Person",
            "name": a.name,
            "affiliation": {"@id": f"#org-{a.affiliation}"},
        }
        for i, a in enumerate(study.authors, 1)
    ]
    orgs = [
        {"@id": f"#org-{name}", "@type": "Organization", "name": name}
        for name in dict.fromkeys(a.affiliation for a in study.authors)
    ]
    # Staged provenance carries one reproducible data_time, not the steps' wall clock.
    started = sorted(
        p.get("started") or p["data_time"]
        for p in provenances
        if p.get("started") or p.get("data_time")
    )
    ended = sorted(
        p.get("ended") or p["data_time"]
        for p in provenances
        if p.get("ended") or p.get("data_time")
    )
    software = {
        "@id": "#imagedepot",
        "@type": "SoftwareApplication",
        "name": "imagedepot",
        "version": versions.get("imagedepot", __version__),
        "softwareRequirements": [
            {"@id": f"#software-{k}"} for k in sorted(versions) if k != "imagedepot"
        ],
    }
    requirements = [
        {"@id": f"#software-{k}", "@type": "SoftwareApplication", "name": k, "version": v}
        for k, v in sorted(versions.items())
        if k != "imagedepot"
    ]
    action: dict[str, Any] = {
        "@id": "#workflow-run",
        "@type": "CreateAction",
        "name": f"imagedepot run: convert, de-identify, leak-check and stage {dataset}",
        "instrument": {"@id": "#imagedepot"},
        "result": [{"@id": fid} for fid in file_ids],
    }
    if started:
        action["startTime"] = started[0]
    if ended:
        action["endTime"] = ended[-1]
    graph: list[dict[str, Any]] = [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": ROCRATE_SPEC},
            "about": {"@id": "./"},
        },
        {
            "@id": "./",
            "@type": "Dataset",
            "identifier": dataset,
            "name": meta.get("title") or dataset,
            "description": meta.get("description") or "",
            "datePublished": _metadata_value(meta, study, "release_date") or "",
            "license": {"@id": LICENSES.get(license_, license_)} if license_ else "",
            "author": [{"@id": p["@id"]} for p in people],
            "hasPart": [{"@id": fid} for fid in file_ids],
            "mentions": {"@id": "#workflow-run"},
        },
        *(
            {
                "@id": f["path"],
                "@type": "File",
                "name": f["path"].rsplit("/", 1)[-1],
                "contentSize": str(f["size"]),
                "sha256": f["sha256"],
            }
            for f in files
            if f["path"] != "ro-crate-metadata.json"
        ),
        action,
        software,
        *requirements,
        *people,
        *orgs,
    ]
    return {"@context": [ROCRATE_CONTEXT, {"sha256": "http://schema.org/sha256"}], "@graph": graph}


def write_bag(root: str | Path, info: Mapping[str, str]) -> None:
    """Turn ``root`` (holding ``data/``) into a BagIt 1.0 bag with SHA-256 manifests."""
    r = Path(root)
    payload = [file_record(p, r) for p in iter_files(r / "data")]
    write_text(
        r / "bagit.txt", f"BagIt-Version: {BAGIT_VERSION}\nTag-File-Character-Encoding: UTF-8\n"
    )
    write_text(
        r / "manifest-sha256.txt",
        "".join(f"{f['sha256']}  {_bag_path(f['path'])}\n" for f in payload),
    )
    octets = sum(f["size"] for f in payload)
    lines = {
        "Bagging-Date": now()[:10],
        "Bag-Software-Agent": f"imagedepot {__version__}",
        "Payload-Oxum": f"{octets}.{len(payload)}",
        **info,
    }
    write_text(r / "bag-info.txt", "".join(f"{k}: {v}\n" for k, v in lines.items()))
    tags = [file_record(r / n, r) for n in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt")]
    write_text(r / "tagmanifest-sha256.txt", "".join(f"{f['sha256']}  {f['path']}\n" for f in tags))


def _bag_path(path: str) -> str:
    # BagIt 1.0: CR, LF and % in paths are percent-encoded in manifests.
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _unbag_path(path: str) -> str:
    return path.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def _read_manifest(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, _, name = line.partition(" ")
            out[_unbag_path(name.lstrip(" *"))] = digest.lower()
    return out


def verify_bag(root: str | Path) -> list[str]:
    """Re-check a bag: declaration, every payload and tag checksum, no extra or missing file, and the
    Payload-Oxum. Returns the problems (empty when the bag is intact)."""
    r = Path(root)
    problems: list[str] = []
    decl = r / "bagit.txt"
    if not decl.is_file() or "BagIt-Version:" not in decl.read_text(encoding="utf-8"):
        return [f"{decl.name}: missing or not a BagIt declaration"]
    for name in ("manifest-sha256.txt", "tagmanifest-sha256.txt"):
        if not (r / name).is_file():
            problems.append(f"{name}: missing")
    if problems:
        return problems
    listed = _read_manifest(r / "manifest-sha256.txt")
    present = (
        {str(p.relative_to(r)) for p in iter_files(r / "data")} if (r / "data").is_dir() else set()
    )
    for name, digest in sorted(listed.items()):
        p = r / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{name}: checksum differs from the manifest (changed after staging)")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: not in the manifest (added after staging)")
    for name, digest in sorted(_read_manifest(r / "tagmanifest-sha256.txt").items()):
        p = r / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{name}: checksum differs from the tag manifest")
    info = _read_bag_info(r)
    if "Payload-Oxum" in info and not problems:
        octets = sum((r / n).stat().st_size for n in listed)
        if info["Payload-Oxum"] != f"{octets}.{len(listed)}":
            problems.append("bag-info.txt: Payload-Oxum does not match the payload")
    return problems


def _read_bag_info(r: Path) -> dict[str, str]:
    info: dict[str, str] = {}
    p = r / "bag-info.txt"
    if p.is_file():
        for line in p.read_text(encoding="utf-8").splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                info[k.strip()] = v.strip()
    return info


def content_hash(package: str | Path) -> str:
    """The content hash of a package: sha256 over its upload checksums and its PageTab JSON.

    Stable across re-staging of identical content (no timestamps enter it).
    """
    sub = Path(package) / SUBMISSION_DIR
    h = hashlib.sha256()
    h.update((sub / "MANIFEST.sha256").read_bytes())
    h.update(b"\0")
    h.update((sub / "pagetab.json").read_bytes())
    return h.hexdigest()


def _stage_dataset(
    ds_dir: Path,
    pkg: Path,
    *,
    destination: str,
    destination_class: str,
    items: list[dict[str, Any]],
    study: StudyMetadata,
    policy: Any,
) -> tuple[dict[str, Any], list[str]]:
    dataset = ds_dir.name
    meta = dict(items[0].get("metadata") or {})
    upload_ds = pkg / UPLOAD_DIR / dataset
    upload_ds.mkdir(parents=True)
    item_ids = []
    provenances = []
    for child in sorted(ds_dir.iterdir()):
        if child.is_dir():
            shutil.copytree(child, upload_ds / child.name, copy_function=_link_or_copy)
            item_ids.append(child.name)
            if (child / "provenance.json").is_file():
                provenances.append(read_json(child / "provenance.json"))
        else:
            _link_or_copy(str(child), str(upload_ds / child.name))
    header, rows, summaries = _file_list_rows(dataset, upload_ds, item_ids)
    for child in sorted(p for p in ds_dir.iterdir() if p.is_file()):
        r = file_record(child, ds_dir)
        rows.append(
            [
                f"{dataset}/{child.name}",
                "",
                "supporting file",
                child.suffix.lstrip(".") or "file",
                str(r["size"]),
                "1",
                f"sha256:{r['sha256']}",
                "",
            ]
        )
    filelist = f"{dataset}-filelist"
    problems = validate_file_list(header, rows, pkg / UPLOAD_DIR)
    tsv = "".join(_tsv_line(row) for row in [header, *rows])
    write_text(upload_ds / f"{filelist}.tsv", tsv)
    fl_json = [
        {
            "path": row[0],
            "attributes": [attr(h, v) for h, v in zip(header[1:], row[1:], strict=True) if v],
        }
        for row in rows
    ]
    write_text(upload_ds / f"{filelist}.json", json.dumps(fl_json, indent=2) + "\n")
    doc = build_pagetab(dataset, meta, study, f"{dataset}/{filelist}.json", summaries)
    problems += [f"dataset {dataset}: {p}" for p in validate_pagetab(doc)]
    sub = pkg / SUBMISSION_DIR
    sub.mkdir(parents=True)
    write_text(sub / "pagetab.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    tsv_doc = json.loads(json.dumps(doc))
    for s in _iter_sections(tsv_doc["section"]):
        for a in s.get("attributes", []):
            if a["name"] == "File List":
                a["value"] = f"{dataset}/{filelist}.tsv"
    write_text(sub / "pagetab.tsv", pagetab_to_tsv(tsv_doc))
    uploads = [file_record(p, pkg / UPLOAD_DIR) for p in iter_files(pkg / UPLOAD_DIR)]
    write_text(sub / "MANIFEST.sha256", "".join(f"{u['sha256']}  {u['path']}\n" for u in uploads))
    chash = content_hash(pkg)
    record = {
        "package_version": PACKAGE_VERSION,
        "dataset": dataset,
        "destination": destination,
        "destination_class": destination_class,
        "policy": {
            "name": policy.name,
            "sha256": policy.sha256,
            "allowed_classes": sorted(policy.allowed_classes),
        },
        "items": item_ids,
        "files": len(uploads),
        "bytes": sum(u["size"] for u in uploads),
        "content_hash": chash,
        "pagetab": "submission/pagetab.json",
        "file_list": f"upload/{dataset}/{filelist}.json",
        "upload_root": "upload",
    }
    write_text(sub / "package.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    versions = dict(tool_versions())
    for p in provenances:
        versions.update({k: v for k, v in (p.get("versions") or {}).items() if isinstance(v, str)})
    crate = _rocrate(dataset, meta, study, pkg / "data", provenances, versions)
    write_text(
        pkg / "data" / "ro-crate-metadata.json",
        json.dumps(crate, indent=2, ensure_ascii=False) + "\n",
    )
    write_bag(
        pkg,
        {
            "External-Identifier": f"imagedepot:{destination}:{dataset}",
            "External-Description": f"BioImage Archive submission package of dataset {dataset}",
            "Imagedepot-Content-Hash": chash,
            # Reproducible (BagIt date of the data, not of this run): see provenance.data_time.
            "Bagging-Date": data_time(p.get("data_time") for p in provenances)[:10],
        },
    )
    return record, problems


def stage_bia(
    staged: str | Path,
    manifest: str | Path | Mapping[str, Any],
    out: str | Path,
    *,
    destination: str,
    study: StudyMetadata,
    policies: Mapping[str, Any],
    destination_class: str = "public_archive",
    force: bool = True,
) -> BiaStageReport:
    """Package every dataset staged for a ``bia`` destination as a validated BioImage Archive submission.

    Parameters
    ----------
    staged
        The destination's staged folder from ``imagedepot stage`` (``results/stage/<destination>``);
        re-checked against its ``manifest.json`` first.
    manifest
        The scan's manifest (or its item JSON folder): each item's ``metadata`` holds the sample
        sheet's REMBI columns, ``policy`` the dataset's policy.
    out
        Folder to create (replaced atomically): one bag per dataset.
    study
        Study-level metadata (authors, licence, release date, protocol defaults).
    policies
        Loaded policies by name; a dataset whose policy does not allow ``destination_class`` is
        skipped (and never packaged).

    Raises
    ------
    BiaValidationError
        A PageTab or File List misses a required field (every problem is listed, with its source).
    """
    from imagedepot.stage import verify_stage

    if destination_class != "public_archive":
        raise ConfigError(
            f"destination {destination!r}: the BioImage Archive is a public archive; "
            f"set its class to public_archive (not {destination_class})"
        )
    staged_p = Path(staged)
    trouble = verify_stage(staged_p)
    if trouble:
        raise BagError(staged_p, trouble)
    report = BiaStageReport(destination)
    problems: list[str] = []
    from imagedepot.pipeline import manifest_items

    by_id = {str(i["id"]): i for i in manifest_items(manifest)}
    with atomic_path(out, force=force, is_dir=True) as tmp:
        for ds_dir in _dataset_dirs(staged_p):
            item_ids = sorted(p.name for p in ds_dir.iterdir() if p.is_dir())
            if not item_ids:
                continue
            items = [by_id[i] for i in item_ids]
            policy = policies.get(items[0].get("policy", ""))
            try:
                if policy is None:
                    raise PolicyError(
                        f"dataset {ds_dir.name}: unknown policy {items[0].get('policy')!r}"
                    )
                policy.check_destination(destination, destination_class)
            except PolicyError as exc:
                report.skipped.append(
                    {"dataset": ds_dir.name, "reason": f"excluded by policy: {exc}"}
                )
                continue
            record, errs = _stage_dataset(
                ds_dir,
                tmp / ds_dir.name,
                destination=destination,
                destination_class=destination_class,
                items=items,
                study=study,
                policy=policy,
            )
            problems += errs
            report.packages[ds_dir.name] = {
                k: record[k] for k in ("content_hash", "files", "bytes", "items")
            }
        if problems:
            raise BiaValidationError(problems)
        write_text(
            tmp / "summary.json", json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
        )
    log.info("staged %d BioImage Archive package(s) for %s", len(report.packages), destination)
    return report


def find_packages(path: str | Path) -> list[Path]:
    """The packages under ``path``: the bag itself, or every bag one level below."""
    p = Path(path)
    if (p / "bagit.txt").is_file():
        return [p]
    if not p.is_dir():
        raise ConfigError(f"{p}: no staged BioImage Archive package here")
    return sorted(c for c in p.iterdir() if (c / "bagit.txt").is_file())


# --------------------------------------------------------------------------------------------
# Retries (the shared bounded backoff of imagedepot.deposit.retry)


def ftp_transient(exc: BaseException) -> bool:
    """FTP failures another attempt may cure: dropped connections, timeouts, 4xx replies."""
    return isinstance(exc, OSError | EOFError | ftplib.error_temp | ftplib.error_reply) or (
        is_transient(exc)
    )


# --------------------------------------------------------------------------------------------
# Credentials and targets


@dataclass(frozen=True)
class Credentials:
    """Login for the BioStudies API (never printed)."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def credentials_from_env(prefix: str | None, api_url: str | None = None) -> Credentials:
    """``<PREFIX>_TOKEN``, or ``<PREFIX>_USER`` + ``<PREFIX>_PASSWORD``; else ``~/.netrc`` for the API host."""
    if prefix:
        token = os.environ.get(f"{prefix}_TOKEN")
        if token:
            return Credentials(token=token)
        user, pw = os.environ.get(f"{prefix}_USER"), os.environ.get(f"{prefix}_PASSWORD")
        if user and pw:
            return Credentials(user=user, password=pw)
    if api_url:
        host = urllib.parse.urlsplit(api_url).hostname
        try:
            auth = netrc.netrc().authenticators(host or "")
        except (OSError, netrc.NetrcParseError):
            auth = None
        if auth and auth[0] and auth[2]:
            return Credentials(user=auth[0], password=auth[2])
    return Credentials()


@dataclass(frozen=True)
class FtpTarget:
    """The secret FTP directory (``ftp://[user[:password]@]host[:port]/<directory>``)."""

    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="anonymous@", repr=False)
    directory: str = field(default="", repr=False)

    @classmethod
    def parse(cls, url: str) -> FtpTarget:
        """Parse an ``ftp://`` URL (the directory is the secret part)."""
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ftp" or not u.hostname:
            raise ConfigError(
                "ftp_url: give ftp://[user[:password]@]host[:port]/<secret directory>"
            )
        return cls(
            host=u.hostname,
            port=u.port or 21,
            user=urllib.parse.unquote(u.username) if u.username else "anonymous",
            password=urllib.parse.unquote(u.password) if u.password else "anonymous@",
            directory=urllib.parse.unquote(u.path).strip("/"),
        )

    def __str__(self) -> str:
        return f"ftp://{self.host}:{self.port}/<secret directory>"


# --------------------------------------------------------------------------------------------
# FTP upload


@dataclass(frozen=True)
class UploadFile:
    """One file to upload: the local path, its path in the upload area, size and SHA-256 (from
    the package's bag manifest, checked by :func:`verify_bag`)."""

    local: Path
    remote: str
    size: int
    sha256: str


@dataclass
class UploadResult:
    """One file's upload: ``sent`` bytes this run (0 when the remote copy was already right),
    ``replaced`` when a remote copy (or the part a resume kept) held other bytes. Every result is
    content-verified: the remote copy was read back and its SHA-256 equals the package's."""

    path: str
    size: int
    sent: int = 0
    resumed_from: int = 0
    replaced: bool = False


class _FtpSession:
    """One control connection (one per stream), logged in and in the secret directory."""

    def __init__(self, target: FtpTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.ftp: ftplib.FTP | None = None
        self.dirs: set[str] = set()

    def connect(self) -> ftplib.FTP:
        if self.ftp is None:
            ftp = ftplib.FTP(timeout=self.timeout)  # noqa: S321 - the archive's upload area is FTP
            ftp.connect(self.target.host, self.target.port)
            ftp.login(self.target.user, self.target.password)
            ftp.set_pasv(True)
            ftp.voidcmd("TYPE I")
            if self.target.directory:
                ftp.cwd("/" + self.target.directory)
            self.ftp = ftp
            self.dirs = set()
        return self.ftp

    def drop(self) -> None:
        if self.ftp is not None:
            with contextlib.suppress(OSError):
                self.ftp.close()
        self.ftp = None

    def size(self, path: str) -> int | None:
        ftp = self.connect()
        ftp.voidcmd("TYPE I")
        try:
            n = ftp.size(path)
        except ftplib.error_perm:
            return None
        return None if n is None else int(n)

    def makedirs(self, folder: str) -> None:
        ftp = self.connect()
        parts = [p for p in folder.split("/") if p]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d in self.dirs:
                continue
            try:
                ftp.mkd(d)
            except ftplib.error_perm as exc:
                if not str(exc).startswith("550"):
                    raise
            self.dirs.add(d)

    def sha256(self, path: str, blocksize: int) -> str:
        """SHA-256 of a remote file, read back with ``RETR`` in ``TYPE I`` (memory flat)."""
        ftp = self.connect()
        ftp.voidcmd("TYPE I")
        sink = HashSink()
        ftp.retrbinary(f"RETR {path}", sink.write, blocksize)
        return sink.sha256.hexdigest()

    def _send(self, f: UploadFile, rest: int, blocksize: int) -> None:
        ftp = self.connect()
        with open(f.local, "rb") as fh:
            if rest:
                fh.seek(rest)
                log.info("resuming %s at byte %d of %d", f.remote, rest, f.size)
                try:
                    ftp.storbinary(f"STOR {f.remote}", fh, blocksize, rest=rest)
                except ftplib.error_perm as exc:
                    # REST refused (5xx): append instead.
                    log.debug("REST refused for %s (%s); using APPE", f.remote, exc)
                    fh.seek(rest)
                    ftp.storbinary(f"APPE {f.remote}", fh, blocksize)
            else:
                ftp.storbinary(f"STOR {f.remote}", fh, blocksize)
        after = self.size(f.remote)
        if after != f.size:
            raise ftplib.error_temp(  # noqa: S321 - an FTP reply class, no connection
                f"451 size of {f.remote} after upload is {after}, expected {f.size}"
            )

    def upload(self, f: UploadFile, blocksize: int) -> UploadResult:
        """Bring one remote file to the package's bytes and verify it by SHA-256.

        A remote copy of the right size is read back and kept only if its SHA-256 matches; else it
        is replaced. A shorter one is resumed, and if the kept part was not ours the whole file is
        sent again. After sending, the size and then the SHA-256 of the remote copy must match.
        """
        res = UploadResult(f.remote, f.size)
        have = self.size(f.remote)
        if have == f.size:
            if self.sha256(f.remote, blocksize) == f.sha256:
                return res
            log.warning(
                "%s: the remote copy has the right size but other content; replacing it", f.remote
            )
            res.replaced = True
            have = None
        if "/" in f.remote:
            self.makedirs(f.remote.rsplit("/", 1)[0])
        rest = have if have is not None and 0 < have < f.size else 0
        res.resumed_from = rest
        self._send(f, rest, blocksize)
        res.sent += f.size - rest
        if self.sha256(f.remote, blocksize) == f.sha256:
            return res
        if rest:
            log.warning(
                "%s: the part kept by the resume held other bytes; sending the whole file", f.remote
            )
            res.replaced = True
            self._send(f, 0, blocksize)
            res.sent += f.size
            if self.sha256(f.remote, blocksize) == f.sha256:
                return res
        raise ftplib.error_temp(  # noqa: S321 - an FTP reply class, no connection
            f"451 content of {f.remote} after upload differs from the package (SHA-256)"
        )


def upload_files(
    files: Sequence[UploadFile],
    target: FtpTarget,
    *,
    streams: int = 2,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    blocksize: int = 1 << 16,
    download_verify_limit: int = DOWNLOAD_VERIFY_LIMIT,
) -> list[UploadResult]:
    """Upload files over ``streams`` parallel FTP connections and verify each one's content.

    The upload area lists no checksums (neither FTP nor the BioStudies user-file listing, which
    gives name, path, size and type), so every remote copy is read back (``RETR``) and its SHA-256
    compared with the package's: a copy with the right size is kept only if it matches, else it is
    replaced; a shorter one resumes (``REST``, or ``APPE`` where REST is refused) and is sent whole
    if the kept part differs. A file above ``download_verify_limit`` bytes is refused before
    anything is sent (its content would not be verified). A dropped connection is re-opened and the
    file retried, ``retries`` attempts per file.
    """
    over = sorted(f.remote for f in files if f.size > download_verify_limit)
    if over:
        raise DepositError(
            over_limit_message(over, download_verify_limit, "download_verify_limit")
            + "; nothing was uploaded"
        )
    policy = RetryPolicy(attempts=retries, base_delay=backoff)
    results: list[UploadResult] = []
    errors: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(files))

    def worker() -> None:
        session = _FtpSession(target, timeout)
        try:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    f = queue.pop()
                try:
                    r = retry_call(
                        lambda f=f: session.upload(f, blocksize),  # type: ignore[misc]
                        policy=policy,
                        what=f"upload of {f.remote}",
                        retry_if=ftp_transient,
                        on_retry=lambda *_: session.drop(),
                    )
                except (ImagedepotError, OSError, EOFError, ftplib.Error) as exc:
                    with lock:
                        errors.append(f"{f.remote}: {type(exc).__name__}: {exc}")
                    return
                with lock:
                    results.append(r)
        finally:
            if session.ftp is not None:
                try:
                    session.ftp.quit()
                except (OSError, EOFError, ftplib.Error):
                    session.drop()

    n = max(1, min(streams, len(files) or 1))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="ftp") as pool:
        for fut in [pool.submit(worker) for _ in range(n)]:
            fut.result()
    if errors:
        raise DepositError(f"upload to {target} failed: " + "; ".join(errors[:5]))
    return sorted(results, key=lambda r: r.path)


def verify_remote_sizes(
    files: Sequence[UploadFile],
    target: FtpTarget,
    *,
    retries: int = 5,
    backoff: float = 1.0,
) -> list[str]:
    """Read every size back with ``SIZE`` over one connection; return the mismatches.

    The final presence check after :func:`upload_files` (which verified each file's content):
    it finds a file removed or truncated on the server since.
    """
    session = _FtpSession(target, 60.0)
    bad: list[str] = []
    try:
        for f in files:
            have = retry_call(
                lambda remote=f.remote: session.size(remote),  # type: ignore[misc]
                policy=RetryPolicy(attempts=retries, base_delay=backoff),
                what=f"SIZE {f.remote}",
                retry_if=ftp_transient,
                on_retry=lambda *_: session.drop(),
            )
            if have != f.size:
                bad.append(f"{f.remote}: {have} bytes on the server, {f.size} expected")
    finally:
        session.drop()
    return bad


# --------------------------------------------------------------------------------------------
# BioStudies submission API


class BioStudiesClient:
    """The parts of the BioStudies submission API a deposit needs.

    ``POST /auth/login`` (JSON ``login``, ``password``) returns ``sessid``, sent back as the
    ``X-Session-Token`` header; ``POST /submissions`` takes the PageTab (``Submission_Type:
    application/json``) and answers with the submission and its ``accno``; ``GET /files/user/<path>``
    lists the user's upload area. Errors come as ``{"status": "FAIL", "log": {"message", "subnodes"}}``.
    """

    def __init__(
        self, api_url: str, *, retries: int = 5, backoff: float = 1.0, timeout: float = 120.0
    ) -> None:
        import requests

        self.api_url = api_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.http = requests.Session()
        self.token: str | None = None

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        url = f"{self.api_url}{path}"
        headers = dict(kwargs.pop("headers", {}))
        headers.setdefault("Accept", "application/json")
        if self.token:
            headers["X-Session-Token"] = self.token

        def once() -> Any:
            resp = self.http.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if resp.status_code >= 500 or resp.status_code == 429:
                message, details = _error_of(resp)
                raise ApiError(resp.status_code, message, details)
            return resp

        try:
            resp = retry_call(
                once,
                policy=RetryPolicy(attempts=self.retries, base_delay=self.backoff),
                what=f"{method} {path}",
            )
        except requests.RequestException as exc:
            raise DepositError(
                f"{method} {path}: {type(exc).__name__}: cannot reach the BioStudies API"
            ) from exc
        if resp.status_code >= 400:
            message, details = _error_of(resp)
            raise ApiError(resp.status_code, message, details)
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def login(self, credentials: Credentials) -> str:
        """Get a session token (or use the token given)."""
        if credentials.token:
            self.token = credentials.token
            return self.token
        if not (credentials.user and credentials.password):
            raise DepositError(
                "no BioStudies credentials: set <PREFIX>_USER and <PREFIX>_PASSWORD (credentials_env) "
                "or a ~/.netrc entry for the API host"
            )
        data = self._request(
            "POST",
            "/auth/login",
            json={"login": credentials.user, "password": credentials.password},
        )
        token = data.get("sessid") if isinstance(data, dict) else None
        if not token:
            raise DepositError("BioStudies login answered without a session token")
        self.token = str(token)
        return self.token

    def submit(self, pagetab: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a PageTab JSON document; returns the submission as the API echoes it."""
        data = self._request(
            "POST",
            "/submissions",
            data=json.dumps(pagetab).encode("utf-8"),
            headers={"Content-Type": "application/json", "Submission_Type": "application/json"},
        )
        if not isinstance(data, dict) or not data.get("accno"):
            raise DepositError("BioStudies answered the submission without an accession number")
        return data

    def user_files(self, path: str = "") -> list[dict[str, Any]]:
        """List a folder of the user's upload area."""
        data = self._request("GET", f"/files/user/{urllib.parse.quote(path)}".rstrip("/"))
        return list(data) if isinstance(data, list) else []


def _error_of(resp: Any) -> tuple[str, list[str]]:
    try:
        body = resp.json()
    except ValueError:
        return (f"HTTP {resp.status_code}", [])
    logn = body.get("log") if isinstance(body, dict) else None
    if not isinstance(logn, dict):
        return (str(body)[:200], [])
    details: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        for sub in node.get("subnodes") or []:
            if isinstance(sub, dict):
                if sub.get("message"):
                    details.append(str(sub["message"]))
                walk(sub)

    walk(logn)
    return (str(logn.get("message", "error")), details)


# --------------------------------------------------------------------------------------------
# Deposit


@dataclass
class DepositReport:
    """What :func:`deposit_bia` did, per dataset (``state``: submitted, verified (dry run),
    up-to-date or failed)."""

    destination: str
    dry_run: bool = False
    datasets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The datasets that failed."""
        return [d for d in self.datasets if d["state"] == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (no secrets)."""
        return {"destination": self.destination, "dry_run": self.dry_run, "datasets": self.datasets}


def _check_policy(
    pkg: dict[str, Any], destination: str, policies: Mapping[str, Any] | None
) -> None:
    pol = pkg.get("policy") or {}
    if pkg.get("destination_class") != "public_archive" or "public_archive" not in pol.get(
        "allowed_classes", []
    ):
        raise PolicyError(
            f"dataset {pkg.get('dataset')}: policy {pol.get('name')!r} does not allow a public archive"
        )
    if policies is not None:
        current = policies.get(pol.get("name", ""))
        if current is None:
            raise PolicyError(
                f"dataset {pkg.get('dataset')}: policy {pol.get('name')!r} is no longer configured"
            )
        current.check_destination(destination, "public_archive")
        if current.sha256 != pol.get("sha256"):
            raise PolicyError(
                f"dataset {pkg.get('dataset')}: policy {pol.get('name')!r} changed since staging; re-stage"
            )


def _upload_files_of(pkg_dir: Path, upload_root: str) -> list[UploadFile]:
    """The files of a package's upload folder with their SHA-256 from the bag manifest."""
    root = pkg_dir / "data" / upload_root
    digests = _read_manifest(pkg_dir / "manifest-sha256.txt")
    files = []
    for p in iter_files(root):
        digest = digests.get(str(p.relative_to(pkg_dir)))
        if digest is None:
            raise BagError(pkg_dir, [f"{p.relative_to(pkg_dir)}: not in the manifest"])
        files.append(UploadFile(p, str(p.relative_to(root)), p.stat().st_size, digest))
    return files


def deposit_bia(
    staged: str | Path,
    *,
    ftp_url: str,
    api_url: str,
    credentials: Credentials,
    parallel_streams: int = 2,
    dry_run: bool = False,
    state: Any = None,
    destination: str | None = None,
    policies: Mapping[str, Any] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    download_verify_limit: int = DOWNLOAD_VERIFY_LIMIT,
) -> DepositReport:
    """Deposit staged BioImage Archive packages: FTP upload, content check, then PageTab submission.

    Parameters
    ----------
    staged
        One package (a bag from :func:`stage_bia`) or the folder holding them
        (``results/bia/<destination>``).
    ftp_url
        The secret upload directory, ``ftp://[user[:password]@]host[:port]/<directory>``.
    api_url
        BioStudies submission API base URL (e.g. ``https://www.ebi.ac.uk/biostudies/submissions/api``).
    credentials
        API login (:func:`credentials_from_env`).
    parallel_streams
        Parallel FTP connections.
    dry_run
        Upload and verify, but do not submit.
    state
        A :class:`imagedepot.state.StateDB`: datasets already submitted with the same content are
        skipped; every step is recorded; a failure records its reason and the next run retries it.
    policies
        Loaded policies: re-checked before any upload (the package records the policy it was staged
        under; a changed or stricter policy stops the deposit).
    download_verify_limit
        Largest file (bytes) that is read back from the upload area to verify its content
        (:func:`upload_files`); a dataset with a larger file fails before anything is sent.

    Each dataset is independent: one failing is recorded and the others go on. Check
    :attr:`DepositReport.failed`.
    """
    packages = find_packages(staged)
    target = FtpTarget.parse(ftp_url)
    report = DepositReport(destination or "", dry_run)
    client: BioStudiesClient | None = None
    goal = "verified" if dry_run else "submitted"
    for pkg_dir in packages:
        pkg = read_json(pkg_dir / SUBMISSION_DIR / "package.json")
        dest = destination or pkg["destination"]
        report.destination = dest
        dataset = pkg["dataset"]
        entry: dict[str, Any] = {"dataset": dataset, "files": pkg["files"], "bytes": pkg["bytes"]}
        try:
            chash = content_hash(pkg_dir)
            if state is not None and not state.needs_work(dest, dataset, chash, goal=goal):
                row = state.get(dest, dataset)
                entry |= {"state": "up-to-date", "accession": row.accession if row else None}
                report.datasets.append(entry)
                log.info("%s/%s: already %s with this content; nothing to do", dest, dataset, goal)
                continue
            previous = state.get(dest, dataset) if state is not None else None
            if state is not None:
                state.start(dest, dataset, chash, files=pkg["files"], bytes=pkg["bytes"])
            problems = verify_bag(pkg_dir)
            if problems:
                raise BagError(pkg_dir, problems)
            if chash != pkg["content_hash"]:
                raise BagError(pkg_dir, ["content hash differs from package.json"])
            _check_policy(pkg, dest, policies)
            files = _upload_files_of(pkg_dir, pkg["upload_root"])
            log.info("%s/%s: uploading %d file(s) to %s", dest, dataset, len(files), target)
            results = upload_files(
                files,
                target,
                streams=parallel_streams,
                retries=retries,
                backoff=backoff,
                download_verify_limit=download_verify_limit,
            )
            entry["sent_bytes"] = sum(r.sent for r in results)
            entry["resumed"] = [r.path for r in results if r.resumed_from]
            entry["replaced"] = [r.path for r in results if r.replaced]
            entry["verified_by_sha256"] = len(results)
            if state is not None:
                state.set_state(dest, dataset, "uploaded")
            bad = verify_remote_sizes(files, target, retries=retries, backoff=backoff)
            if bad:
                raise DepositError("sizes differ after upload: " + "; ".join(bad[:5]))
            if state is not None:
                state.set_state(dest, dataset, "verified")
            if dry_run:
                entry["state"] = "verified"
                log.info("%s/%s: uploaded and verified; dry run, not submitting", dest, dataset)
                report.datasets.append(entry)
                continue
            if client is None:
                client = BioStudiesClient(api_url, retries=retries, backoff=backoff)
                client.login(credentials)
            doc = read_json(pkg_dir / "data" / pkg["pagetab"])
            accession = previous.accession if previous is not None else None
            if accession:
                doc["accno"] = accession
            answer = client.submit(doc)
            entry |= {"state": "submitted", "accession": answer["accno"]}
            if state is not None:
                state.set_state(dest, dataset, "submitted", accession=answer["accno"])
            log.info("%s/%s: submitted as %s", dest, dataset, answer["accno"])
        except (ImagedepotError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if target.directory:
                reason = reason.replace(target.directory, "<secret directory>")
            entry |= {"state": "failed", "reason": reason}
            log.error("%s/%s: %s", dest, dataset, reason)
            if state is not None and state.get(dest, dataset) is not None:
                state.set_state(dest, dataset, "failed", reason=reason)
        report.datasets.append(entry)
    return report
