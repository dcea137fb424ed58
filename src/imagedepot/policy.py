"""Cohort policies: data use, consent, allowed destinations and de-identification options.

A policy is a YAML file (format in ``docs/architecture.md``; every key is described in the JSON
Schema shipped as ``imagedepot/schemas/policy.schema.json``). :func:`load_policy` validates it
against that schema and compiles it *fail-closed*: anything unknown or contradictory raises
:class:`~imagedepot.errors.PolicyError` with the file and the offending rule in the message,
never a silent default.

Presets
-------
A preset expands to a set of PS3.15 options (:data:`PRESETS`); options listed beside it are
added. Some presets also forbid options (:data:`PRESET_FORBIDDEN`), so that a policy cannot
claim a preset while undoing it.

``hipaa_safe_harbor``
    All five *clean* options (pixel data, recognizable visual features, graphics, structured
    content, descriptors) and no *retain* option except ``retain_safe_private``. The Basic
    Profile removes or empties names, IDs, dates, addresses, device serial numbers and the
    other 45 CFR 164.514(b)(2) identifiers held in attributes; the clean options cover
    free text, graphics and pixels; ``clean_recognizable_visual_features`` stands for the
    "full-face photographs and comparable images" identifier (images flagged as recognisable
    are quarantined). Safe Harbor keeps no element of dates but the year, so neither
    date-retaining option is allowed; device identity (serial numbers), institution identity
    (geography), patient characteristics (ages over 89) and original UIDs are forbidden too.
    Pseudonyms are keyed hashes: the key and the linkage table must never be disclosed to
    recipients (164.514(c)).
``gdpr_pseudonymised``
    ``retain_longitudinal_modified_dates``, ``retain_patient_characteristics``,
    ``retain_safe_private`` and the clean options for pixel data, graphics, structured
    content and descriptors. Pseudonymised data are still personal data (GDPR Art. 4(5),
    Recital 26): such a policy may not allow ``public_archive``.
``gdpr_anonymised``
    The same option set as ``hipaa_safe_harbor``, with the same forbidden options: nothing
    linkable or characteristic is retained, so that (once the controller also discards the
    key and linkage, which is outside this package) the data aim at anonymity in the sense of
    Recital 26. Whether data are anonymous remains a legal assessment; this preset is the most
    restrictive option set this package offers.

Conflicts rejected
------------------
* ``retain_longitudinal_full_dates`` together with ``retain_longitudinal_modified_dates``.
* ``public_archive`` among the allowed destinations together with any of
  :data:`PUBLIC_FORBIDDEN_OPTIONS` (full dates, original UIDs, patient characteristics,
  institution identity), or with the ``gdpr_pseudonymised`` preset.
* A preset together with an option it forbids.
* A ``deid_recipe`` that moves dates (``JITTER``) together with
  ``retain_longitudinal_full_dates``.

Pixel cleaning and deid
-----------------------
``pixel_cleaning`` lists the policy's own rules (exact attribute values and rectangles). A
``deid_recipe`` (a recipe of the ``deid`` package, read by :mod:`imagedepot.deid.recipe` and
checked line by line when the policy loads) adds its ``%filter`` labels as rules and its
``%header`` actions, which run after the profile (they can remove more, never keep more).
``deid_filters`` (default true) adds the coordinate rules of the filter database of the
installed ``deid`` package, read at run time (:func:`imagedepot.deid.pixels.deid_filter_rules`;
none when deid is not installed, which refuses more images, never fewer).
``pixel_text`` (:class:`imagedepot.pixeltext.dicom.PixelTextSettings`) says what happens to
text that OCR finds in the pixels of every image: blanked (``blank_all``, the default, or
``blank_phi``) and read again, or the image quarantined (``quarantine``); the rules above are
applied first, as an extra. Its ``auxiliary_images`` (``remove`` or ``ocr``) says what happens to
the slide label, macro and thumbnail series of microscopy outputs
(:mod:`imagedepot.deid.auxiliary`).
:meth:`Policy.dicom_options` gives all of this to :func:`imagedepot.deid.dicom.deidentify_dicom`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from imagedepot.deid.pixels import PIXEL_MATCH_KEYS, PixelRule, deid_filter_rules
from imagedepot.deid.profile import EDITION, OPTIONS
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.deid.recipe import Recipe, RecipeError, load_recipe
from imagedepot.duo import DUO_RELEASE, data_use_problems
from imagedepot.errors import ConfigError, PolicyError
from imagedepot.ingest import SUBJECT_ID_CHECKS
from imagedepot.io import sha256_file
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.safeload import check_sheet_size, parse_yaml, read_capped

__all__ = [
    "DESTINATION_CLASSES",
    "PIXEL_MATCH_KEYS",
    "PRESETS",
    "PRESET_FORBIDDEN",
    "PUBLIC_FORBIDDEN_OPTIONS",
    "PixelRule",
    "Policy",
    "load_policy",
    "policy_schema",
]

SCHEMA_RESOURCE = "schemas/policy.schema.json"
POLICY_VERSION = 1

#: Destination classes, from least to most exposed.
DESTINATION_CLASSES: tuple[str, ...] = ("internal", "controlled_repository", "public_archive")

_CLEAN_ALL = frozenset(
    {
        "clean_pixel_data",
        "clean_recognizable_visual_features",
        "clean_graphics",
        "clean_structured_content",
        "clean_descriptors",
    }
)
_RETAIN_LINKABLE = frozenset(
    {
        "retain_longitudinal_full_dates",
        "retain_longitudinal_modified_dates",
        "retain_patient_characteristics",
        "retain_device_identity",
        "retain_institution_identity",
        "retain_uids",
    }
)

#: Preset name → the options it expands to (see the module docstring for the reasoning).
PRESETS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "hipaa_safe_harbor": _CLEAN_ALL,
        "gdpr_pseudonymised": frozenset(
            {
                "clean_pixel_data",
                "clean_graphics",
                "clean_structured_content",
                "clean_descriptors",
                "retain_longitudinal_modified_dates",
                "retain_patient_characteristics",
                "retain_safe_private",
            }
        ),
        "gdpr_anonymised": _CLEAN_ALL,
    }
)

#: Preset name → options that may not be added to it.
PRESET_FORBIDDEN: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "hipaa_safe_harbor": _RETAIN_LINKABLE,
        "gdpr_pseudonymised": frozenset(),
        "gdpr_anonymised": _RETAIN_LINKABLE,
    }
)

#: Options that keep data linkable to the originals or characteristic of the person; a policy
#: that allows ``public_archive`` may not use them.
PUBLIC_FORBIDDEN_OPTIONS: frozenset[str] = frozenset(
    {
        "retain_longitudinal_full_dates",
        "retain_uids",
        "retain_patient_characteristics",
        "retain_institution_identity",
    }
)

_DUO_RE = re.compile(r"DUO:\d{7}")
_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}")


@dataclass(frozen=True)
class Policy:
    """A compiled policy. Build it with :func:`load_policy`."""

    path: Path
    name: str
    sha256: str
    data_use: Mapping[str, Any]
    preset: str | None
    deid_options: frozenset[str]
    pseudonym_prefix: str
    max_date_shift_days: int
    allowed_classes: frozenset[str]
    consent_required: bool
    consent_sheet: str | None = None
    subject_column: str = "subject"
    consent_column: str | None = None
    consent_values: tuple[str, ...] = ("yes",)
    #: With retain_patient_characteristics: what of the birth date FHIR may carry ("age" or "year").
    birth_date_detail: str = "age"
    pixel_rules: tuple[PixelRule, ...] = ()
    description: str = ""
    consent_sheet_sha256: str | None = None
    recipe: Recipe | None = None
    deid_recipe: str | None = None
    deid_filters: bool = True
    pixel_text: PixelTextSettings = field(default_factory=PixelTextSettings)
    #: How the scan matches each DICOM file to the sheet's subject (``imagedepot.ingest.SubjectCheck``).
    subject_id_check: str = "patient_id"
    _consent: Mapping[str, bool] = field(default_factory=dict, repr=False)

    def consented(self, subject: str) -> bool:
        """True if ``subject`` consented (always true when consent is not required).

        A subject missing from the sheet has not consented; a subject listed on several rows
        has consented only if every row says so.
        """
        if not self.consent_required:
            return True
        return self._consent.get(str(subject).strip(), False)

    def check_destination(self, name: str, dest_class: str) -> None:
        """Raise :class:`PolicyError` unless ``name`` of class ``dest_class`` is allowed."""
        if dest_class not in DESTINATION_CLASSES:
            raise PolicyError(
                f"{self.path}: destination {name!r} has unknown class {dest_class!r} "
                f"(known classes: {', '.join(DESTINATION_CLASSES)})"
            )
        if dest_class not in self.allowed_classes:
            raise PolicyError(
                f"{self.path}: policy {self.name!r} does not allow destination {name!r} of "
                f"class {dest_class} (destinations.allowed_classes: "
                f"{', '.join(sorted(self.allowed_classes))})"
            )

    def make_pseudonymizer(self, key: bytes) -> Pseudonymizer:
        """A :class:`Pseudonymizer` with this policy's prefix and maximum date shift."""
        return Pseudonymizer(
            key=key, prefix=self.pseudonym_prefix, max_shift_days=self.max_date_shift_days
        )

    def pixel_cleaning_rules(self) -> tuple[PixelRule, ...]:
        """Every pixel-cleaning rule of the policy, in the order they are tried: its own
        ``pixel_cleaning`` rules, the ``%filter`` labels of its ``deid_recipe``, then (with
        ``deid_filters``) the coordinate rules of the installed deid's filter database."""
        rules = list(self.pixel_rules)
        if self.recipe is not None:
            rules += self.recipe.pixel_rules()
        if self.deid_filters:
            rules += deid_filter_rules().rules
        return tuple(rules)

    def dicom_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`imagedepot.deid.dicom.deidentify_dicom` that come from
        the policy: ``policy_options``, ``pixel_rules`` and ``recipe``."""
        return {
            "policy_options": self.deid_options,
            "pixel_rules": self.pixel_cleaning_rules(),
            "recipe": self.recipe,
            "pixel_text": self.pixel_text,
        }

    def to_provenance(self) -> dict[str, Any]:
        """What provenance records about the policy: no secrets, no absolute paths.

        Flat keys (``name``, ``sha256``, ``data_use``, ``deid_options``, ``profile_edition``...)
        so that later stages can pick what they publish.
        """
        return {
            "name": self.name,
            "policy_version": POLICY_VERSION,
            "file": self.path.name,
            "sha256": self.sha256,
            "data_use": {
                "permission": self.data_use["permission"],
                "modifiers": list(self.data_use.get("modifiers", [])),
            },
            "duo_release": DUO_RELEASE,
            "consent": {
                "required": self.consent_required,
                "sheet": self.consent_sheet,
                "sheet_sha256": self.consent_sheet_sha256,
                "subject_column": self.subject_column if self.consent_required else None,
                "consent_column": self.consent_column,
                "consent_values": list(self.consent_values) if self.consent_required else None,
            },
            "allowed_classes": sorted(self.allowed_classes),
            "subject_id_check": self.subject_id_check,
            "preset": self.preset,
            "deid_options": sorted(self.deid_options),
            "profile_edition": EDITION,
            "pseudonym_prefix": self.pseudonym_prefix,
            "max_date_shift_days": self.max_date_shift_days,
            "birth_date_detail": self.birth_date_detail,
            "pixel_cleaning": [r.to_dict() for r in self.pixel_rules],
            "pixel_text": self.pixel_text.to_dict(),
            "deid_recipe": (
                {"file": self.deid_recipe, **self.recipe.to_provenance()}
                if self.recipe is not None
                else None
            ),
            "deid_filters": (
                deid_filter_rules().to_provenance() if self.deid_filters else {"source": "off"}
            ),
        }


def policy_schema() -> dict[str, Any]:
    """The policy JSON Schema shipped with the package."""
    text = resources.files("imagedepot").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _rule(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _validate(data: Any, path: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(policy_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{_rule(e.absolute_path)}: {e.message}" for e in errors]
        raise PolicyError(f"{path}: invalid policy:\n  " + "\n  ".join(lines))


def _read_sheet(sheet: Path, policy_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a TSV/CSV/XLSX consent sheet, read as sample sheets are
    (:func:`imagedepot.samplesheet.read_table`: UTF-8 or a UTF-16/UTF-32 byte-order mark, XLSX
    formulas by their saved values), cells as stripped strings."""
    from imagedepot.samplesheet import read_table

    if not sheet.is_file():
        raise PolicyError(f"{policy_path}: consent.sheet: consent sheet {sheet} not found")
    if sheet.suffix.lower() not in (".tsv", ".tab", ".txt", ".csv", ".xlsx", ".xlsm"):
        raise PolicyError(
            f"{policy_path}: consent.sheet: {sheet.name} is not a TSV, CSV or XLSX file"
        )
    check_sheet_size(sheet, "consent sheet", PolicyError)
    try:
        rows = read_table(sheet)
    except ConfigError as exc:
        raise PolicyError(f"{policy_path}: consent.sheet: {exc}") from None
    if not rows:
        raise PolicyError(f"{policy_path}: consent.sheet: {sheet} has no rows under its header")
    header = [k for k in rows[0] if k != "__row__"]
    return header, [{k: v for k, v in r.items() if k != "__row__"} for r in rows]


