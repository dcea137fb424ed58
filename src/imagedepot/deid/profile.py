"""DICOM PS3.15 Annex E: the Basic Application Level Confidentiality Profile and its options.

The attribute table (PS3.15 Table E.1-1) ships in ``imagedepot/data`` as parsed by the
innolitics/dicom-standard project (see :data:`EDITION` and the licence file beside it). This module
loads it once and answers one question: *what does the profile do with this tag under these
options?* (:func:`action_for`). The DICOM writer (:mod:`imagedepot.deid.dicom`) turns the answer
into edits.

Action codes (PS3.15 E.1.1): ``D`` replace with a non-empty dummy value, ``Z`` replace with an
empty value, ``X`` remove, ``K`` keep (sequences are still cleaned item by item), ``C`` clean
(replace with values of similar meaning that carry no identifying information), ``U`` replace
UIDs with internally consistent ones.

Resolution rules (deterministic, and where the standard leaves a choice, conservative):

* **Combination codes** depend on the attribute's type in the IOD (PS3.15 E.1.1: ``X/Z`` is
  ``X`` unless ``Z`` is needed to keep the IOD valid, Type 3 against Type 2, and so on). The type
  comes from PS3.3 (:mod:`imagedepot.deid.iod`) for the file's SOP class, and
  :func:`resolve_combination` picks: Type 1 ``D`` (``Z`` when ``D`` is not offered), Type 2
  ``Z`` (also for ``X/D``: an empty value keeps a Type 2 attribute valid and fabricates
  nothing), Type 3 or not in the IOD ``X`` (``Z`` for ``Z/D``). Where the type is unknown (a
  SOP class the tables do not list, or inside a sequence item) the resolution is the fixed
  table :data:`COMBINATION_RESOLUTION` for values, which keeps Type 2 and Type 3 valid
  (``X/Z``, ``Z/D`` and ``X/Z/D`` become ``Z``; ``X/D`` becomes ``X``), and ``X`` for
  sequences, as an empty sequence is invalid where the IOD wants items. ``X/Z/U*`` (reference
  sequences such as Referenced Image Sequence) always becomes ``U``: the sequence is kept and
  every UID inside is replaced consistently, so references between de-identified instances
  stay valid while no original UID survives.
* **Options** override the basic action only where the table has an entry in the option's
  column. When several selected options give an action for the same attribute, the more
  restrictive wins: ``C`` (clean) over ``K`` (keep). So with both Retain Device Identity and
  Retain Longitudinal Temporal Information with Modified Dates, a calibration date is shifted
  (``C``), not kept as is.
* **Dates**: under ``retain_longitudinal_modified_dates`` date and time attributes resolve to
  ``C``, which the DICOM writer implements as a shift of every date by the subject's offset
  (times of day are kept); under ``retain_longitudinal_full_dates`` they resolve to ``K``.
  Should both options be given (a policy rejects that), modified dates win (``C`` over ``K``).
* **Wildcards**: ``(50XX,XXXX)`` (curve data) and ``(60XX,3000)``/``(60XX,4000)`` (overlay data
  and comments) match every repeating group; private attributes (odd groups) resolve to ``X``,
  or to ``C`` under ``retain_safe_private`` (the writer then keeps only the curated safe list).
* Tags that the table does not list give ``None``; what to do with those (keep standard
  attributes, remove unknown ones, ...) is the writer's policy, documented there.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import NamedTuple

#: The edition of PS3.15 Table E.1-1 this package ships (named in provenance and in
#: DeidentificationMethod). The table was parsed by innolitics/dicom-standard (commit
#: 7f4749d09ed3ef2fa70637d376d423a4b13523cd) from the web edition of the DICOM Standard of
#: January 2025.
EDITION = (
    "DICOM PS3.15 Table E.1-1, web edition of January 2025 "
    "(parsed by innolitics/dicom-standard 7f4749d)"
)
#: Short form of :data:`EDITION` that fits a DICOM LO value (64 characters).
EDITION_SHORT = "PS3.15 Table E.1-1, web edition 2025-01"
#: How combination codes were resolved, for DeidentificationMethod (fits an LO value): from
#: the attribute types of PS3.3 (:mod:`imagedepot.deid.iod`).
IOD_TYPES_SHORT = "X/Z, Z/D, X/D, X/Z/D chosen by type in the IOD (PS3.3 2026b)"

TABLE_RESOURCE = "data/ps3.15-table-e.1-1.json"


class Code(NamedTuple):
    """A coded concept: code value, coding scheme designator, code meaning."""

    value: str
    scheme: str
    meaning: str


#: CID 7050 "De-identification Method" code of the profile itself.
BASIC_PROFILE_CODE = Code("113100", "DCM", "Basic Application Confidentiality Profile")

#: Option name (as used in policies) → CID 7050 code. Checked against PS3.16 CID 7050 as
#: shipped in pydicom's generated code dictionary (``pydicom.sr.codedict``).
OPTION_CODES: Mapping[str, Code] = MappingProxyType(
    {
        "clean_pixel_data": Code("113101", "DCM", "Clean Pixel Data Option"),
        "clean_recognizable_visual_features": Code(
            "113102", "DCM", "Clean Recognizable Visual Features Option"
        ),
        "clean_graphics": Code("113103", "DCM", "Clean Graphics Option"),
        "clean_structured_content": Code("113104", "DCM", "Clean Structured Content Option"),
        "clean_descriptors": Code("113105", "DCM", "Clean Descriptors Option"),
        "retain_longitudinal_full_dates": Code(
            "113106", "DCM", "Retain Longitudinal Temporal Information Full Dates Option"
        ),
        "retain_longitudinal_modified_dates": Code(
            "113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"
        ),
        "retain_patient_characteristics": Code(
            "113108", "DCM", "Retain Patient Characteristics Option"
        ),
        "retain_device_identity": Code("113109", "DCM", "Retain Device Identity Option"),
        "retain_uids": Code("113110", "DCM", "Retain UIDs Option"),
        "retain_safe_private": Code("113111", "DCM", "Retain Safe Private Option"),
        "retain_institution_identity": Code("113112", "DCM", "Retain Institution Identity Option"),
    }
)

#: Every option name a policy may use.
OPTIONS: frozenset[str] = frozenset(OPTION_CODES)

#: Option name → column of the shipped table. The two pixel options have no column: they act
#: on pixel data, not on attributes.
OPTION_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "clean_graphics": "cleanGraphOpt",
        "clean_structured_content": "cleanStructContOpt",
        "clean_descriptors": "cleanDescOpt",
        "retain_longitudinal_full_dates": "rtnLongFullDatesOpt",
        "retain_longitudinal_modified_dates": "rtnLongModifDatesOpt",
        "retain_patient_characteristics": "rtnPatCharsOpt",
        "retain_device_identity": "rtnDevIdOpt",
        "retain_uids": "rtnUIDsOpt",
        "retain_safe_private": "rtnSafePrivOpt",
        "retain_institution_identity": "rtnInstIdOpt",
    }
)

#: How combination codes resolve for a value (not a sequence) whose type in the IOD is unknown
#: (see the module docstring and :func:`resolve_combination`).
COMBINATION_RESOLUTION: Mapping[str, str] = MappingProxyType(
    {"X/Z": "Z", "Z/D": "Z", "X/Z/D": "Z", "X/D": "X", "X/Z/U*": "U"}
)

#: Single action codes, most restrictive first; used to pick among option actions.
_RESTRICTIVENESS = ("X", "Z", "D", "C", "U", "K")

_PRIVATE_ID = "ggggeeee-where-gggg-is-odd"
_TAG_RE = re.compile(r"\(([0-9A-FX]{4}),([0-9A-FX]{4})\)")


@dataclass(frozen=True)
class ProfileAttribute:
    """One row of Table E.1-1.

    ``mask``/``value`` match tags: ``tag & mask == value`` (wildcard digits have mask 0).
    ``options`` maps a column name (see :data:`OPTION_COLUMNS`) to its action code.
    """

    name: str
    tag: str
    basic: str
    mask: int
    value: int
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_wildcard(self) -> bool:
        """True for rows such as ``(50XX,XXXX)`` that match a family of tags."""
        return self.mask != 0xFFFFFFFF


def _parse_tag(text: str) -> tuple[int, int]:
    m = _TAG_RE.fullmatch(text.strip().upper())
    if m is None:
        raise ValueError(f"unrecognised tag in the profile table: {text!r}")
    digits = m.group(1) + m.group(2)
    mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
    value = int(digits.replace("X", "0"), 16)
    return mask, value


@functools.cache
def table() -> tuple[ProfileAttribute, ...]:
    """The shipped Table E.1-1, loaded once. The private-attributes row is not included
    (private tags are handled by :func:`action_for` directly)."""
    text = resources.files("imagedepot").joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
    rows = []
    for raw in json.loads(text):
        if raw["id"] == _PRIVATE_ID:
            continue
        mask, value = _parse_tag(raw["tag"])
        opts = {col: raw[col] for col in OPTION_COLUMNS.values() if col in raw}
        rows.append(
            ProfileAttribute(
                name=raw["name"],
                tag=raw["tag"],
                basic=raw["basicProfile"],
                mask=mask,
                value=value,
                options=MappingProxyType(opts),
            )
        )
    return tuple(rows)


@functools.cache
def _private_row() -> Mapping[str, str]:
    text = resources.files("imagedepot").joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
    for raw in json.loads(text):
        if raw["id"] == _PRIVATE_ID:
            return MappingProxyType(dict(raw))
    raise RuntimeError("the profile table has no private-attributes row")  # pragma: no cover


def resolve_basic(code: str) -> str:
    """Resolve a basic-profile code (possibly a combination such as ``X/Z/D``) to one action,
    for a value whose type in the IOD is unknown."""
    if code in COMBINATION_RESOLUTION:
        return COMBINATION_RESOLUTION[code]
    if code in _RESTRICTIVENESS:
        return code
    raise ValueError(f"unknown action code in the profile table: {code!r}")


def is_combination(code: str) -> bool:
    """True for a code that leaves the choice to the IOD (``X/Z``, ``Z/D``, ...)."""
    return code in COMBINATION_RESOLUTION


def resolve_combination(code: str, iod_type: str | None, *, sequence: bool = False) -> str:
    """Resolve ``code`` for an attribute of type ``iod_type`` in the file's IOD.

    ``iod_type`` is ``"1"``, ``"2"``, ``"3"``, ``"-"`` (not in the IOD) or ``None`` (unknown),
    as :func:`imagedepot.deid.iod.attribute_type` answers; single codes are returned as they
    are. See the module docstring for the rules.
    """
    if not is_combination(code):
        return resolve_basic(code)
    if code == "X/Z/U*":
        return "U"
    offered = code.split("/")
    if iod_type == "1":
        return "D" if "D" in offered else "Z"
    if iod_type == "2":
        return "Z"
    if iod_type is not None or sequence:  # Type 3, not in the IOD, or an unknown sequence
        return "X" if "X" in offered else "Z"
    return COMBINATION_RESOLUTION[code]


def check_options(options: Iterable[str]) -> frozenset[str]:
    """Return ``options`` as a frozenset; raise ``ValueError`` naming any unknown option."""
    opts = frozenset(options)
    unknown = sorted(opts - OPTIONS)
    if unknown:
        raise ValueError(f"unknown de-identification option(s): {', '.join(unknown)}")
    return opts


def _resolve(basic: str, row_options: Mapping[str, str], options: frozenset[str]) -> str:
    chosen = [
        row_options[OPTION_COLUMNS[o]]
        for o in options
        if o in OPTION_COLUMNS and OPTION_COLUMNS[o] in row_options
    ]
    if not chosen:
        resolve_basic(basic)  # raises for an unknown code
        return basic  # combination codes stay: they resolve per file (resolve_combination)
    return min(chosen, key=_RESTRICTIVENESS.index)


@functools.cache
def _compiled(
    options: frozenset[str],
) -> tuple[Mapping[int, str], tuple[tuple[int, int, str], ...]]:
    exact: dict[int, str] = {}
    wild: list[tuple[int, int, str]] = []
    for row in table():
        action = _resolve(row.basic, row.options, options)
        if row.is_wildcard:
            wild.append((row.mask, row.value, action))
        else:
            exact[row.value] = action
    return MappingProxyType(exact), tuple(wild)


def tag_actions(options: Iterable[str] = ()) -> Mapping[int, str]:
    """Action of every exactly-listed tag under ``options`` (cached per option set): a single
    code, or a combination code (see :func:`is_combination`) that the IOD decides."""
    return _compiled(check_options(options))[0]


def wildcard_actions(options: Iterable[str] = ()) -> tuple[tuple[int, int, str], ...]:
    """``(mask, value, action)`` of the wildcard rows, e.g. ``(50XX,XXXX)``, under ``options``."""
    return _compiled(check_options(options))[1]


def private_action(options: Iterable[str] = ()) -> str:
    """Action for private attributes: ``X``, or ``C`` under ``retain_safe_private``."""
    row = _private_row()
    return _resolve(row["basicProfile"], row, check_options(options))


def action_for(
    tag: int,
    options: Iterable[str] = (),
    *,
    iod_type: str | None = None,
    sequence: bool = False,
) -> str | None:
    """Resolved action for ``tag`` (e.g. ``0x00100010``) under ``options``, or ``None``.

    Returns one of ``D``, ``Z``, ``X``, ``K``, ``C``, ``U`` (see the module docstring for how
    combination codes and options resolve; ``iod_type`` and ``sequence`` as for
    :func:`resolve_combination`), or ``None`` when Table E.1-1 does not list the tag.
    Raises ``ValueError`` for an unknown option name.
    """
    opts = check_options(options)
    exact, wild = _compiled(opts)
    found = exact.get(tag)
    if found is not None:
        return resolve_combination(found, iod_type, sequence=sequence)
    if (tag >> 16) & 1:
        return private_action(opts)
    for mask, value, action in wild:
        if tag & mask == value:
            return action
    return None
