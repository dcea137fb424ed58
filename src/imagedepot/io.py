"""Safe file handling: read-only inputs, atomic outputs, checksums.

Every output is written under a temporary name in the same folder and renamed when complete,
so an interrupted run leaves no half-written file or folder that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imagedepot.errors import OutputExistsError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TMP_PREFIX = ".imagedepot-tmp-"


def sha256_file(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks (memory flat in file size)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """Describe a file for a manifest or provenance: relative path, size in bytes, sha256."""
    p = Path(path)
    rel = os.path.relpath(p, root) if root is not None else str(p)
    return {"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)}


def check_overwrite(path: str | Path, force: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``force`` is false."""
    if os.path.lexists(path) and not force:
        raise OutputExistsError(path)


def _remove(path: Path, *, ignore_errors: bool = False) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    elif os.path.lexists(path):
        with contextlib.suppress(*((FileNotFoundError,) if ignore_errors else ())):
            path.unlink()


def _host() -> str:
    # Dots are fine (temporary names are split from the right); path separators are not.
    return (socket.gethostname() or "localhost").replace(os.sep, "_")


def _tmp_prefix(final: Path) -> str:
    """Temporaries of ``final`` are named ``<TMP_PREFIX><name>.<host>.<pid>.<random>``."""
    return f"{TMP_PREFIX}{final.name}."


def temp_prefix(path: str | Path) -> str:
    """Name prefix of this process's temporaries for ``path`` (what
    :func:`remove_stale_temporaries` recognises once the process is gone)."""
    final = Path(path)
    return f"{_tmp_prefix(final)}{_host()}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Remove what interrupted writes of ``out`` left beside it; return the paths removed.

    Only temporaries made on this host by a process that no longer runs are removed; the others (a
    run still going, another host of a shared file system) are left alone and never read.
    """
    final = Path(out)
    prefix = _tmp_prefix(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    host = _host()
    for path in final.parent.iterdir():
        if not path.name.startswith(prefix):
            continue
        parts = path.name[len(prefix) :].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        _remove(path, ignore_errors=True)
        removed.append(path)
        log.warning("removed %s, left by an interrupted write (process %d)", path.name, pid)
    return removed


@contextlib.contextmanager
def atomic_path(
    path: str | Path,
    *,
    force: bool = False,
    is_dir: bool = False,
    remove_stale: bool = True,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    With ``is_dir`` the temporary path is an (empty) folder. On error (or ``KeyboardInterrupt``)
    the temporary is removed and ``path`` is left untouched. An existing ``path`` is replaced only
    with ``force``. Temporaries are named after ``path``, this host and this process, so a killed
    process leaves only a temporary; the temporaries of ``path`` that dead processes left are
    removed first (:func:`remove_stale_temporaries`; it lists the parent folder once), so the next
    run of an interrupted step leaves nothing behind. ``remove_stale=False`` skips that.
    The output gets the umask-derived mode (0666/0777 & ~umask): 0600/0700 in the trusted zone
    (:func:`enter_trusted_zone`), 0644/0755 with the usual umask.
    """
    final = Path(path)
    check_overwrite(final, force)
    final.parent.mkdir(parents=True, exist_ok=True)
    if remove_stale:
        remove_stale_temporaries(final)
    prefix = temp_prefix(final)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if os.path.lexists(final):
            _remove(final)
        os.replace(tmp, final)
        # mkstemp/mkdtemp create 0600/0700; outputs get the usual umask-derived mode.
        os.chmod(final, (0o777 if is_dir else 0o666) & ~_umask())
    except BaseException:
        _remove(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


#: Permission bits the trusted zone takes away: files 0600, folders 0700.
TRUSTED_UMASK = 0o077


def enter_trusted_zone() -> None:
    """Make every file and folder this process creates from now on private (0600 / 0700).

    For the verbs that write the trusted zone (scan, convert, deid, leakcheck, batch, fhir):
    their outputs hold original names, paths, MRNs or birth dates. The umask is tightened (never
    loosened), so whatever writes a file (atomic_path, mkdir, a converter) gets the private mode.
    """
    os.umask(_umask() | TRUSTED_UMASK)


def restrict_folder(path: str | Path) -> None:
    """Make ``path`` (a stage folder of the trusted zone, e.g. ``results/convert``) mode 0700.

    Snakemake creates the parent folders of outputs with the usual umask before the step runs;
    this closes them. A folder of another owner is left alone (chmod would fail).
    """
    p = Path(path)
    with contextlib.suppress(OSError):
        st = p.stat()
        if p.is_dir() and st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(p, 0o700)


def public_modes(root: str | Path) -> None:
    """Give ``root`` and everything under it the usual umask-derived modes (0644 / 0755).

    For staged output, which is meant to leave: files copied from the trusted zone would keep
    their private modes otherwise.
    """
    umask = _umask()
    r = Path(root)
    os.chmod(r, 0o777 & ~umask)
    for dirpath, dirnames, filenames in os.walk(r):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~umask)
        for f in filenames:
            full = os.path.join(dirpath, f)
            if not os.path.islink(full):
                os.chmod(full, 0o666 & ~umask)


def write_text(path: str | Path, text: str, *, force: bool = True) -> Path:
    """Write text atomically (``force`` defaults to true: used for outputs the caller owns)."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any, *, force: bool = True) -> Path:
    """Write JSON atomically, sorted keys and indented for stable diffs."""
    return write_text(
        path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", force=force
    )


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_private_text(path: str | Path, text: str) -> Path:
    """Write a file readable by its owner only (mode 0600), atomically: for linkage tables and keys."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    # Named like atomic_path's temporaries, so a killed write is recognised and removed next time.
    fd, name = tempfile.mkstemp(prefix=temp_prefix(final), dir=final.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(name, 0o600)
        os.replace(name, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return final


def iter_files(root: str | Path) -> Iterator[Path]:
    """Yield every regular file under ``root`` (or ``root`` itself), sorted, skipping our temporaries."""
    r = Path(root)
    if r.is_file():
        yield r
        return
    for dirpath, dirnames, filenames in os.walk(r):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(TMP_PREFIX))
        for name in sorted(filenames):
            if name.startswith((TMP_PREFIX, ".snakemake_timestamp")):
                continue
            p = Path(dirpath) / name
            if p.is_file():
                yield p
