"""A parsed recipe: its header actions, its filter labels and which action wins on an element."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagedepot.deid.recipe.fields import PRIORITY, FieldSpec, _names
from imagedepot.deid.rules import Criteria, PixelRule, Region

# --------------------------------------------------------------------------------------------
# Parsed recipe


@dataclass(frozen=True)
class HeaderAction:
    """One ``%header`` line."""

    line: int
    action: str
    field: FieldSpec
    value: str | None = None

    @property
    def days(self) -> int:
        """JITTER: the number of days."""
        return int(self.value or 0)


@dataclass(frozen=True)
class FilterLabel:
    """One ``LABEL`` of a ``%filter`` section."""

    line: int
    group: str
    name: str
    criteria: Criteria
    regions: tuple[Region, ...] = ()
    keep: tuple[Region, ...] = ()
    regions_from: tuple[str, ...] = ()
    keep_from: tuple[str, ...] = ()

    @property
    def has_coordinates(self) -> bool:
        """True if the label says where text is."""
        return bool(self.regions or self.keep or self.regions_from or self.keep_from)


@dataclass(frozen=True)
class Recipe:
    """A parsed deid recipe. Build it with :func:`load_recipe` or :func:`parse_recipe`."""

    name: str
    sha256: str
    actions: tuple[HeaderAction, ...] = ()
    labels: tuple[FilterLabel, ...] = ()
    superseded: tuple[int, ...] = ()
    skipped_filters: int = 0
    _cache: dict[tuple[int, str | None], tuple[str, HeaderAction] | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            Recipe,
            (
                self.name,
                self.sha256,
                self.actions,
                self.labels,
                self.superseded,
                self.skipped_filters,
            ),
        )

    @property
    def jitters(self) -> bool:
        """True if the recipe moves dates."""
        return any(a.action == "JITTER" for a in self.actions)

    def pixel_rules(self, source: str | None = None) -> tuple[PixelRule, ...]:
        """The ``%filter`` labels as pixel rules (whitelist labels left out)."""
        src = source or f"deid recipe {self.name}"
        out = []
        for lab in self.labels:
            if lab.group.casefold() == "whitelist":
                continue
            out.append(
                PixelRule(
                    name=f"{lab.group}:{lab.name}:{lab.line}",
                    regions=lab.regions,
                    criteria=lab.criteria,
                    keep=lab.keep,
                    regions_from=lab.regions_from,
                    keep_from=lab.keep_from,
                    source=src,
                )
            )
        return tuple(out)

    def to_provenance(self) -> dict[str, Any]:
        """What provenance records about the recipe (no values, no paths)."""
        counts: dict[str, int] = {}
        for a in self.actions:
            counts[a.action] = counts.get(a.action, 0) + 1
        return {
            "name": self.name,
            "sha256": self.sha256,
            "header_actions": dict(sorted(counts.items())),
            "filter_labels": len(self.labels),
            "superseded_lines": list(self.superseded),
            "precedence": "after the PS3.15 profile; cannot keep what the profile removes",
        }

    @property
    def method_text(self) -> str:
        """The value added to De-identification Method (at most 64 characters)."""
        return f"deid recipe sha256:{self.sha256[:16]}"

    def winner(self, tag: int, creator: str | None) -> tuple[str, HeaderAction] | None:
        """The action that applies to an element with this tag (and private creator)."""
        key = (tag, creator)
        if key in self._cache:
            return self._cache[key]
        keyword, name = _names(tag)
        best: tuple[int, HeaderAction] | None = None
        for act in self.actions:
            if act.action == "ADD":
                continue  # ADD sets one top-level attribute, after the walk
            if act.field.matches(tag, keyword, name, creator):
                rank = PRIORITY.index(act.action)
                if best is None or rank <= best[0]:
                    best = (rank, act)
        result = (best[1].action, best[1]) if best is not None else None
        self._cache[key] = result
        return result
