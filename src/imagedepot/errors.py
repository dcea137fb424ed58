"""The package's exceptions. Everything raised on purpose derives from :class:`ImagedepotError`."""

from __future__ import annotations

from pathlib import Path


class ImagedepotError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(ImagedepotError):
    """An input file or folder cannot be used: names the file and what is wrong.

    Per-item steps catch this and quarantine the item with :attr:`reason`; the batch goes on.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ReaderError(InputError):
    """One reader cannot read (or decode) a file that another reader may read.

    Raised by the tifffile microscopy reader for files it cannot parse or decode (an unsupported
    compression, an unusual layout); ``reader="auto"`` then tries Bio-Formats. Not raised for what
    no reader can fix (planes missing from a multi-file set).
    """


class ConfigError(ImagedepotError):
    """The configuration, sample sheet or policy is invalid (the message says what to fix)."""


class PolicyError(ConfigError):
    """A de-identification or data-use policy is invalid or forbids what was asked."""


class OutputExistsError(ImagedepotError):
    """Refusing to overwrite an existing output without ``--force``."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: output exists; use --force to overwrite")


class LeakError(ImagedepotError):
    """The leak gate found identifiers of the originals in an output."""
