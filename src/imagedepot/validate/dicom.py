"""De-identified DICOM: PS3.15 conformance markers, private tags, and IOD validity by dciodvfy.

A file passes when

* Patient Identity Removed is ``YES`` and De-identification Method is present;
* De-identification Method Code Sequence has items, every one a CID 7050 code (``DCM``) known
  to :mod:`imagedepot.deid.profile`, the Basic Application Confidentiality Profile (113100)
  among them, and the text of De-identification Method names each code's meaning;
* Longitudinal Temporal Information Modified, when present, is a defined term;
* it holds no private attribute at any depth, or, when the Retain Safe Private Option (113111)
  is claimed, only attributes of the curated safe-private list (with their private creators);
* ``dciodvfy`` (Debian's ``dicom3tools``, an independent IOD validator) reports no error.

:func:`iod_errors` runs dciodvfy on one file; :func:`new_errors` compares two runs (an original
and its de-identified output) with the values in the messages masked, so that a UID or a name
that de-identification changed does not make the same error look new.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from imagedepot.validate.base import ValidationResult

#: The IOD validator (Debian package ``dicom3tools``).
DCIODVFY = "dciodvfy"
#: Seconds one dciodvfy run may take.
DCIODVFY_TIMEOUT = 120
#: IOD errors listed one by one in a result (the count is always in ``info``).
MAX_LISTED = 20

_RETAIN_SAFE_PRIVATE = "113111"
_TEMPORAL_TERMS = frozenset({"UNMODIFIED", "MODIFIED", "REMOVED"})


def is_dicom(path: Path) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the preamble)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def iod_errors(path: str | Path) -> list[str]:
    """The ``Error - ...`` lines dciodvfy prints for ``path`` (empty for a valid IOD).

    Raises ``RuntimeError`` when dciodvfy is not installed or does not finish.
    """
    exe = shutil.which(DCIODVFY)
    if exe is None:
        raise RuntimeError(
            "dciodvfy is not installed (Debian package dicom3tools): IOD validity not checked"
        )
    try:
        run = subprocess.run(
            [exe, str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=DCIODVFY_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"dciodvfy did not finish in {DCIODVFY_TIMEOUT} s") from exc
    lines = (run.stdout + "\n" + run.stderr).splitlines()
    return [line.strip() for line in lines if line.startswith("Error")]


_QUOTED = re.compile(r'"[^"]*"')
_VALUE = re.compile(r"= <[^>]*>")
_UID = re.compile(r"\b\d+(?:\.\d+)+\b")
_TRAILING_UID = re.compile(r"(UID) \S+$")


def normalise_error(line: str) -> str:
    """``line`` with the values it quotes masked (UIDs, quoted and ``= <...>`` values)."""
    line = _QUOTED.sub('"…"', line)
    line = _VALUE.sub("= <…>", line)
    line = _UID.sub("<uid>", line)
    return _TRAILING_UID.sub(r"\1 <uid>", line)


def new_errors(before: Iterable[str], after: Iterable[str]) -> list[str]:
    """Errors of ``after`` that ``before`` does not have (as many times as they are extra),
    compared with :func:`normalise_error`."""
    extra = Counter(normalise_error(e) for e in after) - Counter(normalise_error(e) for e in before)
    return sorted(extra.elements())


def _walk(ds: Any) -> Iterator[Any]:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _walk(item)


def _check_method(ds: Any, result: ValidationResult) -> set[str]:
    """Conformance markers; returns the code values claimed."""
    from imagedepot.deid import profile

    if str(ds.get("PatientIdentityRemoved", "")).strip().upper() != "YES":
        result.errors.append("Patient Identity Removed (0012,0062) is not YES")
    method = ds.get("DeidentificationMethod")
    texts = [str(v) for v in (method if isinstance(method, list | tuple) else [method]) if v]
    if not texts:
        result.errors.append("De-identification Method (0012,0063) is missing or empty")
    known = {c.value: c for c in [profile.BASIC_PROFILE_CODE, *profile.OPTION_CODES.values()]}
    claimed: set[str] = set()
    items = ds.get("DeidentificationMethodCodeSequence") or []
    if not items:
        result.errors.append("De-identification Method Code Sequence (0012,0064) has no item")
    for n, item in enumerate(items):
        value = str(item.get("CodeValue", "")).strip()
        scheme = str(item.get("CodingSchemeDesignator", "")).strip()
        code = known.get(value)
        if code is None or scheme != code.scheme:
            result.errors.append(
                f"De-identification Method Code Sequence item {n}: {scheme}:{value} is not "
                "a CID 7050 code of the profile or its options"
            )
            continue
        claimed.add(value)
        if not any(code.meaning.lower() in t.lower() for t in texts):
            result.errors.append(
                f"De-identification Method does not name {code.meaning!r}, which its code "
                "sequence claims"
            )
    if items and profile.BASIC_PROFILE_CODE.value not in claimed:
        result.errors.append(
            "De-identification Method Code Sequence does not claim the Basic Application "
            "Confidentiality Profile (113100)"
        )
    temporal = ds.get("LongitudinalTemporalInformationModified")
    if temporal is not None and str(temporal).strip() not in _TEMPORAL_TERMS:
        result.errors.append(
            "Longitudinal Temporal Information Modified (0028,0303) is not one of "
            + ", ".join(sorted(_TEMPORAL_TERMS))
        )
    result.info["options_claimed"] = sorted(claimed - {profile.BASIC_PROFILE_CODE.value})
    return claimed


def _check_private(ds: Any, safe_retained: bool, result: ValidationResult) -> None:
    from imagedepot.deid.dicom import safe_private_attributes

    safe = safe_private_attributes() if safe_retained else frozenset()
    found = 0
    for elem in _walk(ds):
        if not elem.tag.is_private:
            continue
        if safe_retained and elem.tag.is_private_creator:
            continue
        creator = ""
        if safe_retained:
            with_block = getattr(elem, "private_creator", None)
            creator = str(with_block or "").strip().casefold()
        key = (creator, elem.tag.group, elem.tag.element & 0xFF)
        if not (safe_retained and elem.tag.element >= 0x1000 and key in safe):
            found += 1
            if found <= MAX_LISTED:
                what = "not on the safe-private list" if safe_retained else "private attribute"
                result.errors.append(f"{elem.tag} {what}")
    if found > MAX_LISTED:
        result.errors.append(f"... {found - MAX_LISTED} more private attribute(s)")


def check_dicom(path: Path, result: ValidationResult, *, iod: bool = True) -> None:
    """Check one de-identified DICOM file (see the module docstring); ``iod=False`` skips
    dciodvfy."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        result.errors.append(f"pydicom cannot read it: {exc}")
        return
    result.info["sop_class"] = str(ds.get("SOPClassUID", ""))
    claimed = _check_method(ds, result)
    _check_private(ds, _RETAIN_SAFE_PRIVATE in claimed, result)
    if not iod:
        return
    try:
        errors = iod_errors(path)
    except RuntimeError as exc:
        result.errors.append(str(exc))
        return
    result.info["iod_errors"] = len(errors)
    result.errors += [f"dciodvfy: {e}" for e in errors[:MAX_LISTED]]
    if len(errors) > MAX_LISTED:
        result.errors.append(f"dciodvfy: ... {len(errors) - MAX_LISTED} more error(s)")


__all__ = ["check_dicom", "iod_errors", "is_dicom", "new_errors", "normalise_error"]
