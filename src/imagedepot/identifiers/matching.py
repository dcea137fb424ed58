"""A set of identifiers of one subject's originals, each with its kinds, and a fast matcher over it.

:class:`Identifiers` is what the leak gate (:mod:`imagedepot.leakcheck`) looks for in outputs, and
what de-identification and clinical linkage test free text against. Values are PHI: never log
them (:meth:`Identifiers.counts` is safe to log).

Free text (NIfTI ``descrip``, comments, descriptions) is harvested as a whole phrase plus the
dates, UIDs, e-mail addresses and identifier-like tokens (letters *and* digits, 5+ characters)
inside it, not word by word.

What is dropped (to keep false positives rare)
----------------------------------------------
A harvested value is dropped when, after folding case and accents and splitting into words on
anything that is not a letter or digit: it has fewer than 3 letters and digits in all; it is a
number of fewer than 6 digits (series numbers, ages, matrix sizes); every word of it is a common
word (:data:`STOPWORDS`, e.g. ``brain``, ``left``, ``unknown``), shorter than 3 characters or a
small number (but IDs, device names and extra values of 5+ characters mixing letters and digits,
such as ``S-4471-AB``, are kept); or it is a placeholder (``anonymous``, ``n/a``...). Dates
count only when they are valid calendar dates of the years 1900-2100. Name parts of fewer than 3
characters (``Li``) are only found as part of the full name.

How matching works
------------------
Matching is case- and accent-insensitive and ignores separators: a name harvested as
``DOE^JOHN`` is found as ``Doe, John``, ``john doe`` or ``doe_john``; a single-word identifier is
found as a whole word (``doe`` in ``sub-doe_T1w`` but not in ``does``); identifier-like values of
6+ characters with letters (patient IDs, user names, e-mail addresses) are also found inside
longer words. Dates are found in every common spelling (``20240131``, ``2024-01-31``,
``2024:01:31``, ``2024/01/31``, ``2024.01.31``, and at the start of a DICOM DT). UIDs are
found as whole UIDs only (``1.2.3`` does not match inside ``1.2.3.4``).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

#: Kinds of identifiers, in the order a hit reports them when a value has several kinds.
KINDS = (
    "person_name",
    "birth_date",
    "id",
    "extra",
    "email",
    "username",
    "address",
    "phone",
    "uid",
    "date",
    "institution",
    "device",
    "text",
    "pixel_text",
)


_STOPWORDS_TEXT = """
the and for with from not none null true false yes unknown other male female
anonymous anonymized anonymised removed deidentified redacted
patient subject study series image images scan scans sample slide data file files
brain head neck chest abdomen pelvis spine knee hand foot leg arm heart lung liver body
left right both axial sagittal coronal sag cor tra oblique
phantom test research clinic clinical hospital university department radiology imaging
center centre institute medical lab group default user admin root operator experimenter
name date time phase echo mri localizer scout primary original derived secondary
ortho dicom nifti tiff siemens philips toshiba canon hitachi zeiss leica nikon olympus
microscope volume function functional anat perf dwi fmap func bold flair mprage mosaic norm
here there this that these those what when where which who whose into onto over under about
above below after before again all any some each few more most such only own same than too very
can will just should now are was were has have had our your their its system systems
"""
#: Common words never identifiers on their own (values made only of them are dropped).
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

#: Whole values that mean "no value" and are never identifiers.
PLACEHOLDERS = frozenset(
    {
        "anonymous",
        "anonymized",
        "anonymised",
        "unknown",
        "n a",
        "na",
        "none",
        "null",
        "removed",
        "deidentified",
        "redacted",
    }
)


_WORD_RE = re.compile(r"[^\W_]+")
_UID_RE = re.compile(r"(?<![\d.])\d+(?:\.\d+)+(?!\.?\d)")
_DATE_RE = re.compile(r"(?<!\d)(\d{4})([-:/.]?)(\d{2})\2(\d{2})")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_WELL_KNOWN_UID = "1.2.840.10008."
#: Kinds whose short-worded values (``S-4471-AB``) are kept when they mix letters and digits.
_ID_KINDS = frozenset({"id", "extra", "device", "username", "email"})


def fold(text: str) -> str:
    """Case- and accent-folded text (``Müller`` -> ``muller``)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(fold(text))


def _valid_date(year: str, month: str, day: str) -> str | None:
    try:
        d = dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    if not 1900 <= d.year <= 2100:
        return None
    return d.strftime("%Y%m%d")


