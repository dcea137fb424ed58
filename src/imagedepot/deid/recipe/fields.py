"""The fields of a recipe's header actions, the constants of the recipe format and its error.

:func:`parse_field` reads a field (keyword or name, tag, private tag with its creator, ``ALL``,
expanders); :class:`FieldSpec` says which elements it names. :data:`PROTECTED` lists the
top-level attributes imagedepot owns (see :mod:`imagedepot.deid.recipe`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

HEADER_ACTIONS: tuple[str, ...] = ("ADD", "BLANK", "JITTER", "KEEP", "REMOVE", "REPLACE")
#: Which action wins when several lines match one element (deid's order, strongest first).
PRIORITY: tuple[str, ...] = ("KEEP", "ADD", "REPLACE", "JITTER", "REMOVE", "BLANK")
#: Action-log code of each recipe action (as in the profile's log: X removed, Z emptied,
#: D replaced by a given value, C cleaned/shifted).
LOG_CODES = {"REMOVE": "X", "BLANK": "Z", "REPLACE": "D", "ADD": "D", "JITTER": "C"}

#: Top-level attributes imagedepot sets or needs intact; recipe actions leave them alone.
PROTECTED: frozenset[str] = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
        "BurnedInAnnotation",
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "NumberOfFrames",
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
    }
)

_EXPANDERS = ("startswith", "endswith", "contains", "except")
_TAG_RE = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?")
_HEX_RE = re.compile(r"0x([0-9A-Fa-f]{8})")
_PRIVATE_RE = re.compile(r'\(?\s*([0-9A-Fa-f]{4})\s*,\s*"([^"]*)"\s*,\s*([0-9A-Fa-f]{2})\s*\)?')
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT", "UI"}
)
_INT_VRS = frozenset({"US", "UL", "SS", "SL", "SV", "UV"})
_FLOAT_VRS = frozenset({"FL", "FD"})


class RecipeError(ValueError):
    """A recipe that cannot be honoured: names the line and what is wrong."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


# --------------------------------------------------------------------------------------------
# Fields


@dataclass(frozen=True)
class FieldSpec:
    """Which elements a header action names (see the module docstring)."""

    text: str
    kind: str  # "all", "exact", "tag", "private" or one of _EXPANDERS
    pattern: str | None = None
    tag: int | None = None
    creator: str | None = None

    def matches(self, tag: int, keyword: str, name: str, creator: str | None) -> bool:
        """True if the element (its tag, keyword, name, private creator) is named."""
        if self.kind == "all":
            return True
        if self.kind == "tag":
            return tag == self.tag
        if self.kind == "private":
            assert self.tag is not None
            return (
                creator is not None
                and tag >> 16 == self.tag >> 16
                and tag & 0xFF == self.tag & 0xFF
                and tag & 0xFFFF >= 0x1000
                and creator.strip().casefold() == (self.creator or "").strip().casefold()
            )
        if self.kind == "exact":
            want = self.text.casefold()
            return want in (keyword.casefold(), name.casefold())
        assert self.pattern is not None
        rx = _expander_regex(self.kind, self.pattern)
        hit = any(
            rx.search(s)
            for s in (keyword, name, f"({tag >> 16:04x},{tag & 0xFFFF:04x})", f"{tag:08x}")
            if s
        )
        return not hit if self.kind == "except" else hit


@functools.lru_cache(maxsize=256)
def _expander_regex(kind: str, pattern: str) -> re.Pattern[str]:
    if kind == "startswith":
        pattern = f"^(?:{pattern})"
    elif kind == "endswith":
        pattern = f"(?:{pattern})$"
    return re.compile(pattern, re.IGNORECASE)


def parse_field(text: str, line: int | None = None) -> FieldSpec:
    """Parse the field of a header action; raises :class:`RecipeError` when unusable."""
    t = text.strip()
    if not t:
        raise RecipeError(line, "missing field")
    if t.casefold() == "all":
        return FieldSpec(t, "all")
    if ":" in t and not t.startswith("("):
        kind, _, pattern = t.partition(":")
        kind = kind.strip().lower()
        if kind in _EXPANDERS:
            if not pattern.strip():
                raise RecipeError(line, f"{kind}: needs an expression")
            try:
                _expander_regex(kind, pattern.strip())
            except re.error as exc:
                raise RecipeError(line, f"invalid expression {pattern!r}: {exc}") from exc
            return FieldSpec(t, kind, pattern=pattern.strip())
        raise RecipeError(
            line,
            f"field {t!r}: {kind}: is not supported (use a name, a tag, ALL or "
            f"{', '.join(e + ':' for e in _EXPANDERS)})",
        )
    m = _PRIVATE_RE.fullmatch(t)
    if m:
        group = int(m.group(1), 16)
        if not group & 1:
            raise RecipeError(line, f"field {t!r}: a private creator needs an odd group")
        return FieldSpec(t, "private", tag=(group << 16) | int(m.group(3), 16), creator=m.group(2))
    m = _HEX_RE.fullmatch(t) or None
    if m:
        return FieldSpec(t, "tag", tag=int(m.group(1), 16))
    m = _TAG_RE.fullmatch(t)
    if m and (t.startswith("(") or len(t) == 8):
        return FieldSpec(t, "tag", tag=int(m.group(1) + m.group(2), 16))
    return FieldSpec(t, "exact")


@functools.lru_cache(maxsize=4096)
def _names(tag: int) -> tuple[str, str]:
    from pydicom.datadict import dictionary_description, keyword_for_tag

    if (tag >> 16) & 1:
        return "", ""
    try:
        return keyword_for_tag(tag) or "", dictionary_description(tag)
    except KeyError:
        return "", ""
