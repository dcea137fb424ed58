"""``imagedepot scan``: the console shows the first quarantine reasons, not only the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagedepot.cli import main


def test_scan_prints_the_first_five_quarantine_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dicom_factory
) -> None:
    inbox = tmp_path / "inbox"
    dicom_factory(inbox / "good" / "im0", study="1.2", series="1.2.1", instance=1)
    for i in range(7):
        (inbox / "notes" / f"n{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (inbox / "notes" / f"n{i}.txt").write_text("x")
    (inbox / "out").symlink_to(tmp_path)
    assert main(["scan", str(inbox), "--out", str(tmp_path / "m.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("scan: 1 item(s) (1 to process, 0 excluded), 8 file(s) quarantined")
    assert lines[1:] == [
        *(f"  quarantined notes/n{i}.txt: not a recognised image file" for i in range(5)),
        "  ... and 3 more quarantined, each with its reason in the manifest",
    ]


def test_scan_prints_every_reason_when_few(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "gone").symlink_to(tmp_path / "missing")
    assert main(["scan", str(inbox), "--out", str(tmp_path / "m.json")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  quarantined gone: broken symbolic link (its target is missing or the links loop)"
    ]
