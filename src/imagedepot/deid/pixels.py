"""Burned-in text in pixel data: which images need cleaning, and the rules that clean them.

A :class:`PixelRule` names the images it applies to and the rectangles of pixel data that carry
text in them. Rules come from three places, all used together (:func:`imagedepot.policy.Policy.
pixel_cleaning_rules`):

* the policy's own ``pixel_cleaning`` list (exact attribute values, :attr:`PixelRule.match`);
* the ``%filter`` sections of the policy's ``deid_recipe`` (:mod:`imagedepot.deid.recipe`);
* the filter database that ships inside the ``deid`` package (``deid/data/deid.dicom``, MIT
  licence), read at run time when ``deid`` is installed and translated by
  :func:`deid_filter_rules`. Nothing of it is copied into this package.

The rule types and deid's filter language (:class:`PixelRule`, :class:`Criteria`: conditions and
coordinates) are in :mod:`imagedepot.deid.rules`, shared with the recipe reader.

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
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from imagedepot.deid.rules import Attributes, PixelRule, Region

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

#: Modalities that usually carry burned-in text when Burned In Annotation is absent.
BURN_IN_MODALITIES: frozenset[str] = frozenset({"US", "XA", "RF", "SC", "OT"})
#: Secondary Capture Image Storage and its multi-frame forms.
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"

#: The deid package's filter database, as a resource of the ``deid.data`` package.
DEID_DATABASE = ("deid.data", "deid.dicom")


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
