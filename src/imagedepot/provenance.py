"""Provenance records: what each step did, with inputs, options, policy and tool versions."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagedepot import __version__
from imagedepot.io import file_record, write_json

#: Python distributions whose versions are recorded when installed.
TRACKED_DISTRIBUTIONS = (
    "imagedepot",
    "numpy",
    "pydicom",
    "nibabel",
    "tifffile",
    "zarr",
    "dcm2niix",
    "scyjava",
    "jpype1",
    "python-bioformats",
    "fhir.resources",
    "xnat",
    "deid",
    "snakemake",
    "jsonschema",
    "openpyxl",
    "pyyaml",
)


def _dcm2niix_version() -> str | None:
    exe = shutil.which("dcm2niix")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[-1].strip() if text else None


def tool_versions(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """Return the versions of Python, the package and every tracked library that is installed."""
    versions: dict[str, str] = {"python": platform.python_version(), "imagedepot": __version__}
    for dist in TRACKED_DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    for key, value in (extra or {}).items():
        if value is not None:
            versions[key] = value
    return versions


def dcm2niix_version() -> str | None:
    """Version line printed by the ``dcm2niix`` binary on PATH, if any."""
    return _dcm2niix_version()


def now() -> str:
    """UTC timestamp in ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


#: The reproducible-builds variable (seconds since the epoch): when set, every timestamp of
#: the staged output is this time.
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"


def latest_mtime(paths: Iterable[str | Path]) -> str | None:
    """The latest modification time of ``paths`` (UTC, ISO 8601), or None if none can be read."""
    times = []
    for p in paths:
        try:
            times.append(os.lstat(p).st_mtime)
        except OSError:
            continue
    if not times:
        return None
    return dt.datetime.fromtimestamp(int(max(times)), dt.UTC).isoformat(timespec="seconds")


def data_time(candidates: Iterable[str | None] = ()) -> str:
    """The one timestamp of staged (published) records: reproducible, never the wall clock of a step.

    ``$SOURCE_DATE_EPOCH`` when set, else the latest of ``candidates`` (the items' ``data_time``:
    the latest modification time of their input files, recorded by the scan), else now. Two runs
    from the same inputs with the same key thus stage identical bytes (``MANIFEST.sha256``).
    """
    epoch = os.environ.get(SOURCE_DATE_EPOCH, "").strip()
    if epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC).isoformat(timespec="seconds")
    known = sorted(c for c in candidates if c)
    return known[-1] if known else now()


@dataclass
class Provenance:
    """What one step did. ``status`` is ``processed`` or ``quarantined`` (then ``reason`` says why)."""

    step: str
    item: str | None = None
    status: str = "processed"
    reason: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=tool_versions)
    started: str = field(default_factory=now)
    ended: str | None = None

    def add_inputs(self, paths: Iterable[str | Path], root: str | Path | None = None) -> None:
        """Record inputs with size and sha256."""
        self.inputs.extend(file_record(p, root) for p in paths)

    def add_outputs(self, paths: Iterable[str | Path], root: str | Path | None = None) -> None:
        """Record outputs with size and sha256."""
        self.outputs.extend(file_record(p, root) for p in paths)

    def quarantine(self, reason: str) -> None:
        """Mark the step's item as quarantined."""
        self.status = "quarantined"
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        """Stamp the end time and write the record as JSON (atomically)."""
        self.ended = now()
        return write_json(path, self.to_dict())
