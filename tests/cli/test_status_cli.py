"""``imagedepot status`` and ``imagedepot schedule run`` (unattended, locked, notifying)."""

# Fixtures are imported from tests/servers/bia_fixture.py (not a conftest), so pytest's fixture
# arguments shadow those imports by design.
# ruff: noqa: F811

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from imagedepot.cli import schedule as schedule_cli
from imagedepot.cli import status as status_cli
from imagedepot.state import StateDB, StateError, lock_path_for, run_lock
from tests.cli.test_bia_cli import write_config
from tests.servers.bia_fixture import (  # noqa: F401 - fixtures
    API_LOGIN,
    API_PASSWORD,
    DemoStage,
    bia_package,
    biostudies_server,
    demo_microscopy_stage,
    ftp_server,
    smtp_server,
)


def run(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="imagedepot")
    sub = p.add_subparsers(dest="verb", required=True)
    status_cli.register(sub)
    schedule_cli.register(sub)
    args = p.parse_args(list(argv))
    return int(args.func(args))


def test_scheduled_runs_deposit_once_and_status_shows_it(
    demo_microscopy_stage: DemoStage,
    bia_package: Path,
    tmp_path: Path,
    ftp_server,
    biostudies_server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ftp = ftp_server()
    api = biostudies_server(ftp.extra["user_dir"])
    cfg = write_config(demo_microscopy_stage, tmp_path / "c.yaml", url=api.extra["url"])
    monkeypatch.setenv("TEST_BIA_FTP_URL", ftp.extra["url"])
    monkeypatch.setenv("TEST_BIA_USER", API_LOGIN)
    monkeypatch.setenv("TEST_BIA_PASSWORD", API_PASSWORD)
    db = tmp_path / "state.sqlite"
    sched = ("schedule", "run", "--config", str(cfg), "--state-db", str(db), "--direct",
             "--packages-root", str(bia_package.parent))  # fmt: skip
    with pytest.raises(StateError):
        run("status", "--db", str(db))
    assert run(*sched) == 0
    out = capsys.readouterr().out
    assert "bia/micro-cells: submitted S-BIAD1" in out
    assert run("status", "--db", str(db)) == 0
    table = capsys.readouterr().out
    assert "micro-cells" in table and "submitted" in table and "S-BIAD1" in table
    assert run("status", "--db", str(db), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["state"] == "submitted" and rows[0]["attempts"] == 1

    # A second scheduled run finds nothing new: the servers are not even needed.
    ftp.stop()
    api.stop()
    assert run(*sched) == 0
    assert "0 dataset(s) changed" in capsys.readouterr().out

    # While another run holds the lock, a run exits cleanly without doing anything.
    with run_lock(lock_path_for(db)):
        assert run(*sched) == 0
    assert "another run is in progress" in capsys.readouterr().out


def test_failed_run_is_recorded_and_mailed(
    demo_microscopy_stage: DemoStage,
    bia_package: Path,
    tmp_path: Path,
    smtp_server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(
        demo_microscopy_stage, tmp_path / "c.yaml", url="http://127.0.0.1:9", retries=1
    )
    # Nothing listens on port 9: the upload fails.
    monkeypatch.setenv("TEST_BIA_FTP_URL", "ftp://u:p@127.0.0.1:9/secret-dir")
    db = tmp_path / "state.sqlite"
    rc = run(
        "schedule", "run", "--config", str(cfg), "--state-db", str(db), "--direct",
        "--packages-root", str(bia_package.parent),
        "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_server.port),
        "--mail-from", "imagedepot@example.org", "--mail-to", "steward@example.org",
    )  # fmt: skip
    assert rc == 1
    assert "FAILED" in capsys.readouterr().out
    with StateDB(db) as state:
        row = state.get("bia", "micro-cells")
    assert row is not None and row.state == "failed" and "secret-dir" not in (row.reason or "")
    assert run("status", "--db", str(db)) == 1
    mails = sorted(smtp_server.extra["out"].glob("*.eml"))
    assert len(mails) == 1
    text = mails[0].read_text()
    assert "X-Envelope-To: steward@example.org" in text
    assert "deposit run failed" in text and "bia/micro-cells" in text
    assert "secret-dir" not in text and "u:p@" not in text


def test_snakemake_mode_runs_the_deposit_targets_under_the_lock(
    demo_microscopy_stage: DemoStage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(demo_microscopy_stage, tmp_path / "c.yaml")
    record = tmp_path / "argv.json"
    fake = tmp_path / "snakemake"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'lock': os.environ.get('IMAGEDEPOT_RUN_LOCK'),"
        f" 'db': os.environ.get('IMAGEDEPOT_STATE_DB')}}, open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    db = tmp_path / "state.sqlite"
    rc = run("schedule", "run", "--config", str(cfg), "--state-db", str(db),
             "--snakemake", str(fake), "--profile", "profiles/default", "--", "--cores", "1")  # fmt: skip
    assert rc == 0
    seen = json.loads(record.read_text())
    assert seen["argv"][:2] == ["--profile", "profiles/default"]
    assert "deposit_bia_all" in seen["argv"] and seen["argv"][-4:-2] == [
        "--forcerun",
        "deposit_bia",
    ]
    assert seen["argv"][-2:] == ["--cores", "1"]
    assert seen["lock"] == str(lock_path_for(db).resolve())
    assert seen["db"] == str(db.resolve())
    assert os.environ.get("IMAGEDEPOT_RUN_LOCK") is None
