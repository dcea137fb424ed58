"""Applying the profile plan to a data set, at every depth of every sequence: private tags,
dummy, emptied and cleaned values (the :class:`_DatasetCleaner` part of the per-file engine)."""

from __future__ import annotations

from typing import Any

from imagedepot.deid import iod, profile
from imagedepot.deid.dicom.action_log import _FileLog, _tagstr
from imagedepot.deid.dicom.plan import _is_sequence, _Plan
from imagedepot.deid.dicom.remap import _Remapper, _values

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})


#: VRs of raw elements emptied or remapped without decoding (explicit VR files only).
_RAW_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)


_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


_NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV", "AT"})


_DUMMY_TEXT = {
    "AE": "ANONYMIZED",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "PN": "ANONYMIZED",
    "UR": "",
}


#: Keywords of coded values inside sequences that text cleaning must not touch.
_CODED_KEYWORDS = frozenset(
    {
        "CodeValue",
        "LongCodeValue",
        "URNCodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "ContextIdentifier",
        "ContextGroupVersion",
        "MappingResource",
        "MappingResourceName",
    }
)


def _old_bytes(elem: Any) -> bytes | None:
    """The stored value of an element as bytes, for hashing (raw bytes when still raw)."""
    value = elem.value
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).rstrip(b" \x00") or None
    if isinstance(value, str):
        return value.strip().encode("utf-8") or None
    try:
        text = "\\".join(str(v) for v in value) if isinstance(value, list) else str(value)
    except TypeError:
        text = str(value)
    return text.encode("utf-8") or None


