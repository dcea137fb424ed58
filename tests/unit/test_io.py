"""imagedepot.io: stale temporaries of interrupted writes, trusted-zone and staged modes."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagedepot.errors import ConfigError
from imagedepot.io import (
    TMP_PREFIX,
    atomic_path,
    enter_trusted_zone,
    public_modes,
    temp_prefix,
    write_json,
    write_private_text,
)


def _dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def plant(out: Path, pid: int, *, is_dir: bool) -> Path:
    """What a write of ``out`` killed in process ``pid`` leaves: its temporary, half-written."""
    name = temp_prefix(out).replace(f".{os.getpid()}.", f".{pid}.") + "abc123"
    tmp = out.parent / name
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        (tmp / "half").mkdir(parents=True)
        (tmp / "half" / "data.bin").write_bytes(b"partial")
    else:
        tmp.write_bytes(b"partial")
    return tmp


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("is_dir", [False, True])
def test_atomic_writers_remove_stale_temporaries_of_their_output(
    tmp_path: Path, live_pid: int, is_dir: bool
) -> None:
    out = tmp_path / "results" / "convert" / "batch-0000"
    stale = plant(out, _dead_pid(), is_dir=is_dir)
    running = plant(out, live_pid, is_dir=is_dir)  # another run still writing: left alone
    other = plant(tmp_path / "results" / "convert" / "batch-0001", _dead_pid(), is_dir=is_dir)
    with atomic_path(out, force=True, is_dir=is_dir) as tmp:
        if not is_dir:
            tmp.write_text("done")
    assert not stale.exists()
    assert running.exists()
    assert other.exists()  # only temporaries of its own output
    assert out.exists()


def test_write_json_and_private_text_remove_their_stale_temporaries(tmp_path: Path) -> None:
    for write, out in (
        (lambda p: write_json(p, {"a": 1}), tmp_path / "fhir" / "bundle.json"),
        (lambda p: write_private_text(p, "subject\tpseudonym\n"), tmp_path / "linkage" / "t.tsv"),
    ):
        stale = plant(out, _dead_pid(), is_dir=False)
        write(out)
        assert not stale.exists()
        assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_write_private_text_temporary_is_recognisable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "linkage" / "table.tsv"

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    seen: list[str] = []
    real_unlink = os.unlink
    monkeypatch.setattr(os, "unlink", lambda p: (seen.append(os.path.basename(p)), real_unlink(p)))
    with pytest.raises(KeyboardInterrupt):
        write_private_text(out, "x")
    # The name says whose temporary it is (output, host, pid), as atomic_path's do.
    assert len(seen) == 1 and seen[0].startswith(temp_prefix(out))


def test_trusted_zone_is_private_and_staged_output_public(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        enter_trusted_zone()
        with atomic_path(tmp_path / "convert" / "batch-0000", is_dir=True) as tmp:
            (tmp / "item").mkdir()
            (tmp / "item" / "sidecar.json").write_text("{}")
        write_json(tmp_path / "ingest" / "manifest.json", {})
        assert _mode(tmp_path / "convert" / "batch-0000") == 0o700
        assert _mode(tmp_path / "convert" / "batch-0000" / "item") == 0o700
        assert _mode(tmp_path / "convert" / "batch-0000" / "item" / "sidecar.json") == 0o600
        assert _mode(tmp_path / "ingest" / "manifest.json") == 0o600
        os.umask(0o022)
        public_modes(tmp_path / "convert")
        assert _mode(tmp_path / "convert" / "batch-0000" / "item") == 0o755
        assert _mode(tmp_path / "convert" / "batch-0000" / "item" / "sidecar.json") == 0o644
    finally:
        os.umask(old)


def test_key_file_readable_by_others_warns_or_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from imagedepot.deid import pseudonym

    monkeypatch.delenv("IMAGEDEPOT_PSEUDONYM_KEY", raising=False)
    monkeypatch.setattr(pseudonym, "_WARNED", set())
    key = tmp_path / "pseudonym.key"
    key.write_text("k" * 64)
    key.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert pseudonym.load_key(key_file=key) == b"k" * 64
    assert not caplog.records
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert pseudonym.load_key(key_file=key) == b"k" * 64
    assert "mode 0644" in caplog.text and "chmod 600" in caplog.text
    assert "k" * 16 not in caplog.text
    with pytest.raises(ConfigError, match="key_permissions") as exc:
        pseudonym.load_key(key_file=key, key_permissions="refuse")
    assert "k" * 16 not in str(exc.value)
    with pytest.raises(ConfigError, match="not one of"):
        pseudonym.load_key(key_file=key, key_permissions="maybe")


def test_temporary_names_start_with_the_prefix(tmp_path: Path) -> None:
    assert temp_prefix(tmp_path / "x").startswith(TMP_PREFIX + "x.")
