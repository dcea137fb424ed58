"""Clinical resources of a bundle: ``Encounter``, ``Condition`` and ``Observation``.

:func:`clinical_resources` maps the facts linked by :func:`imagedepot.clinical.link_clinical` to
``Encounter``, ``Condition`` and ``Observation`` resources with stable identifiers (conditional
creates), linked to the Patient.
"""

from __future__ import annotations

from typing import Any

from imagedepot.clinical.records import MEASUREMENTS, ClinicalLinkage
from imagedepot.fhir.bundle import Planned
from imagedepot.fhir.releases import FhirRelease
from imagedepot.fhir.terminology import LOINC, UCUM


def clinical_resources(
    linkage: ClinicalLinkage,
    *,
    release: FhirRelease,
    subject: str,
    identifier_system: str,
) -> list[Planned]:
    """``Encounter``, ``Condition`` and ``Observation`` resources of the linked facts.

    Identifiers are ``<identifier_system>/encounter|<key>`` (``/condition``, ``/observation``):
    conditional creates, the same in every bundle of the subject.
    """
    out: list[Planned] = []
    enc_urls: dict[str, str] = {}
    for fact in linkage.facts:
        if fact.kind != "encounter":
            continue
        ident = (f"{identifier_system}/encounter", fact.key)
        planned = Planned(
            release.encounter(
                identifier={"system": ident[0], "value": ident[1]},
                subject=subject,
                date=fact.date,
                klass=fact.encounter_class or "AMB",
            ),
            identifier=ident,
        )
        enc_urls[fact.key] = planned.full_url
        out.append(planned)
    for fact in linkage.facts:
        enc = {"reference": enc_urls[fact.encounter]} if fact.encounter in enc_urls else None
        if fact.kind == "condition" and fact.code is not None:
            ident = (f"{identifier_system}/condition", fact.key)
            code: dict[str, Any] = {"coding": [{"system": fact.code[0], "code": fact.code[1]}]}
            if fact.text:
                code["text"] = fact.text
            out.append(
                Planned(
                    {
                        "resourceType": "Condition",
                        "identifier": [{"system": ident[0], "value": ident[1]}],
                        **release.condition_status(),
                        "category": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                        "code": "encounter-diagnosis",
                                    }
                                ]
                            }
                        ],
                        "code": code,
                        "subject": {"reference": subject},
                        "encounter": enc,
                        "recordedDate": fact.date,
                    },
                    identifier=ident,
                )
            )
        elif fact.kind == "observation" and fact.code is not None and fact.value is not None:
            kind = MEASUREMENTS[fact.code[1]]
            ident = (f"{identifier_system}/observation", fact.key)
            out.append(
                Planned(
                    {
                        "resourceType": "Observation",
                        "identifier": [{"system": ident[0], "value": ident[1]}],
                        "status": "final",
                        "category": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                        "code": "vital-signs",
                                    }
                                ]
                            }
                        ],
                        "code": {
                            "coding": [
                                {"system": LOINC, "code": kind.loinc, "display": kind.display}
                            ]
                        },
                        "subject": {"reference": subject},
                        "encounter": enc,
                        "effectiveDateTime": fact.date,
                        "valueQuantity": {
                            "value": fact.value,
                            "unit": kind.unit,
                            "system": UCUM,
                            "code": kind.unit,
                        },
                    },
                    identifier=ident,
                )
            )
    return out
