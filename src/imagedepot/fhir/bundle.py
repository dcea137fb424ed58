"""Bundle assembly: entries with stable full URLs, conditional creates, reference checks.

Loading is idempotent: resources with an identifier are conditional creates
(``request.ifNoneExist`` = ``identifier=system|value``) and ``Provenance`` (which has no
identifier) is a ``PUT`` to an id derived from the dataset, item and step; full URLs are
``urn:uuid`` derived from the same identifiers, so a resource has the same full URL in every
bundle. Pushing a bundle twice, or two bundles of the same subject, creates each resource once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from imagedepot.fhir.releases import FhirError, FhirRelease
from imagedepot.fhir.terminology import (
    PIPELINE_SYSTEM,
    UID_NS,
)


def urn_for(resource_type: str, *parts: str) -> str:
    """Stable ``urn:uuid`` full URL of a resource, from its type and identifying parts."""
    return f"urn:uuid:{uuid.uuid5(UID_NS, '|'.join((resource_type, *parts)))}"


def identifier_query(system: str, value: str) -> str:
    """``identifier=system|value`` search string (each side URL-encoded, ``|`` kept)."""
    return f"identifier={quote(system, safe=':/')}|{quote(value, safe=':/')}"


def _drop_empty(value: Any) -> Any:
    """Remove ``None``, empty strings, lists and dicts (FHIR forbids empty elements)."""
    if isinstance(value, dict):
        out = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [_drop_empty(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


@dataclass(frozen=True)
class Planned:
    """A resource to put in a bundle.

    ``identifier`` (system, value) makes it a conditional create and fixes its full URL;
    ``put_id`` makes it an update-as-create of that id (for resources without identifier).
    """

    resource: Mapping[str, Any]
    identifier: tuple[str, str] | None = None
    put_id: str | None = None

    @property
    def full_url(self) -> str:
        """The entry's ``urn:uuid`` full URL."""
        rtype = str(self.resource["resourceType"])
        if self.identifier is not None:
            return urn_for(rtype, *self.identifier)
        if self.put_id is not None:
            return urn_for(rtype, "id", self.put_id)
        raise FhirError(f"{rtype}: a bundle entry needs an identifier or an id")


@dataclass
class BundleBuilder:
    """Collects validated entries; the same full URL twice keeps the first entry."""

    release: FhirRelease
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, planned: Planned) -> str:
        """Validate and add a resource; return its full URL."""
        url = planned.full_url
        if url in self.entries:
            return url
        resource = dict(_drop_empty(dict(planned.resource)))
        rtype = str(resource["resourceType"])
        request: dict[str, Any]
        if planned.put_id is not None:
            resource["id"] = planned.put_id
            request = {"method": "PUT", "url": f"{rtype}/{planned.put_id}"}
        else:
            request = {"method": "POST", "url": rtype}
            if planned.identifier is not None:
                request["ifNoneExist"] = identifier_query(*planned.identifier)
        self.entries[url] = {
            "fullUrl": url,
            "resource": self.release.validate(resource),
            "request": request,
        }
        return url

    def bundle(self) -> dict[str, Any]:
        """The transaction Bundle, validated as a whole."""
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "meta": {"tag": [{"system": PIPELINE_SYSTEM, "code": f"fhir-{self.release.name}"}]},
            "entry": list(self.entries.values()),
        }
        out = self.release.validate(bundle)
        problems = check_references(out)
        if problems:
            raise FhirError("bundle references do not resolve: " + "; ".join(problems[:10]))
        return out


def _references(obj: Any, path: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str):
                yield path + ".reference", v
            else:
                yield from _references(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _references(v, f"{path}[{i}]")


def check_references(bundle: Mapping[str, Any]) -> list[str]:
    """Problems with a transaction bundle's internal references (empty when all is well).

    Every full URL must be unique, and every ``urn:uuid`` reference inside a resource must be
    the full URL of an entry of the bundle.
    """
    problems: list[str] = []
    urls: set[str] = set()
    for i, entry in enumerate(bundle.get("entry", [])):
        url = entry.get("fullUrl")
        if url in urls:
            problems.append(f"entry[{i}]: duplicate fullUrl")
        if url:
            urls.add(url)
    for i, entry in enumerate(bundle.get("entry", [])):
        for where, ref in _references(entry.get("resource", {})):
            if ref.startswith("urn:uuid:") and ref not in urls:
                problems.append(f"entry[{i}].resource.{where}: {ref} is not in the bundle")
    return problems
