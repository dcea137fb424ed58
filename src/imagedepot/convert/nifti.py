"""DICOM series to NIfTI with ``dcm2niix``.

One call converts one series (the files of one SeriesInstanceUID, grouped by ``imagedepot scan``).
``dcm2niix`` reads a folder: the series' own folder when it holds exactly the listed files (no
other file, no subfolder), else a private temporary folder where the files are linked under
neutral names (``000000.dcm``...). The originals are never written to, and neither their names
nor their folders (which may carry PHI) reach the outputs or the report: in dcm2niix's messages
they become ``<input>/000000.dcm``... The output names come from ``name`` only; ``dcm2niix``'s
``%`` placeholders (patient name, IDs, dates...) are refused. Files in Deflated Explicit VR Little
Endian, which dcm2niix refuses, are inflated with pydicom into the private folder (pixel data
unchanged) and the conversion is run again.

The sidecar is written with ``-ba n`` (dcm2niix's own BIDS anonymisation off) on purpose: the NIfTI
de-identifier (:mod:`imagedepot.deid`) owns cleaning, applies the cohort's policy to the sidecar and
the NIfTI header (``descrip``, ``aux_file``) and must see everything that could leak in order to
record what it removed. An output of this step is therefore identifiable and stays in the trusted
zone until de-identified.

Several outputs from one series
-------------------------------
dcm2niix writes one NIfTI per volume it can stack. A series may give several: echoes of a
multi-echo sequence (``_e1``, ``_e2``...), slices in different orientations such as a three-plane
localizer (``_i00001``...), phase and magnitude (``_ph``), real and imaginary parts, overlays
(``_ROI1``), cardiac trigger times (``_t178``)... Every one is kept, with its sidecar (and
``.bval``/``.bvec`` for diffusion), and recorded in :attr:`ConvertReport.images
<imagedepot.convert.ConvertReport.images>` with:

* ``path``, ``sidecar`` (or None), ``extra_files``; ``shape``, ``dtype``, ``zooms`` (mm, then
  seconds), ``axcodes`` (:func:`nibabel.aff2axcodes`), ``scl_slope``/``scl_inter``;
* ``postfix``: what dcm2niix appended to ``name`` (``""`` for the plain output);
* ``echo``: the sidecar's ``EchoNumber`` (None when absent);
* ``flags``: from the postfix and the sidecar's ``ImageType``/``SeriesDescription``/
  ``ProtocolName`` (see :data:`POSTFIX_FLAGS` and :func:`output_flags`): ``localizer``,
  ``derived``, ``phase``, ``real``, ``imaginary``, ``overlay``, ``motion_corrected``, ``adc``,
  ``resampled``. Flags inform later steps (the BIDS layout sends localizers and derived images to
  their own folders); they never drop an output.

Rules for awkward series
------------------------
1. **No image** (structured reports, presentation states, key objects... alone in the "series"):
   :class:`NoImageError`, an :class:`~imagedepot.errors.InputError` whose reason says what the
   files are (read with pydicom, only on this failure path) and quotes dcm2niix.
2. **Irregular slice positions** (a missing slice, uneven spacing, gantry tilt): a NIfTI volume
   has one slice spacing and no shear, so the stacked output would put slices at the wrong place.
   dcm2niix then warns ``Interslice distance varies`` and also writes a resampled copy (``_Eq``
   for spacing, ``_Tilt`` for tilt). With ``irregular_slices="quarantine"`` (default) the series
   raises :class:`~imagedepot.errors.InputError` quoting dcm2niix. With ``"resample"`` only the
   resampled volumes are kept (flag ``resampled``; they get a copy of the stack's sidecar): their
   slices sit where the DICOM says, but voxel values between the acquired slices are
   interpolated. The dropped stack is named in :attr:`ConvertReport.messages`. Without a
   resampled copy the series is quarantined in both modes.
3. **Unknown slice direction** (dcm2niix: ``Unable to determine slice direction``) on an output
   with more than one slice: :class:`~imagedepot.errors.InputError` (slices may be flipped).
4. **Files left out** (duplicates removed by dcm2niix, a non-image object inside an image series):
   the outputs are kept and a message says how many input files are in no NIfTI and why.
5. **Read-back**: every NIfTI is opened with nibabel; a bad shape, an affine that is not finite or
   is singular, no qform/sform, non-finite scaling, or a data block shorter than the header says
   raises :class:`~imagedepot.errors.InputError`. The data block is checked by size (the gzip
   trailer of ``.nii.gz``), not decoded: the NIfTI de-identifier reads every byte next, with the
   gzip checksum.

Known limit: for Enhanced (multi-frame) MR files whose Manufacturer is Siemens or GE, dcm2niix
orders 4-D frames by vendor convention rather than by DimensionIndexValues; on synthetic files
that follow only the standard, volumes and slices come out interleaved without any warning (see
``tests/unit/convert/test_nifti_geometry.py::test_enhanced_4d_labelled_siemens``). Classic
single-frame series and 3-D enhanced files are not affected.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagedepot.convert import ConvertReport
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

NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: What to do with a series whose slices are not evenly spaced and aligned (rule 2 above).
IRREGULAR_SLICE_MODES = ("quarantine", "resample")

#: Flags given by a ``_``-separated token of dcm2niix's name postfix (see dcm2niix FILENAMING.md).
POSTFIX_FLAGS = {
    "Eq": "resampled",
    "Tilt": "resampled",
    "ph": "phase",
    "phMag": "phase",
    "real": "real",
    "imaginary": "imaginary",
    "MoCo": "motion_corrected",
    "ADC": "adc",
}

#: Series descriptions or protocol names of localizers (scouts, surveys, three-plane locators).
LOCALIZER_NAME = re.compile(
    r"(?<![a-z0-9])(localizer|localiser|scout|survey|3.?plane.?loc\w*)(?![a-z])", re.IGNORECASE
)

#: ``ImageType`` values that flag an output.
IMAGE_TYPE_FLAGS = {
    "LOCALIZER": "localizer",
    "SCOUT": "localizer",
    "DERIVED": "derived",
    "PHASE": "phase",
    "P": "phase",
    "REAL": "real",
    "IMAGINARY": "imaginary",
    "MOCO": "motion_corrected",
}

# dcm2niix messages read by the rules above (stable wording across releases since 2019).
_FOUND = re.compile(r"^Found (\d+) DICOM file", re.MULTILINE)
_CONVERTED = re.compile(r"^Convert (\d+) DICOM as", re.MULTILINE)
_IRREGULAR = re.compile(r"(?i)interslice distance varies|gantry tilt")
_NO_DIRECTION = re.compile(r"(?i)unable to determine slice direction")
_RESAMPLED_TAIL = re.compile(r"_(Eq|Tilt)_\d+$")
_LAUNCHER_MAX_BYTES = 64 * 1024
#: Deflated Explicit VR Little Endian: dcm2niix refuses it; pydicom inflates it without decoding
#: any pixel (the deflate applies to the whole dataset), so such files are inflated and retried.
DEFLATED = "1.2.840.10008.1.2.1.99"


class NoImageError(InputError):
    """The files hold no image to convert (structured report, presentation state...).

    The reason names what the files are and quotes dcm2niix. The workflow records such series as
    "not converted" rather than damaged; see :func:`imagedepot.pipeline.nifti_skip_reason`.
    """


def _is_launcher(path: str) -> bool:
    """True for a small script (``#!``), such as the Python launcher the PyPI wheel installs."""
    try:
        if os.path.getsize(path) > _LAUNCHER_MAX_BYTES:
            return False
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def find_dcm2niix() -> str:
    """Return the path of the ``dcm2niix`` binary.

    Looked up on ``PATH``, then next to the running Python (a virtual environment's ``bin``), then
    inside the PyPI ``dcm2niix`` package. The launcher script that package installs in ``bin`` is
    skipped in favour of the binary it starts (one Python process fewer per series); it is used
    only when nothing else is found.

    Raises
    ------
    ImagedepotError
        When no binary is found (an installation problem, not a problem of the data).
    """
    exe_name = "dcm2niix.exe" if os.name == "nt" else "dcm2niix"
    candidates = [shutil.which("dcm2niix"), str(Path(sys.executable).parent / exe_name)]
    try:
        import dcm2niix

        candidates.insert(1, str(dcm2niix.bin))
    except ImportError:
        pass
    usable = [c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)]
    for c in usable:
        if not _is_launcher(c):
            return c
    if usable:
        return usable[0]
    raise ImagedepotError("dcm2niix not found: pip install dcm2niix (or put dcm2niix on PATH)")