def _load_consent(
    sheet: Path, policy_path: Path, subject_column: str, consent_column: str, values: Iterable[str]
) -> dict[str, bool]:
    header, records = _read_sheet(sheet, policy_path)
    for rule, column in (
        ("consent.subject_column", subject_column),
        ("consent.consent_column", consent_column),
    ):
        if column not in header:
            raise PolicyError(
                f"{policy_path}: {rule}: column {column!r} not found in consent sheet "
                f"{sheet.name} (columns: {', '.join(c for c in header if c)})"
            )
    accepted = {v.strip().casefold() for v in values}
    consent: dict[str, bool] = {}
    for rec in records:
        subject = rec.get(subject_column, "").strip()
        if not subject:
            continue
        ok = rec.get(consent_column, "").strip().casefold() in accepted
        consent[subject] = consent.get(subject, True) and ok
    return consent


def _compile_options(deid: Mapping[str, Any], path: Path) -> tuple[str | None, frozenset[str]]:
    preset = deid.get("preset")
    explicit = list(deid.get("options", []))
    for i, opt in enumerate(explicit):
        if opt not in OPTIONS:
            raise PolicyError(f"{path}: deidentification.options[{i}]: unknown option {opt!r}")
    options = set(explicit)
    if preset is not None:
        if preset not in PRESETS:
            raise PolicyError(f"{path}: deidentification.preset: unknown preset {preset!r}")
        forbidden = sorted(set(explicit) & PRESET_FORBIDDEN[preset])
        if forbidden:
            raise PolicyError(
                f"{path}: deidentification: preset {preset} conflicts with option(s) "
                f"{', '.join(forbidden)}"
            )
        options |= PRESETS[preset]
    if {"retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"} <= options:
        raise PolicyError(
            f"{path}: deidentification.options: retain_longitudinal_full_dates conflicts with "
            "retain_longitudinal_modified_dates (keep dates or shift them, not both)"
        )
    return preset, frozenset(options)


