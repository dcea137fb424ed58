"""FHIR bundles: the ``fhir.resources`` models of the release the bundle declares, and its
references.

The release is the one the bundle's ``meta.tag`` names (``fhir-R5`` or ``fhir-R4B`` in the
pipeline's tag system, as :mod:`imagedepot.fhir` writes it); a bundle without such a tag is
checked as R5 (recorded in ``info``). Every resource is validated through the Bundle model.
References: every full URL is unique, every ``urn:uuid`` reference is the full URL of an entry,
and every other reference has one of the forms FHIR allows (``Type/id`` with a resource type of
the release, ``Type/id/_history/version``, an absolute URL, ``urn:oid:``, ``#contained``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagedepot.validate.base import ValidationResult

_RELATIVE = re.compile(
    r"(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)
_ABSOLUTE = re.compile(r"(?:https?://\S+|urn:oid:[0-2](?:\.\d+)+|#\S*)")


def is_fhir_bundle(doc: Any) -> bool:
    """True for a JSON document that is a FHIR Bundle."""
    return isinstance(doc, Mapping) and doc.get("resourceType") == "Bundle"


def declared_release(bundle: Mapping[str, Any]) -> str | None:
    """``R5`` or ``R4B`` when the bundle's ``meta.tag`` names one, else ``None``."""
    from imagedepot.fhir.releases import RELEASES
    from imagedepot.fhir.terminology import PIPELINE_SYSTEM

    meta = bundle.get("meta")
    tags = meta.get("tag", []) if isinstance(meta, Mapping) else []
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, Mapping) and tag.get("system") == PIPELINE_SYSTEM:
            name = str(tag.get("code", "")).removeprefix("fhir-")
            if name in RELEASES:
                return name
    return None


def _malformed_references(bundle: Mapping[str, Any], release: Any) -> list[str]:
    from imagedepot.fhir.bundle import _references

    problems = []
    for i, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        for where, ref in _references(resource or {}):
            if ref.startswith("urn:uuid:") or _ABSOLUTE.fullmatch(ref):
                continue
            m = _RELATIVE.fullmatch(ref)
            if m is None:
                problems.append(f"entry[{i}].resource.{where}: {ref!r} is not a FHIR reference")
                continue
            try:
                release.model(m.group("type"))
            except (KeyError, ValueError):
                problems.append(
                    f"entry[{i}].resource.{where}: {m.group('type')!r} is not a resource type "
                    f"of FHIR {release.name}"
                )
    return problems


def check_fhir_bundle(path: Path, result: ValidationResult, doc: Mapping[str, Any]) -> None:
    """Check a FHIR Bundle read from ``path`` (see the module docstring)."""
    from imagedepot.errors import ImagedepotError
    from imagedepot.fhir import check_references, release

    name = declared_release(doc)
    result.info["release"] = name or "R5"
    result.info["release_declared"] = name is not None
    rel = release(name or "R5")
    try:
        rel.validate(doc)
    except ImagedepotError as exc:  # FhirError, or ConfigError without fhir.resources
        result.errors.append(str(exc))
    entries = doc.get("entry") or []
    result.info["entries"] = len(entries) if isinstance(entries, list) else 0
    result.errors += check_references(doc)
    result.errors += _malformed_references(doc, rel)


__all__ = ["check_fhir_bundle", "declared_release", "is_fhir_bundle"]
