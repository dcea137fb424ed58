"""The synthetic burned-in text corpus (made by code, ground-truth boxes), once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagedepot.synthetic.burned_in import CorpusCase, make_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusCase]:
    out: Path = tmp_path_factory.mktemp("burned-in")
    return {c.name: c for c in make_corpus(out, seed=0, scale="test")}