def _compile_pixel_rules(rules: Iterable[Mapping[str, Any]], path: Path) -> tuple[PixelRule, ...]:
    out = []
    names: set[str] = set()
    for i, rule in enumerate(rules):
        where = f"deidentification.pixel_cleaning[{i}]"
        name = rule["name"]
        if name in names:
            raise PolicyError(f"{path}: {where}.name: duplicate rule name {name!r}")
        names.add(name)
        for key in rule["match"]:
            if key not in PIXEL_MATCH_KEYS:
                raise PolicyError(f"{path}: {where}.match: unknown attribute {key!r}")
        regions = []
        for j, reg in enumerate(rule["regions"]):
            x0, y0, x1, y1 = (int(v) for v in reg)
            if x1 <= x0 or y1 <= y0:
                raise PolicyError(
                    f"{path}: {where}.regions[{j}]: empty rectangle {reg} (need x0 < x1, y0 < y1)"
                )
            regions.append((x0, y0, x1, y1))
        out.append(
            PixelRule(
                name=name, match=MappingProxyType(dict(rule["match"])), regions=tuple(regions)
            )
        )
    return tuple(out)


def _load_recipe(path: Path, rel: str, options: frozenset[str]) -> Recipe:
    """Load the policy's deid recipe, fail closed: any line it cannot honour is an error."""
    rule = "deidentification.deid_recipe"
    try:
        recipe = load_recipe(path.parent / rel)
    except RecipeError as exc:
        raise PolicyError(f"{path}: {rule}: {Path(rel).name}: {exc}") from exc
    if recipe.jitters and "retain_longitudinal_full_dates" in options:
        lines = ", ".join(str(a.line) for a in recipe.actions if a.action == "JITTER")
        raise PolicyError(
            f"{path}: {rule}: JITTER (recipe line {lines}) conflicts with option "
            "retain_longitudinal_full_dates (the option keeps dates, the recipe moves them)"
        )
    return recipe


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read, validate and compile a policy file.

    Raises :class:`PolicyError` naming the file and the rule for anything invalid: schema
    violations, unknown options, presets, DUO codes (not a term of the shipped DUO release, or a
    modifier as the permission and vice versa: :mod:`imagedepot.duo`) or destination classes,
    conflicting options, a missing consent sheet or column. The file is read with
    :func:`imagedepot.safeload.parse_yaml` (size-capped, no YAML aliases).
    """
    p = Path(path)
    # Read once: the hash recorded in provenance is that of the bytes parsed. Size-capped, no
    # YAML aliases (a 400-byte alias bomb expands to gigabytes when the schema check walks it).
    raw = read_capped(p, what="policy file", error=PolicyError)
    data = parse_yaml(raw, str(p), what="policy file", error=PolicyError)
    _validate(data, p)

    # The schema already enforces the following; checked again so that a schema edit cannot
    # silently open the gate (fail closed).
    data_use = data["data_use"]
    for rule, code in [("data_use.permission", data_use["permission"])] + [
        (f"data_use.modifiers[{i}]", c) for i, c in enumerate(data_use.get("modifiers", []))
    ]:
        if not isinstance(code, str) or not _DUO_RE.fullmatch(code):
            raise PolicyError(f"{p}: {rule}: {code!r} is not a DUO code (DUO:NNNNNNN)")
    # Only known terms, each in its place: these codes are published with the data.
    duo = data_use_problems(data_use["permission"], data_use.get("modifiers", []))
    if duo:
        raise PolicyError(f"{p}: " + f"\n{p}: ".join(duo))
    allowed = list(data["destinations"]["allowed_classes"])
    for i, cls in enumerate(allowed):
        if cls not in DESTINATION_CLASSES:
            raise PolicyError(f"{p}: destinations.allowed_classes[{i}]: unknown class {cls!r}")

    subject_id_check = str(data.get("subject_id_check", "patient_id"))
    if subject_id_check not in SUBJECT_ID_CHECKS:
        raise PolicyError(
            f"{p}: subject_id_check: unknown value {subject_id_check!r} "
            f"(known: {', '.join(SUBJECT_ID_CHECKS)})"
        )

    deid = data["deidentification"]
    preset, options = _compile_options(deid, p)
    if "public_archive" in allowed:
        if preset == "gdpr_pseudonymised":
            raise PolicyError(
                f"{p}: destinations.allowed_classes: public_archive conflicts with preset "
                "gdpr_pseudonymised (pseudonymised data are personal data)"
            )
        clash = sorted(options & PUBLIC_FORBIDDEN_OPTIONS)
        if clash:
            raise PolicyError(
                f"{p}: destinations.allowed_classes: public_archive conflicts with option(s) "
                f"{', '.join(clash)} (they keep data linkable or characteristic of the person)"
            )
    recipe_rel: str | None = deid.get("deid_recipe")
    recipe = _load_recipe(p, recipe_rel, options) if recipe_rel is not None else None
    prefix = deid.get("pseudonym_prefix", "SUBJ")
    if not _PREFIX_RE.fullmatch(prefix):
        raise PolicyError(f"{p}: deidentification.pseudonym_prefix: invalid prefix {prefix!r}")

    consent = data["consent"]
    required = bool(consent["required"])
    consent_map: dict[str, bool] = {}
    sheet_sha: str | None = None
    sheet_rel: str | None = consent.get("sheet")
    subject_column = consent.get("subject_column", "subject")
    consent_column = consent.get("consent_column")
    consent_values = tuple(consent.get("consent_values", ["yes"]))
    if required:
        if sheet_rel is None or consent_column is None:  # the schema requires both
            raise PolicyError(f"{p}: consent: required consent needs sheet and consent_column")
        sheet = p.parent / sheet_rel
        consent_map = _load_consent(sheet, p, subject_column, consent_column, consent_values)
        sheet_sha = sha256_file(sheet)

    return Policy(
        path=p,
        name=data["name"],
        sha256=hashlib.sha256(raw).hexdigest(),
        data_use=MappingProxyType(
            {
                "permission": data_use["permission"],
                "modifiers": tuple(data_use.get("modifiers", [])),
            }
        ),
        preset=preset,
        deid_options=options,
        pseudonym_prefix=prefix,
        max_date_shift_days=int(deid.get("max_date_shift_days", 3650)),
        birth_date_detail=str(deid.get("birth_date_detail", "age")),
        allowed_classes=frozenset(allowed),
        consent_required=required,
        consent_sheet=sheet_rel,
        subject_column=subject_column,
        consent_column=consent_column,
        consent_values=consent_values,
        pixel_rules=_compile_pixel_rules(deid.get("pixel_cleaning", []), p),
        description=data.get("description", ""),
        consent_sheet_sha256=sheet_sha,
        recipe=recipe,
        deid_recipe=recipe_rel,
        deid_filters=bool(deid.get("deid_filters", True)),
        pixel_text=_pixel_text(deid.get("pixel_text"), p),
        subject_id_check=subject_id_check,
        _consent=MappingProxyType(consent_map),
    )


def _pixel_text(section: Any, path: Path) -> PixelTextSettings:
    try:
        return PixelTextSettings.from_config(section)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{path}: deidentification.pixel_text: {exc}") from None
