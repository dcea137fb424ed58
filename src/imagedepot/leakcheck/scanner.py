"""Scan outputs for the harvested identifiers (:func:`scan`); :func:`leakcheck` harvests and scans.

What is scanned
---------------
Every file and folder *name* under each output; the decoded headers of DICOM files (file meta,
sequences, private tags, short private binary values); JSON, TSV/CSV, XML, YAML and other text
files (anything without NUL bytes that decodes as UTF-8); NIfTI header text fields, extensions and
the original-name field of the gzip header; every ASCII tag of every page of a TIFF (OME-XML,
Micro-Manager JSON, Artist...); the metadata files of Zarr stores (``.zattrs``, ``.zgroup``,
``.zarray``, ``.zmetadata``, ``zarr.json``, ``*.xml``, ``*.json``). Binary pixel data, Zarr chunk
files (every other file inside a Zarr store) and binary files of other formats (PNG, HDF5...) are
not scanned: only their names are.

With the policy's ``pixel_text`` settings (the workflow's leak gate), the pixels of DICOM images
are read for burned-in text, and the auxiliary series of OME-Zarr stores and OME-TIFF files (slide
label, macro, overview, thumbnail, preview: :mod:`imagedepot.pixeltext.series`) are refused: each
one still present under ``auxiliary_images: remove``, and under ``ocr`` each one whose pixels hold
text (read as de-identification read it) or cannot be read, is a hit of kind ``pixel_text``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from imagedepot.errors import InputError
from imagedepot.identifiers import KINDS, Identifiers, as_text
from imagedepot.leakcheck.formats import (
    CHUNK_NAME_RE,
    DICOM_SUFFIXES,
    JSON_NAMES,
    MAX_JSON_PARSE,
    TEXT_SUFFIXES,
    TIFF_MAGIC,
    TIFF_SUFFIXES,
    decodes,
    dicom_values,
    gzip_header_texts,
    is_nifti_name,
    load_nifti_header,
    nifti_texts,
    read_dicom,
    sniff,
    walk_dicom,
)
from imagedepot.leakcheck.harvesting import harvest, text_identifiers
from imagedepot.leakcheck.report import MAX_HITS, LeakReport
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.pixeltext.identifiers import Identifiers as TextIdentifiers
from imagedepot.safeload import local_name, parse_xml

log = logging.getLogger(__name__)


def _salted(salt: bytes, key: str) -> str:
    return hashlib.sha256(salt + key.encode("utf-8")).hexdigest()[:10]


def allowed_kinds_for_options(options: Iterable[str]) -> frozenset[str]:
    """Kinds of identifiers a de-identification policy keeps on purpose.

    ``retain_longitudinal_full_dates`` keeps dates (not the birth date),
    ``retain_institution_identity`` institutions, ``retain_device_identity`` station names and
    serial numbers, ``retain_uids`` UIDs. Pass the result as ``allow_kinds`` to :func:`scan`.
    """
    mapping = {
        "retain_longitudinal_full_dates": "date",
        "retain_institution_identity": "institution",
        "retain_device_identity": "device",
        "retain_uids": "uid",
    }
    return frozenset(mapping[o] for o in options if o in mapping)


class _Scanner:
    def __init__(
        self,
        ids: Identifiers,
        allow: frozenset[str],
        pixel_text: PixelTextSettings | None = None,
        text_ids: TextIdentifiers | None = None,
    ) -> None:
        self.ids = ids
        self.allow = allow
        self.pixel_text = pixel_text
        self.text_ids = text_ids or TextIdentifiers()
        self.images_read = 0
        self.salt = secrets.token_bytes(16)
        self.report = LeakReport(allowed_kinds=sorted(allow), identifiers=ids.counts())
        self.n_hits = 0
        self.by_kind: Counter[str] = Counter()
        self.files_with_hits: set[str] = set()
        self._seen: set[tuple[str, str, str]] = set()
        self._safe_parts: dict[str, str] = {}

    # -- helpers

    def _kind(self, kinds: frozenset[str]) -> str | None:
        for k in KINDS:
            if k in kinds and k not in self.allow:
                return k
        return None

    def safe(self, part: str) -> str:
        """A path part or location segment, redacted when it contains an identifier."""
        cached = self._safe_parts.get(part)
        if cached is None:
            cached = part
            if self.ids.find(part):
                cached = f"<redacted-{_salted(self.salt, part)[:8]}>"
            self._safe_parts[part] = cached
        return cached

    def check(self, text: str, file: str, location: str) -> None:
        """Record one hit per kind of identifier found in ``text`` (token of the longest match)."""
        if not text:
            return
        best: dict[str, str] = {}
        for key, kinds in self.ids.find(text).items():
            kind = self._kind(kinds)
            if kind is not None and len(key) > len(best.get(kind, "")):
                best[kind] = key
        for kind, key in best.items():
            self.hit(file, location, kind, key)

    def hit(self, file: str, location: str, kind: str, key: str) -> None:
        """Record one hit (once per file, location and kind)."""
        sig = (file, location, kind)
        if sig in self._seen:
            return
        self._seen.add(sig)
        self.n_hits += 1
        self.by_kind[kind] += 1
        self.files_with_hits.add(file)
        if len(self.report.hits) < MAX_HITS:
            token = _salted(self.salt, key)
            self.report.hits.append(
                {"file": file, "location": location, "kind": kind, "token": token}
            )

    def rel(self, path: Path, base: Path) -> str:
        parts = path.relative_to(base).parts
        return "/".join(self.safe(p) for p in parts)

    # -- walking

    def scan_root(self, root: Path) -> None:
        root = Path(root)
        if not os.path.lexists(root):
            raise InputError(root, "output to scan not found")
        base = root.parent
        if root.is_file():
            self.scan_file(root, self.rel(root, base), in_zarr=False)
            return
        self._scan_dir(root, base, in_zarr=False)

    def _scan_dir(self, folder: Path, base: Path, *, in_zarr: bool) -> None:
        rel = self.rel(folder, base)
        self.report.folders_scanned += 1
        self.check(folder.name, rel, "dirname")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self.report.warnings.append(f"{rel}: cannot list folder ({type(exc).__name__})")
            return
        names = {e.name for e in entries}
        store_root = not in_zarr and (
            folder.name.lower().endswith(".zarr")
            or bool(names & {"zarr.json", ".zgroup", ".zarray"})
        )
        in_zarr = in_zarr or store_root
        if store_root and self.pixel_text is not None:
            self._scan_auxiliary(folder, rel)
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                self._scan_dir(path, base, in_zarr=in_zarr)
            elif entry.is_file():
                self.scan_file(path, self.rel(path, base), in_zarr=in_zarr)

    def scan_file(self, path: Path, rel: str, *, in_zarr: bool) -> None:
        name = path.name
        if not (in_zarr and CHUNK_NAME_RE.fullmatch(name)):
            self.check(name, rel, "filename")
        if self._scan_content(path, rel, in_zarr=in_zarr):
            self.report.files_scanned += 1
        else:
            self.report.files_names_only += 1

    def _scan_content(self, path: Path, rel: str, *, in_zarr: bool) -> bool:
        """Scan what the file holds; False when only its name was checked (binary data)."""
        lname = path.name.lower()
        suffix = path.suffix.lower()
        if in_zarr and not (lname in JSON_NAMES or suffix in (".json", ".xml")):
            return False
        if lname in JSON_NAMES or suffix in (".json", ".jsonld"):
            self._scan_json_file(path, rel)
        elif is_nifti_name(lname):
            self._scan_nifti(path, rel)
        elif suffix == ".xml":
            self._scan_xml_file(path, rel)
        elif suffix in TEXT_SUFFIXES:
            self._scan_text_file(path, rel)
        elif suffix in TIFF_SUFFIXES:
            self._scan_tiff(path, rel)
            if sniff(path)[128:132] == b"DICM":  # a DICOM file with a TIFF preamble
                self._scan_dicom(path, rel, force=False)
        else:
            head = sniff(path)
            is_dicm = head[128:132] == b"DICM"
            if is_dicm or suffix in DICOM_SUFFIXES:
                return self._scan_dicom(path, rel, force=not is_dicm)
            if head[:4] in TIFF_MAGIC:
                self._scan_tiff(path, rel)
            elif head[:2] == b"\x1f\x8b":
                self._scan_gzip_header(path, rel)
                return False
            elif head and b"\x00" not in head and decodes(head):
                self._scan_text_file(path, rel)
            elif suffix == "" and head:
                return self._scan_dicom(path, rel, force=True)
            else:
                return False
        return True

    # -- formats

    def _scan_text_file(self, path: Path, rel: str) -> None:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    self.check(line, rel, f"line {n}")
        except OSError as exc:
            self.report.warnings.append(f"{rel}: unreadable ({type(exc).__name__})")

    def _scan_json_file(self, path: Path, rel: str) -> None:
        try:
            if path.stat().st_size > MAX_JSON_PARSE:
                raise ValueError("too large to parse")
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            self._scan_text_file(path, rel)
            return
        except OSError as exc:
            self.report.warnings.append(f"{rel}: unreadable ({type(exc).__name__})")
            return
        self._scan_json(obj, rel, "")

    def _scan_json(self, obj: Any, rel: str, location: str) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                key = str(key)
                here = f"{location}.{self.safe(key)}" if location else self.safe(key)
                self.check(key, rel, f"{here} (key)")
                self._scan_json(value, rel, here)
        elif isinstance(obj, list):
            for i, value in enumerate(obj):
                self._scan_json(value, rel, f"{location}[{i}]")
        elif isinstance(obj, str):
            if obj.lstrip().startswith("<") and "<OME" in obj[:2048]:
                self._scan_xml(obj, rel, location or "$")
            else:
                self.check(obj, rel, location or "$")
        elif isinstance(obj, int | float) and not isinstance(obj, bool):
            self.check(str(obj), rel, location or "$")

    def _scan_xml_file(self, path: Path, rel: str) -> None:
        try:
            if path.stat().st_size > MAX_JSON_PARSE:
                raise ValueError("too large to parse")
            text = path.read_text(encoding="utf-8")
            parse_xml(text)
        except (ValueError, UnicodeDecodeError):
            self._scan_text_file(path, rel)
            return
        except OSError as exc:
            self.report.warnings.append(f"{rel}: unreadable ({type(exc).__name__})")
            return
        self._scan_xml(text, rel, "")

    def _scan_xml(self, text: str, rel: str, base: str) -> None:
        def at(where: str) -> str:
            return f"{base} {where}" if base else where

        try:
            root = parse_xml(text)
        except ValueError:
            for n, line in enumerate(text.splitlines(), 1):
                self.check(line, rel, at(f"line {n}"))
            return
        for el in root.iter():
            name = self.safe(local_name(el.tag))
            self.check(local_name(el.tag), rel, at(f"<{name}>"))
            for attr, value in el.attrib.items():
                self.check(value, rel, at(f"{name}@{self.safe(local_name(attr))}"))
            if el.text and el.text.strip():
                self.check(el.text, rel, at(f"{name} text"))
            if el.tail and el.tail.strip():
                self.check(el.tail, rel, at(f"{name} tail"))

    def _scan_dicom(self, path: Path, rel: str, *, force: bool) -> bool:
        ds = read_dicom(path, force=force)
        if ds is None:
            return False
        self._scan_dicom_dataset(ds, rel)
        if self.pixel_text is not None and "Rows" in ds:  # an image (pixels not read yet)
            self._scan_pixel_text(path, rel)
        return True

    def _scan_pixel_text(self, path: Path, rel: str) -> None:
        """Read the text in every frame; identifiers in it, or text the policy's mode would
        have blanked, are hits of kind ``pixel_text`` (undecodable pixel data too: fail closed)."""
        import pydicom

        from imagedepot.pixeltext.dicom import find_text, would_blank

        assert self.pixel_text is not None
        try:
            ds = pydicom.dcmread(path)
            regions, _ = find_text(ds, self.pixel_text)
        except Exception as exc:  # decoders and engines raise many types: fail closed
            self.hit(rel, "PixelData (cannot read for text)", "pixel_text", type(exc).__name__)
            return
        self.images_read += 1
        for r in regions:
            where = f"PixelData frame {r.frame} box {list(r.box)}"
            if r.text:
                self.check(r.text, rel, where)
                if self.text_ids.match(r.text):
                    self.hit(rel, where, "pixel_text", r.text)
            if would_blank(r, self.pixel_text, self.text_ids):
                self.hit(rel, where, "pixel_text", f"{r.frame}:{r.box}")

    def _scan_dicom_dataset(self, ds: Any, rel: str, prefix: str = "") -> None:
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for location, elem in walk_dicom(meta, prefix + "file_meta."):
                for v in dicom_values(elem):
                    self.check(v, rel, location)
        for location, elem in walk_dicom(ds, prefix):
            for v in dicom_values(elem):
                self.check(v, rel, location)

    def _scan_nifti(self, path: Path, rel: str) -> None:
        if path.name.lower().endswith(".gz"):
            self._scan_gzip_header(path, rel)
        hdr = load_nifti_header(path)
        if hdr is None:
            self.report.warnings.append(f"{rel}: unreadable NIfTI header")
            return
        for location, content_kind, content in nifti_texts(hdr):
            if content_kind == "dicom":
                self._scan_dicom_dataset(content, rel, prefix=f"{location}.")
                continue
            text = content.strip("\x00 ")
            if content_kind == "raw" and text[:1] in "{[":
                try:
                    self._scan_json(json.loads(text), rel, location)
                    continue
                except ValueError:
                    pass
            self.check(text, rel, location)

    def _scan_gzip_header(self, path: Path, rel: str) -> None:
        for location, text in gzip_header_texts(path):
            self.check(text, rel, location)

    def _scan_tiff(self, path: Path, rel: str) -> None:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                for i, page in enumerate(tif.pages):
                    tags = getattr(page, "tags", None)
                    if tags is None:
                        continue
                    for tag in tags.values():
                        if int(tag.dtype) != 2 and tag.code != 270:
                            continue
                        value = tag.value
                        if not isinstance(value, str | bytes):
                            continue
                        text = as_text(value)
                        location = f"page {i} {tag.name}"
                        if text.lstrip().startswith("<"):
                            self._scan_xml(text, rel, location)
                        elif text[:1] in "{[":
                            try:
                                self._scan_json(json.loads(text), rel, location)
                            except ValueError:
                                self.check(text, rel, location)
                        else:
                            self.check(text, rel, location)
        except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as exc:
            self.report.warnings.append(f"{rel}: unreadable TIFF ({type(exc).__name__})")
        if self.pixel_text is not None:
            self._scan_auxiliary(path, rel)

    def _scan_auxiliary(self, src: Path, rel: str) -> None:
        """Auxiliary series (slide label, macro, overview, thumbnail, preview) of an OME-Zarr
        store or OME-TIFF file: under ``pixel_text.auxiliary_images: remove`` each one present is
        a hit of kind ``pixel_text``; under ``ocr`` each is read for text, and text that is not
        an allowed token (or that cannot be read) is a hit (:mod:`imagedepot.pixeltext.series`)."""
        from imagedepot.pixeltext.planes import find_text_in_planes
        from imagedepot.pixeltext.series import list_series, read_planes

        assert self.pixel_text is not None
        try:
            entries = list_series(src)
        except Exception as exc:  # metadata that cannot be read: fail closed
            self.hit(rel, "OME series (cannot be listed)", "pixel_text", type(exc).__name__)
            return
        for entry in entries:
            if not entry.auxiliary:
                continue
            where = f"series {entry.index} ({self.safe(entry.name)})"
            if self.pixel_text.auxiliary_images == "remove":
                self.hit(
                    rel,
                    f"{where}: auxiliary image present under auxiliary_images remove",
                    "pixel_text",
                    f"auxiliary:{entry.index}",
                )
                continue
            try:
                regions = find_text_in_planes(read_planes(src, entry), self.pixel_text)
            except Exception as exc:  # readers and engines raise many types: fail closed
                self.hit(rel, f"{where} (cannot read for text)", "pixel_text", type(exc).__name__)
                continue
            self.images_read += 1
            for r in regions:
                location = f"{where} plane {r.frame} box {list(r.box)}"
                if r.text:
                    self.check(r.text, rel, location)
                self.hit(rel, location, "pixel_text", f"{entry.index}:{r.frame}:{r.box}")

    def finish(self) -> LeakReport:
        r = self.report
        r.status = "leak" if self.n_hits else "clean"
        r.counts = {
            "hits": self.n_hits,
            "files_with_hits": len(self.files_with_hits),
            "by_kind": dict(sorted(self.by_kind.items())),
        }
        if self.n_hits > len(r.hits):
            r.warnings.append(f"only the first {len(r.hits)} of {self.n_hits} hits are listed")
        return r


def scan(
    identifiers: Identifiers,
    outputs: Sequence[Path],
    *,
    allow_kinds: Iterable[str] = (),
    pixel_text: PixelTextSettings | None = None,
    text_ids: TextIdentifiers | None = None,
) -> LeakReport:
    """Look for ``identifiers`` in every output file and folder (recursively).

    Parameters
    ----------
    identifiers
        From :func:`harvest`.
    outputs
        Files or folders to check.
    allow_kinds
        Kinds the policy keeps on purpose (see :func:`allowed_kinds_for_options`): hits of only
        these kinds are not counted.
    pixel_text
        When given, the pixels of every DICOM image are read for text with the same detector as
        de-identification (:mod:`imagedepot.pixeltext`): the recognised text is searched for
        the identifiers, and text that the policy's mode would have blanked is a hit of kind
        ``pixel_text``. The auxiliary series of OME-Zarr stores and OME-TIFF files (slide
        label, macro, overview, thumbnail, preview) are hits too: every one present under
        ``auxiliary_images: remove``; under ``ocr``, those with text that is not an allowed
        token (or that cannot be read).
    text_ids
        Identifiers for the OCR-tolerant matching of recognised text
        (:func:`imagedepot.pixeltext.identifiers.from_dataset` of the originals).

    Returns
    -------
    LeakReport
        ``status`` is ``"leak"`` when anything was found. No identifier values inside.
    """
    scanner = _Scanner(identifiers, frozenset(allow_kinds), pixel_text, text_ids)
    if len(identifiers) == 0:
        scanner.report.warnings.append("no identifiers harvested from the originals")
        log.warning("no identifiers harvested from the originals: the leak gate checks nothing")
    for out in outputs:
        scanner.scan_root(Path(out))
    report = scanner.finish()
    log.info("leakcheck %s", report.summary())
    return report


def leakcheck(
    originals: Sequence[Path],
    outputs: Sequence[Path],
    extra: Iterable[str] = (),
    *,
    allow_kinds: Iterable[str] = (),
    pixel_text: PixelTextSettings | None = None,
) -> LeakReport:
    """Harvest identifiers from ``originals`` (plus ``extra``) and scan ``outputs`` for them
    (with ``pixel_text``, also the text in every DICOM image's pixels)."""
    extra = list(extra)
    text_ids = None
    if pixel_text is not None:
        text_ids = text_identifiers(originals, extra)
    return scan(
        harvest(originals, extra),
        outputs,
        allow_kinds=allow_kinds,
        pixel_text=pixel_text,
        text_ids=text_ids,
    )
