"""Every verb and subcommand describes itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imagedepot.cli import VERBS, build_parser, main


def test_top_level_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


def _subcommands(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_and_subcommand_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = dict(_subcommands(build_parser()))[verb]
    assert parser.description or parser.format_help()
    paths = [[verb]] + [[verb, sub] for sub, _ in _subcommands(parser)]
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        assert "usage: imagedepot" in capsys.readouterr().out


def test_python_dash_m() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "imagedepot", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("imagedepot ")
