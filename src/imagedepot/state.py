"""Deposition state: a small SQLite database of each dataset's state per destination, and a run lock.

Unattended deposition (cron, systemd timers, SLURM ``scrontab``) runs the same command again and
again. The state database lets each run pick up only what is new or failed, and ``imagedepot status``
print where every dataset stands. The lock makes sure two runs never overlap.

States, in order (``failed`` can follow any of them and keeps the reason)::

    staged -> uploaded -> verified -> submitted
                                   \\-> failed (reason)

A row is keyed by (destination, dataset) and holds the content hash of the staged package it refers to.
A package whose content hash differs from the row's (the data or the metadata changed after the last
deposit) is new work again, whatever the row's state. ``attempts`` counts the runs that started work on
the current content.

The database uses WAL journaling (readers, such as ``imagedepot status``, never block the writer) and
a schema version in ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagedepot.errors import ImagedepotError
from imagedepot.provenance import now

log = logging.getLogger(__name__)

#: Deposition states, in the order a dataset goes through them.
STATES = ("staged", "uploaded", "verified", "submitted", "failed")

#: Default location of the state database (relative to the working directory of the run).
DEFAULT_DB = "results/deposit/state.sqlite"

#: Environment variable through which a scheduled run tells its children that it holds the lock.
LOCK_ENV = "IMAGEDEPOT_RUN_LOCK"
#: Environment variable naming the state database for the deposits a scheduled run starts.
DB_ENV = "IMAGEDEPOT_STATE_DB"

#: Schema migrations: ``MIGRATIONS[n]`` upgrades a database from version ``n`` to ``n + 1``.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE deposition (
        destination  TEXT NOT NULL,
        dataset      TEXT NOT NULL,
        state        TEXT NOT NULL
                     CHECK (state IN ('staged', 'uploaded', 'verified', 'submitted', 'failed')),
        content_hash TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        reason       TEXT,
        accession    TEXT,
        files        INTEGER,
        bytes        INTEGER,
        created      TEXT NOT NULL,
        updated      TEXT NOT NULL,
        staged_at    TEXT,
        uploaded_at  TEXT,
        verified_at  TEXT,
        submitted_at TEXT,
        PRIMARY KEY (destination, dataset)
    );
    CREATE TABLE event (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        destination TEXT NOT NULL,
        dataset     TEXT NOT NULL,
        state       TEXT NOT NULL,
        reason      TEXT,
        at          TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StateError(ImagedepotError):
    """The state database cannot be used (newer schema, not a database...)."""


class RunInProgress(ImagedepotError):
    """Another run holds the lock."""

    def __init__(self, lock_path: str | Path) -> None:
        self.lock_path = str(lock_path)
        super().__init__(
            f"another run is in progress (lock held on {self.lock_path}); not starting"
        )


@dataclass
class DepositionRow:
    """One dataset's deposition state for one destination."""

    destination: str
    dataset: str
    state: str
    content_hash: str | None = None
    attempts: int = 0
    reason: str | None = None
    accession: str | None = None
    files: int | None = None
    bytes: int | None = None
    created: str = ""
    updated: str = ""
    staged_at: str | None = None
    uploaded_at: str | None = None
    verified_at: str | None = None
    submitted_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


_COLUMNS = tuple(DepositionRow.__dataclass_fields__)


