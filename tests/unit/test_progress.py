"""Progress of long work: a bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import select
import struct
import sys
import termios
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagedepot.cli import main
from imagedepot.progress import BarProgress, LogProgress, Progress, progress_for


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A pseudo-terminal: the stream to write to (a TTY) and the fd to read what it showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 x 100
    stream = os.fdopen(slave, "w", encoding="utf-8")
    try:
        yield stream, master
    finally:
        stream.close()
        os.close(master)


def _read(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out.decode("utf-8", "replace")


def test_log_lines_come_at_most_every_interval_and_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    with (
        caplog.at_level(logging.INFO, logger="imagedepot.progress"),
        LogProgress("scan", interval=10, clock=clock) as progress,
    ):
        progress.start(40)
        for step in range(40):
            clock.now = step * 1.0  # one file a second: a line every 10 s
            progress.advance()
        clock.now = 41.0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "scan: 11/40 files (27%)",
        "scan: 21/40 files (52%)",
        "scan: 31/40 files (77%)",
        "scan: 40/40 files (100%) in 41 s",
    ]


def test_the_first_total_set_is_kept() -> None:
    progress = Progress("deid")
    progress.start(10)  # the caller knows the whole (several patients)
    progress.start(4)  # one call, for one patient
    assert progress.total == 10


def test_not_a_terminal_gives_log_lines() -> None:
    assert isinstance(progress_for("scan", stream=io.StringIO()), LogProgress)


def test_a_terminal_gives_a_bar(terminal: tuple[io.TextIOWrapper, int]) -> None:
    stream, master = terminal
    with progress_for("scan", stream=stream) as progress:
        assert isinstance(progress, BarProgress)
        progress.start(3)
        for _ in range(3):
            progress.advance()
    stream.flush()
    shown = _read(master)
    assert "scan" in shown and "3/3" in shown and "100%" in shown


def _inbox(tmp_path: Path, dicom_factory: Callable[..., Path]) -> Path:
    inbox = tmp_path / "inbox"
    for i in range(3):
        dicom_factory(inbox / f"im{i}", study="1.2", series="1.2.1", instance=i + 1)
    return inbox


def test_cli_scan_logs_progress_when_not_on_a_terminal(
    tmp_path: Path,
    dicom_factory: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = _inbox(tmp_path, dicom_factory)
    with caplog.at_level(logging.INFO, logger="imagedepot.progress"):
        assert main(["scan", str(inbox), "--out", str(tmp_path / "m.json")]) == 0
    assert any(r.getMessage().startswith("scan: 3/3 files (100%)") for r in caplog.records)


def test_cli_scan_shows_a_bar_on_a_terminal(
    tmp_path: Path,
    dicom_factory: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    terminal: tuple[io.TextIOWrapper, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream, master = terminal
    inbox = _inbox(tmp_path, dicom_factory)
    monkeypatch.setattr(sys, "stderr", stream)
    with caplog.at_level(logging.INFO, logger="imagedepot.progress"):
        assert main(["scan", str(inbox), "--out", str(tmp_path / "m.json")]) == 0
    stream.flush()
    shown = _read(master)
    assert "scan" in shown and "3/3" in shown
    assert not [r for r in caplog.records if r.name == "imagedepot.progress"]  # a bar, no lines


def _task(n: int) -> tuple[str, str]:
    return str(n), "processed"


@pytest.mark.parametrize("jobs", [1, 2])
def test_batch_steps_advance_once_per_item(jobs: int) -> None:
    from imagedepot.pipeline import run_parallel

    progress = Progress("batch 0 convert", "item")
    assert run_parallel(_task, [1, 2, 3], jobs, preload=(), progress=progress) == {
        "1": "processed",
        "2": "processed",
        "3": "processed",
    }
    assert (progress.total, progress.done) == (3, 3)
