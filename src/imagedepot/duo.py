"""GA4GH Data Use Ontology (DUO) terms: which codes a policy may publish, and where.

A policy's ``data_use`` has one *permission* (what the data may be used for, e.g.
``DUO:0000042`` general research use) and any number of *modifiers* (conditions on that use,
e.g. ``DUO:0000019`` publication required). These codes travel with the data (provenance, FHIR
Consent, deposit metadata), so an unknown code, or a modifier given as the permission, is an
error, never published.

The terms are those of one DUO release, shipped in ``imagedepot/data/duo-terms.json`` with its
version, licence (CC BY 4.0) and attribution; :data:`DUO_RELEASE` names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

__all__ = ["DUO_RELEASE", "DuoTerm", "data_use_problems", "duo_release", "duo_terms"]

_RESOURCE = "duo-terms.json"


@dataclass(frozen=True)
class DuoTerm:
    """One DUO term: ``kind`` is ``permission``, ``modifier`` or ``class`` (a parent, not a term
    to tag data with)."""

    id: str
    shorthand: str
    label: str
    kind: str

    def describe(self) -> str:
        """``DUO:0000042 (GRU, general research use)``."""
        name = f"{self.shorthand}, {self.label}" if self.shorthand else self.label
        return f"{self.id} ({name})"


@cache
def _table() -> tuple[dict[str, str], Mapping[str, DuoTerm]]:
    text = resources.files("imagedepot").joinpath("data", _RESOURCE).read_text(encoding="utf-8")
    data = json.loads(text)
    header = {k: str(v) for k, v in data.items() if k != "terms"}
    terms = {
        t["id"]: DuoTerm(t["id"], t["shorthand"], t["label"], t["kind"]) for t in data["terms"]
    }
    return header, MappingProxyType(terms)


def duo_terms() -> Mapping[str, DuoTerm]:
    """The shipped DUO terms by CURIE (``DUO:NNNNNNN``)."""
    return _table()[1]


def duo_release() -> dict[str, str]:
    """Version, version IRI, licence and attribution of the shipped DUO terms."""
    return dict(_table()[0])


#: The DUO release the shipped terms come from (its date).
DUO_RELEASE: str = duo_release()["version"]


def _listing(kind: str) -> str:
    return ", ".join(t.id for t in duo_terms().values() if t.kind == kind)


def _problem(code: str, rule: str, want: str) -> str | None:
    term = duo_terms().get(code)
    if term is None:
        return (
            f"{rule}: {code!r} is not a DUO {want} term of DUO release {DUO_RELEASE} "
            f"(imagedepot/data/duo-terms.json); known {want}s: {_listing(want)}"
        )
    if term.kind == want:
        return None
    if term.kind == "class":
        return (
            f"{rule}: {term.describe()} is a DUO parent class, not a term to tag data with; "
            f"use one of its terms: {_listing(want)}"
        )
    if want == "permission":
        return (
            f"{rule}: {term.describe()} is a DUO modifier, not a permission; list it under "
            f"data_use.modifiers and give one permission ({_listing('permission')})"
        )
    return (
        f"{rule}: {term.describe()} is a DUO permission, not a modifier; a policy has one "
        "permission, in data_use.permission"
    )


def data_use_problems(permission: object, modifiers: Iterable[object]) -> list[str]:
    """What is wrong with a policy's DUO codes (messages name the rule and the code).

    ``permission`` must be a permission term and each of ``modifiers`` a modifier term of
    :data:`DUO_RELEASE`; an unknown code, a parent class, or a term in the wrong place is a
    problem.
    """
    problems = []
    checks = [("data_use.permission", permission, "permission")]
    checks += [(f"data_use.modifiers[{i}]", c, "modifier") for i, c in enumerate(modifiers)]
    for rule, code, want in checks:
        if not isinstance(code, str):
            problems.append(f"{rule}: {code!r} is not a DUO code (DUO:NNNNNNN)")
            continue
        problem = _problem(code, rule, want)
        if problem is not None:
            problems.append(problem)
    return problems
