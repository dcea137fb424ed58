"""FHIR releases: the shapes that differ between them, and validation with their models.

Every resource is built as FHIR JSON, validated by the ``fhir.resources`` models of the chosen
release (:class:`R5`, the default, or :class:`R4B`) and written as the models serialise it.
Building code asks the release for the shapes that differ (element names, data types) instead of
testing version strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from imagedepot.errors import ConfigError, ImagedepotError
from imagedepot.fhir.terminology import (
    ENDPOINT_TYPE_SYSTEM,
    LOINC,
)


class FhirError(ImagedepotError):
    """A resource failed validation, or a bundle is not what this module expects."""


class FhirRelease:
    """Shapes that differ between FHIR releases, and validation with the release's models.

    Subclasses (:class:`R5`, :class:`R4B`) give the element names and data types of their
    release; building code asks them instead of testing version strings.
    """

    name: ClassVar[str]
    models: ClassVar[str]

    def model(self, resource_type: str) -> Any:
        """The ``fhir.resources`` model class of ``resource_type`` in this release."""
        import importlib

        try:
            module = importlib.import_module(self.models)
        except ImportError as exc:
            raise ConfigError(
                "FHIR bundles need the fhir.resources package: pip install 'imagedepot[fhir]'"
            ) from exc
        return module.get_fhir_model_class(resource_type)

    def validate(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``resource`` with the release's model and return it as the model writes it.

        Raises :class:`FhirError` naming the resource type and the invalid elements.
        """
        from pydantic import ValidationError

        rtype = str(resource.get("resourceType", ""))
        try:
            model = self.model(rtype)
        except (KeyError, ValueError) as exc:
            raise FhirError(f"FHIR {self.name}: unknown resource type {rtype!r}") from exc
        try:
            obj = model.model_validate(dict(resource))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
            )
            raise FhirError(f"FHIR {self.name} {rtype} is invalid: {problems}") from exc
        data: dict[str, Any] = json.loads(obj.model_dump_json())
        return data

    # -- shapes (R5 by default; R4B overrides)

    def concept(self, coding: Mapping[str, Any]) -> Any:
        """A coded element that R5 types as CodeableConcept and R4B as Coding."""
        return {"coding": [dict(coding)]}

    def body_site(self, coding: Mapping[str, Any]) -> Any:
        """``ImagingStudy.series.bodySite``: CodeableReference in R5, Coding in R4B."""
        return {"concept": {"coding": [dict(coding)]}}

    def device_name(self, name: str) -> dict[str, Any]:
        """The Device's name elements."""
        return {"name": [{"value": name, "type": "user-friendly-name"}], "displayName": name}

    def group(self, identifier: Mapping[str, str], name: str) -> dict[str, Any]:
        """A Group standing for a non-human subject."""
        return {
            "resourceType": "Group",
            "identifier": [dict(identifier)],
            "type": "animal",
            "membership": "definitional",
            "name": name,
        }

    def consent(
        self,
        *,
        identifier: Mapping[str, str],
        subject: str,
        policy_uri: str,
        purposes: Sequence[Mapping[str, str]],
    ) -> dict[str, Any]:
        """A Consent that permits the data uses ``purposes`` (DUO codings) under the policy."""
        return {
            "resourceType": "Consent",
            "identifier": [dict(identifier)],
            "status": "active",
            "category": [_CONSENT_CATEGORY],
            "subject": {"reference": subject},
            "decision": "permit",
            "policyBasis": {"url": policy_uri},
            "provision": [{"purpose": [dict(p) for p in purposes]}] if purposes else None,
        }

    def endpoint(
        self, *, identifier: Mapping[str, str], name: str, kind: str, address: str, payload: str
    ) -> dict[str, Any]:
        """An Endpoint of connection type ``kind`` (``xnat`` or ``bia``)."""
        return {
            "resourceType": "Endpoint",
            "identifier": [dict(identifier)],
            "status": "active",
            "connectionType": [{"coding": [{"system": ENDPOINT_TYPE_SYSTEM, "code": kind}]}],
            "name": name,
            "payload": [{"type": [{"text": payload}]}],
            "address": address,
        }

    def encounter(
        self, *, identifier: Mapping[str, str], subject: str, date: str | None, klass: str
    ) -> dict[str, Any]:
        """A finished Encounter of class ``klass`` (v3 ActCode) starting on ``date``."""
        return {
            "resourceType": "Encounter",
            "identifier": [dict(identifier)],
            "status": "completed",
            "class": [{"coding": [_act_code(klass)]}],
            "subject": {"reference": subject},
            "actualPeriod": {"start": date} if date else None,
        }

    def condition_status(self) -> dict[str, Any]:
        """``Condition``'s clinical status elements (R5 requires one; its value is unknown)."""
        return {
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "unknown",
                    }
                ]
            }
        }