@functools.lru_cache(maxsize=8)
def _version_of(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[-1].strip() if lines else None


def dcm2niix_version(exe: str | None = None) -> str | None:
    """Version printed by ``dcm2niix --version`` (e.g. ``v1.0.20240202``), or None.

    Asked of ``exe`` (default: :func:`find_dcm2niix`), the binary that converts; remembered for
    the life of the process.
    """
    return _version_of(exe or find_dcm2niix())


def _series_folder(files: Sequence[Path]) -> Path | None:
    """The folder that holds exactly ``files`` and nothing else (no subfolder), if any.

    dcm2niix can then read that folder as it is: no links to make (on some file systems a
    symbolic link costs a millisecond, a tenth of the conversion time of a 512-slice series).
    """
    absolute = [Path(os.path.abspath(f)) for f in files]
    parents = {p.parent for p in absolute}
    names = {p.name for p in absolute}
    if len(parents) != 1 or len(names) != len(absolute):
        return None
    folder = parents.pop()
    seen = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name not in names or not entry.is_file():
                    return None
                seen += 1
    except OSError:
        return None
    return folder if seen == len(names) else None


def _placeholders(files: Sequence[Path], folder: Path, out: Path) -> dict[str, str]:
    """Paths to hide in dcm2niix's messages, longest first: originals by their neutral names."""
    names = {str(out): "<output>", str(folder): "<input>"}
    for i, f in enumerate(files):
        names[os.path.join(folder, Path(f).name)] = f"<input>/{i:06d}.dcm"
    return dict(sorted(names.items(), key=lambda kv: -len(kv[0])))


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


def _inflate(files: Sequence[Path], folder: Path) -> int:
    """Replace the links to deflated files in ``folder`` by inflated copies; return how many."""
    import pydicom
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    done = 0
    for i, src in enumerate(files):
        try:
            syntax = str(read_file_meta_info(src).get("TransferSyntaxUID", ""))
        except Exception as exc:  # not DICOM, or no file meta: dcm2niix has its say on those
            log.debug("no file meta in input %d: %s", i, exc)
            continue
        if syntax != DEFLATED:
            continue
        ds = pydicom.dcmread(src)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dst = folder / f"{i:06d}.dcm"
        dst.unlink()
        ds.save_as(dst, enforce_file_format=True)
        done += 1
    return done


def _preload(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # the read-back imports it again and reports a failure there
        log.debug("preloading %s failed: %s", module, exc)


def _run(exe: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run dcm2niix; meanwhile import nibabel for the read-back in a thread (a fresh process,
    such as the workflow's CLI step, then pays for that import while dcm2niix works)."""
    with subprocess.Popen(
        [exe, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    ) as proc:
        loader = None
        if "nibabel" not in sys.modules:
            loader = threading.Thread(target=_preload, args=("nibabel",), daemon=True)
            loader.start()
        stdout, stderr = proc.communicate()
        if loader is not None:
            loader.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _clean_messages(text: str, replacements: dict[str, str]) -> list[str]:
    """dcm2niix's output lines without the banner, temporary paths replaced by placeholders."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if (
            not line
            or line.startswith(("Chris Rorden's dcm2niiX", "::"))
            or line == "Defaults ignored"
        ):
            continue
        for old, new in replacements.items():
            line = line.replace(old, new)
        lines.append(line)
    return lines


def _tool_message(lines: list[str]) -> str:
    """The lines worth quoting in an error: warnings and errors, else the last few lines."""
    picked = [
        ln
        for ln in lines
        if re.match(r"(?i)(error|warning|unsupported|unable|no valid|slices not stacked)", ln)
    ]
    return "; ".join((picked or lines)[-6:]) or "no message"


def _describe_files(paths: Sequence[Path]) -> tuple[str, bool]:
    """Say what the files are that hold no image (read with pydicom; failure paths only).

    Returns the description and whether every file is a DICOM object without pixel data.
    """
    import pydicom

    kinds: Counter[str] = Counter()
    images = 0
    for p in paths:
        try:
            ds = pydicom.dcmread(p, defer_size=256, force=True)
            sop = ds.get("SOPClassUID")
        except Exception:  # pydicom raises many types on files that are not DICOM
            kinds["not DICOM"] += 1
            continue
        if sop is None and not ds.get("Modality"):
            kinds["not DICOM"] += 1
        elif any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            images += 1
        else:
            name = getattr(sop, "name", None) or str(sop or "unknown SOP class")
            kinds[f"{name} ({ds.get('Modality') or 'no modality'}), no pixel data"] += 1
    parts = [f"{n} file(s): {what}" for what, n in sorted(kinds.items())]
    only_objects = images == 0 and bool(kinds) and "not DICOM" not in kinds
    return "; ".join(parts), only_objects


def _read_sidecar(path: Path, where: Path) -> dict[str, Any]:
    try:
        # DICOM text in a legacy character set may reach the sidecar as non-UTF-8 bytes, which
        # the de-identifier handles: decode leniently here.
        data = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise InputError(where, f"dcm2niix sidecar {path.name} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(where, f"dcm2niix sidecar {path.name} is not a JSON object")
    return data


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".json", ".bval", ".bvec"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_flags(postfix: str, sidecar: dict[str, Any] | None) -> list[str]:
    """Flags of one dcm2niix output, from its name postfix and its sidecar (sorted, unique)."""
    flags: set[str] = set()
    for token in postfix.split("_"):
        if token in POSTFIX_FLAGS:
            flags.add(POSTFIX_FLAGS[token])
        elif re.fullmatch(r"ROI\d+", token):
            flags.add("overlay")
    side = sidecar or {}
    image_type = side.get("ImageType")
    if isinstance(image_type, str):
        image_type = image_type.replace("\\", "_").split("_")
    if isinstance(image_type, list):
        for value in image_type:
            flag = IMAGE_TYPE_FLAGS.get(str(value).upper())
            if flag:
                flags.add(flag)
    for key in ("SeriesDescription", "ProtocolName"):
        if isinstance(side.get(key), str) and LOCALIZER_NAME.search(side[key]):
            flags.add("localizer")
    return sorted(flags)


def check_nifti(path: Path) -> tuple[dict[str, Any], list[str]]:
    """Check a NIfTI dcm2niix wrote, without decoding the voxel data: header, geometry, finite
    scaling (dcm2niix always writes it) and a data block as long as the header says
    (:func:`imagedepot.validate.inspect_nifti` with ``require_scaling`` and ``data="size"``)."""
    from imagedepot.validate.nifti import inspect_nifti

    return inspect_nifti(path, require_scaling=True, data="size")


def _irregular(
    niftis: list[Path], text: str, mode: str, where: Path, quote: str
) -> tuple[set[Path], list[str]]:
    """Apply rule 2: return the stacked outputs to drop and the messages saying so."""
    resampled = [p for p in niftis if _RESAMPLED_TAIL.search(_stem(p))]
    if not resampled and not _IRREGULAR.search(text):
        return set(), []
    what = (
        "slice positions are irregular (missing slices, uneven spacing or gantry tilt): a NIfTI "
        "volume cannot hold them without resampling"
    )
    if mode == "quarantine" or not resampled:
        if resampled:
            what += " (irregular_slices='resample' keeps dcm2niix's resampled volume instead)"
        raise InputError(where, f"{what}; dcm2niix said: {quote}")
    drop: set[Path] = set()
    notes = []
    for r in resampled:
        base_stem = _RESAMPLED_TAIL.sub("", _stem(r))
        for p in niftis:
            if _stem(p) == base_stem:
                drop.add(p)
                notes.append(
                    f"{p.name} not kept: its slices are stacked at regular spacing though the DICOM "
                    f"positions are not; {r.name} (resampled by dcm2niix) is kept instead"
                )
    return drop, notes


def _collect(
    tmp_out: Path, out_dir: Path, name: str, text: str, mode: str, where: Path, quote: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Apply rules 2, 3 and 5 to dcm2niix's outputs in ``tmp_out``; describe each kept NIfTI."""
    produced = sorted(tmp_out.iterdir())
    niftis = [p for p in produced if p.name.endswith(NIFTI_SUFFIXES)]
    if not niftis:
        raise InputError(where, f"dcm2niix wrote no NIfTI: {quote}")
    drop, notes = _irregular(niftis, text, mode, where, quote)
    images = []
    for nii in (p for p in niftis if p not in drop):
        stem = _stem(nii)
        sidecar_path = tmp_out / f"{stem}.json"
        base_json = tmp_out / f"{_RESAMPLED_TAIL.sub('', stem)}.json"
        if not sidecar_path.exists() and base_json.exists():
            shutil.copyfile(base_json, sidecar_path)  # a resampled copy: same acquisition
        sidecar = _read_sidecar(sidecar_path, where) if sidecar_path.exists() else None
        info, problems = check_nifti(nii)
        shape = info.get("shape") or []
        if not problems and len(shape) > 2 and shape[2] > 1 and _NO_DIRECTION.search(text):
            problems.append("dcm2niix cannot tell the slice direction (slices may be flipped)")
        if problems:
            raise InputError(
                where, f"dcm2niix output {nii.name}: {'; '.join(problems)} (dcm2niix said: {quote})"
            )
        postfix = stem[len(name) :]
        echo = sidecar.get("EchoNumber") if sidecar else None
        info.update(
            path=str(out_dir / nii.name),
            sidecar=str(out_dir / sidecar_path.name) if sidecar is not None else None,
            extra_files=[
                str(out_dir / p.name)
                for p in produced
                if _stem(p) == stem and p.name.endswith((".bval", ".bvec"))
            ],
            postfix=postfix,
            echo=int(echo) if isinstance(echo, int | float) else None,
            flags=output_flags(postfix, sidecar),
        )
        images.append(info)
    for p in drop:  # the stacked volume, its sidecar and any bval/bvec
        for sibling in produced:
            if _stem(sibling) == _stem(p):
                sibling.unlink()
    return images, notes


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


__all__ = [
    "IRREGULAR_SLICE_MODES",
    "NoImageError",
    "check_nifti",
    "convert_dicom_series",
    "dcm2niix_version",
    "find_dcm2niix",
    "output_flags",
]
