"""BIDS rules: the rules file parsed and checked (:func:`load_rules`), the first matching
rule of a sidecar (:class:`BidsRules`), and BIDS labels.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from imagedepot.errors import ConfigError

#: Version of the rules file format understood here.
RULES_VERSION = 1

#: Datatypes (folders) of the BIDS specification; others are "non-standard" (see bidsignore).
BIDS_DATATYPES = frozenset(
    {
        "anat",
        "beh",
        "dwi",
        "eeg",
        "fmap",
        "func",
        "ieeg",
        "meg",
        "micr",
        "motion",
        "mrs",
        "nirs",
        "perf",
        "pet",
    }
)

#: Entities a rule may set, in the order BIDS writes them in a file name (after sub and ses).
RULE_ENTITIES = ("task", "acq", "ce", "rec", "dir", "mod", "flip", "inv", "mt")


_RULE_KEYS = frozenset(
    {"name", "match", "datatype", "suffix", "entities", "labels_from", "echo", "part"}
)
_DATATYPE = re.compile(r"[a-z]+")
_SUFFIX = re.compile(r"[A-Za-z0-9]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9]")


def bids_label(text: str, what: str = "label") -> str:
    """``text`` with everything but letters and digits removed (a valid BIDS label).

    Raises
    ------
    ValueError
        When nothing is left.
    """
    label = _NOT_LABEL.sub("", str(text))
    if not label:
        raise ValueError(f"{what} {text!r} has no letter or digit: not usable as a BIDS label")
    return label


def field_text(sidecar: Mapping[str, Any], key: str) -> str | None:
    """A sidecar value as the rules see it (see the module docstring), None when absent."""
    if key not in sidecar or sidecar[key] is None:
        return None
    value = sidecar[key]
    if isinstance(value, list):
        return "\\".join(field_text({"v": v}, "v") or "" for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class BidsTarget:
    """Where one NIfTI goes: datatype folder, suffix, entities, and the rule that decided."""

    datatype: str
    suffix: str
    rule: str
    entities: tuple[tuple[str, str], ...] = ()
    echo: bool = True
    part: bool = True


@dataclass(frozen=True)
class BidsRule:
    """One rule: every condition must match (``(fields, pattern)``: any of the fields)."""

    name: str
    conditions: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]
    datatype: str
    suffix: str
    entities: tuple[tuple[str, str], ...] = ()
    labels_from: tuple[str, ...] = ()
    echo: bool = True
    part: bool = True

    def matches(self, sidecar: Mapping[str, Any]) -> bool:
        """True when every condition finds its pattern in one of its fields."""
        for fields, pattern in self.conditions:
            texts = (field_text(sidecar, f) for f in fields)
            if not any(t is not None and pattern.search(t) for t in texts):
                return False
        return True

    def target(self, sidecar: Mapping[str, Any]) -> BidsTarget:
        """The target of a matching sidecar, with labels read from ``labels_from``."""
        entities = dict(self.entities)
        for f in self.labels_from:
            text = field_text(sidecar, f) or ""
            for key, label in re.findall(r"(?<![A-Za-z0-9])([a-z]+)-([A-Za-z0-9]+)", text):
                if key in RULE_ENTITIES:
                    entities[key] = label
        ordered = tuple((k, entities[k]) for k in RULE_ENTITIES if k in entities)
        return BidsTarget(self.datatype, self.suffix, self.name, ordered, self.echo, self.part)


@dataclass(frozen=True)
class BidsRules:
    """An ordered rule list, its fallback and where it came from."""

    rules: tuple[BidsRule, ...]
    fallback: BidsTarget
    source: str = "<rules>"

    def target(self, sidecar: Mapping[str, Any]) -> BidsTarget:
        """The first matching rule's target, else the fallback."""
        for rule in self.rules:
            if rule.matches(sidecar):
                return rule.target(sidecar)
        return self.fallback

    def nonstandard_datatypes(self) -> list[str]:
        """Datatypes these rules can produce that the BIDS specification does not define."""
        used = {r.datatype for r in self.rules} | {self.fallback.datatype}
        return sorted(used - BIDS_DATATYPES)

    def bidsignore(self) -> str:
        """Lines for a ``.bidsignore`` file that hide the non-standard datatype folders."""
        return "".join(f"**/{d}/\n" for d in self.nonstandard_datatypes())


def _fields(spec: Any, where: str) -> tuple[str, ...]:
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}: a field name (or 'A|B') is needed, not {spec!r}")
    names = tuple(p.strip() for p in spec.split("|"))
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) for n in names):
        raise ConfigError(f"{where}: {spec!r} is not a field name or 'A|B' list of them")
    return names


