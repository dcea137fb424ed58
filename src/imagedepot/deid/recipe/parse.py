"""Reading a recipe: :func:`parse_recipe` (text) and :func:`load_recipe` (file), fail closed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from imagedepot.deid.recipe.fields import (
    _FLOAT_VRS,
    _INT_VRS,
    _TEXT_VRS,
    HEADER_ACTIONS,
    PROTECTED,
    FieldSpec,
    RecipeError,
    parse_field,
)
from imagedepot.deid.recipe.filters import _label
from imagedepot.deid.recipe.model import FilterLabel, HeaderAction, Recipe

_UNSUPPORTED_VALUES = ("var:", "func:", "deid_func:")


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
