"""The XNAT client: credentials, and the xnatpy session with retries, re-login and timeouts.

Credentials come from ``<PREFIX>_USER`` / ``<PREFIX>_PASSWORD`` in the environment or from the
``~/.netrc`` entry of the server's host, never from configuration files, and are never logged.

The client connects with ``no_parse_model=True``: the deposit uses XNAT's REST paths directly, so
it does not download and compile the site's XSD data model on every connection.
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imagedepot.deposit.retry import (
    RetryExhaustedError,
    RetryPolicy,
    describe_error,
    http_status,
    is_transient,
    retry_call,
)
from imagedepot.deposit.xnat.errors import XnatDepositError
from imagedepot.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or XNAT alias token and secret); the password never prints."""

    user: str
    password: str = field(repr=False)
    source: str = "explicit"


def resolve_credentials(
    url: str,
    credentials_env: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    netrc_file: str | Path | None = None,
) -> Credentials:
    """Find the credentials for ``url``: ``<PREFIX>_USER``/``<PREFIX>_PASSWORD``, else ``~/.netrc``.

    The netrc file is ``netrc_file``, else ``$NETRC``, else ``~/.netrc``; its entry is looked up by
    ``host:port`` and then by host. The error message names where to put them, never a value.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError(
            "the XNAT URL must not contain credentials; use environment variables or ~/.netrc"
        )
    if credentials_env:
        user = env.get(f"{credentials_env}_USER")
        password = env.get(f"{credentials_env}_PASSWORD")
        if user and password is not None:
            return Credentials(user, password, source=f"environment ({credentials_env}_USER)")
    rc_path = Path(netrc_file or env.get("NETRC") or Path.home() / ".netrc")
    host = parts.hostname or ""
    if rc_path.is_file():
        try:
            rc = netrc.netrc(str(rc_path))
        except (netrc.NetrcParseError, OSError) as exc:
            raise ConfigError(
                f"{rc_path}: cannot be read as a netrc file ({type(exc).__name__})"
            ) from exc
        for key in (parts.netloc, host):
            auth = rc.authenticators(key)
            if auth is not None and auth[0]:
                return Credentials(auth[0], auth[2] or "", source=f"netrc ({key})")
    hint = (
        f"set {credentials_env}_USER and {credentials_env}_PASSWORD or " if credentials_env else ""
    )
    raise ConfigError(f"no credentials for {host}: {hint}add a 'machine {host}' entry to ~/.netrc")


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}".rstrip(
        "/"
    )


class XnatClient:
    """Thin wrapper around an ``xnat`` (xnatpy) session: every call has a timeout, transient
    failures are retried with backoff, and an expired session (HTTP 401) is re-established once."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        policy: RetryPolicy,
        timeout: float = 120.0,
        pool_size: int = 4,
        verify: bool = True,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._credentials = credentials
        self.policy = policy
        self.timeout = timeout
        self.pool_size = pool_size
        self.verify = verify
        self._on_retry = on_retry
        self._session: Any = None
        self._lock = threading.Lock()
        self._generation = 0
        self.server_version: str | None = None

    @property
    def user(self) -> str:
        """The user name (for messages; the password is never exposed)."""
        return self._credentials.user

    # connection ----------------------------------------------------------------------------
    def _connect_once(self) -> Any:
        import requests.adapters
        import xnat

        session = xnat.connect(
            self.url,
            user=self._credentials.user,
            password=self._credentials.password,
            verify=self.verify,
            no_parse_model=True,
            logger=log,  # xnatpy logs as imagedepot.deposit.xnat.client, as before the split
            default_timeout=self.timeout,
            pilot_timeout=min(self.timeout, 30.0),
        )
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(self.pool_size, 2))
        session.interface.mount("http://", adapter)
        session.interface.mount("https://", adapter)
        return session

    def connect(self) -> None:
        """Log in (retrying transient failures); a refused login fails at once."""
        from xnat import exceptions as xe

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, xe.XNATExpiredCredentialsError):
                return False
            if isinstance(exc, xe.XNATLoginFailedError):
                # xnatpy raises this for any non-200 answer to the login request; XNAT's own
                # refusal carries its message, a proxy's 502/503 page does not ("unknown error").
                return str(exc).rstrip().endswith("unknown error")
            return is_transient(exc) or isinstance(exc, (xe.XNATConnectionError, xe.XNATAuthError))

        try:
            self._session = retry_call(
                self._connect_once,
                policy=self.policy,
                what=f"log in to {_public_url(self.url)}",
                retry_if=transient,
                on_retry=self._on_retry,
            )
        except (xe.XNATLoginFailedError, xe.XNATExpiredCredentialsError) as exc:
            raise XnatDepositError(
                f"{_public_url(self.url)}: login refused for user {self._credentials.user!r} "
                f"(credentials from {self._credentials.source}): {exc}"
            ) from exc
        except RetryExhaustedError as exc:
            raise XnatDepositError(str(exc)) from exc
        self._generation += 1
        try:
            self.server_version = str(self._session.xnat_version)
        except Exception as exc:  # the version is informative only
            log.info("could not read the XNAT version: %s", describe_error(exc))

    def _reconnect(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # another thread already re-established the session
            log.warning("XNAT session expired; logging in again")
            old = self._session
            self._session = None
            self._close_session(old, delete=False)
            self.connect()

    @staticmethod
    def _close_session(session: Any, *, delete: bool = True) -> None:
        if session is None:
            return
        if delete:
            try:
                session.disconnect()
                return
            except Exception as exc:
                log.info("closing the XNAT session: %s", describe_error(exc))
        from xnat.session import BaseXNATSession

        with contextlib.suppress(Exception):
            BaseXNATSession.disconnect(session)

    def close(self) -> None:
        """Log out (best effort)."""
        session, self._session = self._session, None
        self._close_session(session)

    def __enter__(self) -> XnatClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests ------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        accepted: Iterable[int] = (200, 201),
        what: str | None = None,
        body: Callable[[], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        sink: Callable[[], Any] | None = None,
    ) -> Any:
        """One REST call with retries; returns the ``requests`` response.

        ``body`` is a callable returning the request body afresh for every attempt (e.g. a file
        opened at offset 0). With ``sink`` (a ``GET``), the body is streamed into a fresh object
        from ``sink()`` on every attempt (anything with ``write``), which is returned instead.
        With ``retry=False`` a transient failure is raised as is.
        """
        label = what or f"{method} {path}"
        accepted_set = list(accepted)
        relogged = False

        def attempt() -> Any:
            nonlocal relogged
            session = self._session
            if session is None:
                raise XnatDepositError("not connected to XNAT")
            generation = self._generation
            data = body() if body is not None else None
            try:
                kwargs: dict[str, Any] = {
                    "query": dict(query or {}),
                    "accepted_status": accepted_set,
                    "timeout": self.timeout,
                }
                if headers:
                    kwargs["headers"] = dict(headers)
                if method == "GET" and sink is not None:
                    out = sink()
                    session.download_stream(path, out, timeout=self.timeout)
                    return out
                if method == "GET":
                    return session.get(path, **kwargs)
                if method == "PUT":
                    return session.put(path, data=data, **kwargs)
                if method == "POST":
                    return session.post(path, data=data, **kwargs)
                if method == "DELETE":
                    return session.delete(path, **kwargs)
                raise ValueError(f"unsupported method {method}")
            except Exception as exc:
                status = http_status(exc)
                if status == 401 and not relogged:
                    relogged = True
                    self._reconnect(generation)
                    return attempt()
                if status is not None and not is_transient(exc):
                    raise XnatDepositError(
                        f"{label}: XNAT answered {describe_error(exc)}", status=status
                    ) from exc
                raise
            finally:
                close = getattr(data, "close", None)
                if callable(close):
                    close()

        if not retry:
            return attempt()
        return retry_call(attempt, policy=self.policy, what=label, on_retry=self._on_retry)

    def get_json(
        self, path: str, query: Mapping[str, str] | None = None, *, missing_ok: bool = False
    ) -> Any:
        """GET ``path`` with ``format=json`` and decode it (retrying a garbled body too).

        With ``missing_ok``, a 403 or 404 answer gives None instead of an error.
        """

        def fetch() -> Any:
            response = self.call(
                "GET",
                path,
                query={**(query or {}), "format": "json"},
                accepted=(200, 403, 404) if missing_ok else (200,),
                retry=False,
            )
            if response.status_code != 200:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise ConnectionError(f"GET {path}: response is not JSON") from exc

        return retry_call(fetch, policy=self.policy, what=f"GET {path}", on_retry=self._on_retry)

    def result_set(self, path: str, query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The ``ResultSet.Result`` rows of a listing."""
        data = self.get_json(path, query)
        try:
            rows = data["ResultSet"]["Result"]
        except (KeyError, TypeError) as exc:
            raise XnatDepositError(f"GET {path}: unexpected answer (no ResultSet.Result)") from exc
        return list(rows)
