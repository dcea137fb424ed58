"""dcm2niix's outputs: each NIfTI read back and described, flagged from its name and
sidecar, and the rules for irregular slices and unknown slice direction applied.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError

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


_IRREGULAR = re.compile(r"(?i)interslice distance varies|gantry tilt")
_NO_DIRECTION = re.compile(r"(?i)unable to determine slice direction")
_RESAMPLED_TAIL = re.compile(r"_(Eq|Tilt)_\d+$")


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
