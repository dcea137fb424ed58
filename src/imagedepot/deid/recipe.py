"""A user's ``deid`` recipe, honoured on top of the PS3.15 profile.

Teams that already de-identify with pydicom's ``deid`` keep their recipe: a policy names it
(``deidentification.deid_recipe``) and :func:`imagedepot.deid.dicom.deidentify_dicom` applies it
to every file. The recipe is read by this module (``deid`` itself need not be installed) and
checked when the policy loads: anything this module cannot honour exactly is an error naming the
line, before any data moves.

Precedence (fail closed)
------------------------
The recipe runs **after** the Basic Profile and its options, on what the profile left, and
**before** imagedepot sets the pseudonym and the conformance attributes. So a recipe can remove,
empty, replace, add or shift more, never less: ``KEEP`` cannot bring back what the profile
removed (choose the option that keeps it, e.g. ``retain_longitudinal_full_dates``, which the
policy checks against its destinations); ``REMOVE ALL`` removes what the profile kept. The
attributes imagedepot owns at the top level (:data:`PROTECTED`: Patient's Name and ID, which
carry the pseudonym; the SOP, study and series UIDs, which name files and are remapped
consistently; the conformance attributes; the Image Pixel module) are left to it; recipe lines
that name them exactly are listed in :attr:`Recipe.superseded`.

Supported
---------
``FORMAT dicom``; ``%header`` with ``ADD``, ``BLANK``, ``JITTER``, ``KEEP``, ``REMOVE`` and
``REPLACE``; fields given as a keyword or name (``PatientName``), a tag (``(0010,0010)``,
``00100010``, ``0x00100010``), a private tag with its creator (``(0033,"CREATOR",1E)``), ``ALL``,
or the expanders ``startswith:``, ``endswith:``, ``contains:`` and ``except:`` (regular
expressions matched, ignoring case, against keyword, name and tag of each element, at every depth
of every sequence); literal values. ``%filter`` sections with ``LABEL`` groups of conditions and
coordinates (see :mod:`imagedepot.deid.pixels`): labels with coordinates become pixel-cleaning
rules, labels without coordinates flag images as carrying text (refused unless a rule cleans
them); the ``whitelist`` group is not used, as a recipe cannot declare images clean here.

When several lines match an element, the action wins in deid's order
``KEEP > ADD > REPLACE > JITTER > REMOVE > BLANK``; among lines of the same action, the last.
``ADD`` sets a top-level attribute (created if absent); ``REPLACE`` changes existing ones only.
``JITTER`` moves dates (DA) and date-times (DT) by a whole number of days and ignores other
values. Values are converted to the attribute's value representation; a value that does not fit
(text for a number, anything for binary data or a sequence) quarantines the file.

Not supported (an error at load): values computed by deid's Python callbacks (``var:``,
``func:``, ``deid_func:``), conditional ``REMOVE`` with a value, ``select:``/``fields:``/
``values:`` field lists and the ``%values``/``%fields`` sections, other formats than ``dicom``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.deid.rules import (
    FILTER_OPS,
    WHOLE_IMAGE,
    Condition,
    Criteria,
    Line,
    PixelRule,
    Region,
)

log = logging.getLogger(__name__)

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

_UNSUPPORTED_VALUES = ("var:", "func:", "deid_func:")
_EXPANDERS = ("startswith", "endswith", "contains", "except")
_TAG_RE = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?")
_HEX_RE = re.compile(r"0x([0-9A-Fa-f]{8})")
_PRIVATE_RE = re.compile(r'\(?\s*([0-9A-Fa-f]{4})\s*,\s*"([^"]*)"\s*,\s*([0-9A-Fa-f]{2})\s*\)?')
_OP_WORDS = "|".join(FILTER_OPS)
_SPLIT_RE = re.compile(rf"\s+(\+|\|\|)\s+(?=(?:{_OP_WORDS})\s)", re.IGNORECASE)
_LEAD_RE = re.compile(r"^(\+|\|\|)\s*")
_COORD_RE = re.compile(
    r"^(ctpkeepcoordinates|keepcoordinates|ctpcoordinates|coordinates)\b(.*)$", re.I
)
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


# --------------------------------------------------------------------------------------------
# Parsed recipe


@dataclass(frozen=True)
class HeaderAction:
    """One ``%header`` line."""

    line: int
    action: str
    field: FieldSpec
    value: str | None = None

    @property
    def days(self) -> int:
        """JITTER: the number of days."""
        return int(self.value or 0)


@dataclass(frozen=True)
class FilterLabel:
    """One ``LABEL`` of a ``%filter`` section."""

    line: int
    group: str
    name: str
    criteria: Criteria
    regions: tuple[Region, ...] = ()
    keep: tuple[Region, ...] = ()
    regions_from: tuple[str, ...] = ()
    keep_from: tuple[str, ...] = ()

    @property
    def has_coordinates(self) -> bool:
        """True if the label says where text is."""
        return bool(self.regions or self.keep or self.regions_from or self.keep_from)


@dataclass(frozen=True)
class Recipe:
    """A parsed deid recipe. Build it with :func:`load_recipe` or :func:`parse_recipe`."""

    name: str
    sha256: str
    actions: tuple[HeaderAction, ...] = ()
    labels: tuple[FilterLabel, ...] = ()
    superseded: tuple[int, ...] = ()
    skipped_filters: int = 0
    _cache: dict[tuple[int, str | None], tuple[str, HeaderAction] | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            Recipe,
            (
                self.name,
                self.sha256,
                self.actions,
                self.labels,
                self.superseded,
                self.skipped_filters,
            ),
        )

    @property
    def jitters(self) -> bool:
        """True if the recipe moves dates."""
        return any(a.action == "JITTER" for a in self.actions)

    def pixel_rules(self, source: str | None = None) -> tuple[PixelRule, ...]:
        """The ``%filter`` labels as pixel rules (whitelist labels left out)."""
        src = source or f"deid recipe {self.name}"
        out = []
        for lab in self.labels:
            if lab.group.casefold() == "whitelist":
                continue
            out.append(
                PixelRule(
                    name=f"{lab.group}:{lab.name}:{lab.line}",
                    regions=lab.regions,
                    criteria=lab.criteria,
                    keep=lab.keep,
                    regions_from=lab.regions_from,
                    keep_from=lab.keep_from,
                    source=src,
                )
            )
        return tuple(out)

    def to_provenance(self) -> dict[str, Any]:
        """What provenance records about the recipe (no values, no paths)."""
        counts: dict[str, int] = {}
        for a in self.actions:
            counts[a.action] = counts.get(a.action, 0) + 1
        return {
            "name": self.name,
            "sha256": self.sha256,
            "header_actions": dict(sorted(counts.items())),
            "filter_labels": len(self.labels),
            "superseded_lines": list(self.superseded),
            "precedence": "after the PS3.15 profile; cannot keep what the profile removes",
        }

    @property
    def method_text(self) -> str:
        """The value added to De-identification Method (at most 64 characters)."""
        return f"deid recipe sha256:{self.sha256[:16]}"

    def winner(self, tag: int, creator: str | None) -> tuple[str, HeaderAction] | None:
        """The action that applies to an element with this tag (and private creator)."""
        key = (tag, creator)
        if key in self._cache:
            return self._cache[key]
        keyword, name = _names(tag)
        best: tuple[int, HeaderAction] | None = None
        for act in self.actions:
            if act.action == "ADD":
                continue  # ADD sets one top-level attribute, after the walk
            if act.field.matches(tag, keyword, name, creator):
                rank = PRIORITY.index(act.action)
                if best is None or rank <= best[0]:
                    best = (rank, act)
        result = (best[1].action, best[1]) if best is not None else None
        self._cache[key] = result
        return result


@functools.lru_cache(maxsize=4096)
def _names(tag: int) -> tuple[str, str]:
    from pydicom.datadict import dictionary_description, keyword_for_tag

    if (tag >> 16) & 1:
        return "", ""
    try:
        return keyword_for_tag(tag) or "", dictionary_description(tag)
    except KeyError:
        return "", ""


# --------------------------------------------------------------------------------------------
# Parsing


def _parse_coordinates(kind: str, raw: str, line: int) -> tuple[str, Region | str]:
    """``(target, region or from-field)`` for a coordinate line."""
    keep = "keep" in kind.lower()
    ctp = kind.lower().startswith("ctp")
    target = "keep" if keep else "blank"
    text = raw.strip()
    if text.lower() == "all":
        return target, WHOLE_IMAGE
    if text.lower().startswith("from:"):
        name = text[5:].strip()
        if not name:
            raise RecipeError(line, "coordinates from: needs a sequence keyword")
        return target + "_from", name
    try:
        nums = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise RecipeError(line, f"coordinates {text!r} are not four integers") from exc
    if len(nums) != 4 or min(nums) < 0:
        raise RecipeError(line, f"coordinates {text!r} are not four non-negative integers")
    x0, y0, a, b = nums
    x1, y1 = (x0 + a, y0 + b) if ctp else (a, b)
    if x1 <= x0 or y1 <= y0:
        raise RecipeError(line, f"coordinates {text!r} give an empty rectangle")
    return target, (x0, y0, x1, y1)


def _parse_condition(text: str, line: int) -> Condition:
    parts = text.strip().split(None, 2)
    if not parts:
        raise RecipeError(line, "empty condition")
    op = parts[0].lower()
    if op not in FILTER_OPS:
        raise RecipeError(line, f"unknown filter {parts[0]!r} (known: {', '.join(FILTER_OPS)})")
    if len(parts) < 2:
        raise RecipeError(line, f"{op} needs a field")
    value = parts[2].strip() if len(parts) > 2 else None
    if op in ("missing", "present", "empty"):
        value = None
    elif not value:
        raise RecipeError(line, f"{op} {parts[1]} needs a value")
    try:
        return Condition(op, parts[1], value)
    except ValueError as exc:
        raise RecipeError(line, str(exc)) from exc


def _parse_condition_line(text: str, line: int) -> tuple[str, Line]:
    joiner = "and"
    m = _LEAD_RE.match(text)
    if m:
        joiner = "or" if m.group(1) == "||" else "and"
        text = text[m.end() :]
    pieces = _SPLIT_RE.split(text)
    conds: list[tuple[str, Condition]] = [("and", _parse_condition(pieces[0], line))]
    for op, piece in zip(pieces[1::2], pieces[2::2], strict=True):
        conds.append(("or" if op == "||" else "and", _parse_condition(piece, line)))
    return joiner, tuple(conds)


def _label(group: str, name: str, start: int, members: list[tuple[int, str]]) -> FilterLabel:
    lines: list[tuple[str, Line]] = []
    blank: list[Region] = []
    keep: list[Region] = []
    blank_from: list[str] = []
    keep_from: list[str] = []
    for n, text in members:
        m = _COORD_RE.match(text)
        if m:
            target, what = _parse_coordinates(m.group(1), m.group(2), n)
            if target == "blank":
                blank.append(what)  # type: ignore[arg-type]
            elif target == "keep":
                keep.append(what)  # type: ignore[arg-type]
            elif target == "blank_from":
                blank_from.append(str(what))
            else:
                keep_from.append(str(what))
            continue
        lines.append(_parse_condition_line(text, n))
    if lines:
        lines[0] = ("and", lines[0][1])
    return FilterLabel(
        line=start,
        group=group,
        name=name,
        criteria=Criteria(tuple(lines)),
        regions=tuple(blank),
        keep=tuple(keep),
        regions_from=tuple(blank_from),
        keep_from=tuple(keep_from),
    )


def _split_action(text: str) -> list[str]:
    """``ACTION FIELD [VALUE]``; a private field's creator may hold spaces (it is quoted)."""
    head = text.split(None, 1)
    if len(head) < 2:
        return head
    rest = head[1].lstrip()
    m = re.match(r'\(?\s*[0-9A-Fa-f]{4}\s*,\s*"[^"]*"\s*,\s*[0-9A-Fa-f]{2}\s*\)?', rest)
    if m:
        tail = rest[m.end() :].strip()
        return [head[0], m.group(0), *([tail] if tail else [])]
    return [head[0], *rest.split(None, 1)]


