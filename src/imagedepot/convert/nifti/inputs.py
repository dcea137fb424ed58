"""A series' files as dcm2niix reads them: their own folder or a private folder of links
with neutral names, deflated files inflated; and what files without an image are.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


#: Deflated Explicit VR Little Endian: dcm2niix refuses it; pydicom inflates it without decoding
#: any pixel (the deflate applies to the whole dataset), so such files are inflated and retried.
DEFLATED = "1.2.840.10008.1.2.1.99"


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
