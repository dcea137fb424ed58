"""Running the engine on chunks of files, in this process or in worker processes; results in
input order."""

from __future__ import annotations

import gc
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.deid.dicom.engine import _Engine
from imagedepot.deid.dicom.reading import _NotDicom, _quiet_pydicom, _Skip
from imagedepot.deid.dicom.writing import _write
from imagedepot.deid.pixels import PixelRule
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.deid.recipe import Recipe
from imagedepot.errors import InputError
from imagedepot.pixeltext import identifiers as text_ids
from imagedepot.pixeltext.dicom import PixelTextSettings, finder
from imagedepot.pixeltext.engines import EngineUnavailable

#: Files handed to a worker at a time.
_CHUNK_FILES = 16


@dataclass(frozen=True)
class _Setup:
    """What a worker needs to build its engine (picklable)."""

    options: frozenset[str]
    pseudonymizer: Pseudonymizer
    subject: str
    pixel_rules: tuple[PixelRule, ...]
    keep_log: bool
    recipe: Recipe | None
    pixel_text: PixelTextSettings | None = None
    known: text_ids.Identifiers | None = None
    thumbnails: Path | None = None
    ocr_skip: frozenset[str] = frozenset()

    def engine(self) -> _Engine:
        return _Engine(
            self.options,
            self.pseudonymizer,
            self.subject,
            self.pixel_rules,
            self.keep_log,
            self.recipe,
            self.pixel_text,
            self.known,
            self.thumbnails,
            self.ocr_skip,
        )


@dataclass
class _Result:
    """What happened to one input file (sent back from a worker)."""

    index: int
    name: str = ""
    error: str | None = None
    skipped: str | None = None
    #: The error is that the file is not DICOM at all (skipped with ``skip_bad_files``).
    not_dicom: bool = False
    pid: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    claimed: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    log_line: str | None = None  # the file's action-log line (JSON), made by the worker
    text: dict[str, Any] | None = None

    @property
    def text_found(self) -> bool:
        """True when the detector found text in this file (blanked or not)."""
        return bool(self.text and self.text.get("found"))


_WORKER: dict[str, _Engine] = {}


def _init_worker(setup: _Setup) -> None:
    """Pool initializer: the worker's engine, built once (its caches serve every file)."""
    _WORKER.clear()
    _WORKER["engine"] = setup.engine()


def _run_chunk(
    engine: _Engine,
    chunk: Sequence[tuple[int, Path]],
    target_dir: Path | None,
    target: Path | None,
    shown: str | None = None,
) -> list[_Result]:
    """De-identify ``chunk`` into ``target_dir`` (or the single file ``target``, reported as
    ``shown``)."""
    out: list[_Result] = []
    for index, path in chunk:
        try:
            done = engine.process(path)
            dest = target if target is not None else (target_dir or Path()) / done.name
            if target is None and dest.parent != target_dir:
                raise InputError(path, "output name would leave the output folder")
            _write(done, path, dest, exclusive=target is None)
        except _Skip as skip:
            out.append(_Result(index, skipped=str(skip)))
            continue
        except InputError as exc:
            out.append(_Result(index, error=exc.reason, not_dicom=isinstance(exc, _NotDicom)))
            continue
        line = None
        if engine.keep_log:
            entry = {"actions": engine.flog.entries, "file": shown or done.name, "index": index}
            line = json.dumps(entry)  # keys already sorted (see _FileLog.add)
        out.append(
            _Result(
                index,
                name=done.name,
                pid=done.pid,
                counts=dict(engine.flog.counts),
                claimed=done.claimed,
                rules=done.rules,
                log_line=line,
                text=done.text,
            )
        )
    return out


def _prepare_text(settings: PixelTextSettings) -> None:
    """The text finder and the detector's runtime imported here once (forked workers inherit
    them; each loads the networks itself, on first use). A missing engine is left for each
    file to report."""
    try:
        finder(settings.detector)
        import onnxruntime  # noqa: F401
    except (EngineUnavailable, ImportError):
        pass


def _worker_chunk(chunk: Sequence[tuple[int, Path]], target_dir: Path) -> list[_Result]:
    with _quiet_pydicom():
        return _run_chunk(_WORKER["engine"], chunk, target_dir, None)


def _results(
    setup: _Setup, indexed: Sequence[tuple[int, Path]], target_dir: Path, workers: int
) -> Iterator[_Result]:
    """Results in input order, from this process or from ``workers`` processes."""
    indexed = list(indexed)
    if not indexed:
        return
    size = max(1, min(_CHUNK_FILES, len(indexed) // (workers * 4) or 1))
    chunks = [indexed[i : i + size] for i in range(0, len(indexed), size)]
    if workers == 1 or len(chunks) == 1:
        engine = setup.engine()
        with _quiet_pydicom():
            for chunk in chunks:
                yield from _run_chunk(engine, chunk, target_dir, None)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import pydicom  # noqa: F401 - imported once here, inherited by forked workers

    setup.engine()  # compiles the profile plan here once: forked workers inherit it
    if setup.pixel_text is not None:
        _prepare_text(setup.pixel_text)
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    # Objects that exist now are shared with forked workers: kept out of the workers' garbage
    # collections, which would otherwise touch (and so copy) every inherited page.
    gc.freeze()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(setup,),
    ) as pool:
        try:
            for batch in pool.map(_worker_chunk, chunks, itertools.repeat(target_dir)):
                yield from batch
        finally:  # stopped early (an error, fail closed): do not finish the others
            pool.shutdown(wait=True, cancel_futures=True)
            gc.unfreeze()
