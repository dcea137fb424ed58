"""The per-file action log: one entry per action, old values as keyed hashes."""

from __future__ import annotations

import functools
import hmac
from collections import Counter
from typing import Any

#: Hex characters of the keyed hash of an old value written to the action log.
ACTION_HASH_CHARS = 12


class _FileLog:
    """Actions taken on one file: counts always, entries only when an action log is wanted."""

    def __init__(self, key: bytes, keep_entries: bool) -> None:
        self.key = key
        self.keep_entries = keep_entries
        self.counts: Counter[str] = Counter()
        self.entries: list[dict[str, Any]] = []

    def add(
        self, where: str, tag: int, action: str, old: bytes | None = None, rule: str | None = None
    ) -> None:
        self.counts[action] += 1
        if not self.keep_entries:
            return
        # keys in sorted order: the log line is written without re-sorting
        entry: dict[str, Any] = {"action": action, "keyword": _keyword(tag)}
        if old:
            digest = hmac.digest(self.key, b"action-log\x00" + old, "sha256")
            entry["old_sha256"] = digest.hex()[:ACTION_HASH_CHARS]
        if where:
            entry["path"] = where
        if rule:
            entry["rule"] = rule
        entry["tag"] = _tagstr(tag)
        self.entries.append(entry)


@functools.cache
def _keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    if (tag >> 16) & 1:
        return "(private)"
    return keyword_for_tag(tag) or ""


@functools.lru_cache(maxsize=4096)
def _tagstr(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
