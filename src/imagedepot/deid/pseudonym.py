"""Keyed pseudonymisation: subject IDs, UIDs and date shifts derived with HMAC-SHA256.

The same key gives the same pseudonyms across batches and runs; another key gives unrelated ones.
The key is read from an environment variable or a key file and is never logged or written out.

:func:`date_mode` and :func:`shift_date_value` say what a policy does with a date and apply it;
the NIfTI sidecar, OME and clinical-record cleaners share them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imagedepot.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "IMAGEDEPOT_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16


#: What ``pseudonymisation.key_permissions`` may say about a key file readable by group or others.
KEY_PERMISSIONS = ("warn", "refuse")
_WARNED: set[str] = set()  # key files warned about by this process (once each, not per item)


def check_key_file_mode(key_file: str | Path, permissions: str = "warn") -> None:
    """Warn about (or, with ``permissions="refuse"``, refuse) a key file readable by others.

    A key file should be mode 0600 (or 0400): whoever reads the key can re-identify every
    pseudonym. Raises :class:`ConfigError` naming the file and the fix; never shows the key.
    """
    if permissions not in KEY_PERMISSIONS:
        raise ConfigError(
            f"pseudonymisation.key_permissions: {permissions!r} is not one of {list(KEY_PERMISSIONS)}"
        )
    mode = Path(key_file).stat().st_mode & 0o777
    if not mode & 0o077:
        return
    message = (
        f"key file {key_file} is readable or writable by group or others (mode {mode:04o}); "
        f"run `chmod 600 {key_file}`"
    )
    if permissions == "refuse":
        raise ConfigError(f"{message} (pseudonymisation.key_permissions is refuse)")
    if str(key_file) in _WARNED:
        return
    _WARNED.add(str(key_file))
    log.warning("%s (set pseudonymisation.key_permissions: refuse to stop on this)", message)


def load_key(
    key_env: str | None = DEFAULT_KEY_ENV,
    key_file: str | Path | None = None,
    *,
    key_permissions: str = "warn",
) -> bytes:
    """Return the secret key: from ``$key_env`` if set, else from ``key_file``.

    A key file readable by group or others is warned about, or refused when ``key_permissions``
    is ``"refuse"`` (:func:`check_key_file_mode`). Raises :class:`ConfigError` (without
    revealing any key material) when neither gives a key of at least 16 bytes.
    """
    if key_env and os.environ.get(key_env):
        key = os.environ[key_env].encode("utf-8")
        source = f"environment variable {key_env}"
    elif key_file is not None and Path(key_file).is_file():
        check_key_file_mode(key_file, key_permissions)
        key = Path(key_file).read_bytes().strip()
        source = f"key file {key_file}"
    else:
        raise ConfigError(
            f"no pseudonymisation key: set the environment variable {key_env or '(none)'} "
            f"or point pseudonymisation.key_file at a file (given: {key_file})"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"pseudonymisation key from {source} is shorter than {MIN_KEY_BYTES} bytes"
        )
    return key


def _digest(key: bytes, domain: str, value: str) -> bytes:
    return hmac.new(key, f"{domain}\x00{value}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Pseudonymizer:
    """Deterministic keyed pseudonyms.

    Parameters
    ----------
    key
        Secret key bytes (HMAC-SHA256).
    prefix
        Prefix of pseudonymous subject IDs (e.g. ``"SUBJ"`` gives ``SUBJ-7Q3K9D2M4XHA``).
    max_shift_days
        Dates are shifted back by 1..``max_shift_days`` days, one offset per subject.
    """

    key: bytes = field(repr=False)
    prefix: str = "SUBJ"
    max_shift_days: int = 3650

    def subject_id(self, original: str) -> str:
        """Pseudonymous subject ID: prefix plus 12 base32 characters of the keyed hash."""
        code = base64.b32encode(_digest(self.key, "subject", original.strip())).decode()[:12]
        return f"{self.prefix}-{code}" if self.prefix else code

    def uid(self, original: str) -> str:
        """Remap a DICOM UID to a ``2.25.`` UID (at most 64 characters), the same everywhere."""
        value = int.from_bytes(_digest(self.key, "uid", original.strip())[:16], "big")
        return f"2.25.{value}"

    def date_offset_days(self, subject: str) -> int:
        """Per-subject date offset in days, negative, in ``[-max_shift_days, -1]``."""
        n = int.from_bytes(_digest(self.key, "date", subject.strip())[:8], "big")
        return -(1 + n % self.max_shift_days)

    def shift_date(self, value: str, subject: str) -> str:
        """Shift a DICOM DA (``YYYYMMDD``) or ISO date (``YYYY-MM-DD``) keeping its format.

        Raises ``ValueError`` for a value that is not a date.
        """
        v = value.strip()
        delta = dt.timedelta(days=self.date_offset_days(subject))
        if re.fullmatch(r"\d{8}", v):
            return (dt.datetime.strptime(v, "%Y%m%d").date() + delta).strftime("%Y%m%d")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            return (dt.date.fromisoformat(v) + delta).isoformat()
        raise ValueError(f"not a date: {value!r}")

    def shift_datetime(self, value: str, subject: str) -> str:
        """Shift a DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, any precision from the date on)
        or an ISO 8601 date-time, keeping the time of day and the format."""
        v = value.strip()
        m = re.fullmatch(r"(\d{8})(.*)", v)
        if m:
            return self.shift_date(m.group(1), subject) + m.group(2)
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(T.*)?", v)
        if m:
            return self.shift_date(m.group(1), subject) + (m.group(2) or "")
        raise ValueError(f"not a date-time: {value!r}")


def date_mode(options: Iterable[str]) -> str:
    """What to do with dates under ``options``: ``"shift"``, ``"keep"`` or ``"remove"``.

    ``retain_longitudinal_modified_dates`` shifts (it wins if both dates options are given),
    ``retain_longitudinal_full_dates`` keeps, neither removes.
    """
    opts = set(options)
    if "retain_longitudinal_modified_dates" in opts:
        return "shift"
    if "retain_longitudinal_full_dates" in opts:
        return "keep"
    return "remove"


def shift_date_value(value: str, pseudonymizer: Pseudonymizer, subject: str) -> str | None:
    """Shift a DA, ISO date, DT or ISO date-time; None when ``value`` holds no date."""
    v = value.strip()
    try:
        if re.fullmatch(r"\d{8}|\d{4}-\d{2}-\d{2}", v):
            return pseudonymizer.shift_date(v, subject)
        return pseudonymizer.shift_datetime(v, subject)
    except ValueError:
        return None
