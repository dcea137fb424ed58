"""dcm2niix itself: the binary found (:func:`find_dcm2niix`), its version, a run of it, and
its messages cleaned of temporary paths.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from imagedepot.errors import ImagedepotError

log = logging.getLogger(__name__)


_LAUNCHER_MAX_BYTES = 64 * 1024


def _is_launcher(path: str) -> bool:
    """True for a small script (``#!``), such as the Python launcher the PyPI wheel installs."""
    try:
        if os.path.getsize(path) > _LAUNCHER_MAX_BYTES:
            return False
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def find_dcm2niix() -> str:
    """Return the path of the ``dcm2niix`` binary.

    Looked up on ``PATH``, then next to the running Python (a virtual environment's ``bin``), then
    inside the PyPI ``dcm2niix`` package. The launcher script that package installs in ``bin`` is
    skipped in favour of the binary it starts (one Python process fewer per series); it is used
    only when nothing else is found.

    Raises
    ------
    ImagedepotError
        When no binary is found (an installation problem, not a problem of the data).
    """
    exe_name = "dcm2niix.exe" if os.name == "nt" else "dcm2niix"
    candidates = [shutil.which("dcm2niix"), str(Path(sys.executable).parent / exe_name)]
    try:
        import dcm2niix

        candidates.insert(1, str(dcm2niix.bin))
    except ImportError:
        pass
    usable = [c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)]
    for c in usable:
        if not _is_launcher(c):
            return c
    if usable:
        return usable[0]
    raise ImagedepotError("dcm2niix not found: pip install dcm2niix (or put dcm2niix on PATH)")


@functools.lru_cache(maxsize=8)
def _version_of(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[-1].strip() if lines else None


def dcm2niix_version(exe: str | None = None) -> str | None:
    """Version printed by ``dcm2niix --version`` (e.g. ``v1.0.20240202``), or None.

    Asked of ``exe`` (default: :func:`find_dcm2niix`), the binary that converts; remembered for
    the life of the process.
    """
    return _version_of(exe or find_dcm2niix())


def _preload(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # the read-back imports it again and reports a failure there
        log.debug("preloading %s failed: %s", module, exc)


def _run(exe: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run dcm2niix; meanwhile import nibabel for the read-back in a thread (a fresh process,
    such as the workflow's CLI step, then pays for that import while dcm2niix works)."""
    with subprocess.Popen(
        [exe, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    ) as proc:
        loader = None
        if "nibabel" not in sys.modules:
            loader = threading.Thread(target=_preload, args=("nibabel",), daemon=True)
            loader.start()
        stdout, stderr = proc.communicate()
        if loader is not None:
            loader.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _clean_messages(text: str, replacements: dict[str, str]) -> list[str]:
    """dcm2niix's output lines without the banner, temporary paths replaced by placeholders."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if (
            not line
            or line.startswith(("Chris Rorden's dcm2niiX", "::"))
            or line == "Defaults ignored"
        ):
            continue
        for old, new in replacements.items():
            line = line.replace(old, new)
        lines.append(line)
    return lines


def _tool_message(lines: list[str]) -> str:
    """The lines worth quoting in an error: warnings and errors, else the last few lines."""
    picked = [
        ln
        for ln in lines
        if re.match(r"(?i)(error|warning|unsupported|unable|no valid|slices not stacked)", ln)
    ]
    return "; ".join((picked or lines)[-6:]) or "no message"
