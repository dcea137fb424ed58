"""Which recognised text is an identifier, and which is a token safe to leave in an image.

OCR reads ``DOE, JOHN`` as ``DOE.JOHN`` or ``D0E JOHN``; dates come as ``20240131``,
``31.01.2024``, ``01/31/2024`` or ``31-JAN-2024``. Matching therefore compares *normalised*
text: upper case, letters and digits only, and the characters OCR confuses most folded
together (``O``/``0``/``Q``/``D``, ``I``/``1``/``L``/``|``, ``S``/``5``, ``B``/``8``, ``Z``/``2``,
``G``/``6``). An identifier matches text that contains it with at most one edit per five
characters (an approximate substring match); identifiers of two or three characters must equal
a whole word of the text. Dates are expanded into the renderings listed in :data:`DATE_FORMATS`
before matching.

The allow-list (:data:`DEFAULT_ALLOW`) holds regular expressions a *whole* region's text must
match to stay: orientation markers, scale labels, a few imaging words. Anything else that is text
is blanked under ``blank_all``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

#: Tokens that may stay in an image under ``blank_all`` (whole-text, case-insensitive).
DEFAULT_ALLOW: tuple[str, ...] = (
    r"[LRAPHFSI]",  # orientation markers
    r"(?:HF|FF)(?:S|P|DR|DL)",  # patient position
    r"\d{1,4}(?:[.,]\d{1,2})?\s?(?:mm|cm|um|µm|nm)",  # scale labels
)

_CONFUSABLE = str.maketrans(
    {
        "O": "0",
        "Q": "0",
        "D": "0",
        "I": "1",
        "L": "1",
        "|": "1",
        "S": "5",
        "B": "8",
        "Z": "2",
        "G": "6",
    }
)
_NON_ALNUM = re.compile(r"[^0-9A-Z]+")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: Renderings of a date searched for (``%b`` is the three-letter month in English).
DATE_FORMATS: tuple[str, ...] = (
    "%Y%m%d",
    "%d%m%Y",
    "%m%d%Y",
    "%d%b%Y",
    "%b%d%Y",
    "%d%m%y",
    "%m%d%y",
    "%y%m%d",
)


def normalise(text: str) -> str:
    """Upper case, letters and digits only, confusable characters folded."""
    up = text.upper().replace("|", "I")
    return _NON_ALNUM.sub("", up).translate(_CONFUSABLE)


def words(text: str) -> list[str]:
    """Normalised words of ``text``."""
    return [w for w in (normalise(p) for p in re.split(r"[\s,^.;:/\\_\-]+", text)) if w]


def _approx_in(needle: str, hay: str, max_edits: int) -> bool:
    """True if ``needle`` occurs in ``hay`` with at most ``max_edits`` edits (Sellers)."""
    if needle in hay:
        return True
    if max_edits == 0 or len(hay) < len(needle) - max_edits:
        return False
    prev = [0] * (len(hay) + 1)
    for i, c in enumerate(needle, 1):
        cur = [i] + [0] * len(hay)
        for j, h in enumerate(hay, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (c != h))
        prev = cur
    return min(prev) <= max_edits


def date_renderings(value: str) -> list[str]:
    """Normalised renderings of a DICOM date (``YYYYMMDD``); nothing for a non-date."""
    v = value.strip()[:8]
    try:
        d = date(int(v[:4]), int(v[4:6]), int(v[6:8]))
    except ValueError:
        return []
    mon = _MONTHS[d.month - 1]
    out = [normalise(d.strftime(fmt.replace("%b", mon))) for fmt in DATE_FORMATS]
    return sorted(set(out))


@dataclass
class Identifiers:
    """Identifier values to look for in recognised text (normalised), by kind."""

    values: dict[str, str] = field(default_factory=dict)  # normalised value -> kind

    def add(self, value: Any, kind: str) -> None:
        """Add ``value`` (a name is added whole and by its parts)."""
        if value is None:
            return
        text = str(value).strip()
        if not text:
            return
        if kind == "date":
            for r in date_renderings(text):
                self.values.setdefault(r, "date")
            return
        if kind == "name":
            parts = [p for p in re.split(r"[\^\s,]+", text) if p]
            whole = normalise("".join(parts))
            if len(whole) >= 2:
                self.values.setdefault(whole, kind)
            for p in parts:
                n = normalise(p)
                if len(n) >= 2:
                    self.values.setdefault(n, kind)
            return
        n = normalise(text)
        if len(n) >= 2:
            self.values.setdefault(n, kind)

    def update(self, other: Identifiers) -> None:
        """Add every value of ``other``."""
        for v, k in other.values.items():
            self.values.setdefault(v, k)

    def match(self, text: str) -> str | None:
        """The kind of the first identifier found in ``text``, or ``None``."""
        hay = normalise(text)
        if not hay:
            return None
        ws = set(words(text))
        for value, kind in self.values.items():
            if len(value) <= 3:
                if value in ws or value == hay:
                    return kind
            elif _approx_in(value, hay, len(value) // 5):
                return kind
        return None

    def __len__(self) -> int:
        return len(self.values)


#: Attributes harvested from a DICOM header, with their kind.
DICOM_IDENTIFIERS: tuple[tuple[str, str], ...] = (
    ("PatientName", "name"),
    ("PatientID", "id"),
    ("OtherPatientIDs", "id"),
    ("PatientBirthName", "name"),
    ("PatientMotherBirthName", "name"),
    ("AccessionNumber", "accession"),
    ("StudyID", "id"),
    ("PatientBirthDate", "date"),
    ("StudyDate", "date"),
    ("SeriesDate", "date"),
    ("AcquisitionDate", "date"),
    ("ContentDate", "date"),
    ("InstitutionName", "institution"),
    ("InstitutionAddress", "institution"),
    ("ReferringPhysicianName", "name"),
    ("PerformingPhysicianName", "name"),
    ("OperatorsName", "name"),
    ("PatientAddress", "address"),
    ("MedicalRecordLocator", "id"),
)


def from_dataset(ds: Any) -> Identifiers:
    """Identifiers of a pydicom data set (:data:`DICOM_IDENTIFIERS`), read before cleaning."""
    ids = Identifiers()
    for keyword, kind in DICOM_IDENTIFIERS:
        value = ds.get(keyword)
        if value is None:
            continue
        values = (
            value
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
            else [value]
        )
        for v in values:
            ids.add(v, kind)
    return ids


def allowed(
    text: str,
    confidence: float,
    patterns: Iterable[re.Pattern[str]],
    *,
    min_confidence: float = 0.8,
) -> bool:
    """True if the whole of ``text`` is an allowed token read with enough confidence."""
    t = text.strip()
    if not t or confidence < min_confidence:
        return False
    return any(p.fullmatch(t) for p in patterns)


def compile_allow(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """The allow-list as compiled, case-insensitive patterns (``ValueError`` naming a bad one)."""
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"invalid allow pattern {p!r}: {exc}") from exc
    return tuple(out)
