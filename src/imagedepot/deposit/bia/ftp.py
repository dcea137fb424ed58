"""Upload to the secret FTP directory of the BioImage Archive, verified by content.

:func:`upload_files` uploads a package's ``data/upload/`` (parallel streams; an interrupted file
resumes with ``REST``), verifies every file's content by reading it back (``RETR``) and comparing
its SHA-256 with the bag manifest's (neither the FTP area nor the BioStudies user-file listing
offers a checksum), and replaces any remote copy that differs. :func:`verify_remote_sizes`
re-checks every size with ``SIZE`` after ``TYPE I``. A file above ``download_verify_limit`` bytes
is refused rather than trusted on its size.
"""

from __future__ import annotations

import contextlib
import ftplib
import logging
import threading
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from imagedepot.deposit.bia.errors import DepositError
from imagedepot.deposit.retry import RetryPolicy, is_transient, retry_call
from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT, HashSink, over_limit_message
from imagedepot.errors import ConfigError, ImagedepotError

log = logging.getLogger(__name__)


def ftp_transient(exc: BaseException) -> bool:
    """FTP failures another attempt may cure: dropped connections, timeouts, 4xx replies."""
    return isinstance(exc, OSError | EOFError | ftplib.error_temp | ftplib.error_reply) or (
        is_transient(exc)
    )


@dataclass(frozen=True)
class FtpTarget:
    """The secret FTP directory (``ftp://[user[:password]@]host[:port]/<directory>``)."""

    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="anonymous@", repr=False)
    directory: str = field(default="", repr=False)

    @classmethod
    def parse(cls, url: str) -> FtpTarget:
        """Parse an ``ftp://`` URL (the directory is the secret part)."""
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ftp" or not u.hostname:
            raise ConfigError(
                "ftp_url: give ftp://[user[:password]@]host[:port]/<secret directory>"
            )
        return cls(
            host=u.hostname,
            port=u.port or 21,
            user=urllib.parse.unquote(u.username) if u.username else "anonymous",
            password=urllib.parse.unquote(u.password) if u.password else "anonymous@",
            directory=urllib.parse.unquote(u.path).strip("/"),
        )

    def __str__(self) -> str:
        return f"ftp://{self.host}:{self.port}/<secret directory>"


@dataclass(frozen=True)
class UploadFile:
    """One file to upload: the local path, its path in the upload area, size and SHA-256 (from
    the package's bag manifest, checked by :func:`verify_bag`)."""

    local: Path
    remote: str
    size: int
    sha256: str


@dataclass
class UploadResult:
    """One file's upload: ``sent`` bytes this run (0 when the remote copy was already right),
    ``replaced`` when a remote copy (or the part a resume kept) held other bytes. Every result is
    content-verified: the remote copy was read back and its SHA-256 equals the package's."""

    path: str
    size: int
    sent: int = 0
    resumed_from: int = 0
    replaced: bool = False


