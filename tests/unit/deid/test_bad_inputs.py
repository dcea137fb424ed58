"""Bad input: a clear error naming each file, the file quarantined, the rest of the batch going
on, and nothing ever written outside OUT (or anything at all when a call fails)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from imagedepot.errors import InputError
from imagedepot.leakcheck import leakcheck
from tests.unit.deid.test_dicom import KEY, make_instance, make_series, run, walk


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (to prove nothing else was written)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def only_out_changed(before: dict[str, bytes], after: dict[str, bytes], out: str) -> None:
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert all(k.startswith(out + os.sep) or k == out for k in changed), changed


def public(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return Path(path)


# ============================================================================ per-file errors


def _minimal(path: Path, **drop: Any) -> Path:
    """A small valid instance; keywords given with None are left out."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    values = {
        "SOPClassUID": CTImageStorage,
        "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.77",
        "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.78",
        "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.79",
        "Modality": "CT",
        "PatientName": "Doe^Jane",
        "PatientID": "MRN77",
        "Rows": 2,
        "Columns": 2,
        "BitsAllocated": 8,
    }
    for key, value in values.items():
        if drop.get(key, "keep") is not None:
            setattr(ds, key, value)
    if drop.get("PixelData", "keep") is not None:
        ds.PixelData = b"\x00\x01\x02\x03"
    path.parent.mkdir(parents=True, exist_ok=True)
    if drop.get("SOPClassUID", "keep") is None:
        del meta.MediaStorageSOPClassUID  # nowhere to find the class
    ds.preamble = b"\x00" * 128
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "not a DICOM Part 10 file"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 300), "not a DICOM Part 10"),
        (lambda p: p.write_text("Doe, Jane; MRN77\n"), "not a DICOM Part 10"),
        (lambda p: p.write_bytes(b"\x00" * 128 + b"DICM"), "no File Meta Information"),
        (lambda p: _minimal(p, SOPClassUID=None), "missing SOPClassUID"),
        (lambda p: _minimal(p, StudyInstanceUID=None), "missing StudyInstanceUID"),
        (lambda p: _minimal(p, SeriesInstanceUID=None), "missing SeriesInstanceUID"),
        (lambda p: _minimal(p, PixelData=None), "image attributes but no pixel data"),
    ],
    ids=["empty", "png", "text", "dicm-only", "no-class", "no-study", "no-series", "no-pixels"],
)
def test_unusable_files_are_named_with_a_reason(tmp_path: Path, make: Any, reason: str) -> None:
    bad = tmp_path / "in" / "bad"
    bad.parent.mkdir()
    make(bad)
    with pytest.raises(InputError, match=reason) as exc:
        run(bad, tmp_path / "out.dcm")
    assert exc.value.path == str(bad)
    assert not (tmp_path / "out.dcm").exists()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "truncated"),
        ("rtplan_truncated.dcm", "truncated|unreadable"),
        ("no_meta.dcm", "not a DICOM Part 10"),
        ("rtstruct.dcm", "not a DICOM Part 10"),
        ("meta_missing_tsyntax.dcm", "not a DICOM Part 10|transfer syntax"),
        ("ExplVR_BigEndNoMeta.dcm", "not a DICOM Part 10"),
    ],
)
def test_pydicom_broken_files(tmp_path: Path, name: str, reason: str) -> None:
    src = public(name)
    with pytest.raises(InputError, match=reason) as exc:
        run(src, tmp_path / "out.dcm", subject="x")
    assert exc.value.path == str(src)
    assert not list(tmp_path.iterdir())


def test_a_batch_goes_on_and_lists_every_bad_file(tmp_path: Path) -> None:
    good = make_series(tmp_path / "in", n=3)
    _minimal(tmp_path / "in" / "no-series", SeriesInstanceUID=None, PatientID=None)
    cut = tmp_path / "in" / "cut.dcm"
    cut.write_bytes(good[0].read_bytes()[:700])
    (tmp_path / "in" / "notes.txt").write_text("Jane Doe")
    before = snapshot(tmp_path)
    report = run(tmp_path / "in", tmp_path / "out", skip_bad_files=True, workers=2)
    assert len(report.files_written) == 3
    reasons = {Path(e["path"]).name: e["reason"] for e in report.errors}
    assert set(reasons) == {"cut.dcm", "no-series"}
    assert "truncated" in reasons["cut.dcm"] or "unreadable" in reasons["cut.dcm"]
    assert "SeriesInstanceUID" in reasons["no-series"]
    skipped = {Path(e["path"]).name: e["reason"] for e in report.skipped}
    assert set(skipped) == {"notes.txt"}  # not DICOM at all: skipped, not an error
    assert "not a DICOM" in skipped["notes.txt"]
    only_out_changed(before, snapshot(tmp_path), "out")


# ============================================================================ odd encodings


@pytest.mark.parametrize(
    ("charset", "name", "encoded"),
    [
        ("ISO_IR 100", "Müller^Jürgen", "Müller^Jürgen".encode("latin-1")),
        ("ISO_IR 192", "Łukasz^Żółć=Ωμέγα", "Łukasz^Żółć=Ωμέγα".encode()),
        ("ISO_IR 192", "broken", b"Caf\xe9^Ren\xe9"),  # Latin-1 bytes in a UTF-8 file
        ("ISO_IR 999", "unknown", b"Doe^Jane"),  # a character set nobody knows
    ],
)
def test_odd_encodings_are_processed_without_leaking(
    tmp_path: Path, charset: str, name: str, encoded: bytes
) -> None:
    src = make_instance(
        tmp_path / "in.dcm",
        extra={"SpecificCharacterSet": charset, "PatientName": None},
    )
    ds = pydicom.dcmread(src)
    ds.add_new(0x00100010, "PN", encoded)  # raw bytes, as a scanner would write them
    ds.add_new(0x00081030, "LO", encoded.replace(b"^", b" ") + b" follow-up")
    ds.save_as(src)
    out = tmp_path / "out"
    report = run(src, out / "x.dcm", {"clean_descriptors"})
    cleaned = pydicom.dcmread(out / "x.dcm")
    assert cleaned.PatientName == report.pseudonym
    assert cleaned.SpecificCharacterSet == charset
    data = (out / "x.dcm").read_bytes()
    assert not [part for part in encoded.replace(b"=", b"^").split(b"^") if part in data]
    leak = leakcheck([src], [out])
    assert leak.status == "clean", leak.to_dict()["hits"]


