"""DICOM series to NIfTI with ``dcm2niix``.

One call converts one series (the files of one SeriesInstanceUID, grouped by ``imagedepot scan``).
``dcm2niix`` takes a folder, so the listed files are linked into a private temporary folder under
neutral names (``000000.dcm``...): the originals are never written to, and neither their names nor
their folders (which may carry PHI) reach dcm2niix's output. The output names come from ``name``
only; ``dcm2niix``'s ``%`` placeholders (patient name, IDs, dates...) are refused.

The sidecar is written with ``-ba n`` (dcm2niix's own BIDS anonymisation off) on purpose: the NIfTI
de-identifier (:mod:`imagedepot.deid`) owns cleaning, applies the cohort's policy to the sidecar and
the NIfTI header (``descrip``, ``aux_file``) and must see everything that could leak in order to
record what it removed. An output of this step is therefore identifiable and stays in the trusted
zone until de-identified.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from imagedepot.convert import ConvertReport
from imagedepot.errors import ImagedepotError, InputError
from imagedepot.io import atomic_path

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

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def find_dcm2niix() -> str:
    """Return the path of the ``dcm2niix`` binary.

    Looked up on ``PATH``, then next to the running Python (a virtual environment's ``bin``, where
    the PyPI ``dcm2niix`` package installs its launcher), then inside that package.

    Raises
    ------
    ImagedepotError
        When no binary is found (an installation problem, not a problem of the data).
    """
    found = shutil.which("dcm2niix")
    if found:
        return found
    beside = Path(sys.executable).parent / ("dcm2niix.exe" if os.name == "nt" else "dcm2niix")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    try:
        import dcm2niix

        packaged = Path(dcm2niix.bin)
        if packaged.is_file():
            return str(packaged)
    except ImportError:
        pass
    raise ImagedepotError("dcm2niix not found: pip install dcm2niix (or put dcm2niix on PATH)")


def dcm2niix_version(exe: str | None = None) -> str | None:
    """Version printed by ``dcm2niix --version`` (e.g. ``v1.0.20240202``), or None.

    Uses :func:`imagedepot.provenance.dcm2niix_version` when the binary is the one on ``PATH``, so
    the step and the provenance record agree; asks ``exe`` itself otherwise.
    """
    from imagedepot.provenance import dcm2niix_version as on_path

    exe = exe or find_dcm2niix()
    if shutil.which("dcm2niix") == exe:
        return on_path()
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[-1].strip() if lines else None


def _link_inputs(files: Sequence[Path], folder: Path) -> None:
    """Put each file into ``folder`` as ``NNNNNN.dcm``: a symlink, else a hard link, else a copy."""
    for i, src in enumerate(files):
        dst = folder / f"{i:06d}.dcm"
        target = src.resolve()
        try:
            os.symlink(target, dst)
            continue
        except OSError:
            pass
        try:
            os.link(target, dst)
            continue
        except OSError:
            pass
        shutil.copyfile(target, dst)


def _clean_messages(text: str, replacements: dict[str, str]) -> list[str]:
    """dcm2niix's output lines without the banner, temporary paths replaced by placeholders."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("Chris Rorden's dcm2niiX") or line == "Defaults ignored":
            continue
        for old, new in replacements.items():
            line = line.replace(old, new)
        lines.append(line)
    return lines


def _tool_message(lines: list[str]) -> str:
    """The lines worth quoting in an error: warnings and errors, else the last few lines."""
    picked = [ln for ln in lines if re.match(r"(?i)(error|warning|unsupported|unable)", ln)]
    return "; ".join((picked or lines)[-6:]) or "no message"


