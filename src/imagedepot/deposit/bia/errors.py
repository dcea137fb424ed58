"""Errors of the BioImage Archive stage and deposit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imagedepot.errors import ImagedepotError


class BiaValidationError(ImagedepotError):
    """The PageTab or File List misses required fields or breaks the PageTab structure."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "BioImage Archive submission is not valid:\n  " + "\n  ".join(self.problems)
        )


class BagError(ImagedepotError):
    """A package changed after staging (or is not a bag): refused."""

    def __init__(self, path: str | Path, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(
            f"{self.path}: package changed after staging or damaged; refusing it "
            f"(re-stage it):\n  {shown}{more}"
        )


class DepositError(ImagedepotError):
    """An upload or submission failed (after retries); the message holds no secret."""


class ApiError(DepositError):
    """The BioStudies API answered with an error."""

    def __init__(self, status: int, message: str, details: Sequence[str] = ()) -> None:
        self.status = self.status_code = status
        self.details = list(details)
        text = f"BioStudies API error {status}: {message}"
        if self.details:
            text += "\n  " + "\n  ".join(self.details)
        super().__init__(text)