class R5(FhirRelease):
    """FHIR R5 (5.0.0), the default (``fhir.resources``)."""

    name = "R5"
    models = "fhir.resources"


class R4B(FhirRelease):
    """FHIR R4B (4.3.0) (``fhir.resources.R4B``)."""

    name = "R4B"
    models = "fhir.resources.R4B"

    def concept(self, coding: Mapping[str, Any]) -> Any:
        return dict(coding)

    def body_site(self, coding: Mapping[str, Any]) -> Any:
        return dict(coding)

    def device_name(self, name: str) -> dict[str, Any]:
        return {"deviceName": [{"name": name, "type": "user-friendly-name"}]}

    def group(self, identifier: Mapping[str, str], name: str) -> dict[str, Any]:
        return {
            "resourceType": "Group",
            "identifier": [dict(identifier)],
            "type": "animal",
            "actual": False,
            "name": name,
        }

    def consent(
        self,
        *,
        identifier: Mapping[str, str],
        subject: str,
        policy_uri: str,
        purposes: Sequence[Mapping[str, str]],
    ) -> dict[str, Any]:
        return {
            "resourceType": "Consent",
            "identifier": [dict(identifier)],
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "research",
                    }
                ]
            },
            "category": [_CONSENT_CATEGORY],
            "patient": {"reference": subject},
            "policy": [{"uri": policy_uri}],
            "provision": (
                {"type": "permit", "purpose": [dict(p) for p in purposes]} if purposes else None
            ),
        }

    def endpoint(
        self, *, identifier: Mapping[str, str], name: str, kind: str, address: str, payload: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "Endpoint",
            "identifier": [dict(identifier)],
            "status": "active",
            "connectionType": {"system": ENDPOINT_TYPE_SYSTEM, "code": kind},
            "name": name,
            "payloadType": [{"text": payload}],
            "address": address,
        }

    def encounter(
        self, *, identifier: Mapping[str, str], subject: str, date: str | None, klass: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "identifier": [dict(identifier)],
            "status": "finished",
            "class": _act_code(klass),
            "subject": {"reference": subject},
            "period": {"start": date} if date else None,
        }

    def condition_status(self) -> dict[str, Any]:
        return {}  # optional in R4B; not asserted when unknown


#: Supported releases by name (config ``fhir.version``).
RELEASES: Mapping[str, FhirRelease] = {"R5": R5(), "R4B": R4B()}

_CONSENT_CATEGORY = {
    "coding": [
        {
            "system": LOINC,
            "code": "57016-8",
            "display": "Privacy policy acknowledgement Document",
        }
    ]
}


def _act_code(code: str) -> dict[str, str]:
    return {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}


def release(name: str) -> FhirRelease:
    """The :class:`FhirRelease` called ``name`` (``R5`` or ``R4B``)."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ConfigError(
            f"fhir.version: unknown FHIR release {name!r} (known: {', '.join(RELEASES)})"
        ) from None