def _header_action(text: str, n: int) -> HeaderAction:
    parts = _split_action(text)
    action = parts[0].upper()
    if action not in HEADER_ACTIONS:
        raise RecipeError(
            n, f"unknown header action {parts[0]!r} (known: {', '.join(HEADER_ACTIONS)})"
        )
    if len(parts) < 2:
        raise RecipeError(n, f"{action} needs a field")
    spec = parse_field(parts[1], n)
    value = parts[2].strip() if len(parts) > 2 else None
    if value is not None and value.lower().startswith(_UNSUPPORTED_VALUES):
        raise RecipeError(
            n,
            f"{action} {parts[1]} {value.split(':', 1)[0]}:... takes its value from deid's Python "
            "callbacks, which a policy cannot supply; give a literal value or drop the line",
        )
    if action in ("REMOVE", "BLANK", "KEEP") and value:
        raise RecipeError(n, f"{action} with a value (a conditional action) is not supported")
    if action in ("ADD", "REPLACE") and value is None:
        raise RecipeError(n, f"{action} {parts[1]} needs a value")
    if action == "JITTER" and (value is None or not re.fullmatch(r"[+-]?\d{1,6}", value)):
        raise RecipeError(n, f"JITTER {parts[1]} needs a whole number of days")
    if action == "ADD":
        spec = _resolve_add(spec, n)
    return HeaderAction(line=n, action=action, field=spec, value=value)