def _target(spec: Mapping[str, Any], where: str) -> tuple[str, str]:
    datatype, suffix = spec.get("datatype"), spec.get("suffix")
    if not isinstance(datatype, str) or not _DATATYPE.fullmatch(datatype):
        raise ConfigError(f"{where}: datatype must be lower-case letters, not {datatype!r}")
    if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
        raise ConfigError(f"{where}: suffix must be letters and digits, not {suffix!r}")
    return datatype, suffix


def _rule(spec: Any, index: int, source: str) -> BidsRule:
    where = f"{source}: rule {index + 1}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a mapping is needed, not {type(spec).__name__}")
    name = str(spec.get("name") or f"rule-{index + 1}")
    where = f"{source}: rule {index + 1} ({name})"
    unknown = sorted(set(spec) - _RULE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_RULE_KEYS)}")
    match = spec.get("match")
    if not isinstance(match, Mapping) or not match:
        raise ConfigError(f"{where}: 'match' must map field names to regular expressions")
    conditions = []
    for key, pattern in match.items():
        fields = _fields(key, where)
        if not isinstance(pattern, str):
            raise ConfigError(f"{where}: pattern for {key!r} must be a string")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"{where}: bad regular expression for {key!r}: {exc}") from exc
        conditions.append((fields, compiled))
    datatype, suffix = _target(spec, where)
    entities = spec.get("entities") or {}
    if not isinstance(entities, Mapping):
        raise ConfigError(f"{where}: 'entities' must map entity names to labels")
    fixed = []
    for key in RULE_ENTITIES:
        if key in entities:
            try:
                fixed.append((key, bids_label(entities[key], f"entity {key}")))
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
    extra = sorted(set(entities) - set(RULE_ENTITIES))
    if extra:
        raise ConfigError(f"{where}: entities {extra} cannot be set; allowed: {RULE_ENTITIES}")
    labels_from = _fields(spec["labels_from"], where) if spec.get("labels_from") else ()
    for flag in ("echo", "part"):
        if not isinstance(spec.get(flag, True), bool):
            raise ConfigError(f"{where}: '{flag}' must be true or false")
    return BidsRule(
        name=name,
        conditions=tuple(conditions),
        datatype=datatype,
        suffix=suffix,
        entities=tuple(fixed),
        labels_from=labels_from,
        echo=bool(spec.get("echo", True)),
        part=bool(spec.get("part", True)),
    )


def parse_rules(data: Any, source: str = "<rules>") -> BidsRules:
    """Check and compile rules already read from YAML (see the module docstring).

    Raises
    ------
    ConfigError
        Naming the source, the rule and what to fix.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a mapping with 'bids_rules_version' and 'rules' is needed")
    unknown = sorted(set(data) - {"bids_rules_version", "fallback", "rules"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}")
    if data.get("bids_rules_version") != RULES_VERSION:
        raise ConfigError(
            f"{source}: bids_rules_version must be {RULES_VERSION}, "
            f"not {data.get('bids_rules_version')!r}"
        )
    rules = data.get("rules")
    if not isinstance(rules, list):
        raise ConfigError(f"{source}: 'rules' must be a list")
    fallback = data.get("fallback") or {"datatype": "unknown", "suffix": "unknown"}
    if not isinstance(fallback, Mapping) or set(fallback) - {"datatype", "suffix"}:
        raise ConfigError(f"{source}: 'fallback' must be {{datatype: ..., suffix: ...}}")
    datatype, suffix = _target(fallback, f"{source}: fallback")
    return BidsRules(
        rules=tuple(_rule(spec, i, source) for i, spec in enumerate(rules)),
        fallback=BidsTarget(datatype, suffix, "fallback"),
        source=source,
    )


def default_rules_text() -> str:
    """The text of the rules shipped with the package."""
    ref = resources.files("imagedepot") / "data" / "bids_rules.yaml"
    return ref.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _default_rules() -> BidsRules:
    from imagedepot.safeload import parse_yaml

    return parse_rules(parse_yaml(default_rules_text(), "bids_rules.yaml"), "bids_rules.yaml")


def load_rules(path: str | Path | None = None) -> BidsRules:
    """Load a rules file (``None``: the rules shipped with the package).

    Raises
    ------
    ConfigError
        The file cannot be read or is not valid (the message says where and what to fix).
    """
    from imagedepot.safeload import load_yaml

    if path is None:
        return _default_rules()
    return parse_rules(load_yaml(path, what="BIDS rules"), str(path))
