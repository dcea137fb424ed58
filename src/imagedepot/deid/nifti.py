"""De-identify NIfTI files and their JSON sidecars.

The image is rewritten at the byte level: the header is kept field for field (dimensions, data
type, voxel sizes, qform/sform, scaling, units...) except its free-text fields, which are emptied,
and ``vox_offset``, which moves up once the extensions are gone; the voxel data bytes are copied
unchanged. Every header extension is removed (they hold DICOM headers, AFNI/CIFTI XML or comments).
Gzip outputs carry no original file name and no time stamp in their gzip header.

Sidecar keys are handled with the DICOM PS3.15 Annex E table E.1-1 (shipped in ``imagedepot/data``)
keyed by the DICOM keyword, which is also the BIDS / dcm2niix key:

* kept: keys of :data:`ALWAYS_KEEP` (acquisition parameters, manufacturer and model) and every key
  the table does not list (``RepetitionTime``, ``EchoTime``, ``FlipAngle``, ``SliceTiming``,
  ``PhaseEncodingDirection``...), unless it matches a rule below;
* dates (table rows with a dates option, and unlisted keys ending in ``Date``/``DateTime``):
  shifted with the subject's offset under ``retain_longitudinal_modified_dates``, kept under
  ``retain_longitudinal_full_dates``, removed otherwise; times of day (``AcquisitionTime``) are
  kept under either dates option;
* patient characteristics, device identity (station name, serial number), institution identity,
  UIDs: kept only with ``retain_patient_characteristics``, ``retain_device_identity``,
  ``retain_institution_identity``, ``retain_uids``; otherwise UIDs are remapped with the
  pseudonymiser and the rest removed;
* descriptors (``SeriesDescription``, ``ProtocolName``, ``ImageComments``..., and unlisted keys
  containing ``Comment`` or ``Description``): kept with ``clean_descriptors`` when they contain
  none of the identifiers found in the same sidecar and the subject's original ID, removed
  otherwise;
* everything else the table lists (names, IDs, birth date, addresses, free text...), and
  :data:`ALWAYS_REMOVE`: removed.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.resources
import json
import logging
import re
import shutil
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from imagedepot.deid.pseudonym import Pseudonymizer, date_mode, shift_date_value
from imagedepot.errors import InputError
from imagedepot.identifiers import Identifiers, harvest_json
from imagedepot.io import TMP_PREFIX, atomic_path, check_overwrite

log = logging.getLogger(__name__)

#: Free-text fields of NIfTI-1 and NIfTI-2 headers, emptied.
NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name", "data_type", "unused_str")

#: Sidecar keys kept whatever the table says (acquisition parameters researchers need).
ALWAYS_KEEP = frozenset(
    {
        "Manufacturer",
        "ManufacturersModelName",
        "SoftwareVersions",
        "MagneticFieldStrength",
        "ReceiveCoilName",
        "TransmitCoilName",
        "Modality",
        "ImageType",
        "SequenceName",
        "ScanningSequence",
        "SequenceVariant",
        "ScanOptions",
        "MRAcquisitionType",
        "BodyPartExamined",
        "ConversionSoftware",
        "ConversionSoftwareVersion",
    }
)

#: Sidecar keys always removed (identifying keys dcm2niix and others write under non-DICOM names).
ALWAYS_REMOVE = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
        "OperatorName",
        "UserName",
        "ComputerName",
        "Email",
    }
)

#: Keys of :data:`ALWAYS_REMOVE` that a retain option brings back (option, table column).
_RETAINABLE = {
    "InstitutionName": "retain_institution_identity",
    "InstitutionAddress": "retain_institution_identity",
    "InstitutionalDepartmentName": "retain_institution_identity",
    "StationName": "retain_device_identity",
    "DeviceSerialNumber": "retain_device_identity",
}

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_DATE_IN_VALUE = re.compile(r"\d{4}-?\d{2}-?\d{2}")
CHUNK = 1 << 20


@functools.cache
def _profile_table() -> dict[str, dict[str, str]]:
    """PS3.15 table E.1-1 rows by DICOM keyword."""
    from pydicom.datadict import keyword_for_tag

    ref = importlib.resources.files("imagedepot") / "data" / "ps3.15-table-e.1-1.json"
    rows = json.loads(ref.read_text(encoding="utf-8"))
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        try:
            tag = int(row["id"], 16)
        except ValueError:  # repeating groups such as 50xxxxxx
            continue
        keyword = keyword_for_tag(tag)
        if keyword:
            table[keyword] = row
    return table


def sidecar_action(key: str, options: Collection[str]) -> str:
    """Action for one sidecar key: ``keep``, ``remove``, ``date``, ``uid`` or ``descriptor``.

    See the module docstring for the rules.
    """
    if key in ALWAYS_KEEP:
        return "keep"
    if key in ALWAYS_REMOVE:
        option = _RETAINABLE.get(key)
        return "keep" if option is not None and option in options else "remove"
    row = _profile_table().get(key)
    if row is not None:
        if key == "PatientBirthDate":
            return "remove"
        if row.get("rtnLongFullDatesOpt") or row.get("rtnLongModifDatesOpt"):
            return "date"
        for column, option in (
            ("rtnPatCharsOpt", "retain_patient_characteristics"),
            ("rtnDevIdOpt", "retain_device_identity"),
            ("rtnInstIdOpt", "retain_institution_identity"),
            ("rtnUIDsOpt", "retain_uids"),
        ):
            if row.get(column) and option in options:
                return "keep"
        if row.get("cleanDescOpt") and "clean_descriptors" in options:
            return "descriptor"
        if "U" in row.get("basicProfile", ""):
            return "uid"
        return "remove"
    low = key.lower()
    if low.endswith("birthdate"):
        return "remove"
    if low.endswith(("date", "datetime")):
        return "date"
    if "comment" in low or "description" in low:
        return "descriptor" if "clean_descriptors" in options else "remove"
    return "keep"


@dataclass
class SidecarResult:
    """What happened to one sidecar (key names only, never values)."""

    removed: list[str] = field(default_factory=list)
    shifted: list[str] = field(default_factory=list)
    remapped: list[str] = field(default_factory=list)
    kept_descriptors: list[str] = field(default_factory=list)


def clean_sidecar(
    data: dict[str, Any],
    *,
    policy_options: Collection[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
) -> tuple[dict[str, Any], SidecarResult]:
    """Return a de-identified copy of a sidecar dict and what was done (nested dicts too)."""
    ids = harvest_json(data, Identifiers())
    ids.add(subject, "extra")
    result = SidecarResult()
    mode = date_mode(policy_options)

    def shift(value: Any) -> Any:
        if isinstance(value, list):
            shifted = [shift(v) for v in value]
            return None if any(s is None for s in shifted) else shifted
        if not isinstance(value, str):
            return None
        if not _DATE_IN_VALUE.search(value):
            return value  # a time of day: kept
        return shift_date_value(value, pseudonymizer, subject)

    def uid(value: Any) -> Any:
        if isinstance(value, list):
            mapped = [uid(v) for v in value]
            return None if any(v is None for v in mapped) else mapped
        text = str(value).strip()
        # Only real UIDs are remapped (so they match the de-identified DICOM); anything else in a
        # UID field (dcm2niix writes SeriesTime into SeriesInstanceUID) is removed, never kept.
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)+", text) or len(text) > 64:
            return None
        return pseudonymizer.uid(text)

    def clean(obj: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            name = f"{prefix}{key}"
            action = sidecar_action(str(key), policy_options)
            if action == "keep":
                if isinstance(value, dict):
                    value = clean(value, f"{name}.")
                elif isinstance(value, list):
                    value = [clean(v, f"{name}.") if isinstance(v, dict) else v for v in value]
                out[key] = value
            elif action == "date":
                if mode == "keep":
                    out[key] = value
                    continue
                new = shift(value) if mode == "shift" else None
                if new is None:
                    result.removed.append(name)
                else:
                    out[key] = new
                    if new != value:
                        result.shifted.append(name)
            elif action == "uid":
                new_uid = uid(value)
                if new_uid is None:
                    result.removed.append(name)
                else:
                    out[key] = new_uid
                    result.remapped.append(name)
            elif action == "descriptor":
                if isinstance(value, str | int | float) and not ids.find(str(value)):
                    out[key] = value
                    result.kept_descriptors.append(name)
                else:
                    result.removed.append(name)
            else:
                result.removed.append(name)
        return out

    return clean(data, ""), result


@dataclass
class NiftiFileReport:
    """What was done to one NIfTI file (and its sidecar)."""

    output: str
    header_fields_cleaned: list[str] = field(default_factory=list)
    extensions_removed: list[int] = field(default_factory=list)
    sidecar: str | None = None
    sidecar_keys_removed: list[str] = field(default_factory=list)
    sidecar_keys_shifted: list[str] = field(default_factory=list)
    sidecar_keys_remapped: list[str] = field(default_factory=list)
    sidecar_descriptors_kept: list[str] = field(default_factory=list)


@dataclass
class NiftiDeidReport:
    """What :func:`deidentify_nifti` did. Output names are pseudonymous; no original names."""

    files: list[NiftiFileReport] = field(default_factory=list)
    policy_options: list[str] = field(default_factory=list)
    date_mode: str = "remove"

    @property
    def files_written(self) -> list[str]:
        """Output files (images and sidecars), relative to the output folder or as file names."""
        out = []
        for f in self.files:
            out.append(f.output)
            if f.sidecar:
                out.append(f.sidecar)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with totals."""
        d = asdict(self)
        d["files_written"] = self.files_written
        d["totals"] = {
            "files": len(self.files),
            "header_fields_cleaned": sum(len(f.header_fields_cleaned) for f in self.files),
            "extensions_removed": sum(len(f.extensions_removed) for f in self.files),
            "sidecar_keys_removed": sum(len(f.sidecar_keys_removed) for f in self.files),
            "sidecar_keys_shifted": sum(len(f.sidecar_keys_shifted) for f in self.files),
        }
        return d


