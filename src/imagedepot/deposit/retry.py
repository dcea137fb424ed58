"""Bounded retries with exponential backoff for network calls (shared by the deposit clients).

Only *transient* failures are retried: connection errors, timeouts, HTTP 5xx and 429. Anything else
(4xx, a bug) is raised at once. The number of attempts is always bounded, so a deposit either makes
progress or fails with the last error, never loops forever.

Example
-------
>>> policy = RetryPolicy(attempts=5, base_delay=0.5)
>>> retry_call(lambda: session.get(url), policy=policy, what="GET /data/projects")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import requests

from imagedepot.errors import ImagedepotError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth another attempt: server-side failures and rate limiting.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Parameters
    ----------
    attempts
        Total attempts per call (1 means no retry).
    base_delay
        Seconds before the second attempt; each later wait is ``multiplier`` times longer.
    max_delay
        Upper bound of one wait, in seconds.
    multiplier
        Growth factor of the waits.
    jitter
        Each wait is scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so that parallel
        clients do not retry in lock step.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy delays must be >= 0 and multiplier >= 1")

    def delays(self) -> Iterator[float]:
        """The waits between attempts (``attempts - 1`` values), jittered."""
        delay = self.base_delay
        for _ in range(self.attempts - 1):
            factor = 1.0 + random.uniform(-self.jitter, self.jitter)  # noqa: S311 (not crypto)
            yield max(0.0, min(delay, self.max_delay) * factor)
            delay *= self.multiplier


class RetryExhaustedError(ImagedepotError):
    """A transient failure persisted through every attempt."""

    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        self.what = what
        self.attempts = attempts
        self.last = last
        super().__init__(
            f"{what}: still failing after {attempts} attempt(s): {describe_error(last)}"
        )


def http_status(exc: BaseException) -> int | None:
    """The HTTP status carried by an exception (``status_code`` or ``response.status_code``)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """True for failures another attempt may cure: connection, timeout, 5xx and 429."""
    if isinstance(
        exc,
        (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return True
    status = http_status(exc)
    return status is not None and status in RETRYABLE_STATUS


def describe_error(exc: BaseException) -> str:
    """A short, single-line description of an error (status and server message when known)."""
    status = http_status(exc)
    text = getattr(exc, "text", None)
    if text is None:
        response = getattr(exc, "response", None)
        text = getattr(response, "text", None)
    if status is not None:
        message = " ".join(str(text or "").split())[:300]
        return f"HTTP {status}" + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def retry_call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    retry_if: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient failures with exponential backoff.

    Parameters
    ----------
    fn
        The call; it must be safe to repeat (idempotent) or the caller must reconcile afterwards.
    policy
        Attempts and waits.
    what
        Names the operation in logs and in the final error (never put secrets in it).
    retry_if
        Which exceptions are transient (default :func:`is_transient`); others propagate at once.
    on_retry
        Called as ``on_retry(exc, attempt, wait_seconds)`` before each wait (e.g. to count retries).
    sleep
        Injected for tests.

    Raises
    ------
    RetryExhaustedError
        The last attempt failed with a transient error (``.last`` holds it).
    """
    delays = policy.delays()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not retry_if(exc):
                raise
            wait = next(delays, None)
            if wait is None:
                raise RetryExhaustedError(what, attempt, exc) from exc
            log.info(
                "%s: attempt %d failed (%s); retrying in %.2fs",
                what,
                attempt,
                describe_error(exc),
                wait,
            )
            if on_retry is not None:
                on_retry(exc, attempt, wait)
            sleep(wait)
            attempt += 1
