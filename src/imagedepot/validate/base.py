"""What every checker returns, and the helpers they share."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ValidationResult:
    """The outcome of checking one path.

    Attributes
    ----------
    path
        What was checked.
    kind
        What it was taken for: ``dicom``, ``fhir-bundle``, ``pagetab``, ``pagetab-tsv``,
        ``file-list``, ``bagit``, ``ro-crate``, ``manifest``, ``ome-zarr``, ``ome-tiff``,
        ``nifti``, or ``unknown``.
    errors
        What is wrong; empty when valid.
    info
        What was found (version, images, counts...).
    skipped
        True for a file met while walking a folder that no checker handles (a log, a JSON
        record...): listed, neither valid nor invalid.
    """

    path: str
    kind: str
    errors: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    @property
    def valid(self) -> bool:
        """True when no error was found."""
        return not self.errors

    @property
    def status(self) -> str:
        """``valid``, ``invalid`` or ``skipped``."""
        if self.skipped:
            return "skipped"
        return "valid" if self.valid else "invalid"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (with ``valid`` and ``status``)."""
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "valid": self.valid,
            "errors": list(self.errors),
            "info": self.info,
        }


def need(module: str, package: str) -> Any:
    """Import ``module`` or raise ``RuntimeError`` saying which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"validation needs {package}: pip install {package}") from exc


__all__ = ["ValidationResult", "need"]