class StateDB:
    """The deposition state database (one SQLite file).

    Parameters
    ----------
    path
        Database file; created (with its folder) when missing.
    readonly
        Open for reading only (``imagedepot status``): a missing file is then an error.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise StateError(f"{self.path}: no state database (nothing deposited yet?)")
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30)
        self._conn.row_factory = sqlite3.Row
        try:
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate(readonly)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StateError(f"{self.path}: not a usable state database ({exc})") from exc

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self, readonly: bool) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: schema version {version} is newer than this imagedepot supports "
                f"({SCHEMA_VERSION}); upgrade imagedepot"
            )
        if version == SCHEMA_VERSION:
            return
        if readonly:
            raise StateError(
                f"{self.path}: schema version {version} is older than {SCHEMA_VERSION}; "
                "run a deposit once to upgrade it"
            )
        for n in range(version, SCHEMA_VERSION):
            with self._conn:
                self._conn.executescript(MIGRATIONS[n])
                self._conn.execute(f"PRAGMA user_version = {n + 1}")
        log.debug("state database %s at schema version %d", self.path, SCHEMA_VERSION)

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- queries -----------------------------------------------------------------------------

    def get(self, destination: str, dataset: str) -> DepositionRow | None:
        """The row of ``dataset`` for ``destination``, if any."""
        row = self._conn.execute(
            "SELECT * FROM deposition WHERE destination = ? AND dataset = ?",
            (destination, dataset),
        ).fetchone()
        return None if row is None else DepositionRow(**{k: row[k] for k in _COLUMNS})

    def rows(self, destination: str | None = None) -> list[DepositionRow]:
        """Every row (of one destination when given), sorted by destination and dataset."""
        sql = "SELECT * FROM deposition"
        args: tuple[str, ...] = ()
        if destination is not None:
            sql += " WHERE destination = ?"
            args = (destination,)
        sql += " ORDER BY destination, dataset"
        return [DepositionRow(**{k: r[k] for k in _COLUMNS}) for r in self._conn.execute(sql, args)]

    def events(self, destination: str, dataset: str) -> list[dict[str, Any]]:
        """The history of state changes of one dataset, oldest first."""
        cur = self._conn.execute(
            "SELECT state, reason, at FROM event WHERE destination = ? AND dataset = ? ORDER BY id",
            (destination, dataset),
        )
        return [dict(r) for r in cur]

    def last_event(self) -> int:
        """The id of the newest state change (0 when none): a cursor for :meth:`changed_since`."""
        return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM event").fetchone()[0])

    def changed_since(self, event_id: int) -> list[DepositionRow]:
        """Rows with a state change after ``event_id``."""
        keys = self._conn.execute(
            "SELECT DISTINCT destination, dataset FROM event WHERE id > ?", (event_id,)
        ).fetchall()
        rows = (self.get(k[0], k[1]) for k in keys)
        return sorted((r for r in rows if r is not None), key=lambda r: (r.destination, r.dataset))

    def needs_work(
        self, destination: str, dataset: str, content_hash: str, *, goal: str = "submitted"
    ) -> bool:
        """True unless the dataset already reached ``goal`` (or beyond) with this content."""
        row = self.get(destination, dataset)
        if row is None or row.content_hash != content_hash or row.state == "failed":
            return True
        order = STATES.index
        return order(row.state) < order(goal)

    # -- updates -----------------------------------------------------------------------------

    def start(
        self,
        destination: str,
        dataset: str,
        content_hash: str,
        *,
        files: int | None = None,
        bytes: int | None = None,
    ) -> DepositionRow:
        """Record that a run starts working on ``dataset`` (state ``staged``, one more attempt).

        Content that changed since the last attempt resets the attempt count and clears the old
        accession only if the dataset was never submitted (a submitted dataset keeps its accession,
        so the new content is sent as an update of the same study).
        """
        stamp = now()
        old = self.get(destination, dataset)
        attempts = 1
        accession = None
        if old is not None:
            accession = old.accession
            attempts = old.attempts + 1 if old.content_hash == content_hash else 1
        with self._conn:
            self._conn.execute(
                """
                INSERT INTO deposition (destination, dataset, state, content_hash, attempts,
                                        reason, accession, files, bytes, created, updated,
                                        staged_at)
                VALUES (?, ?, 'staged', ?, ?, NULL, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (destination, dataset) DO UPDATE SET
                    state = 'staged', content_hash = excluded.content_hash,
                    attempts = excluded.attempts, reason = NULL,
                    accession = excluded.accession, files = excluded.files,
                    bytes = excluded.bytes, updated = excluded.updated,
                    staged_at = excluded.staged_at
                """,
                (
                    destination,
                    dataset,
                    content_hash,
                    attempts,
                    accession,
                    files,
                    bytes,
                    stamp,
                    stamp,
                    stamp,
                ),
            )
            self._event(destination, dataset, "staged", None, stamp)
        row = self.get(destination, dataset)
        assert row is not None
        return row

    def set_state(
        self,
        destination: str,
        dataset: str,
        state: str,
        *,
        reason: str | None = None,
        accession: str | None = None,
    ) -> None:
        """Move an existing row to ``state`` (``failed`` needs a ``reason``)."""
        if state not in STATES:
            raise StateError(f"unknown deposition state {state!r} (known: {', '.join(STATES)})")
        if state == "failed" and not reason:
            raise StateError("a failed state needs a reason")
        stamp = now()
        sets = ["state = ?", "updated = ?", "reason = ?"]
        args: list[Any] = [state, stamp, reason]
        if state in ("uploaded", "verified", "submitted"):
            sets.append(f"{state}_at = ?")
            args.append(stamp)
        if accession is not None:
            sets.append("accession = ?")
            args.append(accession)
        with self._conn:
            cur = self._conn.execute(
                f"UPDATE deposition SET {', '.join(sets)} WHERE destination = ? AND dataset = ?",  # noqa: S608 - fixed column names
                (*args, destination, dataset),
            )
            if cur.rowcount != 1:
                raise StateError(f"no deposition row for {destination}/{dataset}; call start()")
            self._event(destination, dataset, state, reason, stamp)

    def _event(
        self, destination: str, dataset: str, state: str, reason: str | None, stamp: str
    ) -> None:
        self._conn.execute(
            "INSERT INTO event (destination, dataset, state, reason, at) VALUES (?, ?, ?, ?, ?)",
            (destination, dataset, state, reason, stamp),
        )


def format_table(rows: list[DepositionRow]) -> str:
    """A plain-text table of deposition rows, for ``imagedepot status``."""
    header = ("DESTINATION", "DATASET", "STATE", "ATTEMPTS", "ACCESSION", "UPDATED", "REASON")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.destination,
                r.dataset,
                r.state,
                str(r.attempts),
                r.accession or "-",
                r.updated,
                (r.reason or "").replace("\n", " ")[:120],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out) + "\n"


def lock_path_for(db_path: str | Path) -> Path:
    """The lock file that goes with a state database."""
    p = Path(db_path)
    return p.with_name(p.name + ".lock")


@contextlib.contextmanager
def run_lock(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` for the duration of the block.

    Raises :class:`RunInProgress` at once when another process holds it. The lock is released by the
    kernel when the holder exits, even if it is killed, so a crashed run never blocks the next one.
    A process whose parent already holds this lock (``$IMAGEDEPOT_RUN_LOCK`` names it) runs without
    taking it again.
    """
    p = Path(path)
    if os.environ.get(LOCK_ENV) and Path(os.environ[LOCK_ENV]).resolve() == p.resolve():
        yield p
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunInProgress(p) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield p
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Scheduled runs and failure notices


@dataclass
class MailSettings:
    """Where failure notices go (SMTP). The password, if any, comes from ``$<credentials_env>_PASSWORD``."""

    host: str
    port: int = 25
    sender: str = "imagedepot@localhost"
    recipients: tuple[str, ...] = ()
    starttls: bool = False
    credentials_env: str | None = None
    timeout: float = 30.0


def send_mail(settings: MailSettings, subject: str, body: str) -> None:
    """Send a plain-text message over SMTP (STARTTLS and login when configured)."""
    import smtplib
    from email.message import EmailMessage

    if not settings.recipients:
        raise ImagedepotError("notify: no recipient (mail_to) configured")
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.recipients)
    msg.set_content(body)
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.credentials_env:
            user = os.environ.get(f"{settings.credentials_env}_USER")
            password = os.environ.get(f"{settings.credentials_env}_PASSWORD")
            if user and password:
                smtp.login(user, password)
        smtp.send_message(msg)