def convert_dicom_series(
    files: Sequence[Path],
    out_dir: Path,
    *,
    compress: bool = True,
    force: bool = False,
    name: str = "series",
) -> ConvertReport:
    """Convert one DICOM series to NIfTI (plus BIDS JSON sidecar, and bval/bvec for diffusion).

    Parameters
    ----------
    files
        The files of the series. They are only read.
    out_dir
        Folder to create with the outputs (``<name>.nii.gz`` and ``<name>.json``; dcm2niix adds
        suffixes such as ``_e2`` or ``a`` when the series yields several volumes). Written under a
        temporary name and renamed when complete.
    compress
        Write ``.nii.gz`` (default) rather than ``.nii``.
    force
        Replace an existing ``out_dir``.
    name
        Base name of the outputs: letters, digits, ``_``, ``.``, ``-``; never derived from DICOM
        fields.

    Returns
    -------
    ConvertReport
        Outputs, dcm2niix version and exact arguments, input count, per-NIfTI shape, voxel size
        (mm) and orientation codes.

    Raises
    ------
    InputError
        A file is missing, dcm2niix cannot convert the series, or an output fails the read-back
        checks (shape, finite affine with non-zero determinant, finite scaling, readable data). The
        reason quotes dcm2niix.
    OutputExistsError
        ``out_dir`` exists and ``force`` is false.
    """
    from imagedepot.validate import inspect_nifti

    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"name {name!r}: use letters, digits, '_', '.' and '-' only")
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
        options={"compress": compress, "name": name},
    )
    version = dcm2niix_version(exe)
    if version:
        report.versions["dcm2niix"] = version

    with (
        tempfile.TemporaryDirectory(prefix="imagedepot-dcm2niix-") as tmp_in,
        atomic_path(out_dir, force=force, is_dir=True) as tmp_out,
    ):
        _link_inputs(paths, Path(tmp_in))
        # -g i: ignore any ~/.dcm2nii.ini so runs do not depend on the machine.
        # -b y -ba n: BIDS sidecar with everything dcm2niix knows (the de-identifier cleans it).
        # -f: fixed name, no DICOM-derived placeholders. (The temporary folder is flat; with -d 0
        # dcm2niix would no longer say why it found nothing.)
        args = ["-g", "i", "-b", "y", "-ba", "n", "-z", "y" if compress else "n"]
        args += ["-f", name, "-o", str(tmp_out), str(tmp_in)]
        placeholders = {str(tmp_out): "<output>", str(tmp_in): "<input>"}
        report.arguments = ["dcm2niix", *(placeholders.get(a, a) for a in args)]
        log.info("dcm2niix on %d file(s) of %s", len(paths), where)
        proc = subprocess.run(
            [exe, *args], capture_output=True, text=True, errors="replace", check=False
        )
        messages = _clean_messages(proc.stdout + "\n" + proc.stderr, placeholders)
        report.messages = [
            m for m in messages if not m.startswith(("Found ", "Convert ", "Conversion required"))
        ]
        if proc.returncode in INPUT_EXIT_CODES:
            what = INPUT_EXIT_CODES[proc.returncode]
            raise InputError(
                where,
                f"dcm2niix failed ({what}, exit {proc.returncode}): {_tool_message(messages)}",
            )
        if proc.returncode != 0:
            raise ImagedepotError(f"dcm2niix exited {proc.returncode}: {_tool_message(messages)}")

        produced = sorted(Path(tmp_out).iterdir())
        niftis = [p for p in produced if p.name.endswith(NIFTI_SUFFIXES)]
        if not niftis:
            raise InputError(where, f"dcm2niix wrote no NIfTI: {_tool_message(messages)}")
        for nii in niftis:
            info, problems = inspect_nifti(nii, require_scaling=True)
            if problems:
                raise InputError(
                    where,
                    f"dcm2niix output {nii.name}: {'; '.join(problems)} "
                    f"(dcm2niix said: {_tool_message(messages)})",
                )
            info["path"] = str(out_dir / nii.name)
            report.images.append(info)
        for sidecar in (p for p in produced if p.suffix == ".json"):
            try:
                # Structure only: DICOM text in a legacy character set may reach the sidecar as
                # non-UTF-8 bytes, which the de-identifier handles.
                json.loads(sidecar.read_bytes().decode("utf-8", errors="replace"))
            except ValueError as exc:
                raise InputError(
                    where, f"dcm2niix sidecar {sidecar.name} is not JSON: {exc}"
                ) from exc
        report.outputs = [str(out_dir / p.name) for p in produced]
    log.info("wrote %s", ", ".join(Path(o).name for o in report.outputs))
    return report


__all__ = ["convert_dicom_series", "dcm2niix_version", "find_dcm2niix"]
