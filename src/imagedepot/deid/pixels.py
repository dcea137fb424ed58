"""Burned-in text in pixel data: which images need cleaning, and the rules that clean them.

A :class:`PixelRule` names the images it applies to and the rectangles of pixel data that carry
text in them. Rules come from three places, all used together (:func:`imagedepot.policy.Policy.
pixel_cleaning_rules`):

* the policy's own ``pixel_cleaning`` list (exact attribute values, :attr:`PixelRule.match`);
* the ``%filter`` sections of the policy's ``deid_recipe`` (:mod:`imagedepot.deid.recipe`);
* the filter database that ships inside the ``deid`` package (``deid/data/deid.dicom``, MIT
  licence), read at run time when ``deid`` is installed and translated by
  :func:`deid_filter_rules`. Nothing of it is copied into this package.

Rules written in deid's filter language carry :class:`Criteria`: lines of conditions such as
``contains Modality US`` or ``equals Rows 768``, joined by ``+`` (and) or ``||`` (or), evaluated
from left to right, first inside a line, then line by line. ``contains`` is a case-insensitive
regular-expression search; ``equals`` compares case-insensitively after trimming spaces, and a
``|`` in its value separates alternatives (deid's own database writes ``equals Rows 600|768``
meaning either); ``missing``, ``present`` and ``empty`` test the attribute itself. Coordinates
follow deid: ``coordinates x0,y0,x1,y1`` (ends exclusive), ``ctpcoordinates x,y,width,height``,
``coordinates all`` (the whole image), ``coordinates from:SequenceOfUltrasoundRegions`` (the
regions listed in the file) and the ``keep`` forms, which blank everything *outside* the regions.

Which images need cleaning (:func:`burned_in_reason`, fail closed): Burned In Annotation is
``YES``; or it is absent and the modality is one that usually carries burned-in text (US, XA, RF,
and the capture modalities SC and OT), or the SOP class is a Secondary Capture; or a rule matches
(a rule exists because that kind of image carries text). An image flagged so and matched by no
rule that cleans is refused, never passed. An explicit ``NO`` is trusted unless a rule matches.
Under ``clean_pixel_data`` every matching rule is applied, flagged or not.

From deid's database only the rules with coordinates are used: they name a device and where it
writes text. Its flag-only rules (a blacklist for manual review, and catch-alls such as "every CT
of this scanner model") are not, as they would send whole CT cohorts to quarantine without saying
where any text is; imagedepot's own flags above take their place. Rules of the database whose
coordinates cannot be used (keep regions taken from the file are fine; malformed numbers are not)
are left out and counted in :attr:`FilterDatabase.skipped`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Attributes a policy's own pixel-cleaning rule may match on (exact values).
PIXEL_MATCH_KEYS: tuple[str, ...] = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SOPClassUID",
    "Rows",
    "Columns",
)

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

#: Modalities that usually carry burned-in text when Burned In Annotation is absent.
BURN_IN_MODALITIES: frozenset[str] = frozenset({"US", "XA", "RF", "SC", "OT"})
#: Secondary Capture Image Storage and its multi-frame forms.
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"

#: A rectangle ``(x0, y0, x1, y1)``: x is the column, y the row, ends exclusive.
Region = tuple[int, int, int, int]
#: ``coordinates all``: larger than any image (slicing clips it).
WHOLE_IMAGE: Region = (0, 0, 1 << 20, 1 << 20)

#: The deid package's filter database, as a resource of the ``deid.data`` package.
DEID_DATABASE = ("deid.data", "deid.dicom")


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


# --------------------------------------------------------------------------------------------
# Which images need cleaning


class DatasetAttributes:
    """:class:`Attributes` of a pydicom dataset: keywords of the data set and of the File Meta
    Information, and ``0xGGGGEEEE`` tags; an element without value reads as ``""``."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (keyword or hex tag) or ``default`` when absent."""
        from pydicom.datadict import tag_for_keyword

        tag: int | None
        if key.lower().startswith("0x"):
            try:
                tag = int(key, 16)
            except ValueError:
                return default
        else:
            tag = tag_for_keyword(key)
        if tag is None:
            return default
        source = self.ds
        if tag >> 16 == 0x0002:
            source = getattr(self.ds, "file_meta", None)
            if source is None:
                return default
        if tag not in source:
            return default
        value = source[tag].value
        return "" if value is None else value


def burned_in_reason(attrs: Attributes) -> str | None:
    """Why an image may carry burned-in text judging by its attributes alone, or ``None``.

    See the module docstring: Burned In Annotation ``YES``, or absent with a modality of
    :data:`BURN_IN_MODALITIES` or a Secondary Capture SOP class.
    """
    flag = str(attrs.get("BurnedInAnnotation") or "").strip().upper()
    modality = str(attrs.get("Modality") or "").strip().upper()
    if flag == "YES":
        return f"BurnedInAnnotation=YES, Modality={modality or 'absent'}"
    if flag:
        return None
    if modality in BURN_IN_MODALITIES:
        return f"BurnedInAnnotation=absent, Modality={modality}"
    sop_class = str(attrs.get("SOPClassUID") or "").strip()
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return f"BurnedInAnnotation=absent, Secondary Capture, Modality={modality or 'absent'}"
    return None


# --------------------------------------------------------------------------------------------
# Applying rules


