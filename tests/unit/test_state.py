"""Deposition state database and run lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from imagedepot.state import (
    LOCK_ENV,
    SCHEMA_VERSION,
    RunInProgress,
    StateDB,
    StateError,
    format_table,
    lock_path_for,
    run_lock,
    run_scheduled,
)


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    db_path = tmp_path / "d" / "state.sqlite"
    with StateDB(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
    con = sqlite3.connect(db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StateError, match="newer than this imagedepot"):
        StateDB(db_path)
    with pytest.raises(StateError, match="no state database"):
        StateDB(tmp_path / "missing.sqlite", readonly=True)
    (tmp_path / "junk.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(StateError, match="not a usable state database"):
        StateDB(tmp_path / "junk.sqlite")


def test_only_new_or_failed_work_is_picked_up(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.sqlite") as db:
        assert db.needs_work("bia", "ds", "h1")
        db.start("bia", "ds", "h1", files=3, bytes=10)
        for state in ("uploaded", "verified"):
            db.set_state("bia", "ds", state)
        assert not db.needs_work("bia", "ds", "h1", goal="verified")  # a dry run is done
        assert db.needs_work("bia", "ds", "h1")  # a real run still has to submit
        db.set_state("bia", "ds", "submitted", accession="S-BIAD7")
        assert not db.needs_work("bia", "ds", "h1")
        assert db.needs_work("bia", "ds", "h2")  # changed content: redo
        row = db.start("bia", "ds", "h2")
        assert row.attempts == 1 and row.accession == "S-BIAD7"  # an update of the same study
        db.set_state("bia", "ds", "failed", reason="ConnectionError: boom")
        assert db.needs_work("bia", "ds", "h2")  # failed: retry
        assert db.start("bia", "ds", "h2").attempts == 2
        with pytest.raises(StateError, match="needs a reason"):
            db.set_state("bia", "ds", "failed")
        with pytest.raises(StateError, match="unknown deposition state"):
            db.set_state("bia", "ds", "done")
        with pytest.raises(StateError, match="call start"):
            db.set_state("bia", "other", "uploaded")
        states = [e["state"] for e in db.events("bia", "ds")]
        assert states[:4] == ["staged", "uploaded", "verified", "submitted"]
        assert states[-2:] == ["failed", "staged"]
        row = db.get("bia", "ds")
        assert row is not None and row.submitted_at and row.state == "staged"
    with StateDB(tmp_path / "s.sqlite", readonly=True) as ro:
        table = format_table(ro.rows())
    assert table.splitlines()[0].split()[:3] == ["DESTINATION", "DATASET", "STATE"]
    assert "S-BIAD7" in table


def test_lock_excludes_a_second_run(tmp_path: Path) -> None:
    lock = lock_path_for(tmp_path / "s.sqlite")
    with run_lock(lock):
        # Another process cannot take it...
        code = (
            "import sys; from imagedepot.state import run_lock, RunInProgress\n"
            f"try:\n    with run_lock({str(lock)!r}): sys.exit(0)\n"
            "except RunInProgress as e:\n    print(e); sys.exit(3)\n"
        )
        env = {k: v for k, v in os.environ.items() if k != LOCK_ENV}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert proc.returncode == 3 and "another run is in progress" in proc.stdout
        # ... nor can a second open in this process (flock is per open file) ...
        with pytest.raises(RunInProgress), run_lock(lock):
            pass
        # ... except a child that its parent told it holds the lock.
        env[LOCK_ENV] = str(lock)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert proc.returncode == 0
    with run_lock(lock):  # released
        pass


def test_run_scheduled_reports_changes_and_refuses_overlap(tmp_path: Path) -> None:
    db_path = tmp_path / "s.sqlite"

    def work() -> int:
        with StateDB(db_path) as db:
            db.start("bia", "a", "h")
            db.set_state("bia", "a", "failed", reason="boom")
        return 0

    res = run_scheduled(db_path, work)
    assert not res.ok and [r.dataset for r in res.failed] == ["a"]
    with run_lock(lock_path_for(db_path)), pytest.raises(RunInProgress):
        run_scheduled(db_path, lambda: 0)
    # A command runs as a child with the lock and state database passed down.
    res = run_scheduled(
        db_path,
        [
            sys.executable,
            "-c",
            "import os,sys; sys.exit(0 if os.environ['IMAGEDEPOT_RUN_LOCK'] else 1)",
        ],
    )
    assert res.returncode == 0 and res.command
