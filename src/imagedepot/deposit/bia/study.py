"""Study-level metadata: what the sample sheet does not carry.

Authors, licence, release date and protocol defaults come from the ``study`` mapping of the
destination in the config, or a YAML file given with ``--study-metadata``. A sample-sheet column
wins over the study value of the same field (:func:`_metadata_value`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import ConfigError


@dataclass(frozen=True)
class Author:
    """A study author (REMBI Study: contributors)."""

    name: str
    affiliation: str
    email: str | None = None
    orcid: str | None = None
    role: str | None = None
    address: str | None = None


@dataclass
class StudyMetadata:
    """What the sample sheet does not carry: authors, licence, release date and protocol defaults."""

    authors: list[Author] = field(default_factory=list)
    license: str | None = None
    release_date: str | None = None
    keywords: list[str] = field(default_factory=list)
    funding_statement: str | None = None
    acknowledgements: str | None = None
    sample_preparation: str | None = None
    growth_protocol: str | None = None
    imaging_instrument: str | None = None
    acquisition_parameters: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, source: str = "study") -> StudyMetadata:
        """Build from a mapping (config or YAML); unknown keys and wrong types raise ConfigError."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        authors = []
        for i, a in enumerate(data.pop("authors", None) or []):
            if not isinstance(a, Mapping) or not a.get("name") or not a.get("affiliation"):
                raise ConfigError(f"{source}: authors[{i}]: give at least 'name' and 'affiliation'")
            extra = sorted(set(a) - set(Author.__dataclass_fields__))
            if extra:
                raise ConfigError(f"{source}: authors[{i}]: unknown key(s) {', '.join(extra)}")
            authors.append(Author(**{k: str(v) for k, v in a.items() if v is not None}))
        keywords = data.pop("keywords", None) or []
        if isinstance(keywords, str):
            keywords = _split(keywords)
        if not isinstance(keywords, list):
            raise ConfigError(f"{source}: keywords: give a list or a ';'-separated string")
        for key, value in data.items():
            if value is not None and not isinstance(value, str | int | float):
                raise ConfigError(f"{source}: {key}: give a text value")
        text = {k: (None if v is None else str(v)) for k, v in data.items()}
        return cls(authors=authors, keywords=[str(k) for k in keywords], **text)


def load_study_metadata(path: str | Path) -> StudyMetadata:
    """Read study metadata from a YAML (or JSON) file."""
    from imagedepot.safeload import load_yaml

    p = Path(path)
    data = load_yaml(p, what="study metadata")
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{p}: study metadata must be a mapping of keys to values")
    return StudyMetadata.from_mapping(data, str(p))


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(";") if t.strip()]


def _metadata_value(
    meta: Mapping[str, str], study: StudyMetadata, column: str, study_key: str | None = None
) -> str | None:
    v = (meta.get(column) or "").strip()
    if v:
        return v
    sv = getattr(study, study_key or column, None) if (study_key or column) else None
    return str(sv).strip() if sv else None