def _nifti_suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def sidecar_for(path: Path) -> Path:
    """The JSON sidecar path of a NIfTI file: ``x.nii.gz`` -> ``x.json``."""
    suffix = _nifti_suffix(path) or path.suffix
    return path.with_name(path.name[: len(path.name) - len(suffix)] + ".json")


def _find_nifti(folder: Path) -> list[Path]:
    found = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and _nifti_suffix(p) and not p.name.startswith(TMP_PREFIX)
    ]
    if not found:
        raise InputError(folder, "no .nii or .nii.gz file found")
    return found


@contextlib.contextmanager
def _open_read(path: Path) -> Iterator[IO[bytes]]:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            yield cast(IO[bytes], fh)
    else:
        with open(path, "rb") as fh:
            yield fh


@contextlib.contextmanager
def _open_write(path: Path, compress: bool) -> Iterator[IO[bytes]]:
    with open(path, "wb") as raw:
        if compress:
            # No file name and a zero time stamp in the gzip header (they may identify).
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                yield cast(IO[bytes], gz)
        else:
            yield raw


def _write_image(src: Path, target: Path, *, compress: bool) -> tuple[list[str], list[int]]:
    """Write ``src`` to ``target`` with a cleaned header and no extensions; data bytes copied."""
    import nibabel as nib

    try:
        img = nib.load(src)
    except Exception as exc:  # nibabel raises many types for bad files
        raise InputError(src, f"not a readable NIfTI file ({type(exc).__name__})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(src, "not a single-file NIfTI-1 or NIfTI-2 image")
    with _open_read(src) as fin, _open_write(target, compress) as fout:
        # The header as stored in the file (the image object's header copy is normalised).
        hdr = img.header_class.from_fileobj(fin)
        data_offset = int(hdr.get_data_offset())
        if data_offset < hdr.single_vox_offset:
            raise InputError(src, f"invalid vox_offset {data_offset}")
        cleaned = []
        for name in NIFTI_TEXT_FIELDS:
            if name not in hdr:
                continue
            if bytes(hdr[name].item()).strip(b"\x00 "):
                cleaned.append(name)
            hdr[name] = b""
        codes = [int(e.get_code()) for e in hdr.extensions]
        hdr.extensions.clear()
        new_offset = int(hdr.single_vox_offset)
        hdr["vox_offset"] = new_offset
        hdr.write_to(fout)
        pos = fout.tell()
        if pos < new_offset:
            fout.write(b"\x00" * (new_offset - pos))
        fin.seek(data_offset)
        shutil.copyfileobj(fin, fout, CHUNK)
    return cleaned, codes


def _deid_file(
    src: Path,
    image_target: Path,
    sidecar_src: Path | None,
    sidecar_target: Path,
    *,
    report_name: str,
    policy_options: Collection[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
) -> NiftiFileReport:
    """Write one cleaned image (and sidecar) to paths the caller made atomic."""
    compress = report_name.lower().endswith(".gz")
    cleaned, codes = _write_image(src, image_target, compress=compress)
    rep = NiftiFileReport(
        output=report_name, header_fields_cleaned=cleaned, extensions_removed=codes
    )
    if sidecar_src is not None and sidecar_src.is_file():
        try:
            data = json.loads(sidecar_src.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(sidecar_src, "sidecar is not valid UTF-8 JSON") from exc
        if not isinstance(data, dict):
            raise InputError(sidecar_src, "sidecar JSON is not an object")
        clean, result = clean_sidecar(
            data, policy_options=policy_options, pseudonymizer=pseudonymizer, subject=subject
        )
        sidecar_target.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
        rep.sidecar = sidecar_for(Path(report_name)).name
        rep.sidecar_keys_removed = result.removed
        rep.sidecar_keys_shifted = result.shifted
        rep.sidecar_keys_remapped = result.remapped
        rep.sidecar_descriptors_kept = result.kept_descriptors
    return rep


def deidentify_nifti(
    src: Path,
    out: Path,
    *,
    policy_options: frozenset[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    force: bool = False,
    sidecar: Path | None = None,
) -> NiftiDeidReport:
    """De-identify a NIfTI file (or a folder of them) and the JSON sidecars.

    Parameters
    ----------
    src
        A ``.nii``/``.nii.gz`` file (its sidecar ``<stem>.json`` is used when ``sidecar`` is None)
        or a folder searched recursively for them.
    out
        A path ending in ``.nii``/``.nii.gz``: the output image (compressed when it ends in
        ``.gz``), its sidecar beside it as ``<stem>.json``. Any other path is an output folder,
        written atomically, holding ``<pseudonym>_<NNN>.nii[.gz]`` (+ ``.json``) numbered in the
        sorted order of the inputs, compressed like the input: original names may carry PHI and
        are never reused.
    policy_options
        De-identification option names (``retain_longitudinal_modified_dates``...).
    pseudonymizer, subject
        Keyed pseudonymiser and the subject's original ID (pseudonym, date offset).
    force
        Replace existing outputs.
    sidecar
        The sidecar of a single-file ``src`` when it is not ``<stem>.json``.

    Returns
    -------
    NiftiDeidReport
        Per output file: header fields emptied, extension codes removed, sidecar keys removed,
        shifted or remapped.
    """
    src, out = Path(src), Path(out)
    if not src.exists():
        raise InputError(src, "input not found")
    options = frozenset(policy_options)
    report = NiftiDeidReport(policy_options=sorted(options), date_mode=date_mode(options))
    common: dict[str, Any] = {
        "policy_options": options,
        "pseudonymizer": pseudonymizer,
        "subject": subject,
    }
    if _nifti_suffix(out) is not None:
        if not src.is_file():
            raise InputError(src, "a folder of NIfTI files needs an output folder, not a file")
        side_out = sidecar_for(out)
        side_src = sidecar if sidecar is not None else sidecar_for(src)
        check_overwrite(out, force)
        if side_src.is_file():
            check_overwrite(side_out, force)
        with contextlib.ExitStack() as stack:
            img_tmp = stack.enter_context(atomic_path(out, force=force))
            side_tmp = (
                stack.enter_context(atomic_path(side_out, force=force))
                if side_src.is_file()
                else side_out
            )
            report.files.append(
                _deid_file(src, img_tmp, side_src, side_tmp, report_name=out.name, **common)
            )
    else:
        if src.is_file():
            if _nifti_suffix(src) is None:
                raise InputError(src, "not a .nii or .nii.gz file")
            inputs = [src]
        else:
            inputs = _find_nifti(src)
        pseudonym = pseudonymizer.subject_id(subject)
        with atomic_path(out, force=force, is_dir=True) as tmp:
            for n, path in enumerate(inputs, 1):
                suffix = _nifti_suffix(path) or ".nii.gz"
                stem = f"{pseudonym}_{n:03d}"
                side_src = sidecar if (sidecar is not None and src.is_file()) else sidecar_for(path)
                report.files.append(
                    _deid_file(
                        path,
                        tmp / f"{stem}{suffix}",
                        side_src,
                        tmp / f"{stem}.json",
                        report_name=f"{stem}{suffix}",
                        **common,
                    )
                )
    log.info(
        "de-identified %d NIfTI file(s): %d header fields emptied, %d extensions removed",
        len(report.files),
        sum(len(f.header_fields_cleaned) for f in report.files),
        sum(len(f.extensions_removed) for f in report.files),
    )
    return report