class _DatasetCleaner(_Remapper):
    """Applying the profile plan to a data set, for :class:`~.engine._Engine` (its attributes,
    set by its ``__init__`` and per file, declared here)."""

    options: frozenset[str]
    plan: _Plan
    safe: frozenset[tuple[str, int, int]]
    flog: _FileLog
    sop_class: str
    present: frozenset[int]

    def clean(self, ds: Any, where: str, scrub: bool, dummy: bool = False) -> None:
        """Apply the plan to every element of ``ds`` (recursing into sequences).

        ``dummy``: inside a sequence replaced by a dummy (``D``), free text the table does not
        list becomes a dummy value too (Code Meaning included; code values stay)."""
        plan = self.plan
        memo, flog = plan.memo, self.flog
        drop_private = plan.private != "C"
        creators: dict[int, str] = {}  # private creator tag -> creator name (casefolded)
        used_blocks: set[int] = set()
        for tag in [int(t) for t in ds.keys()]:  # noqa: SIM118 - ints: fast lookups
            if (tag >> 16) & 1:
                if drop_private or not self.keep_private(ds, tag, creators, used_blocks):
                    flog.add(where, tag, "X")
                    del ds[tag]
                elif tag not in creators:
                    flog.add(where, tag, "K")
                continue
            op = memo[tag] if tag in memo else plan.decide(tag)
            if op is None:
                if dummy:
                    self.dummy_unlisted(ds, tag, where)
                elif scrub:
                    self.clean_text_in_sequence(ds, tag, where)
                elif ds.get_item(tag, keep_deferred=True).VR == "SQ":
                    self.recurse(ds, tag, where, scrub)  # mis-encoded sequence: clean it too
                continue
            self.apply(ds, tag, op, where, scrub, dummy)
        for ctag in creators:
            if ctag not in used_blocks:
                flog.add(where, ctag, "X")
                del ds[ctag]

    def keep_private(self, ds: Any, tag: int, creators: dict[int, str], used: set[int]) -> bool:
        """Under retain_safe_private: keep a private element if it is on the safe list.

        Private creators are kept for now (and removed at the end if no element of their block
        was kept); elements outside a creator's block are removed.
        """
        group, elem = tag >> 16, tag & 0xFFFF
        if 0x0010 <= elem <= 0x00FF:
            value = ds.get_item(tag).value
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            creators[tag] = str(value or "").strip(" \x00").casefold()
            return True
        if elem < 0x1000:
            return False
        ctag = (group << 16) | (elem >> 8)
        name = creators.get(ctag)
        if name is not None and (name, group, elem & 0xFF) in self.safe:
            used.add(ctag)
            return True
        return False

    def recurse(self, ds: Any, tag: int, where: str, scrub: bool, dummy: bool = False) -> None:
        seq = ds[tag].value
        base = f"{where}{_tagstr(tag)}"
        for i, item in enumerate(seq or ()):
            self.clean(item, f"{base}[{i}].", scrub, dummy)

    def dummy_unlisted(self, ds: Any, tag: int, where: str) -> None:
        """Inside a dummied sequence (``D``): free text the table does not list is replaced."""
        elem = ds[tag]
        if elem.VR == "SQ":
            self.recurse(ds, tag, where, True, True)
        elif (
            elem.VR in _TEXT_VRS
            and elem.keyword not in _CODED_KEYWORDS
            and elem.value not in (None, "")
        ):
            self.flog.add(where, tag, "D", _old_bytes(elem))
            elem.value = "ANONYMIZED"

    def iod_type(self, tag: int, where: str) -> str | None:
        """Type of ``tag`` in this file's IOD (top level only; ``None`` when unknown)."""
        if where:
            return None
        return iod.attribute_type(self.sop_class, tag, self.present)

    def clean_text_in_sequence(self, ds: Any, tag: int, where: str) -> None:
        """Inside a sequence being cleaned (``C``): clean free text of kept attributes."""
        elem = ds[tag]
        if elem.VR == "SQ":
            self.recurse(ds, tag, where, True)
        elif elem.VR in _TEXT_VRS and elem.keyword not in _CODED_KEYWORDS:
            self.set_clean_text(ds, tag, elem, where)

    def set_clean_text(self, ds: Any, tag: int, elem: Any, where: str) -> None:
        old = _values(elem.value)
        new = [self.scrub(v) for v in old]
        if new != [v.strip() for v in old]:
            self.flog.add(where, tag, "C", _old_bytes(elem))
            elem.value = new[0] if len(new) == 1 else new

    def apply(
        self, ds: Any, tag: int, op: str, where: str, scrub: bool, dummy: bool = False
    ) -> None:
        from pydicom.dataelem import DataElement

        if profile.is_combination(op):
            op = profile.resolve_combination(
                op, self.iod_type(tag, where), sequence=_is_sequence(tag)
            )
        if op == "X":
            self.flog.add(where, tag, "X")
            del ds[tag]
            return
        if op in ("Z", "U") and self.apply_raw(ds, tag, op, where):
            return
        elem = ds[tag]
        vr = elem.VR
        if vr == "SQ":
            if op in ("K", "U"):
                self.recurse(ds, tag, where, scrub, dummy)
            elif op == "C":
                self.flog.add(where, tag, "C")
                self.recurse(ds, tag, where, True)
            elif op == "D":  # items kept, every value in them cleaned or dummied
                self.flog.add(where, tag, "D")
                self.recurse(ds, tag, where, scrub, True)
            elif self.iod_type(tag, where) in ("3", iod.NOT_IN_IOD):
                self.flog.add(where, tag, "X")  # Z: no empty sequence where items are due
                del ds[tag]
            else:  # Z: an empty sequence (no fabricated items)
                self.flog.add(where, tag, "Z")
                ds[tag] = DataElement(tag, "SQ", [])
            return
        if op == "K":
            if scrub and vr in _TEXT_VRS and elem.keyword not in _CODED_KEYWORDS:
                self.set_clean_text(ds, tag, elem, where)
            return
        old = _old_bytes(elem)
        if op == "Z":
            if old is not None:
                self.flog.add(where, tag, "Z", old)
                ds[tag] = DataElement(tag, vr, None)
            return
        if op == "U":
            if vr != "UI":
                self.flog.add(where, tag, "X")
                del ds[tag]
                return
            vals = _values(elem.value)
            new = [self.uid(v) for v in vals]
            if new != [v.strip().rstrip("\x00").strip() for v in vals]:
                self.flog.add(where, tag, "U", old)
                elem.value = new[0] if len(new) == 1 else new
            return
        if op == "D":
            self.flog.add(where, tag, "D", old)
            ds[tag] = DataElement(tag, vr, self.dummy(vr, elem.value))
            return
        # op == "C"
        self.clean_value(ds, tag, elem, vr, old, where)

    def apply_raw(self, ds: Any, tag: int, op: str, where: str) -> bool:
        """Empty (Z) or remap (U) an element still in its raw, undecoded form; False when it
        is not raw or its VR is not explicit and simple (the caller decodes it then)."""
        from pydicom.dataelem import DataElement, RawDataElement

        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.VR not in _RAW_VRS:
            return False
        value = raw.value
        if value is None:
            return False  # deferred: a large value, decoded the usual way
        if op == "Z":
            old = bytes(value).rstrip(b" \x00") or None
            if old is not None:
                self.flog.add(where, tag, "Z", old)
                ds[tag] = DataElement(tag, raw.VR, None)
            return True
        if raw.VR != "UI":
            return False
        text = bytes(value).decode("ascii", "replace")
        vals = text.split("\\")
        new = [self.uid(v) for v in vals]
        if new != [v.strip().rstrip("\x00").strip() for v in vals]:
            self.flog.add(where, tag, "U", bytes(value).rstrip(b" \x00") or None)
            ds[tag] = DataElement(tag, "UI", new[0] if len(new) == 1 else new)
        return True

    def dummy(self, vr: str, value: Any) -> Any:
        if vr == "UI":
            vals = [self.uid(v) for v in _values(value)]
            return vals[0] if len(vals) == 1 else (vals or None)
        if vr in _TEXT_VRS:
            return "ANONYMIZED"
        if vr in _DUMMY_TEXT:
            return _DUMMY_TEXT[vr] or None
        if vr in ("DS", "IS"):
            return "0"
        if vr in _NUMBER_VRS:
            return 0
        return b"\x00\x00"

    def clean_value(
        self, ds: Any, tag: int, elem: Any, vr: str, old: bytes | None, where: str
    ) -> None:
        from pydicom.dataelem import DataElement

        if vr in ("DA", "DT"):
            if "retain_longitudinal_modified_dates" not in self.options:
                self.flog.add(where, tag, "X")
                del ds[tag]
                return
            if old is None:
                return
            raw = "\\".join(_values(elem.value))
            shifted = self.shift(vr, raw)
            if shifted is None:
                self.flog.add(where, tag, "Z", old)
                ds[tag] = DataElement(tag, vr, None)
            else:
                self.flog.add(where, tag, "C", old)
                elem.value = shifted
            return
        if vr == "TM":
            if "retain_longitudinal_modified_dates" not in self.options:
                self.flog.add(where, tag, "X")
                del ds[tag]
            return
        if vr in _TEXT_VRS:
            self.set_clean_text(ds, tag, elem, where)
            return
        if vr == "AE":
            if old is not None:
                new = [self.ae(v) for v in _values(elem.value)]
                self.flog.add(where, tag, "C", old)
                elem.value = new[0] if len(new) == 1 else new
            return
        if vr == "CS":
            return  # coded values: defined terms, kept
        self.flog.add(where, tag, "X")
        del ds[tag]