class _FtpSession:
    """One control connection (one per stream), logged in and in the secret directory."""

    def __init__(self, target: FtpTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.ftp: ftplib.FTP | None = None
        self.dirs: set[str] = set()

    def connect(self) -> ftplib.FTP:
        if self.ftp is None:
            ftp = ftplib.FTP(timeout=self.timeout)  # noqa: S321 - the archive's upload area is FTP
            ftp.connect(self.target.host, self.target.port)
            ftp.login(self.target.user, self.target.password)
            ftp.set_pasv(True)
            ftp.voidcmd("TYPE I")
            if self.target.directory:
                ftp.cwd("/" + self.target.directory)
            self.ftp = ftp
            self.dirs = set()
        return self.ftp

    def drop(self) -> None:
        if self.ftp is not None:
            with contextlib.suppress(OSError):
                self.ftp.close()
        self.ftp = None

    def size(self, path: str) -> int | None:
        ftp = self.connect()
        ftp.voidcmd("TYPE I")
        try:
            n = ftp.size(path)
        except ftplib.error_perm:
            return None
        return None if n is None else int(n)

    def makedirs(self, folder: str) -> None:
        ftp = self.connect()
        parts = [p for p in folder.split("/") if p]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d in self.dirs:
                continue
            try:
                ftp.mkd(d)
            except ftplib.error_perm as exc:
                if not str(exc).startswith("550"):
                    raise
            self.dirs.add(d)

    def sha256(self, path: str, blocksize: int) -> str:
        """SHA-256 of a remote file, read back with ``RETR`` in ``TYPE I`` (memory flat)."""
        ftp = self.connect()
        ftp.voidcmd("TYPE I")
        sink = HashSink()
        ftp.retrbinary(f"RETR {path}", sink.write, blocksize)
        return sink.sha256.hexdigest()

    def _send(self, f: UploadFile, rest: int, blocksize: int) -> None:
        ftp = self.connect()
        with open(f.local, "rb") as fh:
            if rest:
                fh.seek(rest)
                log.info("resuming %s at byte %d of %d", f.remote, rest, f.size)
                try:
                    ftp.storbinary(f"STOR {f.remote}", fh, blocksize, rest=rest)
                except ftplib.error_perm as exc:
                    # REST refused (5xx): append instead.
                    log.debug("REST refused for %s (%s); using APPE", f.remote, exc)
                    fh.seek(rest)
                    ftp.storbinary(f"APPE {f.remote}", fh, blocksize)
            else:
                ftp.storbinary(f"STOR {f.remote}", fh, blocksize)
        after = self.size(f.remote)
        if after != f.size:
            raise ftplib.error_temp(  # noqa: S321 - an FTP reply class, no connection
                f"451 size of {f.remote} after upload is {after}, expected {f.size}"
            )

    def upload(self, f: UploadFile, blocksize: int) -> UploadResult:
        """Bring one remote file to the package's bytes and verify it by SHA-256.

        A remote copy of the right size is read back and kept only if its SHA-256 matches; else it
        is replaced. A shorter one is resumed, and if the kept part was not ours the whole file is
        sent again. After sending, the size and then the SHA-256 of the remote copy must match.
        """
        res = UploadResult(f.remote, f.size)
        have = self.size(f.remote)
        if have == f.size:
            if self.sha256(f.remote, blocksize) == f.sha256:
                return res
            log.warning(
                "%s: the remote copy has the right size but other content; replacing it", f.remote
            )
            res.replaced = True
            have = None
        if "/" in f.remote:
            self.makedirs(f.remote.rsplit("/", 1)[0])
        rest = have if have is not None and 0 < have < f.size else 0
        res.resumed_from = rest
        self._send(f, rest, blocksize)
        res.sent += f.size - rest
        if self.sha256(f.remote, blocksize) == f.sha256:
            return res
        if rest:
            log.warning(
                "%s: the part kept by the resume held other bytes; sending the whole file", f.remote
            )
            res.replaced = True
            self._send(f, 0, blocksize)
            res.sent += f.size
            if self.sha256(f.remote, blocksize) == f.sha256:
                return res
        raise ftplib.error_temp(  # noqa: S321 - an FTP reply class, no connection
            f"451 content of {f.remote} after upload differs from the package (SHA-256)"
        )


def upload_files(
    files: Sequence[UploadFile],
    target: FtpTarget,
    *,
    streams: int = 2,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    blocksize: int = 1 << 16,
    download_verify_limit: int = DOWNLOAD_VERIFY_LIMIT,
) -> list[UploadResult]:
    """Upload files over ``streams`` parallel FTP connections and verify each one's content.

    The upload area lists no checksums (neither FTP nor the BioStudies user-file listing, which
    gives name, path, size and type), so every remote copy is read back (``RETR``) and its SHA-256
    compared with the package's: a copy with the right size is kept only if it matches, else it is
    replaced; a shorter one resumes (``REST``, or ``APPE`` where REST is refused) and is sent whole
    if the kept part differs. A file above ``download_verify_limit`` bytes is refused before
    anything is sent (its content would not be verified). A dropped connection is re-opened and the
    file retried, ``retries`` attempts per file.
    """
    over = sorted(f.remote for f in files if f.size > download_verify_limit)
    if over:
        raise DepositError(
            over_limit_message(over, download_verify_limit, "download_verify_limit")
            + "; nothing was uploaded"
        )
    policy = RetryPolicy(attempts=retries, base_delay=backoff)
    results: list[UploadResult] = []
    errors: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(files))

    def worker() -> None:
        session = _FtpSession(target, timeout)
        try:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    f = queue.pop()
                try:
                    r = retry_call(
                        lambda f=f: session.upload(f, blocksize),  # type: ignore[misc]
                        policy=policy,
                        what=f"upload of {f.remote}",
                        retry_if=ftp_transient,
                        on_retry=lambda *_: session.drop(),
                    )
                except (ImagedepotError, OSError, EOFError, ftplib.Error) as exc:
                    with lock:
                        errors.append(f"{f.remote}: {type(exc).__name__}: {exc}")
                    return
                with lock:
                    results.append(r)
        finally:
            if session.ftp is not None:
                try:
                    session.ftp.quit()
                except (OSError, EOFError, ftplib.Error):
                    session.drop()

    n = max(1, min(streams, len(files) or 1))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="ftp") as pool:
        for fut in [pool.submit(worker) for _ in range(n)]:
            fut.result()
    if errors:
        raise DepositError(f"upload to {target} failed: " + "; ".join(errors[:5]))
    return sorted(results, key=lambda r: r.path)


def verify_remote_sizes(
    files: Sequence[UploadFile],
    target: FtpTarget,
    *,
    retries: int = 5,
    backoff: float = 1.0,
) -> list[str]:
    """Read every size back with ``SIZE`` over one connection; return the mismatches.

    The final presence check after :func:`upload_files` (which verified each file's content):
    it finds a file removed or truncated on the server since.
    """
    session = _FtpSession(target, 60.0)
    bad: list[str] = []
    try:
        for f in files:
            have = retry_call(
                lambda remote=f.remote: session.size(remote),  # type: ignore[misc]
                policy=RetryPolicy(attempts=retries, base_delay=backoff),
                what=f"SIZE {f.remote}",
                retry_if=ftp_transient,
                on_retry=lambda *_: session.drop(),
            )
            if have != f.size:
                bad.append(f"{f.remote}: {have} bytes on the server, {f.size} expected")
    finally:
        session.drop()
    return bad