def _regions_from(ds: Any, keyword: str, *, inclusive: bool) -> list[Region]:
    """Rectangles of the items of sequence ``keyword`` (Region Location Min/Max X0/Y0/X1/Y1).

    With ``inclusive`` the max row and column are part of the rectangle (DICOM's meaning),
    without it they are not (a smaller kept region is the safer reading).
    """
    out: list[Region] = []
    seq = ds.get(keyword)
    for item in seq or ():
        try:
            x0 = int(item.RegionLocationMinX0)
            y0 = int(item.RegionLocationMinY0)
            x1 = int(item.RegionLocationMaxX1) + (1 if inclusive else 0)
            y1 = int(item.RegionLocationMaxY1) + (1 if inclusive else 0)
        except (AttributeError, TypeError, ValueError):
            continue
        if x1 > x0 >= 0 and y1 > y0 >= 0:
            out.append((x0, y0, x1, y1))
    return out


def blank_regions(ds: Any, rules: Sequence[PixelRule]) -> Any:
    """Set the regions of ``rules`` to zero in every frame of ``ds`` (decoding if needed).

    Returns the blanked area: a boolean ``rows x columns`` array, true where pixels were set.

    The new pixel data are stored uncompressed (pydicom sets the transfer syntax to Explicit
    VR Little Endian for an encapsulated input). Raises ``ValueError`` (with a short reason)
    when the pixel data cannot be decoded or re-encoded, or when a keep rule finds no region to
    keep (nothing would be left to keep, so blanking everything would not be what it meant).
    """
    import numpy as np

    bits = int(ds.get("BitsAllocated") or 0)
    if bits not in (8, 16):
        raise ValueError(f"cannot clean pixel data with BitsAllocated {bits}")
    photometric = str(ds.get("PhotometricInterpretation") or "").strip()
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    try:
        arr = ds.pixel_array.copy()
    except Exception as exc:  # pydicom's decoders raise many types
        raise ValueError(f"cannot decode pixel data ({type(exc).__name__})") from exc
    if photometric.startswith("YBR") and samples == 3:
        photometric = "RGB"  # pydicom converts YBR to RGB when decoding
    rows, cols = arr.shape[1:3] if frames > 1 else arr.shape[:2]
    blanked = np.zeros((rows, cols), dtype=bool)
    for rule in rules:
        blank = list(rule.regions)
        for keyword in rule.regions_from:
            blank += _regions_from(ds, keyword, inclusive=True)
        keep = list(rule.keep)
        for keyword in rule.keep_from:
            keep += _regions_from(ds, keyword, inclusive=False)
        if (rule.keep or rule.keep_from) and not keep:
            raise ValueError(f"rule {rule.name!r}: no region to keep in this image")
        mask = np.zeros((rows, cols), dtype=bool)
        for x0, y0, x1, y1 in blank:
            mask[y0:y1, x0:x1] = True
        if keep:
            outside = np.ones((rows, cols), dtype=bool)
            for x0, y0, x1, y1 in keep:
                outside[y0:y1, x0:x1] = False
            mask |= outside
        if frames > 1:
            arr[:, mask, ...] = 0
        else:
            arr[mask, ...] = 0
        blanked |= mask
    try:
        ds.set_pixel_data(arr, photometric, int(ds.BitsStored), generate_instance_uid=False)
    except (AttributeError, ValueError, RuntimeError, NotImplementedError, TypeError) as exc:
        raise ValueError(f"cannot store the cleaned pixel data ({type(exc).__name__})") from exc
    return blanked


# --------------------------------------------------------------------------------------------
# deid's filter database


@dataclass(frozen=True)
class FilterDatabase:
    """The coordinate rules translated from an installed deid's filter database."""

    rules: tuple[PixelRule, ...]
    source: str
    version: str | None
    sha256: str | None
    skipped: int = 0

    def to_provenance(self) -> dict[str, Any]:
        """What provenance records: where the rules came from and how many were used."""
        return {
            "source": self.source,
            "deid_version": self.version,
            "sha256": self.sha256,
            "rules": len(self.rules),
            "skipped": self.skipped,
        }


def _deid_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deid")
    except PackageNotFoundError:
        return None


@functools.cache
def deid_filter_rules() -> FilterDatabase:
    """Coordinate rules of the installed ``deid`` package's filter database (cached).

    When ``deid`` is not installed, or its database cannot be read, no rules are returned and
    :attr:`FilterDatabase.source` says why: fewer rules means more images refused, never fewer.
    """
    from imagedepot.deid.recipe import RecipeError, parse_recipe

    package, name = DEID_DATABASE
    try:
        text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError, UnicodeDecodeError) as exc:
        log.info("deid filter database not available (%s)", type(exc).__name__)
        return FilterDatabase(rules=(), source="not installed", version=None, sha256=None)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    version = _deid_version()
    try:
        recipe = parse_recipe(text, name=f"deid {version} {name}", lenient=True)
    except RecipeError as exc:
        log.warning("deid filter database unusable: %s", exc)
        return FilterDatabase(rules=(), source=f"unusable: {exc}", version=version, sha256=digest)
    rules = tuple(
        r
        for r in recipe.pixel_rules(source=f"deid {version or '?'}")
        if r.cleans and r.criteria is not None and r.criteria.lines
    )
    return FilterDatabase(
        rules=rules,
        source=f"deid/data/{name}",
        version=version,
        sha256=digest,
        skipped=recipe.skipped_filters,
    )
