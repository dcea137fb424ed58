"""Converter tests: skip the Bio-Formats tests cleanly where Java or the jar is missing."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``bioformats`` when Bio-Formats cannot run here (one JVM per session)."""
    from imagedepot.convert.bioformats import unavailable_reason

    reason = None
    for item in items:
        if item.get_closest_marker("bioformats") is None:
            continue
        if reason is None:
            reason = unavailable_reason() or ""
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"Bio-Formats unavailable: {reason}"))
