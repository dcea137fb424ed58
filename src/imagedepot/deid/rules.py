"""Pixel-cleaning rules and deid's filter language: the types that the recipe reader
(:mod:`imagedepot.deid.recipe`) builds and :mod:`imagedepot.deid.pixels` applies.

A :class:`PixelRule` names the images it applies to and the rectangles of pixel data that carry
text in them (:mod:`imagedepot.deid.pixels` says where rules come from and when they apply).

Rules written in deid's filter language carry :class:`Criteria`: lines of conditions such as
``contains Modality US`` or ``equals Rows 768``, joined by ``+`` (and) or ``||`` (or), evaluated
from left to right, first inside a line, then line by line. ``contains`` is a case-insensitive
regular-expression search; ``equals`` compares case-insensitively after trimming spaces, and a
``|`` in its value separates alternatives (deid's own database writes ``equals Rows 600|768``
meaning either); ``missing``, ``present`` and ``empty`` test the attribute itself. Coordinates
follow deid: ``coordinates x0,y0,x1,y1`` (ends exclusive), ``ctpcoordinates x,y,width,height``,
``coordinates all`` (the whole image), ``coordinates from:SequenceOfUltrasoundRegions`` (the
regions listed in the file) and the ``keep`` forms, which blank everything *outside* the regions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

#: Condition operators of deid's filter language.
FILTER_OPS: tuple[str, ...] = (
    "contains",
    "notcontains",
    "equals",
    "notequals",
    "missing",
    "present",
    "empty",
)
_VALUE_OPS = frozenset({"contains", "notcontains", "equals", "notequals"})

#: A rectangle ``(x0, y0, x1, y1)``: x is the column, y the row, ends exclusive.
Region = tuple[int, int, int, int]
#: ``coordinates all``: larger than any image (slicing clips it).
WHOLE_IMAGE: Region = (0, 0, 1 << 20, 1 << 20)


class Attributes(Protocol):
    """What a rule reads: ``get(keyword)`` giving ``None`` for an absent attribute."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` or ``default``."""


# --------------------------------------------------------------------------------------------
# Conditions


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.strip(), re.IGNORECASE)