# ============================================================================ huge values


def test_huge_private_blob_is_removed_without_reading_it(tmp_path: Path) -> None:
    src = make_instance(tmp_path / "in.dcm")
    ds = pydicom.dcmread(src)
    blob = b"Doe^John MRN0012345 " * (24 * 1024 * 1024 // 20)  # 24 MiB
    block = ds.private_block(0x0041, "BIG VENDOR", create=True)
    block.add_new(0x01, "OB", blob)
    ds.save_as(src)
    out = tmp_path / "out.dcm"
    report = run(src, out, action_log=tmp_path / "log.jsonl")
    assert out.stat().st_size < 64 * 1024
    assert not any(e.tag.is_private for e in walk(pydicom.dcmread(out)))
    assert report.actions["X"] > 0
    entry = json.loads((tmp_path / "log.jsonl").read_text())
    assert any(a["tag"] == "(0041,1001)" and a["action"] == "X" for a in entry["actions"])


# ============================================================================ escaping OUT


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(
    "uid",
    ["../../../escaped", "/tmp/absolute", "1.2.3\n../4", "1.2.3\x00/..", "..", "1.2.3\x1b[2J"],
)
@pytest.mark.parametrize("options", [frozenset(), frozenset({"retain_uids"})])
def test_uids_crafted_to_escape_never_leave_out(
    tmp_path: Path, uid: str, options: frozenset[str]
) -> None:
    make_instance(tmp_path / "in" / "a.dcm", sop=uid)
    make_instance(tmp_path / "in" / "b.dcm", index=2)
    before = snapshot(tmp_path)
    report = run(tmp_path / "in", tmp_path / "deep" / "out", options, skip_bad_files=True)
    only_out_changed(before, snapshot(tmp_path), str(Path("deep") / "out"))
    names = sorted(p.name for p in (tmp_path / "deep" / "out").iterdir())
    assert names == sorted(report.files_written)
    assert all(n.endswith(".dcm") and n[:-4].replace(".", "").isdigit() for n in names)
    if "retain_uids" in options:  # kept as is: refused as a file name
        assert [e["reason"] for e in report.errors] == [
            "SOPInstanceUID is not a valid UID; refusing to name a file after it"
        ]
    else:  # remapped to a 2.25 UID: harmless
        assert len(names) == 2


def test_input_names_with_control_characters_are_never_reused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    names = ["..hidden", "new\nline", "tab\there", "-rf", "Doe, John (1956-12-24)", "é\x7f"]
    for i, name in enumerate(names, start=1):
        sub = src / ("..." if i % 2 else "sub\rdir")
        make_instance(sub / name, index=i)
    before = snapshot(tmp_path)
    report = run(src, tmp_path / "out")
    assert len(report.files_written) == len(names)
    only_out_changed(before, snapshot(tmp_path), "out")
    out_names = [p.name for p in (tmp_path / "out").iterdir()]
    assert all(p.startswith("2.25.") and p.endswith(".dcm") for p in out_names)
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_dir()]


def test_failed_call_writes_nothing_anywhere(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=3)
    (tmp_path / "in" / "zz-bad").write_bytes(b"\x00" * 50)
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="zz-bad"):
        run(tmp_path / "in", tmp_path / "out", workers=2, action_log=tmp_path / "log.jsonl")
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imagedepot-tmp")]


def test_pipeline_quarantines_the_item_with_the_file_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the workflow runs it: the item is quarantined (exit 0) with the reason recorded."""
    from imagedepot.pipeline import DeidSettings, deidentify_item, read_status

    files = make_series(tmp_path / "in", n=2)
    bad = tmp_path / "in" / "cut"
    bad.write_bytes(files[0].read_bytes()[:300])
    item = {
        "id": "ds-d001",
        "kind": "dicom",
        "subject": "P001",
        "files": [{"path": str(p)} for p in [*files, bad]],
    }
    (tmp_path / "item.json").write_text(json.dumps(item))
    conv = tmp_path / "convert"
    conv.mkdir()
    (conv / "provenance.json").write_text(
        json.dumps({"status": "processed", "step": "convert", "reason": None})
    )
    (tmp_path / "policy.yaml").write_text(
        "policy_version: 1\nname: t\ndata_use: {permission: 'DUO:0000042'}\n"
        "consent: {required: false}\ndestinations: {allowed_classes: [internal]}\n"
        "deidentification: {options: []}\n"
    )
    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", KEY.decode())
    before = snapshot(tmp_path)
    prov = deidentify_item(
        tmp_path / "item.json",
        conv,
        tmp_path / "out",
        DeidSettings(policy_path=tmp_path / "policy.yaml", linkage_dir=tmp_path / "link"),
    )
    assert prov.status == "quarantined"
    status = read_status(tmp_path / "out")
    assert status["status"] == "quarantined" and str(bad) in status["reason"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["provenance.json"]
    only_out_changed(before, snapshot(tmp_path), "out")
    assert not (tmp_path / "link").exists()  # no linkage for a quarantined item
