"""The files under a source or the inbox (:class:`InputWalk`), symbolic links followed
once inside a boundary, every other entry accounted for.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from imagedepot.ingest.formats import is_nifti, nifti_sidecar
from imagedepot.io import TMP_PREFIX


def source_roots(source: str) -> list[Path]:
    """Where a sample-sheet source points: the file or folder itself, or the matches of a glob.

    A path that is a symbolic link is returned even when its target is missing (the walk lists it).
    """
    if any(ch in source for ch in "*?["):
        return sorted(Path(m) for m in glob.glob(source, recursive=True))
    return [Path(source)] if os.path.lexists(source) else []


def _source_base(source: str) -> Path:
    """The folder a source lies in: the source itself when it is a folder, else the folder above
    its first glob character (or above the file)."""
    parts = Path(source).parts
    plain: list[str] = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        plain.append(part)
    base = Path(*plain) if plain else Path(".")
    if len(plain) < len(parts) or base.is_dir():
        return base
    return base.parent


def _canon(p: Path) -> str:
    """A path with every folder above its last part resolved: the same entry, however it was
    reached (through a linked folder or not), has one form; a link itself stays a link."""
    return os.path.join(os.path.realpath(p.parent), p.name)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


class InputWalk:
    """The files under one or more roots, following symbolic links that stay inside a boundary.

    Plain folders and files are walked first and links after, so a file is found by its own path
    when it has one; each real folder is walked, and each real file taken, once (loop-safe). A link
    that points outside the boundary, dangles, loops, or leads to a folder or file already found
    is listed in :attr:`quarantine` with the reason instead of being followed, and so are folders
    that cannot be read and special files (devices, pipes, sockets): every entry is accounted for.

    Parameters
    ----------
    boundary
        Folder the links may point into (the inbox).
    where
        How reasons name the boundary, e.g. ``"the inbox"``.
    """

    def __init__(self, boundary: str | Path, where: str = "the inbox") -> None:
        self.boundary_path = Path(os.path.abspath(boundary))
        self.boundary = os.path.realpath(boundary)
        self.where = where
        #: Files found, in walk order, each real file once.
        self.files: list[Path] = []
        #: The real path of each file of :attr:`files`.
        self.real: dict[Path, str] = {}
        #: Files of :attr:`files` reached through a symbolic link.
        self.linked: set[Path] = set()
        #: Entries that are not followed, with the reason: ``{"path", "reason"}``.
        self.quarantine: list[dict[str, str]] = []
        #: :func:`_canon` forms of every link this walk followed or listed, and of every entry
        #: it quarantined: what it accounted for.
        self.handled: set[str] = set()
        self._real_files: set[str] = set()
        self._real_dirs: set[str] = set()
        self._paths: set[str] = set()
        self._links: list[Path] = []

    def add(self, root: str | Path) -> InputWalk:
        """Walk ``root`` (a file or a folder) without following links; the links met are queued
        for :meth:`finish`. A root reached through a link is queued like a link."""
        r = Path(root)
        if not os.path.lexists(r) or os.path.abspath(r) in self._paths:
            return self
        if self._redirected(r):
            self._links.append(r)
        elif r.is_dir():
            self._tree(r, linked=False)
        elif r.is_file():
            self._file(r, linked=False)
        else:
            self._problem(r, "not a regular file (a device, pipe or socket)")
        return self

    def finish(self) -> InputWalk:
        """Follow the queued links, and the links found behind them, once each."""
        while self._links:
            self._follow(self._links.pop(0))
        return self

    def _redirected(self, p: Path) -> bool:
        """Whether ``p`` is a link or lies below one (its real path is not where its name says)."""
        a = Path(os.path.abspath(p))
        try:
            expected = os.path.join(self.boundary, a.relative_to(self.boundary_path))
        except ValueError:
            expected = str(a)
        if os.path.realpath(a) == os.path.normpath(expected):
            return False
        q = a
        while self.boundary_path in q.parents:  # the links on the way in are used by this walk
            if q.is_symlink():
                self.handled.add(_canon(q))
            q = q.parent
        return True

    def _problem(self, p: Path, reason: str) -> None:
        self.handled.add(_canon(p))
        self.quarantine.append({"path": str(p), "reason": reason})

    def _file(self, p: Path, linked: bool) -> None:
        real = os.path.realpath(p)
        if real in self._real_files:
            if linked:
                self._problem(p, "symbolic link to a file already found by another path")
            return  # the same file named twice (overlapping glob matches)
        self._real_files.add(real)
        self._paths.add(os.path.abspath(p))
        self.files.append(p)
        self.real[p] = real
        if linked:
            self.linked.add(p)

    def _tree(self, top: Path, linked: bool) -> None:
        def unreadable(exc: OSError) -> None:
            where = Path(exc.filename) if exc.filename else top
            self._problem(
                where, f"folder cannot be read ({exc.strerror or type(exc).__name__}); not scanned"
            )

        for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable):
            here = Path(dirpath)
            real = os.path.realpath(here)
            if real in self._real_dirs:  # a root inside a folder already walked
                dirnames[:] = []
                continue
            self._real_dirs.add(real)
            keep = []
            for name in sorted(dirnames):
                if name.startswith(TMP_PREFIX):
                    continue
                if (here / name).is_symlink():
                    self._links.append(here / name)
                else:
                    keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                if name.startswith((TMP_PREFIX, ".snakemake_timestamp")):
                    continue
                f = here / name
                if f.is_symlink():
                    self._links.append(f)
                elif f.is_file():
                    self._file(f, linked)
                else:
                    self._problem(f, "not a regular file (a device, pipe or socket)")

    def _follow(self, link: Path) -> None:
        try:
            target = os.path.realpath(link, strict=True)
        except OSError:
            self._problem(link, "broken symbolic link (its target is missing or the links loop)")
            return
        if not _inside(target, self.boundary):
            self._problem(link, f"symbolic link pointing outside {self.where}")
            return
        if os.path.isdir(target):
            if target in self._real_dirs:
                self._problem(
                    link,
                    "symbolic link to a folder already scanned (by its own path or another link)",
                )
                return
            self.handled.add(_canon(link))
            self._tree(link, linked=True)
        elif os.path.isfile(target):
            self.handled.add(_canon(link))
            self._file(link, linked=True)
        else:
            self._problem(link, "not a regular file (a device, pipe or socket)")


def _add_sidecars(walk: InputWalk) -> None:
    """Add the JSON sidecar beside each NIfTI file found (a glob such as ``*.nii.gz`` names only
    the images); a sidecar that is a link is followed like any other."""
    for p in list(walk.files):
        if is_nifti(p):
            side = nifti_sidecar(p)
            if os.path.lexists(side):
                walk.add(side)
    walk.finish()
