"""NIfTI and microscopy files told by name and opened once to check them; multi-file
OME-TIFF companions and NIfTI sidecars.
"""

from __future__ import annotations

import re
from pathlib import Path

from imagedepot.errors import InputError

#: Microscopy formats recognised by extension (read by tifffile or Bio-Formats).
MICROSCOPY_SUFFIXES = (
    ".ome.tif", ".ome.tiff", ".ome.btf", ".tif", ".tiff", ".btf", ".czi", ".lif", ".nd2", ".oib",
    ".oir", ".oif", ".dv", ".r3d", ".lsm", ".ims", ".vsi", ".svs", ".ndpi", ".scn", ".zvi",
    ".lei", ".stk", ".fake",
)  # fmt: skip
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _lower_name(p: Path) -> str:
    return p.name.lower()


def is_nifti(p: Path) -> bool:
    """Whether the name says NIfTI."""
    return _lower_name(p).endswith(NIFTI_SUFFIXES)


def is_microscopy(p: Path) -> bool:
    """Whether the name says a microscopy format."""
    return _lower_name(p).endswith(MICROSCOPY_SUFFIXES)


def _ome_companions(p: Path) -> set[Path]:
    """Other files of a multi-file OME-TIFF set named in this file's OME-XML (same folder)."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            xml = tif.ome_metadata or ""
    except Exception as exc:
        raise InputError(p, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    names = set(re.findall(r'FileName="([^"]+)"', xml))
    out = set()
    for name in names:
        if "/" in name or "\\" in name or name.startswith("."):
            continue  # never follow paths out of the folder
        q = p.parent / name
        if q != p:
            out.add(q)
    return out


def _check_nifti(p: Path) -> None:
    import nibabel as nib

    try:
        img = nib.load(str(p))
        shape = img.shape  # type: ignore[attr-defined]
    except Exception as exc:
        raise InputError(p, f"unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
    if not shape or min(shape) == 0:
        raise InputError(p, f"NIfTI has an empty dimension (shape {shape})")


def _check_microscopy(p: Path) -> None:
    if p.stat().st_size == 0 and not _lower_name(p).endswith(".fake"):
        raise InputError(p, "empty file")
    if _lower_name(p).endswith((".tif", ".tiff", ".btf")):
        import tifffile

        try:
            with tifffile.TiffFile(p) as tif:
                if not tif.series:
                    raise InputError(p, "TIFF holds no image series")
        except InputError:
            raise
        except Exception as exc:
            raise InputError(p, f"unreadable TIFF ({type(exc).__name__}: {exc})") from exc


def nifti_sidecar(p: Path) -> Path:
    """The BIDS-style JSON sidecar path of a NIfTI file (``x.nii.gz`` -> ``x.json``)."""
    stem = p.name[: -len(".nii.gz")] if p.name.lower().endswith(".gz") else p.name[:-4]
    return p.with_name(stem + ".json")