def _texts(value: Any) -> list[str]:
    """A value as stripped strings: each value of a multi-valued one, then all joined."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        return [bytes(value).decode("latin-1").strip(" \x00")]
    if isinstance(value, str):
        parts = value.split("\\")
    elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    parts = [p.strip(" \x00") for p in parts]
    return parts if len(parts) == 1 else [*parts, "\\".join(parts)]


@dataclass(frozen=True)
class Condition:
    """One test of deid's filter language, e.g. ``contains ManufacturerModelName EPIQ``.

    ``field`` is a keyword (or ``0xGGGGEEEE``); ``value`` is a regular expression for
    ``contains``/``notcontains``, ``|``-separated alternatives for ``equals``/``notequals``,
    and ``None`` for ``missing``, ``present``, ``empty``.
    """

    op: str
    field: str
    value: str | None = None

    def __post_init__(self) -> None:
        if self.op not in FILTER_OPS:
            raise ValueError(f"unknown filter {self.op!r} (known: {', '.join(FILTER_OPS)})")
        if (self.op in _VALUE_OPS) != (self.value is not None):
            raise ValueError(
                f"filter {self.op} {'needs' if self.op in _VALUE_OPS else 'takes no'} value"
            )
        if self.op in ("contains", "notcontains"):
            try:
                _regex(str(self.value))
            except re.error as exc:
                raise ValueError(f"invalid regular expression {self.value!r}: {exc}") from exc

    def test(self, attrs: Attributes) -> bool:
        """Evaluate on ``attrs``."""
        have = attrs.get(self.field)
        if self.op == "missing":
            return have is None
        if self.op == "present":
            return have is not None
        texts = _texts(have)
        if self.op == "empty":
            return have is not None and not any(texts)
        assert self.value is not None
        if self.op in ("contains", "notcontains"):
            rx = _regex(self.value)
            hit = any(rx.search(t) for t in texts)
        else:
            wanted = {a.strip().casefold() for a in self.value.split("|")}
            hit = any(t.casefold() in wanted for t in texts)
        return hit if self.op in ("contains", "equals") else not hit

    def describe(self) -> str:
        """The condition as written in a recipe."""
        return f"{self.op} {self.field}" + (f" {self.value}" if self.value is not None else "")


#: A line of conditions: ``(joiner, condition)`` pairs, the first joiner ignored.
Line = tuple[tuple[str, Condition], ...]


def _fold(values: Iterable[tuple[str, bool]]) -> bool:
    result: bool | None = None
    for joiner, value in values:
        if result is None:
            result = value
        elif joiner == "or":
            result = result or value
        else:
            result = result and value
    return bool(result)


@dataclass(frozen=True)
class Criteria:
    """Lines of conditions, each with the joiner (``and``/``or``) that links it to the lines
    before; evaluated left to right, conditions inside a line first."""

    lines: tuple[tuple[str, Line], ...]

    def evaluate(self, attrs: Attributes) -> bool:
        """True if the criteria hold for ``attrs`` (empty criteria never hold)."""
        if not self.lines:
            return False
        return _fold(
            (joiner, _fold((j, c.test(attrs)) for j, c in line)) for joiner, line in self.lines
        )

    def describe(self) -> str:
        """Readable form, for provenance."""
        parts = []
        for n, (joiner, line) in enumerate(self.lines):
            text = " ".join(
                f"{j} {c.describe()}" if i else c.describe() for i, (j, c) in enumerate(line)
            )
            text = f"({text})" if len(line) > 1 else text
            parts.append(f"{joiner} {text}" if n else text)
        return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Rules


def _rebuild_rule(state: dict[str, Any]) -> PixelRule:
    return PixelRule(**state)


@dataclass(frozen=True)
class PixelRule:
    """Blank rectangles of pixel data in the images the rule matches.

    An image matches when every value in :attr:`match` is equal (strings case-insensitively,
    surrounding spaces ignored) and :attr:`criteria`, if any, hold. ``regions`` are blanked
    (``(x0, y0, x1, y1)`` in pixels, x the column, y the row, ends exclusive); with ``keep``,
    everything outside the ``keep`` rectangles is blanked too. ``regions_from``/``keep_from``
    name sequences of the file (such as Sequence of Ultrasound Regions) whose items give
    rectangles by Region Location Min/Max X0/Y0/X1/Y1. A rule with none of these only flags
    images as carrying text (they are refused unless another rule cleans them).
    """

    name: str
    match: Mapping[str, str | int] = field(default_factory=dict)
    regions: tuple[Region, ...] = ()
    criteria: Criteria | None = None
    keep: tuple[Region, ...] = ()
    regions_from: tuple[str, ...] = ()
    keep_from: tuple[str, ...] = ()
    source: str = "policy"

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # mappingproxy values do not pickle; worker processes need the rules
        state = {k: getattr(self, k) for k in self.__dataclass_fields__}
        state["match"] = dict(self.match)
        return (_rebuild_rule, (state,))

    @property
    def cleans(self) -> bool:
        """False for a rule that only flags images."""
        return bool(self.regions or self.keep or self.regions_from or self.keep_from)

    def matches(self, attrs: Attributes) -> bool:
        """True if the rule applies to an image with these attributes."""
        if not self.match and self.criteria is None:
            return False
        for key, want in self.match.items():
            have = attrs.get(key)
            if have is None:
                return False
            if isinstance(want, int):
                try:
                    if int(have) != want:
                        return False
                except (TypeError, ValueError):
                    return False
            elif str(have).strip().casefold() != want.strip().casefold():
                return False
        return self.criteria is None or self.criteria.evaluate(attrs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        out: dict[str, Any] = {"name": self.name, "source": self.source}
        if self.match:
            out["match"] = dict(self.match)
        if self.criteria is not None:
            out["criteria"] = self.criteria.describe()
        out["regions"] = [list(r) for r in self.regions]
        if self.keep:
            out["keep"] = [list(r) for r in self.keep]
        if self.regions_from:
            out["regions_from"] = list(self.regions_from)
        if self.keep_from:
            out["keep_from"] = list(self.keep_from)
        return out


def freeze_match(match: Mapping[str, str | int]) -> Mapping[str, str | int]:
    """A read-only copy of a match mapping."""
    return MappingProxyType(dict(match))
