"""``imagedepot demo DIR``: writes the demo, prints its root, needs --force to overwrite."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import imagedepot.cli
from imagedepot.cli import main


@pytest.fixture(autouse=True)
def only_demo_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    # Build the parser with this verb only, so these tests exercise `demo` alone
    # (test_help.py checks that every verb registers).
    monkeypatch.setattr(imagedepot.cli, "VERBS", ("demo",))


def test_demo_writes_the_inbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "demo"
    assert main(["demo", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target.absolute())
    assert (target / "samples.tsv").is_file()
    assert (target / "secrets" / "pseudonym.key").is_file()
    assert len(list((target / "inbox" / "DOE_JOHN_19650312").rglob("IM*"))) == 32


def test_demo_refuses_to_overwrite_without_force(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "demo"
    assert main(["demo", str(target)]) == 0
    with caplog.at_level(logging.ERROR):
        assert main(["demo", str(target)]) == 1
    assert "--force" in caplog.text
    assert main(["demo", str(target), "--force"]) == 0


def test_demo_help_says_what_it_writes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "CC0" in out and "fake PHI" in out and "--force" in out
