"""De-identifying an OME-Zarr store: a copy whose attributes and OME-XML are cleaned."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from imagedepot.deid.ome.clean import clean_ome_xml, is_generic_name, is_ome_xml
from imagedepot.deid.ome.report import OmeDeidReport, _auxiliary_images
from imagedepot.deid.pseudonym import Pseudonymizer, date_mode
from imagedepot.errors import InputError
from imagedepot.io import atomic_path
from imagedepot.pixeltext.dicom import PixelTextSettings

_ZARR_ATTR_FILES = frozenset({".zattrs", "zarr.json", ".zmetadata"})


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and (
        path.name.lower().endswith(".zarr")
        or any((path / n).is_file() for n in ("zarr.json", ".zgroup", ".zarray"))
    )


def _neutral_name(name: Any, index: int) -> tuple[Any, bool]:
    if is_generic_name(name):
        return name, False
    return f"image_{index}", True


def _clean_attrs(
    obj: Any,
    report: OmeDeidReport,
    *,
    index: int,
    mode: str,
    offset_ms: int,
    dates: Counter[str],
) -> Any:
    """Clean OME-Zarr attributes in place: image names, plate names and acquisition times."""
    if isinstance(obj, list):
        for v in obj:
            _clean_attrs(v, report, index=index, mode=mode, offset_ms=offset_ms, dates=dates)
        return obj
    if not isinstance(obj, dict):
        return obj
    for ms in obj.get("multiscales", []) if isinstance(obj.get("multiscales"), list) else []:
        if isinstance(ms, dict) and "name" in ms:
            ms["name"], changed = _neutral_name(ms["name"], index)
            report.zarr_names_replaced += changed
    omero = obj.get("omero")
    if isinstance(omero, dict) and "name" in omero:
        omero["name"], changed = _neutral_name(omero["name"], index)
        report.zarr_names_replaced += changed
    plate = obj.get("plate")
    if isinstance(plate, dict):
        if plate.pop("name", None) is not None:
            report.zarr_fields_removed += 1
        for acq in plate.get("acquisitions", []) or []:
            if not isinstance(acq, dict):
                continue
            for key in ("name", "description"):
                if acq.pop(key, None) is not None:
                    report.zarr_fields_removed += 1
            for key in ("starttime", "endtime"):
                if key not in acq:
                    continue
                if mode == "keep":
                    dates["kept"] += 1
                elif mode == "shift" and isinstance(acq[key], int):
                    acq[key] += offset_ms
                    dates["shifted"] += 1
                else:
                    del acq[key]
                    dates["removed"] += 1
    for key, value in obj.items():
        # consolidated metadata is keyed by node path ("1/.zattrs", "1"): the image index
        sub = index
        if isinstance(value, dict) and ("/" in key or key.isdigit() or key in _ZARR_ATTR_FILES):
            sub = _index_from_path(key)
        _clean_attrs(value, report, index=sub, mode=mode, offset_ms=offset_ms, dates=dates)
    return obj


def _index_from_path(path: str) -> int:
    parts = [p for p in path.split("/") if p and p not in _ZARR_ATTR_FILES | {".zarray", ".zgroup"}]
    return int(parts[-1]) if parts and parts[-1].isdigit() else 0


def _deid_zarr(
    src: Path,
    out: Path,
    *,
    options: frozenset[str],
    pseudonymizer: Pseudonymizer,
    subject: str,
    pixel_text: PixelTextSettings,
    force: bool,
) -> OmeDeidReport:
    report = OmeDeidReport(format="ome-zarr", output=out.name, policy_options=sorted(options))
    mode = date_mode(options)
    offset_ms = pseudonymizer.date_offset_days(subject) * 86_400_000
    dates: Counter[str] = Counter()
    with atomic_path(out, force=force, is_dir=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        _auxiliary_images(src, tmp, report, pixel_text)
        for dirpath, _dirnames, filenames in os.walk(tmp):
            folder = Path(dirpath)
            index = int(folder.name) if folder.name.isdigit() else 0
            for name in filenames:
                path = folder / name
                if name in _ZARR_ATTR_FILES:
                    try:
                        data = json.loads(path.read_text(encoding="utf-8"))
                    except (ValueError, UnicodeDecodeError) as exc:
                        raise InputError(src, f"invalid Zarr metadata file {name}") from exc
                    before = json.dumps(data, sort_keys=True)
                    _clean_attrs(
                        data, report, index=index, mode=mode, offset_ms=offset_ms, dates=dates
                    )
                    if json.dumps(data, sort_keys=True) != before:
                        path.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")
                elif name.lower().endswith(".xml"):
                    text = path.read_text(encoding="utf-8", errors="replace")
                    if not is_ome_xml(text):
                        continue
                    try:
                        cleaned, summary = clean_ome_xml(
                            text,
                            policy_options=options,
                            pseudonymizer=pseudonymizer,
                            subject=subject,
                        )
                    except ValueError as exc:
                        raise InputError(src, f"invalid OME-XML in {name}: {exc}") from exc
                    path.write_text(cleaned, encoding="utf-8")
                    report._add_xml(summary)
    report.zarr_dates = dict(sorted(dates.items()))
    return report
