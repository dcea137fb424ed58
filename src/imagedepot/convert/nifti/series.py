""":func:`convert_dicom_series`: one DICOM series to NIfTI with dcm2niix, and the files
it leaves out.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from imagedepot.convert import ConvertReport
from imagedepot.convert.nifti.dcm2niix_tool import (
    _clean_messages,
    _run,
    _tool_message,
    dcm2niix_version,
    find_dcm2niix,
)
from imagedepot.convert.nifti.inputs import (
    DEFLATED,
    _describe_files,
    _inflate,
    _link_inputs,
    _placeholders,
    _series_folder,
)
from imagedepot.convert.nifti.outputs import IRREGULAR_SLICE_MODES, _collect
from imagedepot.errors import ImagedepotError, InputError
from imagedepot.io import atomic_path, temp_prefix

log = logging.getLogger(__name__)


#: Allowed output base names: no path separators and no dcm2niix ``%`` placeholders.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

#: dcm2niix exit codes that mean "this input cannot be converted" (the item is quarantined).
#: 1 unspecified error, 2 no valid DICOM found, 4 corrupt DICOM, 8 some files converted and some
#: not, 10 incompatible images. Other non-zero codes (output folder not writable...) are system
#: errors and fail the job.
INPUT_EXIT_CODES = {
    1: "error",
    2: "no valid DICOM",
    4: "corrupt DICOM",
    8: "partly converted",
    10: "incompatible images",
}


# dcm2niix messages read by the rules above (stable wording across releases since 2019).


_FOUND = re.compile(r"^Found (\d+) DICOM file", re.MULTILINE)
_CONVERTED = re.compile(r"^Convert (\d+) DICOM as", re.MULTILINE)


class NoImageError(InputError):
    """The files hold no image to convert (structured report, presentation state...).

    The reason names what the files are and quotes dcm2niix. The workflow records such series as
    "not converted" rather than damaged; see :func:`imagedepot.pipeline.nifti_skip_reason`.
    """


def convert_dicom_series(
    files: Sequence[Path],
    out_dir: Path,
    *,
    compress: bool = True,
    force: bool = False,
    name: str = "series",
    irregular_slices: str = "quarantine",
) -> ConvertReport:
    """Convert one DICOM series to NIfTI (plus BIDS JSON sidecar, and bval/bvec for diffusion).

    Parameters
    ----------
    files
        The files of the series. They are only read.
    out_dir
        Folder to create with the outputs (``<name>.nii.gz`` and ``<name>.json``; dcm2niix adds
        postfixes such as ``_e2`` or ``_i00002`` when the series yields several volumes). Written
        under a temporary name and renamed when complete.
    compress
        Write ``.nii.gz`` (default) rather than ``.nii``.
    force
        Replace an existing ``out_dir``.
    name
        Base name of the outputs: letters, digits, ``_``, ``.``, ``-``; never derived from DICOM
        fields.
    irregular_slices
        ``"quarantine"`` (default) or ``"resample"``: what to do when the slice positions are not
        evenly spaced and aligned (rule 2 of the module documentation).

    Returns
    -------
    ConvertReport
        Outputs, dcm2niix version and exact arguments, input count, one entry per NIfTI in
        ``images`` (shape, voxel size in mm, orientation codes, sidecar, postfix, echo, flags) and
        dcm2niix's warnings in ``messages``.

    Raises
    ------
    NoImageError
        The files are DICOM objects without pixel data (SR, presentation state...).
    InputError
        A file is missing, dcm2niix cannot convert the series, the slice positions are irregular
        (unless resampling is allowed) or of unknown direction, or an output fails the read-back
        checks. The reason quotes dcm2niix.
    OutputExistsError
        ``out_dir`` exists and ``force`` is false.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name {name!r}: use letters, digits, '_', '.' and '-' only")
    if irregular_slices not in IRREGULAR_SLICE_MODES:
        raise ValueError(
            f"irregular_slices {irregular_slices!r}: use one of {IRREGULAR_SLICE_MODES}"
        )
    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError("no files given")
    for p in paths:
        if not p.is_file():
            raise InputError(p, "no such file")
    where = Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    out_dir = Path(out_dir)
    exe = find_dcm2niix()
    report = ConvertReport(
        step="convert_nifti",
        inputs=[str(p) for p in paths],
        input_count=len(paths),
        tool="dcm2niix",
        options={"compress": compress, "name": name, "irregular_slices": irregular_slices},
    )
    version = dcm2niix_version(exe)
    if version:
        report.versions["dcm2niix"] = version

    # The scratch folder (links to the originals, or inflated copies of them) lies beside the
    # output and is named as its temporary: a conversion killed midway leaves it there, where the
    # next conversion of that output removes it (io.remove_stale_temporaries), instead of in the
    # system's temporary folder for good.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=temp_prefix(out_dir), dir=out_dir.parent) as tmp_in,
        atomic_path(out_dir, force=force, is_dir=True) as tmp_out,
    ):
        # dcm2niix reads a folder: the series' own folder when it holds nothing else, else a
        # private folder of links with neutral names. Either way, original names and folders are
        # replaced by placeholders in everything reported.
        source = _series_folder(paths)
        if source is None:
            source = Path(tmp_in)
            _link_inputs(paths, source)
        # -g i: ignore any ~/.dcm2nii.ini so runs do not depend on the machine.
        # -b y -ba n: BIDS sidecar with everything dcm2niix knows (the de-identifier cleans it).
        # -f: fixed name, no DICOM-derived placeholders. (The input folder is flat; with -d 0
        # dcm2niix would no longer say why it found nothing.)
        args = ["-g", "i", "-b", "y", "-ba", "n", "-z", "y" if compress else "n"]
        args += ["-f", name, "-o", str(tmp_out)]
        placeholders = _placeholders(paths, source, Path(tmp_out))
        report.arguments = ["dcm2niix", *args[:-1], "<output>", "<input>"]
        log.info("dcm2niix on %d file(s) of %s", len(paths), where)
        proc = _run(exe, [*args, str(source)])
        text = proc.stdout + "\n" + proc.stderr
        inflated = 0
        if DEFLATED in text:
            if source != Path(tmp_in):
                _link_inputs(paths, Path(tmp_in))
            if inflated := _inflate(paths, Path(tmp_in)):
                for p in Path(tmp_out).iterdir():
                    p.unlink()
                placeholders = _placeholders(paths, Path(tmp_in), Path(tmp_out))
                proc = _run(exe, [*args, tmp_in])
                text = proc.stdout + "\n" + proc.stderr
        messages = _clean_messages(text, placeholders)
        quote = _tool_message(messages)
        report.messages = [
            m for m in messages if not m.startswith(("Found ", "Convert ", "Conversion required"))
        ]
        if inflated:
            report.messages.insert(
                0, f"{inflated} deflated file(s) inflated for dcm2niix (pixel data unchanged)"
            )
        if proc.returncode in INPUT_EXIT_CODES:
            what = INPUT_EXIT_CODES[proc.returncode]
            reason = f"dcm2niix failed ({what}, exit {proc.returncode}): {quote}"
            if proc.returncode == 2:
                described, only_objects = _describe_files(paths)
                if only_objects:
                    raise NoImageError(where, f"no image to convert ({described}); {reason}")
                if described:
                    reason = f"{reason} [{described}]"
            raise InputError(where, reason)
        if proc.returncode != 0:
            raise ImagedepotError(f"dcm2niix exited {proc.returncode}: {quote}")

        images, notes = _collect(Path(tmp_out), out_dir, name, text, irregular_slices, where, quote)
        report.images = images
        report.messages += notes
        _count_left_out(report, text, len(paths), paths)
        report.outputs = [str(out_dir / p.name) for p in sorted(Path(tmp_out).iterdir())]
    log.info("wrote %s", ", ".join(Path(o).name for o in report.outputs))
    return report


def _count_left_out(report: ConvertReport, text: str, given: int, paths: Sequence[Path]) -> None:
    """Rule 4: say how many input files are in no NIfTI, and why when it can be told."""
    converted = sum(int(n) for n in _CONVERTED.findall(text))
    if not _CONVERTED.search(text) or converted >= given:
        return
    found = sum(int(n) for n in _FOUND.findall(text))
    why = []
    if found < given:
        why.append(f"{given - found} not read as DICOM by dcm2niix")
    if re.search(r"(?i)duplicates removed", text):
        why.append("duplicates removed by dcm2niix")
    described, _ = _describe_files(paths)
    objects = [d for d in described.split("; ") if "no pixel data" in d]
    if objects:
        why.append("non-image objects: " + "; ".join(objects))
    message = (
        f"{given - converted} of {given} input file(s) are in no NIfTI"
        f" ({', '.join(why) or 'dcm2niix did not say why'})"
    )
    log.warning("%s", message)
    report.messages.append(message)
