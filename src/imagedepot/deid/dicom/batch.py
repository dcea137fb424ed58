"""The batch orchestration: :func:`deidentify_dicom`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from imagedepot.deid import profile
from imagedepot.deid.dicom.reading import NOT_DICOM, _quiet_pydicom
from imagedepot.deid.dicom.report import DeidReport
from imagedepot.deid.dicom.sampling import _ocr_plan
from imagedepot.deid.dicom.workers import _Result, _results, _run_chunk, _Setup
from imagedepot.deid.pixels import PixelRule
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.deid.recipe import Recipe
from imagedepot.errors import InputError
from imagedepot.io import atomic_path, check_overwrite, iter_files
from imagedepot.pixeltext import identifiers as text_ids
from imagedepot.pixeltext.dicom import (
    PixelTextSettings,
)
from imagedepot.pixeltext.engines import engine_info as text_engine_info
from imagedepot.progress import Progress

log = logging.getLogger(__name__)


def _collect(
    src: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], bool]:
    if isinstance(src, str | os.PathLike):
        p = Path(src)
        if p.is_file():
            return [p], True
        if p.is_dir():
            files = list(iter_files(p))
            if not files:
                raise InputError(p, "folder holds no files")
            return files, False
        raise InputError(p, "no such file or folder")
    files = [Path(s) for s in src]
    if not files:
        raise InputError("(empty list)", "no input files")
    for f in files:
        if not f.is_file():
            raise InputError(f, "not a file")
    return files, False


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def deidentify_dicom(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    policy_options: Iterable[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    force: bool = False,
    action_log: str | os.PathLike[str] | None = None,
    pixel_rules: Sequence[PixelRule] = (),
    recipe: Recipe | None = None,
    skip_bad_files: bool = False,
    workers: int = 1,
    pixel_text: PixelTextSettings | None = None,
    identifiers: Iterable[tuple[str, str]] = (),
    thumbnails: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> DeidReport:
    """De-identify DICOM files with the PS3.15 Basic Profile and ``policy_options``.

    Parameters
    ----------
    src
        A DICOM file, a folder (searched recursively) or a list of files. Inputs are opened
        read-only and never modified.
    out
        For a single file: the output file. Otherwise a folder that receives one file per
        instance, named ``<remapped SOPInstanceUID>.dcm`` (flat: input names and sub-folders,
        which may carry identifying information, are not reproduced). Written atomically:
        it appears complete or not at all.
    policy_options
        PS3.15 option names (see :data:`imagedepot.deid.profile.OPTIONS`).
    pseudonymizer
        Keyed pseudonyms: subject ID, UIDs, date offset.
    subject
        The subject's original identifier (pseudonymised as Patient's Name and Patient ID).
    force
        Replace an existing ``out``.
    action_log
        If given, one JSON line per written file is appended: output name and, per action,
        tag, keyword, action and, for replaced values, a 12-hex-character keyed hash
        (HMAC-SHA256 with the pseudonymisation key) of the old value, never the value. A plain
        hash would let anyone with the log recover low-entropy values such as birth dates.
        Actions of a deid recipe carry ``"rule": "recipe:<line>"``.
    pixel_rules
        Pixel-cleaning rules (used with ``clean_pixel_data``; a matching rule also flags an
        image as carrying text). :meth:`imagedepot.policy.Policy.dicom_options` gives the
        policy's rules, its recipe's and deid's filter database's.
    recipe
        A deid recipe applied after the profile (:mod:`imagedepot.deid.recipe`).
    skip_bad_files
        If false (the default, fail closed), the first unusable file raises
        :class:`InputError` and nothing is written. If true, files that are not DICOM at all
        (no DICM prefix, no DICOM attributes: a README, a JSON) are listed in
        :attr:`DeidReport.skipped`, other unusable files in :attr:`DeidReport.errors`, and the
        others are written.
    workers
        Processes working on files in parallel (1: in this process). Each file is read,
        cleaned and written by one worker; memory per worker does not grow with the number of
        files. Outputs and report are the same for any number of workers.
    pixel_text
        Burned-in text detection (:mod:`imagedepot.pixeltext.dicom`); ``None`` means the
        defaults (``blank_all``, every frame of every file). Detection always runs.
    identifiers
        ``(value, kind)`` pairs of identifiers from outside the file (the sample and consent
        sheets' subject IDs...) that ``blank_phi`` looks for too (kinds: name, id, date...).
    thumbnails
        A folder (trusted zone only) for before/after PNGs of every image blanked or refused
        for its text.
    progress
        Advanced by one per input file done (:mod:`imagedepot.progress`); its total is set to
        the number of inputs unless the caller set it.

    Raises
    ------
    InputError
        Naming the file: not DICOM, truncated, no SOP Instance UID, burned-in annotation that
        no rule cleans, recognisable features under that option, several patients, duplicate
        instances, a recipe value that does not fit, or an output inside the input.
    OutputExistsError
        ``out`` exists and ``force`` is false.
    """
    options = profile.check_options(policy_options)
    files, single = _collect(src)
    progress = progress if progress is not None else Progress()
    progress.start(len(files))
    out_path = Path(out)
    if single:
        if out_path.resolve() == files[0].resolve():
            raise InputError(out_path, "output would overwrite the input")
    elif not isinstance(src, str | os.PathLike) or Path(src).is_dir():
        root = Path(src) if isinstance(src, str | os.PathLike) else None
        if root is not None and _is_within(out_path, root):
            raise InputError(out_path, "output folder lies inside the input folder")
    check_overwrite(out_path, force)
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (given {workers})")

    text = pixel_text if pixel_text is not None else PixelTextSettings()
    known = text_ids.Identifiers()
    known.add(subject, "id")
    for value, kind in identifiers:
        known.add(value, kind)
    ocr_skip, series_of = _ocr_plan(files, text) if not single else (frozenset(), {})
    setup = _Setup(
        options,
        pseudonymizer,
        subject,
        tuple(pixel_rules),
        action_log is not None,
        recipe,
        text,
        known,
        Path(thumbnails) if thumbnails is not None else None,
        ocr_skip,
    )
    pseudonym = pseudonymizer.subject_id(subject)
    report = DeidReport(
        output=out_path.name,
        n_inputs=len(files),
        options=sorted(options),
        pseudonym=pseudonym,
        linkage=[(subject, pseudonym)],
    )
    report.pixel_text_engine = {"settings": text.to_dict(), "engines": text_engine_info()}
    counts: Counter[str] = Counter()
    claimed_all: set[str] = set()

    with contextlib.ExitStack() as stack:
        log_fh = None
        if action_log is not None:
            log_fh = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
        if single:
            tmp = stack.enter_context(atomic_path(out_path, force=force))
            with _quiet_pydicom():
                (res,) = _run_chunk(setup.engine(), [(0, files[0])], None, tmp, out_path.name)
            progress.advance()
            if res.error is not None or res.skipped is not None:
                raise InputError(files[0], str(res.error or res.skipped))
            _accept(res, out_path.name, report, counts, claimed_all, log_fh)
        else:
            tmpdir = stack.enter_context(atomic_path(out_path, force=force, is_dir=True))
            expected_pid: str | None = None
            sampled = [(i, f) for i, f in enumerate(files) if str(f) not in ocr_skip]
            later = [(i, f) for i, f in enumerate(files) if str(f) in ocr_skip]
            with_text: set[str] = set()

            def passes() -> Iterator[_Result]:
                yield from _results(setup, sampled, tmpdir, workers)
                if later:  # ocr_series: sample. A series with text is read whole
                    still = frozenset(
                        str(f) for _, f in later if series_of[str(f)] not in with_text
                    )
                    again = dataclasses.replace(setup, ocr_skip=still)
                    yield from _results(again, later, tmpdir, workers)

            for res in passes():
                progress.advance()
                path = files[res.index]
                if res.text_found or res.error is not None:  # text, or refused: read it all
                    uid = series_of.get(str(path))
                    if uid:
                        with_text.add(uid)
                if res.skipped is not None:
                    report.skipped.append(
                        {"index": res.index, "path": str(path), "reason": res.skipped}
                    )
                    continue
                error = res.error
                if error is None and res.pid:
                    if expected_pid is None:
                        expected_pid = res.pid
                    elif res.pid != expected_pid:
                        error = "Patient ID differs from the other files of this call"
                        (tmpdir / res.name).unlink()
                if error is not None:
                    if not skip_bad_files:
                        raise InputError(path, error)
                    if res.not_dicom:
                        report.skipped.append(
                            {"index": res.index, "path": str(path), "reason": NOT_DICOM}
                        )
                    else:
                        report.errors.append(
                            {"index": res.index, "path": str(path), "reason": error}
                        )
                    continue
                _accept(res, res.name, report, counts, claimed_all, log_fh)
            if not report.files_written:
                raise InputError(
                    os.fspath(src) if isinstance(src, str | os.PathLike) else files[0],
                    "no DICOM instance could be de-identified",
                )
        if log_fh is not None and action_log is not None and report.files_written:
            log_path = Path(action_log)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_fh.seek(0)
            with open(log_path, "a", encoding="utf-8") as fh:
                shutil.copyfileobj(log_fh, fh)

    report.actions = dict(counts)
    report.options_claimed = sorted(claimed_all)
    log.info(
        "de-identified %d of %d DICOM files into %s",
        len(report.files_written),
        len(files),
        out_path,
    )
    return report


def _accept(
    res: _Result,
    shown: str,
    report: DeidReport,
    counts: Counter[str],
    claimed_all: set[str],
    log_fh: Any,
) -> None:
    report.files_written.append(shown)
    counts.update(res.counts)
    claimed_all.update(res.claimed)
    if res.rules:
        report.pixel_cleaned.append({"file": shown, "rules": res.rules})
    if res.text is not None and res.text.get("sampled_out"):
        report.ocr_sampled_out += 1
    elif res.text is not None:
        report.ocr_files += 1
        if res.text.get("found"):
            report.pixel_text.append(dict(res.text))
    if log_fh is not None and res.log_line is not None:
        log_fh.write(res.log_line + "\n")
