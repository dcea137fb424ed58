"""NIfTI: nibabel reads it back; shape, affine, orientation codes, scaling, data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.validate.base import ValidationResult

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def check_nifti(path: Path, result: ValidationResult) -> None:
    """Check a NIfTI file (see :func:`inspect_nifti`)."""
    info, problems = inspect_nifti(path)
    result.info.update(info)
    result.errors.extend(problems)


def inspect_nifti(
    path: str | Path, *, require_scaling: bool = False, data: str = "last_plane"
) -> tuple[dict[str, Any], list[str]]:
    """Read a NIfTI back and check it (the one NIfTI checker of the package).

    Parameters
    ----------
    path
        ``.nii`` or ``.nii.gz`` file.
    require_scaling
        Require finite ``scl_slope`` and ``scl_inter`` (dcm2niix always writes them). Without it a
        NaN slope is accepted as "no scaling", as nibabel writes it.
    data
        How the voxel data are checked: ``"last_plane"`` decodes the last 2-D plane (a truncated
        or undecodable file fails; flags non-finite float voxels), ``"size"`` decodes nothing and
        compares the data block's size with what the header says (the file size of a ``.nii``, the
        gzip trailer of a ``.nii.gz``, decompressed in full only when the trailer disagrees).

    Returns
    -------
    info, problems
        ``info`` has ``shape``, ``dtype``, ``zooms`` (mm, and seconds for a 4th axis) and
        ``axcodes`` (e.g. ``("L", "A", "S")``, the direction each voxel axis increases towards);
        ``problems`` lists what is wrong (empty when the file is good).
    """
    import nibabel as nib

    info: dict[str, Any] = {}
    problems: list[str] = []
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a bad file
        return info, [f"nibabel cannot read it: {exc}"]
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image derives from it
        return info, [f"not a NIfTI image ({type(img).__name__})"]
    hdr = img.header
    shape = tuple(int(n) for n in img.shape)
    info["shape"] = list(shape)
    info["dtype"] = str(hdr.get_data_dtype())
    info["zooms"] = [float(z) for z in hdr.get_zooms()]
    if len(shape) < 2 or min(shape) < 1:
        problems.append(f"bad shape {shape}")
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)):
        problems.append("affine is not finite")
    elif abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12:
        problems.append("affine is singular (zero determinant)")
    else:
        info["axcodes"] = list(nib.aff2axcodes(affine))
    if int(hdr["sform_code"]) <= 0 and int(hdr["qform_code"]) <= 0:
        problems.append("no spatial orientation (qform_code and sform_code are 0)")
    # nibabel moves scaling from the loaded header to the data proxy: read the stored values.
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        raw = img.header_class.from_fileobj(fh)
    slope = float(raw["scl_slope"])
    inter = float(raw["scl_inter"])
    info["scl_slope"] = slope if np.isfinite(slope) else None
    info["scl_inter"] = inter if np.isfinite(inter) else None
    if np.isinf(slope) or (require_scaling and not np.isfinite(slope)):
        problems.append(f"scl_slope is not finite ({slope})")
    if np.isinf(inter) or (require_scaling and not np.isfinite(inter)):
        problems.append(f"scl_inter is not finite ({inter})")
    if data == "size":
        # The loaded header forgets vox_offset (nibabel recomputes it on save): use the stored one.
        expected = int(raw["vox_offset"]) + int(np.prod(shape)) * hdr.get_data_dtype().itemsize
        found = _data_size(Path(path), expected)
        if found < expected:
            problems.append(f"data truncated: {found} of {expected} bytes")
    elif not problems:
        # Read the last 2-D plane: a truncated file fails here, memory stays one plane.
        index = (slice(None), slice(None)) + (-1,) * (len(shape) - 2)
        try:
            last = np.asanyarray(img.dataobj[index])
        except Exception as exc:
            problems.append(f"data cannot be read: {exc}")
        else:
            if np.issubdtype(last.dtype, np.floating) and not np.all(np.isfinite(last)):
                info["non_finite_voxels"] = True
    return info, problems


def _data_size(path: Path, expected: int) -> int:
    """Bytes of the NIfTI stream (uncompressed), trusting a gzip trailer that matches."""
    if not path.name.endswith(".gz"):
        return path.stat().st_size
    import gzip
    import struct
    import zlib

    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        (isize,) = struct.unpack("<I", fh.read(4))
    if isize == expected % (1 << 32):
        return expected
    total = 0
    try:
        with gzip.open(path, "rb") as gz:
            while chunk := gz.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        pass
    return total


__all__ = ["NIFTI_SUFFIXES", "check_nifti", "inspect_nifti"]
