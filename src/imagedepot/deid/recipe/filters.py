"""Reading the ``%filter`` sections of a recipe: ``LABEL`` groups of conditions and coordinates.

Labels with coordinates become pixel-cleaning rules (:meth:`Recipe.pixel_rules`); see
:mod:`imagedepot.deid.pixels` for the conditions.
"""

from __future__ import annotations

import re

from imagedepot.deid.recipe.fields import RecipeError
from imagedepot.deid.recipe.model import FilterLabel
from imagedepot.deid.rules import FILTER_OPS, WHOLE_IMAGE, Condition, Criteria, Line, Region

_OP_WORDS = "|".join(FILTER_OPS)
_SPLIT_RE = re.compile(rf"\s+(\+|\|\|)\s+(?=(?:{_OP_WORDS})\s)", re.IGNORECASE)
_LEAD_RE = re.compile(r"^(\+|\|\|)\s*")
_COORD_RE = re.compile(
    r"^(ctpkeepcoordinates|keepcoordinates|ctpcoordinates|coordinates)\b(.*)$", re.I
)


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
