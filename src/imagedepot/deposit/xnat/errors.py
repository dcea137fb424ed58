"""The error of the XNAT deposit."""

from __future__ import annotations

from imagedepot.errors import ImagedepotError


class XnatDepositError(ImagedepotError):
    """The deposit could not be completed; the message names the XNAT object and XNAT's answer.

    ``status`` is the HTTP status when XNAT refused a request.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
