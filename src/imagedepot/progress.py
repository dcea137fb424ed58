"""Progress of long work: a bar on a terminal, periodic log lines elsewhere.

Library functions that go over many files or items take a ``progress`` argument (a
:class:`Progress`; the base class shows nothing) and call :meth:`Progress.start` with the amount of
work, then :meth:`Progress.advance` as it is done. The CLI picks how it is shown with
:func:`progress_for`: a tqdm bar when its stream is a terminal, plain log lines every
``interval`` seconds when it is not (a log file, a cluster job's output), so logs stay readable.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any, TextIO

log = logging.getLogger(__name__)

#: Seconds between two log lines of :class:`LogProgress` (the CLI's default).
LOG_INTERVAL = 10.0


class Progress:
    """Counts units of work done; shows nothing (what a library call gets by default).

    Parameters
    ----------
    desc
        What is being done, e.g. ``"scan"`` (starts each line or the bar).
    unit
        What is counted, e.g. ``"file"``.
    """

    def __init__(self, desc: str = "", unit: str = "file") -> None:
        self.desc = desc
        self.unit = unit
        self.total: int | None = None
        self.done = 0

    def start(self, total: int) -> None:
        """Set the amount of work, unless set already: a caller that splits the work over
        several calls (one per patient) sets the whole first, and the calls keep it."""
        if self.total is None:
            self.total = total
            self._started()

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.done += n
        self._advanced(n)

    def close(self) -> None:
        """The work is over (or stopped): finish the display."""

    def _started(self) -> None:
        """Hook: the total is known."""

    def _advanced(self, n: int) -> None:
        """Hook: ``n`` more units done."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LogProgress(Progress):
    """Log a line such as ``scan: 120/500 files (24%)`` at most every ``interval`` seconds, and a
    last line when closed (for output that is not a terminal)."""

    def __init__(
        self,
        desc: str = "",
        unit: str = "file",
        *,
        interval: float = LOG_INTERVAL,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__(desc, unit)
        self.interval = interval
        self._clock = clock
        self._began = clock()
        self._last = self._began
        self._closed = False

    def _line(self) -> str:
        if self.total:
            pct = 100 * self.done // self.total
            return f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct}%)"
        return f"{self.desc}: {self.done} {self.unit}s"

    def _advanced(self, n: int) -> None:
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            log.info("%s", self._line())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.done or self.total:
            elapsed = self._clock() - self._began
            log.info("%s in %.0f s", self._line(), elapsed)


class BarProgress(Progress):
    """A tqdm progress bar on ``stream`` (for a terminal)."""

    def __init__(self, desc: str = "", unit: str = "file", *, stream: TextIO | None = None) -> None:
        super().__init__(desc, unit)
        from tqdm import tqdm

        self.bar = tqdm(
            desc=desc, unit=unit, total=None, file=stream or sys.stderr, dynamic_ncols=True
        )

    def _started(self) -> None:
        self.bar.total = self.total
        self.bar.refresh()

    def _advanced(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or the stream is closed
        return False


def progress_for(
    desc: str,
    unit: str = "file",
    *,
    stream: TextIO | None = None,
    interval: float = LOG_INTERVAL,
) -> Progress:
    """The progress display for the CLI: a bar when ``stream`` (default: standard error) is a
    terminal, else :class:`LogProgress` lines every ``interval`` seconds."""
    out = stream if stream is not None else sys.stderr
    if _is_terminal(out):
        return BarProgress(desc, unit, stream=out)
    return LogProgress(desc, unit, interval=interval)