def _is_small_number(word: str) -> bool:
    return word.isdigit() and len(word) < 6


def _weak_word(word: str) -> bool:
    return len(word) < 3 or _is_small_number(word) or word in STOPWORDS


@dataclass
class _Index:
    uids: dict[str, frozenset[str]]
    dates: dict[str, frozenset[str]]
    single: dict[str, frozenset[str]]
    multi: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]]
    inner: re.Pattern[str] | None
    inner_kinds: dict[str, frozenset[str]]


class Identifiers:
    """A set of identifiers, each with one or more kinds, and a fast matcher over them.

    Values are stored normalised: UIDs as is, dates as ``YYYYMMDD`` (matched in every spelling,
    see :meth:`values`), everything else as its folded words. The values are PHI: never log them.
    """

    def __init__(self) -> None:
        self._uids: dict[str, set[str]] = {}
        self._dates: dict[str, set[str]] = {}
        self._seqs: dict[tuple[str, ...], set[str]] = {}
        self._index: _Index | None = None

    # -- adding

    def add(self, value: object, kind: str) -> int:
        """Add one value of ``kind`` (dates, UIDs and names get their dedicated parsing).

        Returns how many entries were added (0 when the value is dropped by the rules of the
        module docstring).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}")
        text = as_text(value)
        if not text:
            return 0
        if kind in ("date", "birth_date"):
            return self.add_dates(text, kind)
        if kind == "uid":
            return self.add_uid(text)
        if kind == "person_name":
            return self.add_person_name(text)
        if kind == "text":
            return self.add_text(text)
        return self._add_seq(_words(text), kind)

    def add_uid(self, value: str) -> int:
        """Add a UID unless it is a well-known DICOM UID (``1.2.840.10008.*``)."""
        uid = value.strip().rstrip("\x00").strip()
        if not re.fullmatch(r"\d+(\.\d+)+", uid) or uid.startswith(_WELL_KNOWN_UID):
            return 0
        self._uids.setdefault(uid, set()).add("uid")
        self._index = None
        return 1

    def add_dates(self, value: str, kind: str = "date") -> int:
        """Add every valid date found in ``value`` (DA, DT, ISO 8601, ranges...)."""
        n = 0
        for m in _DATE_RE.finditer(value):
            key = _valid_date(m.group(1), m.group(3), m.group(4))
            if key is not None:
                self._dates.setdefault(key, set()).add(kind)
                n += 1
        if n:
            self._index = None
        return n

    def add_person_name(self, value: str) -> int:
        """Add a person name: DICOM PN (``Family^Given^Middle^Prefix^Suffix``, ``=`` groups),
        ``Family, Given`` or ``Given [Middle] Family``; the full name in usual orders, and each
        family/given/middle part of 3+ characters."""
        n = 0
        for group in value.split("="):
            if "^" in group:
                parts = [_words(p) for p in group.split("^")[:3]]
                family, given = parts[0], parts[1] if len(parts) > 1 else []
                middle = parts[2] if len(parts) > 2 else []
            elif "," in group:
                fam, _, rest = group.partition(",")
                family, rest_words = _words(fam), _words(rest)
                given, middle = rest_words[:1], rest_words[1:]
            else:
                words = _words(group)
                if not words:
                    continue
                family, given, middle = words[-1:], words[:1] if len(words) > 1 else [], words[1:-1]
            orders = [
                family + given + middle,
                family + given,
                given + middle + family,
                given + family,
            ]
            for seq in orders:
                if len(seq) > 1:
                    n += self._add_seq(seq, "person_name")
            for word in family + given + middle:
                n += self._add_seq([word], "person_name")
        return n

    def add_text(self, value: str) -> int:
        """Add free text: the whole phrase plus the dates, UIDs, e-mail addresses and
        identifier-like tokens (letters and digits, 5+ characters) inside it."""
        n = self.add_dates(value)
        for m in _UID_RE.finditer(value):
            if m.group().count(".") >= 3:
                n += self.add_uid(m.group())
        for m in _EMAIL_RE.finditer(value):
            n += self._add_seq(_words(m.group()), "email")
        words = _words(value)
        for w in words:
            if len(w) >= 5 and any(c.isdigit() for c in w) and any(c.isalpha() for c in w):
                n += self._add_seq([w], "text")
        if len(words) > 1:
            n += self._add_seq(words, "text")
        return n

    def _add_seq(self, words: list[str], kind: str) -> int:
        if not words:
            return 0
        compact = "".join(words)
        if len(compact) < 3 or _is_small_number(compact):
            return 0
        if " ".join(words) in PLACEHOLDERS:
            return 0
        if all(_weak_word(w) for w in words) and not (
            kind in _ID_KINDS
            and len(compact) >= 5
            and any(c.isdigit() for c in compact)
            and any(c.isalpha() for c in compact)
        ):
            return 0
        self._seqs.setdefault(tuple(words), set()).add(kind)
        self._index = None
        return 1

    def update(self, other: Identifiers) -> None:
        """Add every identifier of ``other``."""
        for uid, kinds in other._uids.items():
            self._uids.setdefault(uid, set()).update(kinds)
        for date, kinds in other._dates.items():
            self._dates.setdefault(date, set()).update(kinds)
        for seq, kinds in other._seqs.items():
            self._seqs.setdefault(seq, set()).update(kinds)
        self._index = None

    # -- inspecting (counts are safe to log; values are not)

    def __len__(self) -> int:
        return len(self._uids) + len(self._dates) + len(self._seqs)

    def counts(self) -> dict[str, int]:
        """Number of identifiers per kind (safe to log)."""
        c: Counter[str] = Counter()
        for table in (self._uids, self._dates, self._seqs):
            for kinds in table.values():
                c.update(kinds)
        return dict(sorted(c.items()))

    def values(self) -> Iterator[tuple[str, str]]:
        """Yield ``(value, kind)``; dates in both ``YYYYMMDD`` and ``YYYY-MM-DD`` forms.

        The values are PHI: for tests and in-memory use only, never for logs or reports.
        """
        for uid, kinds in self._uids.items():
            for k in sorted(kinds):
                yield uid, k
        for date, kinds in self._dates.items():
            for k in sorted(kinds):
                yield date, k
                yield f"{date[:4]}-{date[4:6]}-{date[6:]}", k
        for seq, kinds in self._seqs.items():
            for k in sorted(kinds):
                yield " ".join(seq), k

    def __contains__(self, value: object) -> bool:
        return bool(self.find(as_text(value)))

    # -- matching

    def _build(self) -> _Index:
        single: dict[str, frozenset[str]] = {}
        multi: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]] = {}
        inner_kinds: dict[str, frozenset[str]] = {}
        for seq, kinds in self._seqs.items():
            fk = frozenset(kinds)
            if len(seq) == 1:
                single[seq[0]] = fk
            else:
                multi.setdefault(seq[0], []).append((seq, fk))
            compact = "".join(seq)
            if (
                kinds & {"id", "extra", "email", "username"}
                and len(compact) >= 6
                and not compact.isdigit()
            ):
                inner_kinds[compact] = inner_kinds.get(compact, frozenset()) | fk
        inner = None
        if inner_kinds:
            alternatives = sorted(inner_kinds, key=len, reverse=True)
            inner = re.compile("|".join(re.escape(a) for a in alternatives))
        return _Index(
            uids={k: frozenset(v) for k, v in self._uids.items()},
            dates={k: frozenset(v) for k, v in self._dates.items()},
            single=single,
            multi=multi,
            inner=inner,
            inner_kinds=inner_kinds,
        )

    def find(self, text: str) -> dict[str, frozenset[str]]:
        """Identifiers found in ``text``: a dict from an internal key (contains the value: do not
        log it) to the identifier's kinds."""
        if not text:
            return {}
        if self._index is None:
            self._index = self._build()
        idx = self._index
        found: dict[str, frozenset[str]] = {}
        if idx.uids and "." in text:
            for m in _UID_RE.finditer(text):
                kinds = idx.uids.get(m.group())
                if kinds:
                    found[f"uid:{m.group()}"] = kinds
        if idx.dates:
            for m in _DATE_RE.finditer(text):
                key = m.group(1) + m.group(3) + m.group(4)
                kinds = idx.dates.get(key)
                if kinds:
                    found[f"date:{key}"] = kinds
        if idx.single or idx.multi or idx.inner:
            words = _words(text)
            for i, w in enumerate(words):
                kinds = idx.single.get(w)
                if kinds:
                    found[f"w:{w}"] = kinds
                for seq, seq_kinds in idx.multi.get(w, ()):
                    if tuple(words[i : i + len(seq)]) == seq:
                        found["w:" + " ".join(seq)] = seq_kinds
            if idx.inner is not None:
                for m in idx.inner.finditer(" ".join(words)):
                    found[f"i:{m.group()}"] = idx.inner_kinds[m.group()]
        return found


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value).strip()
