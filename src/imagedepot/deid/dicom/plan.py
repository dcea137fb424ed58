"""The compiled profile plan: what to do with each public tag under one option set, the
action for attributes Table E.1-1 does not list, and the curated safe-private list."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from imagedepot.deid import profile

SAFE_PRIVATE_RESOURCE = "data/safe_private.json"


_DATE_VRS = frozenset({"DA", "DT", "TM"})


@functools.cache
def safe_private_attributes() -> frozenset[tuple[str, int, int]]:
    """The curated safe-private list as ``(creator casefolded, group, element byte)``."""
    text = resources.files("imagedepot").joinpath(SAFE_PRIVATE_RESOURCE).read_text(encoding="utf-8")
    return frozenset(
        (a["creator"].strip().casefold(), int(a["group"], 16), int(a["element"], 16))
        for a in json.loads(text)["attributes"]
    )


_CLASS_UID_WORDS = ("ClassUID", "SOPClasses", "TransferSyntaxUID")


_KEEP_UID_KEYWORDS = frozenset(
    {"CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID", "ContextUID"}
)


def _unlisted_action(keyword: str, vr: str, options: frozenset[str]) -> str:
    """Action for a standard attribute that Table E.1-1 does not list."""
    if "SQ" in vr:
        return "K"
    if vr == "PN":
        return "X"
    if vr in _DATE_VRS:
        if "retain_longitudinal_modified_dates" in options:
            return "C"
        if "retain_longitudinal_full_dates" in options:
            return "K"
        return "X"
    if vr == "UI" and "retain_uids" not in options:
        if keyword in _KEEP_UID_KEYWORDS or any(w in keyword for w in _CLASS_UID_WORDS):
            return "K"
        return "U"
    return "K"


@dataclass(frozen=True)
class _Plan:
    """What to do with each public tag under one option set, decided on first sight of the tag
    and remembered (a few hundred distinct tags in practice, shared by every file)."""

    options: frozenset[str]
    exact: Mapping[int, str]
    private: str
    wild: tuple[tuple[int, int, str], ...]
    memo: dict[int, str | None] = field(default_factory=dict)

    def decide(self, tag: int) -> str | None:
        """The operation for public ``tag``; ``None`` keeps it (and its value) as it is."""
        try:
            return self.memo[tag]
        except KeyError:
            op = self.memo[tag] = self._decide(tag)
            return op

    def _decide(self, tag: int) -> str | None:
        from pydicom.datadict import get_entry

        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 or group == 0x0002:
            return "X"  # group lengths (retired), file meta misplaced in the data set
        try:
            entry = get_entry(tag)  # includes repeating groups such as (60xx,0010)
        except KeyError:
            entry = None
        act = self.exact.get(tag)
        if act is not None:
            # listed but unknown to pydicom: applied per file, by the element's own VR
            return None if act == "K" and entry is not None and "SQ" not in entry[0] else act
        for mask, value, action in self.wild:
            if tag & mask == value:
                # curve data (retired) has no cleaner; overlay bitmaps are removed and overlay
                # comments cleaned by clean_value, per VR
                return "X" if action == "C" and group & 0xFF00 == 0x5000 else action
        if entry is None:
            return "X"  # unknown public attribute: cannot vouch for it
        act = _unlisted_action(entry[4], entry[0], self.options)
        return None if act == "K" and "SQ" not in entry[0] else act


@functools.cache
def _is_sequence(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


@functools.cache
def _plan(options: frozenset[str]) -> _Plan:
    return _Plan(
        options=options,
        exact=profile.tag_actions(options),
        private=profile.private_action(options),
        wild=profile.wildcard_actions(options),
    )
