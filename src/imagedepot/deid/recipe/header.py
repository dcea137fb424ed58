"""Applying a recipe's ``%header`` actions to a dataset, after the PS3.15 profile."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from imagedepot.deid.recipe.fields import _FLOAT_VRS, _INT_VRS, _TEXT_VRS, PROTECTED, _names
from imagedepot.deid.recipe.model import Recipe

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
