"""The leak gate: look for identifiers of the original inputs in de-identified outputs.

:func:`harvest` collects identifiers (names, IDs, dates, UIDs, addresses...) from the original
inputs; :func:`scan` looks for them in every output file and folder; :func:`leakcheck` does both.
The result is a :class:`LeakReport` that names the file, the place in the file and the *kind* of
identifier found, never the identifier itself.

* :mod:`~imagedepot.leakcheck.harvesting`: what is harvested from which original files.
* :mod:`~imagedepot.leakcheck.scanner`: what is scanned in outputs, burned-in text and auxiliary
  images included; :func:`leakcheck` and :func:`allowed_kinds_for_options`.
* :mod:`~imagedepot.leakcheck.formats`: reading DICOM, NIfTI, gzip headers; telling files apart.
* :mod:`~imagedepot.leakcheck.report`: :class:`LeakReport` (counts, hits without values).

The identifier set and its matching rules are :mod:`imagedepot.identifiers`, shared with
de-identification; the leak gate imports nothing from :mod:`imagedepot.deid`.
"""

from __future__ import annotations

from imagedepot.identifiers import KINDS, Identifiers
from imagedepot.leakcheck.harvesting import harvest, text_identifiers
from imagedepot.leakcheck.report import LeakReport
from imagedepot.leakcheck.scanner import allowed_kinds_for_options, leakcheck, scan

__all__ = [
    "KINDS",
    "Identifiers",
    "LeakReport",
    "allowed_kinds_for_options",
    "harvest",
    "leakcheck",
    "scan",
    "text_identifiers",
]