@dataclass
class ScheduleResult:
    """What one scheduled run did."""

    started: str
    ended: str = ""
    returncode: int = 0
    command: list[str] | None = None
    changed: list[DepositionRow] | None = None

    @property
    def failed(self) -> list[DepositionRow]:
        """Rows that ended this run in ``failed``."""
        return [r for r in self.changed or [] if r.state == "failed"]

    @property
    def ok(self) -> bool:
        """True when the runner and every dataset it touched succeeded."""
        return self.returncode == 0 and not self.failed


def run_scheduled(
    db_path: str | Path,
    work: Any,
    *,
    mail: MailSettings | None = None,
    label: str = "imagedepot deposit",
) -> ScheduleResult:
    """One unattended run: take the lock, do ``work``, report what changed, mail on failure.

    ``work`` is either a command (a list: run as a subprocess with ``$IMAGEDEPOT_RUN_LOCK`` set so
    that the deposits it starts share this run's lock; Snakemake stays the executor) or a callable
    returning an exit code (deposit directly). Raises :class:`RunInProgress` when another run holds
    the lock.
    """
    import subprocess

    lock = lock_path_for(db_path)
    with run_lock(lock):
        result = ScheduleResult(started=now())
        with StateDB(db_path) as db:  # creates / migrates the database before the work starts
            cursor = db.last_event()
        if isinstance(work, list | tuple):
            result.command = [str(c) for c in work]
            env = os.environ | {LOCK_ENV: str(lock.resolve()), DB_ENV: str(Path(db_path).resolve())}
            log.info("scheduled run: %s", " ".join(result.command))
            result.returncode = subprocess.run(result.command, env=env, check=False).returncode
        else:
            result.returncode = int(work() or 0)
        result.ended = now()
        with StateDB(db_path) as db:
            result.changed = db.changed_since(cursor)
    if not result.ok and mail is not None:
        lines = [
            f"{label}: run started {result.started}, ended {result.ended}, exit code "
            f"{result.returncode}.",
            "",
        ]
        if result.command:
            lines.append("command: " + " ".join(result.command))
        if result.failed:
            lines += ["", "failed:"] + [
                f"  {r.destination}/{r.dataset} (attempt {r.attempts}): {r.reason}"
                for r in result.failed
            ]
        lines += ["", "state now:", format_table(result.changed or [])]
        try:
            send_mail(
                mail,
                f"[imagedepot] deposit run failed ({len(result.failed)} dataset(s))",
                "\n".join(lines),
            )
        except OSError as exc:
            log.error("could not send the failure notice via %s:%d: %s", mail.host, mail.port, exc)
    return result
