"""UID, date and AE remapping and the scrubbing of identifiers out of free text (the
:class:`_Remapper` part of the per-file engine)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import MutableSequence
from typing import Any

from imagedepot.deid.pseudonym import Pseudonymizer

#: Top-level attributes whose values are cut out of cleaned free text.
_IDENTIFYING_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
)


_GENERIC_PHI = re.compile(
    r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b"  # 12/03/2020, 2020-03-12
    r"|\d{6,}"  # MRNs, phone numbers, YYYYMMDD
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
)


_SPACES = re.compile(r"\s{2,}")


def _values(value: Any) -> list[str]:
    """The values of an element as strings (one per value of a multi-valued element)."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split("\\") if "\\" in value else [value]
    if isinstance(value, bytes | bytearray):
        return [bytes(value).decode("ascii", "replace")]
    if isinstance(value, MutableSequence | tuple):  # MultiValue
        return [str(v) for v in value]
    return [str(value)]


def _is_wide(text: str) -> bool:
    """True for East Asian wide characters (CJK ideographs, Hangul, kana)."""
    import unicodedata

    return all(unicodedata.east_asian_width(c) in ("W", "F") for c in text)


@functools.lru_cache(maxsize=64)
def _scrubber(tokens: frozenset[str]) -> re.Pattern[str]:
    """One regex matching any of ``tokens`` as whole words, longest first, ignoring case."""
    alternatives = "|".join(re.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t)))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


class _Remapper:
    """UID, date and AE remapping and free-text scrubbing of :class:`~.engine._Engine`
    (its attributes, set by its ``__init__``, declared here)."""

    pz: Pseudonymizer
    subject: str
    uid_cache: dict[str, str]
    date_cache: dict[tuple[str, str], str | None]
    scrubber: re.Pattern[str] | None

    def uid(self, value: str) -> str:
        v = value.strip().rstrip("\x00").strip()
        if not v:
            return v
        new = self.uid_cache.get(v)
        if new is None:
            from pydicom.uid import UID

            new = v if UID(v).name != v else self.pz.uid(v)
            self.uid_cache[v] = new
        return new

    def shift(self, vr: str, value: str) -> str | None:
        key = (vr, value)
        if key in self.date_cache:
            return self.date_cache[key]
        out: list[str] = []
        result: str | None
        try:
            for part in value.split("\\"):
                p = part.strip()
                if not p:
                    out.append("")
                elif vr == "DA":
                    out.append(self.pz.shift_date(p, self.subject))
                else:
                    out.append(self.pz.shift_datetime(p, self.subject))
            result = "\\".join(out)
        except ValueError:
            result = None
        self.date_cache[key] = result
        return result

    def ae(self, value: str) -> str:
        v = value.strip()
        if not v:
            return v
        digest = hmac.new(self.pz.key, b"ae\x00" + v.encode(), hashlib.sha256).digest()
        return "AE" + base64.b32encode(digest).decode()[:12]

    def scrub(self, text: str) -> str:
        out = text
        if self.scrubber is not None:
            out = self.scrubber.sub("", out)
        out = _GENERIC_PHI.sub("", out)
        return _SPACES.sub(" ", out).strip()

    def _collect_identifiers(self, ds: Any) -> None:
        tokens: set[str] = set()
        for kw in _IDENTIFYING_KEYWORDS:
            elem = ds.get(kw)
            if elem is None:
                continue
            for v in _values(elem):
                v = v.strip()
                if not v:
                    continue
                if len(v) >= 2:
                    tokens.add(v)
                for part in re.split(r"[\^=\s,]+", v):
                    if len(part) >= 2 or (part and _is_wide(part)):
                        tokens.add(part)  # one CJK character can be a whole family name
                if kw == "PatientBirthDate" and len(v) == 8 and v.isdigit():
                    y, m, d = v[:4], v[4:6], v[6:]
                    tokens.update({f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"})
        self.scrubber = _scrubber(frozenset(tokens)) if tokens else None