def _resolve_add(spec: FieldSpec, n: int) -> FieldSpec:
    """ADD names one public attribute: resolve it to its tag, refusing values it cannot take."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag: int | None
    if spec.kind == "tag":
        tag = spec.tag
    elif spec.kind == "exact":
        tag = tag_for_keyword(spec.text)
    else:
        tag = None
    if tag is None or (tag >> 16) & 1 or tag >> 16 == 0x0002:
        raise RecipeError(n, f"ADD {spec.text}: needs one standard attribute (keyword or tag)")
    try:
        vr = dictionary_VR(tag)
    except KeyError as exc:
        raise RecipeError(n, f"ADD {spec.text}: unknown attribute") from exc
    if vr not in _TEXT_VRS | _INT_VRS | _FLOAT_VRS | {"DS", "IS"}:
        raise RecipeError(n, f"ADD {spec.text}: cannot set a value of VR {vr}")
    return FieldSpec(spec.text, "tag", tag=tag)


def parse_recipe(text: str, *, name: str, lenient: bool = False) -> Recipe:
    """Parse recipe ``text`` (see the module docstring for what is supported).

    With ``lenient`` (used for deid's own filter database) the ``%header`` section is ignored
    and unusable filter labels are skipped and counted; otherwise they are errors.
    """
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    actions: list[HeaderAction] = []
    labels: list[FilterLabel] = []
    skipped = 0
    section: str | None = None
    group = ""
    fmt_seen = False
    pending: tuple[str, int, list[tuple[int, str]]] | None = None

    def close() -> None:
        nonlocal pending, skipped
        if pending is None:
            return
        label_name, start, members = pending
        pending = None
        try:
            labels.append(_label(group, label_name, start, members))
        except RecipeError:
            if not lenient:
                raise
            skipped += 1

    for n, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        upper = stripped.upper()
        if upper.startswith("FORMAT"):
            fmt = stripped[6:].strip().lower()
            if fmt != "dicom":
                raise RecipeError(n, f"FORMAT {fmt or '(none)'}: only FORMAT dicom is supported")
            fmt_seen = True
            continue
        if stripped.startswith("%"):
            close()
            words = stripped[1:].split()
            section = words[0].lower() if words else ""
            if section == "filter":
                if len(words) < 2:
                    raise RecipeError(n, "%filter needs a name (e.g. %filter graylist)")
                group = words[1]
            elif section == "header":
                pass
            elif lenient:
                section = "ignored"
            else:
                raise RecipeError(n, f"section %{section} is not supported (use %header, %filter)")
            continue
        if not fmt_seen and not lenient:
            raise RecipeError(n, "the recipe must start with FORMAT dicom")
        if section is None:
            raise RecipeError(n, "line outside a section (%header or %filter)")
        if section == "header":
            if lenient:
                continue
            actions.append(_header_action(stripped, n))
        elif section == "filter":
            if upper.startswith("LABEL"):
                close()
                label_name = stripped[5:].split("#", 1)[0].strip() or f"label{n}"
                pending = (label_name, n, [])
            elif pending is None:
                if not lenient:
                    raise RecipeError(n, "filter line outside a LABEL")
                skipped += 1
            else:
                pending[2].append((n, stripped))
    close()
    if not fmt_seen:
        raise RecipeError(None, "the recipe must start with FORMAT dicom")

    superseded = tuple(
        a.line
        for a in actions
        if a.field.kind in ("exact", "tag") and _protected_spec(a.field) and a.action != "KEEP"
    )
    return Recipe(
        name=name,
        sha256=sha,
        actions=tuple(actions),
        labels=tuple(labels),
        superseded=superseded,
        skipped_filters=skipped,
    )


def _protected_spec(spec: FieldSpec) -> bool:
    from pydicom.datadict import keyword_for_tag

    if spec.kind == "tag" and spec.tag is not None:
        return (keyword_for_tag(spec.tag) or "") in PROTECTED
    return any(spec.text.casefold() == p.casefold() for p in PROTECTED)


def load_recipe(path: str | Path) -> Recipe:
    """Read and parse a recipe file; raises :class:`RecipeError` naming the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(None, f"cannot read recipe {p.name} ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise RecipeError(None, f"recipe {p.name} is not UTF-8 text") from exc
    return parse_recipe(text, name=p.name)


# --------------------------------------------------------------------------------------------
# Applying the header actions


#: ``log(where, tag, code, element or None, recipe line)``: records one action.
ActionLogger = Callable[[str, int, str, Any, int], None]


class ValueMismatch(ValueError):
    """A recipe value does not fit the attribute (the file is quarantined)."""


def _convert(value: str, vr: str) -> Any:
    """A recipe literal as a value of ``vr``; raises :class:`ValueMismatch`."""
    parts = value.split("\\")
    try:
        if vr in _TEXT_VRS:
            return value
        if vr in ("DS", "IS"):
            for p in parts:
                float(p) if vr == "DS" else int(p)
            return value
        if vr in _INT_VRS:
            nums: list[Any] = [int(p) for p in parts]
        elif vr in _FLOAT_VRS:
            nums = [float(p) for p in parts]
        else:
            raise ValueMismatch(f"cannot give a literal value to VR {vr}")
    except ValueError as exc:
        if isinstance(exc, ValueMismatch):
            raise
        raise ValueMismatch(f"value does not fit VR {vr}") from exc
    return nums[0] if len(nums) == 1 else nums


def jitter_value(value: str, vr: str, days: int) -> str | None:
    """Move a DA or DT value (multi-valued too) by ``days``; ``None`` if not a date."""
    out = []
    for part in value.split("\\"):
        p = part.strip()
        if not p:
            out.append("")
            continue
        m = re.fullmatch(r"(\d{8})(.*)", p) if vr == "DT" else re.fullmatch(r"(\d{8})()", p)
        if m is None:
            return None
        try:
            day = dt.datetime.strptime(m.group(1), "%Y%m%d").date() + dt.timedelta(days=days)
        except (ValueError, OverflowError):
            return None
        out.append(day.strftime("%Y%m%d") + m.group(2))
    return "\\".join(out)


def _private_creator(ds: Any, tag: int) -> str | None:
    group, elem = tag >> 16, tag & 0xFFFF
    if not group & 1 or elem < 0x1000:
        return None
    ctag = (group << 16) | (elem >> 8)
    if ctag not in ds:
        return None
    value = ds[ctag].value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value or "").strip(" \x00")


def apply_header(ds: Any, recipe: Recipe, log_action: ActionLogger, *, where: str = "") -> int:
    """Apply the recipe's ``%header`` actions to ``ds`` (every depth), after the profile.

    Returns the number of dates moved by ``JITTER``. Raises :class:`ValueMismatch` (with the
    recipe line) for a value that does not fit its attribute.
    """
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import DataElement

    jittered = 0
    top = where == ""
    for tag in list(ds.keys()):
        tag = int(tag)
        if tag not in ds:
            continue  # removed with its private creator
        elem = ds[tag]
        keyword = elem.keyword or ""
        if top and keyword in PROTECTED:
            continue
        creator = _private_creator(ds, tag)
        win = recipe.winner(tag, creator)
        action = win[0] if win else None
        act = win[1] if win else None
        if elem.VR == "SQ" and action in (None, "KEEP", "JITTER"):
            for i, item in enumerate(elem.value or ()):
                jittered += apply_header(
                    item,
                    recipe,
                    log_action,
                    where=f"{where}({tag >> 16:04X},{tag & 0xFFFF:04X})[{i}].",
                )
            continue
        if act is None or action == "KEEP":
            continue
        if action == "REMOVE":
            log_action(where, tag, "X", elem, act.line)
            del ds[tag]
        elif action == "BLANK":
            if elem.VR == "SQ":
                if elem.value:
                    log_action(where, tag, "Z", elem, act.line)
                    ds[tag] = DataElement(tag, "SQ", [])
            elif elem.value not in (None, "", b""):
                log_action(where, tag, "Z", elem, act.line)
                ds[tag] = DataElement(tag, elem.VR, None)
        elif action == "REPLACE":
            if elem.VR == "SQ":
                raise ValueMismatch(
                    f"line {act.line}: cannot REPLACE sequence {keyword or f'{tag:08X}'}"
                )
            try:
                new = _convert(str(act.value), elem.VR)
            except ValueMismatch as exc:
                raise ValueMismatch(
                    f"line {act.line}: REPLACE {keyword or f'{tag:08X}'}: {exc}"
                ) from None
            log_action(where, tag, "D", elem, act.line)
            ds[tag] = DataElement(tag, elem.VR, new)
        elif action == "JITTER" and elem.VR in ("DA", "DT") and elem.value:
            raw = (
                "\\".join(str(v) for v in elem.value)
                if not isinstance(elem.value, str)
                else elem.value
            )
            moved = jitter_value(raw, elem.VR, act.days)
            if moved is not None:
                log_action(where, tag, "C", elem, act.line)
                elem.value = moved
                jittered += 1
    if top:
        for act in recipe.actions:
            if act.action != "ADD" or act.field.tag is None:
                continue
            kw = _names(act.field.tag)[0]
            if kw in PROTECTED:
                continue
            vr = dictionary_VR(act.field.tag)
            if act.field.tag in ds and any(
                b.action == "KEEP"
                and b.field.matches(act.field.tag, kw, _names(act.field.tag)[1], None)
                for b in recipe.actions
            ):
                continue
            try:
                new = _convert(str(act.value), vr)
            except ValueMismatch as exc:
                raise ValueMismatch(f"line {act.line}: ADD {kw}: {exc}") from None
            old = ds.get(act.field.tag, None)
            log_action("", act.field.tag, "D", old, act.line)
            ds[act.field.tag] = DataElement(act.field.tag, vr, new)
    return jittered
