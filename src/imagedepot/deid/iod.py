"""Which type (PS3.3) an attribute has in the IOD of a file, for the profile's choices.

PS3.15 Table E.1-1 gives some attributes a choice of actions whose pick depends on the
attribute's type in the IOD (``X/Z``: remove it when it is Type 3, empty it when Type 2;
``Z/D``: a dummy value when Type 1; ...). A file does not state the types of its attributes,
so this module looks them up in ``imagedepot/data/ps3.3-attribute-types.json``: for the
attributes whose action depends on the IOD (see ``tools/derive_ps3.3_types.py``), the
modules of every IOD that hold them at the top level of the data set, with the module's usage
(M, C, U), the attribute's type there and the module's own top-level attributes.

:func:`attribute_type` answers for one file: the SOP Class UID names the IOD; a mandatory
module counts always, a conditional or user-optional module when the file holds one of its
other attributes (the file then carries the module). Among the modules that count, the
strongest type wins (1 over 2 over 3). The table records top-level attributes only: inside
sequence items the type is not looked up (``None``, as for an unknown SOP class).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping
from importlib import resources
from types import MappingProxyType
from typing import NamedTuple

TYPES_RESOURCE = "data/ps3.3-attribute-types.json"

#: What :func:`attribute_type` answers besides ``"1"``, ``"2"`` and ``"3"``: the IOD is known
#: and has no such attribute at the top level.
NOT_IN_IOD = "-"

#: PS3.3 types folded to the three that matter here. A conditional type counts as its base
#: type: the attribute is in the original file, so its condition is taken to hold.
_FOLD = {"1": "1", "1C": "1", "2": "2", "2C": "2", "3": "3"}


class _Use(NamedTuple):
    """One module of an IOD that holds an attribute."""

    type: str
    mandatory: bool
    module_tags: frozenset[int]


@functools.cache
def _table() -> Mapping[str, object]:
    text = resources.files("imagedepot").joinpath(TYPES_RESOURCE).read_text(encoding="utf-8")
    data: dict[str, object] = json.loads(text)
    return MappingProxyType(data)


@functools.cache
def attributes() -> frozenset[int]:
    """Tags whose type the table records (the profile's IOD-dependent attributes)."""
    return frozenset(int(t, 16) for t in _table()["attributes"])  # type: ignore[attr-defined]


@functools.cache
def _uses(sop_class: str) -> Mapping[int, tuple[_Use, ...]] | None:
    table = _table()
    iod = table["sop_classes"].get(sop_class)  # type: ignore[attr-defined]
    if iod is None:
        return None
    modules = table["modules"]
    out: dict[int, list[_Use]] = {}
    for name, usage in table["iods"].get(iod, ()):  # type: ignore[attr-defined]
        module = modules[name]  # type: ignore[index]
        tags = frozenset(int(t, 16) for t in module["tags"])
        for tag_hex, kind in module["types"].items():
            tag = int(tag_hex, 16)
            out.setdefault(tag, []).append(_Use(_FOLD[kind], usage == "M", tags - {tag}))
    return MappingProxyType({k: tuple(v) for k, v in out.items()})


def known_sop_class(sop_class: str) -> bool:
    """True when the table knows the IOD of ``sop_class``."""
    return _uses(sop_class) is not None


def attribute_type(sop_class: str, tag: int, present: Collection[int]) -> str | None:
    """Type of ``tag`` at the top level of a file of ``sop_class`` holding ``present`` tags.

    Returns ``"1"`` (Type 1 or 1C), ``"2"`` (2 or 2C), ``"3"``, :data:`NOT_IN_IOD`, or ``None``
    when the SOP class is unknown or ``tag`` is not one of :func:`attributes`.
    """
    if tag not in attributes():
        return None
    uses = _uses(sop_class)
    if uses is None:
        return None
    found = [
        u.type for u in uses.get(tag, ()) if u.mandatory or not u.module_tags.isdisjoint(present)
    ]
    return min(found) if found else NOT_IN_IOD


__all__ = ["NOT_IN_IOD", "attribute_type", "attributes", "known_sop_class"]
