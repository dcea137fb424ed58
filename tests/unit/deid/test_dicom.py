"""DICOM de-identification: the Basic Profile, every option by its effect, sequences, private
tags, UID and date consistency, pseudonym stability, burned-in text, bad inputs, the CLI."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UltrasoundImageStorage,
)

from imagedepot.deid import profile
from imagedepot.deid.dicom import (
    DeidReport,
    deidentify_dicom,
    deidentify_dicom_patients,
    find_patients,
    infer_subject,
)
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError, OutputExistsError
from imagedepot.policy import PixelRule

KEY = b"unit-test-key-0123456789"
OTHER_KEY = b"another-test-key-9876543210"
SUBJECT = "P001"

STUDY = "1.2.826.0.1.3680043.8.498.11"
SERIES = "1.2.826.0.1.3680043.8.498.12"
FRAME = "1.2.826.0.1.3680043.8.498.13"

#: Strings of the synthetic originals that must not survive the Basic Profile.
IDENTIFIERS = [
    b"Doe",
    b"MRN0012345",
    b"ACC98765",
    b"Elsewhere",
    b"Springfield",
    b"SN-445566",
    b"CT-SCANNER-7",
    b"CTSCAN7",
    b"19561224",
    b"20240115",
    b"HOSPITAL_PACS",
    b"Nancy",
    b"Gregory",
    b"Tina",
    STUDY.encode(),
    SERIES.encode(),
    FRAME.encode(),
]


def sop_uid(i: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.2{i:03d}"


def make_instance(
    path: Path,
    *,
    index: int = 1,
    referenced: str | None = None,
    modality: str = "CT",
    patient_id: str = "MRN0012345",
    sop: str | None = None,
    rows: int = 16,
    columns: int = 16,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a CT-like instance full of identifying attributes, at every depth."""
    sop = sop or sop_uid(index)
    sop_class = UltrasoundImageStorage if modality == "US" else CTImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.FrameOfReferenceUID = FRAME
    ds.Modality = modality
    ds.Manufacturer = "ACME"
    ds.InstanceNumber = index
    ds.PatientName = "Doe^John"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19561224"
    ds.PatientSex = "M"
    ds.PatientAge = "067Y"
    ds.PatientWeight = "81"
    ds.StudyDate = "20240115"
    ds.SeriesDate = "20240115"
    ds.StudyTime = "093000"
    ds.AcquisitionDateTime = "20240115093012.123456"
    ds.AccessionNumber = "ACC98765"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.InstitutionAddress = "1 Main Street, Springfield"
    ds.StationName = "CT-SCANNER-7"
    ds.DeviceSerialNumber = "SN-445566"
    ds.StationAETitle = "CTSCAN7"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.OperatorsName = "Tech^Tina"
    ds.StudyDescription = "CT head for Doe John MRN0012345 on 15/01/2024"
    ds.SeriesDescription = "Axial 5mm"
    ds.ImageComments = "call back John Doe"
    # an unlisted sequence holding identifying content two levels down
    deep = Dataset()
    deep.PersonName = "Nurse^Nancy"
    deep.ReferringPhysicianName = "House^Gregory"
    deep.StudyDate = "20240115"
    deep.ReferencedSOPInstanceUID = sop
    deep.add_new(0x00110010, "LO", "ACME NESTED")
    deep.add_new(0x00111001, "LO", "Doe^John")
    region = Dataset()
    region.CodeValue = "T-A0100"
    region.CodingSchemeDesignator = "SRT"
    region.CodeMeaning = "Brain"
    region.PrimaryAnatomicStructureSequence = Sequence([deep])
    ds.AnatomicRegionSequence = Sequence([region])
    if referenced:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = referenced
        ds.ReferencedImageSequence = Sequence([ref])
    # structured content and graphics
    concept = Dataset()
    concept.CodeValue = "121071"
    concept.CodingSchemeDesignator = "DCM"
    concept.CodeMeaning = "Finding"
    text = Dataset()
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([concept])
    text.TextValue = "Patient Doe reported pain, call 5551234567"
    ds.ContentSequence = Sequence([text])
    label = Dataset()
    label.UnformattedTextValue = "John Doe 19561224"
    annotation = Dataset()
    annotation.TextObjectSequence = Sequence([label])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", columns)
    ds.add_new(0x60003000, "OW", b"\x00\x01" * (rows * columns // 16))
    ds.add_new(0x60004000, "LT", "Doe John")
    ds.add_new(0x50000005, "US", 2)  # curve data (retired)
    # private blocks: an unknown vendor, Siemens MR header (one safe element), CSA header
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", "Doe^John")
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x00191008, "CS", "IMAGE NUM 4")
    ds.add_new(0x0019100C, "IS", "1000")
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291010, "OB", b"Doe^John MRN0012345\x00")
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(rows * columns, dtype=np.uint16) + 100).tobytes()
    for key, value in (extra or {}).items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_series(folder: Path, n: int = 3, **kwargs: Any) -> list[Path]:
    """A series whose instances each reference the previous one."""
    return [
        make_instance(
            folder / f"Doe_John_{i}.dcm",
            index=i,
            referenced=sop_uid(i - 1) if i > 1 else None,
            **kwargs,
        )
        for i in range(1, n + 1)
    ]


def pz(key: bytes = KEY) -> Pseudonymizer:
    return Pseudonymizer(key=key, prefix="SUBJ", max_shift_days=3650)


def run(src: Any, out: Path, options: Any = frozenset(), **kwargs: Any) -> DeidReport:
    kwargs.setdefault("pseudonymizer", pz())
    kwargs.setdefault("subject", SUBJECT)
    return deidentify_dicom(src, out, policy_options=frozenset(options), **kwargs)


def read_all(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def walk(ds: Dataset) -> Iterator[pydicom.DataElement]:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def method_codes(ds: Dataset) -> set[str]:
    return {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}


@pytest.fixture
def one(tmp_path: Path) -> Path:
    return make_instance(tmp_path / "in" / "Doe_John.dcm")


def deid_one(tmp_path: Path, src: Path, options: Any = frozenset(), **kwargs: Any) -> Dataset:
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.dcm"
    run(src, out, options, **kwargs)
    return pydicom.dcmread(out)


# ============================================================================ basic profile


def test_basic_profile_removes_identifiers_everywhere(tmp_path: Path, one: Path) -> None:
    out = tmp_path / "out.dcm"
    report = run(one, out)
    raw = out.read_bytes()
    for ident in IDENTIFIERS:
        assert ident not in raw, ident
    ds = pydicom.dcmread(out)
    pseudonym = pz().subject_id(SUBJECT)
    assert ds.PatientName == pseudonym and ds.PatientID == pseudonym
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert "PatientAge" not in ds and "PatientWeight" not in ds
    assert ds.StudyDate == "" and "SeriesDate" not in ds and ds.StudyTime == ""
    assert ds.AccessionNumber == ""
    # X/Z/D, Type 3 in the CT Image IOD (General Equipment): removed, not emptied
    assert "InstitutionName" not in ds and "StationName" not in ds
    assert "DeviceSerialNumber" not in ds and "OperatorsName" not in ds
    assert "InstitutionAddress" not in ds and "StationAETitle" not in ds
    assert "StudyDescription" not in ds and "ImageComments" not in ds
    assert "SeriesDescription" not in ds  # X in the basic profile
    assert ds.Manufacturer == "ACME"  # not listed: kept
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert method_codes(ds) == {"113100"}
    assert profile.EDITION_SHORT in ds.DeidentificationMethod
    assert profile.IOD_TYPES_SHORT in ds.DeidentificationMethod
    assert all(len(v) <= 64 for v in ds.DeidentificationMethod)
    assert ds.preamble == b"\x00" * 128
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID != sop_uid(1) and ds.SOPInstanceUID.startswith("2.25.")
    assert np.array_equal(ds.pixel_array, np.arange(256, dtype=np.uint16).reshape(16, 16) + 100)
    assert report.pseudonym == pseudonym
    assert report.linkage == [(SUBJECT, pseudonym)]
    assert report.actions["X"] > 0 and report.actions["U"] >= 3
    assert report.edition == profile.EDITION


def test_no_person_names_or_private_tags_at_any_depth(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one)
    pseudonym = pz().subject_id(SUBJECT)
    for elem in walk(ds):
        assert not elem.tag.is_private, elem
        if elem.VR == "PN" and elem.value:
            assert str(elem.value) in (pseudonym, "ANONYMIZED"), elem
        assert not (elem.VR in ("DA", "DT") and elem.value), elem  # no dates survive
    assert not any(e.tag.group in range(0x5000, 0x5100) for e in ds)
    assert 0x60003000 not in ds and 0x60004000 not in ds
    assert not any(0x6000 <= e.tag.group <= 0x601E for e in ds)  # overlay planes removed whole


def test_sequences_are_cleaned_recursively(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one)
    region = ds.AnatomicRegionSequence[0]
    assert region.CodeValue == "T-A0100" and region.CodeMeaning == "Brain"
    deep = region.PrimaryAnatomicStructureSequence[0]
    assert deep.PersonName == "ANONYMIZED"  # D
    assert deep.ReferringPhysicianName == ""  # Z
    assert deep.StudyDate == ""  # Z
    assert deep.ReferencedSOPInstanceUID == ds.SOPInstanceUID  # U, consistent with the top level
    assert not any(e.tag.is_private for e in deep)
    # D on a sequence: items kept, values dummied (free text too), codes kept
    (item,) = ds.ContentSequence
    assert item.TextValue == "ANONYMIZED" and item.ValueType == "TEXT"
    assert item.ConceptNameCodeSequence[0].CodeValue == "121071"
    assert item.ConceptNameCodeSequence[0].CodeMeaning == "ANONYMIZED"  # the code names it
    (annotation,) = ds.GraphicAnnotationSequence
    assert annotation.TextObjectSequence[0].UnformattedTextValue == "ANONYMIZED"


def test_output_is_named_after_the_remapped_uid_never_the_input(tmp_path: Path) -> None:
    files = make_series(tmp_path / "in" / "DOE^JOHN 1956")
    out = tmp_path / "out"
    report = run(tmp_path / "in", out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(report.files_written)
    for ds, name in zip(read_all(out), names, strict=True):
        assert name == f"{ds.SOPInstanceUID}.dcm"
    assert not any("Doe" in n or "JOHN" in n for n in names)
    assert report.n_inputs == len(files)


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    files = make_series(tmp_path / "in")
    before = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    run(tmp_path / "in", tmp_path / "out", {"retain_longitudinal_modified_dates"})
    assert before == {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert mtimes == {f: f.stat().st_mtime_ns for f in files}


# ============================================================================ UIDs and dates


def test_uids_consistent_across_a_series_and_in_references(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=4)
    run(tmp_path / "in", tmp_path / "out")
    out = sorted(read_all(tmp_path / "out"), key=lambda d: int(d.InstanceNumber))
    assert len({d.StudyInstanceUID for d in out}) == 1
    assert len({d.SeriesInstanceUID for d in out}) == 1
    assert len({d.FrameOfReferenceUID for d in out}) == 1
    assert out[0].StudyInstanceUID == pz().uid(STUDY)
    for prev, cur in itertools.pairwise(out):
        assert cur.ReferencedImageSequence[0].ReferencedSOPInstanceUID == prev.SOPInstanceUID
        assert cur.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage  # kept
    for d in out:
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.SOPClassUID == CTImageStorage


def test_dates_shifted_consistently_per_subject(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=2)
    opts = {"retain_longitudinal_modified_dates"}
    run(tmp_path / "in", tmp_path / "a", opts, subject="P001")
    run(tmp_path / "in", tmp_path / "b", opts, subject="P002")
    p = pz()
    assert p.date_offset_days("P001") != p.date_offset_days("P002")
    a, b = read_all(tmp_path / "a"), read_all(tmp_path / "b")
    for d in a:
        assert d.StudyDate == p.shift_date("20240115", "P001")
        assert d.SeriesDate == d.StudyDate
        assert d.AcquisitionDateTime == p.shift_datetime("20240115093012.123456", "P001")
        assert d.AcquisitionDateTime.endswith("093012.123456")  # time of day kept
        assert d.StudyTime == "093000"
        assert d.PatientBirthDate == ""  # the option does not cover birth dates
        assert d.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "113107" in method_codes(d)
        deep = d.AnatomicRegionSequence[0].PrimaryAnatomicStructureSequence[0]
        assert deep.StudyDate == d.StudyDate  # nested dates shifted alike
    assert {d.StudyDate for d in b} == {p.shift_date("20240115", "P002")}


def test_full_dates_kept(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"retain_longitudinal_full_dates"})
    assert ds.StudyDate == "20240115" and ds.SeriesDate == "20240115"
    assert ds.AcquisitionDateTime == "20240115093012.123456"
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert "113106" in method_codes(ds)


def test_pseudonyms_stable_across_runs_and_keyed(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=2)
    opts = {"retain_longitudinal_modified_dates"}
    run(tmp_path / "in", tmp_path / "r1", opts)
    run(tmp_path / "in", tmp_path / "r2", opts)
    run(tmp_path / "in", tmp_path / "r3", opts, pseudonymizer=pz(OTHER_KEY))
    names = [sorted(p.name for p in (tmp_path / r).iterdir()) for r in ("r1", "r2", "r3")]
    assert names[0] == names[1]
    assert not set(names[0]) & set(names[2])
    r1, r2, r3 = (read_all(tmp_path / r) for r in ("r1", "r2", "r3"))
    for x, y in zip(r1, r2, strict=True):
        assert x.PatientID == y.PatientID and x.StudyInstanceUID == y.StudyInstanceUID
        assert x.StudyDate == y.StudyDate
    assert r1[0].PatientID != r3[0].PatientID
    assert r1[0].StudyInstanceUID != r3[0].StudyInstanceUID


# ============================================================================ options by effect


def test_clean_descriptors(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"clean_descriptors"})
    assert ds.StudyDescription == "CT head for on"
    assert ds.SeriesDescription == "Axial 5mm"
    assert ds.ImageComments == "call back"
    assert "113105" in method_codes(ds)
    plain = deid_one(tmp_path, one)
    assert "StudyDescription" not in plain and "SeriesDescription" not in plain


def test_clean_structured_content(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"clean_structured_content"})
    (item,) = ds.ContentSequence
    assert item.TextValue == "Patient reported pain, call"
    assert item.ConceptNameCodeSequence[0].CodeValue == "121071"  # coded values untouched
    assert "113104" in method_codes(ds)
    (plain,) = deid_one(tmp_path, one).ContentSequence  # D: the text is a dummy
    assert plain.TextValue == "ANONYMIZED"


def test_clean_graphics(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"clean_graphics"})
    label = ds.GraphicAnnotationSequence[0].TextObjectSequence[0]
    assert label.UnformattedTextValue == ""  # name and birth date cut out
    assert 0x60004000 not in ds  # the overlay plane goes whole with its bitmap (PS3.15 X)
    assert 0x60003000 not in ds  # overlay bitmaps have no cleaner: removed
    assert "113103" in method_codes(ds)
    plain = deid_one(tmp_path, one)
    assert 0x60004000 not in plain
    (annotation,) = plain.GraphicAnnotationSequence  # D: the text is a dummy
    assert annotation.TextObjectSequence[0].UnformattedTextValue == "ANONYMIZED"


def test_retain_patient_characteristics(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"retain_patient_characteristics"})
    assert (ds.PatientSex, ds.PatientAge, ds.PatientWeight) == ("M", "067Y", 81)
    assert ds.PatientBirthDate == ""
    assert "113108" in method_codes(ds)


def test_retain_device_identity(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"retain_device_identity"})
    assert ds.DeviceSerialNumber == "SN-445566" and ds.StationName == "CT-SCANNER-7"
    assert ds.StationAETitle.startswith("AE") and ds.StationAETitle != "CTSCAN7"  # cleaned
    assert len(ds.StationAETitle) <= 16
    assert "113109" in method_codes(ds)
    plain = deid_one(tmp_path, one)
    # X/Z/D, Type 3 in the CT Image IOD: removed
    assert "DeviceSerialNumber" not in plain and "StationName" not in plain


def test_retain_institution_identity(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"retain_institution_identity"})
    assert ds.InstitutionName == "St Elsewhere Hospital"
    assert ds.InstitutionAddress == "1 Main Street, Springfield"
    assert "113112" in method_codes(ds)


def test_retain_uids(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=2)
    run(tmp_path / "in", tmp_path / "out", {"retain_uids"})
    out = read_all(tmp_path / "out")
    assert {d.SOPInstanceUID for d in out} == {sop_uid(1), sop_uid(2)}
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"{sop_uid(i)}.dcm" for i in (1, 2)}
    assert {d.StudyInstanceUID for d in out} == {STUDY}
    assert "113110" in method_codes(out[0])


def test_retain_safe_private(tmp_path: Path, one: Path) -> None:
    ds = deid_one(tmp_path, one, {"retain_safe_private"})
    private = {e.tag for e in ds if e.tag.is_private}
    assert private == {0x00190010, 0x0019100C}  # SIEMENS MR HEADER B_value and its creator
    assert ds[0x00190010].value == "SIEMENS MR HEADER"
    assert ds[0x0019100C].value == 1000
    deep = ds.AnatomicRegionSequence[0].PrimaryAnatomicStructureSequence[0]
    assert not any(e.tag.is_private for e in deep)
    assert "113111" in method_codes(ds)


def test_safe_private_needs_the_right_creator(tmp_path: Path) -> None:
    src = make_instance(tmp_path / "in.dcm")
    ds = pydicom.dcmread(src)
    ds[0x00190010].value = "SOMEONE ELSE"  # same element number, other vendor
    ds.save_as(src)
    out = deid_one(tmp_path, src, {"retain_safe_private"})
    assert not any(e.tag.is_private for e in out)


def test_options_listed_in_method_text(tmp_path: Path, one: Path) -> None:
    opts = {"clean_descriptors", "retain_uids", "retain_safe_private"}
    ds = deid_one(tmp_path, one, opts)
    meanings = set(ds.DeidentificationMethod)
    for opt in opts:
        assert profile.OPTION_CODES[opt].meaning in meanings
    assert method_codes(ds) == {"113100", "113105", "113110", "113111"}


# ============================================================================ pixel data


def test_text_free_capture_passes_and_a_declared_annotation_not_seen_is_refused(
    tmp_path: Path,
) -> None:
    # an ultrasound with no text in it passes (the OCR finds nothing): no blanket quarantine
    us = make_instance(tmp_path / "us.dcm", modality="US")
    run(us, tmp_path / "us-out.dcm")
    assert pydicom.dcmread(tmp_path / "us-out.dcm").PixelData == pydicom.dcmread(us).PixelData
    # the header says there is burned-in text but nothing is seen nor cleaned: fail closed
    ct = make_instance(tmp_path / "ct.dcm", extra={"BurnedInAnnotation": "YES"})
    with pytest.raises(InputError, match="BurnedInAnnotation is YES but no text was detected"):
        run(ct, tmp_path / "out.dcm")
    assert not (tmp_path / "out.dcm").exists()


def test_rule_that_does_not_match_leaves_a_text_free_image_alone(tmp_path: Path) -> None:
    us = make_instance(tmp_path / "us.dcm", modality="US")
    rule = PixelRule(name="other", match={"Modality": "US", "Rows": 480}, regions=((0, 0, 4, 4),))
    report = run(us, tmp_path / "out.dcm", {"clean_pixel_data"}, pixel_rules=[rule])
    assert pydicom.dcmread(tmp_path / "out.dcm").PixelData == pydicom.dcmread(us).PixelData
    assert report.pixel_cleaned == [] and report.pixel_text == []


def test_clean_pixel_data_blanks_rule_regions(tmp_path: Path) -> None:
    us = make_instance(tmp_path / "us.dcm", modality="US", rows=16, columns=20)
    rule = PixelRule(
        name="us-header",
        match={"Modality": "us", "Columns": 20},
        regions=((0, 0, 20, 3), (15, 10, 40, 40)),
    )
    out = tmp_path / "out.dcm"
    report = run(us, out, {"clean_pixel_data"}, pixel_rules=[rule])
    ds = pydicom.dcmread(out)
    before = np.arange(16 * 20, dtype=np.uint16).reshape(16, 20) + 100
    after = ds.pixel_array
    assert (after[:3, :] == 0).all() and (after[10:, 15:] == 0).all()
    assert np.array_equal(after[3:10, :], before[3:10, :])
    assert ds.BurnedInAnnotation == "NO"
    assert "113101" in method_codes(ds)
    assert report.pixel_cleaned == [{"file": "out.dcm", "rules": ["us-header"]}]


def test_recognizable_visual_features(tmp_path: Path) -> None:
    face = make_instance(tmp_path / "face.dcm", extra={"RecognizableVisualFeatures": "YES"})
    with pytest.raises(InputError, match="recognizable visual features"):
        run(face, tmp_path / "out.dcm", {"clean_recognizable_visual_features"})
    ds = deid_one(tmp_path, face)  # without the option: processed as any image
    assert ds.RecognizableVisualFeatures == "YES"
    no = make_instance(tmp_path / "no.dcm", extra={"RecognizableVisualFeatures": "NO"})
    deid_one(tmp_path, no, {"clean_recognizable_visual_features"})


# ============================================================================ bad inputs


def test_not_dicom(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("Doe John, MRN0012345\n")
    with pytest.raises(InputError, match="not a DICOM") as exc:
        run(bad, tmp_path / "out.dcm")
    assert str(bad) in str(exc.value)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9, 0.999])
def test_truncated(tmp_path: Path, one: Path, fraction: float) -> None:
    data = one.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError) as exc:
        run(cut, tmp_path / "out.dcm")
    assert exc.value.path == str(cut)
    assert not (tmp_path / "out.dcm").exists()


def test_missing_sop_instance_uid(tmp_path: Path) -> None:
    src = make_instance(tmp_path / "x.dcm", extra={"SOPInstanceUID": None})
    with pytest.raises(InputError, match="missing SOPInstanceUID"):
        run(src, tmp_path / "out.dcm")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("bad_uid", ["../../evil", "/etc/passwd", "1.2.3\n4", "1.2.3/.."])
def test_uid_used_as_name_must_be_a_uid(tmp_path: Path, bad_uid: str) -> None:
    (tmp_path / "in").mkdir()
    src = make_instance(tmp_path / "in" / "x.dcm", sop=bad_uid)
    with pytest.raises(InputError, match="not a valid UID"):
        run(tmp_path / "in", tmp_path / "sub" / "out", {"retain_uids"})
    assert not (tmp_path / "sub" / "out").exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [src.name]


def test_one_bad_file_fails_the_series_unless_skipping(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=2)
    (tmp_path / "in" / "README.txt").write_text("not dicom")
    with pytest.raises(InputError, match=r"README\.txt"):
        run(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imagedepot-tmp")]
    report = run(tmp_path / "in", tmp_path / "out", skip_bad_files=True)
    assert len(report.files_written) == 2
    # Not DICOM at all: listed as skipped, not as an error.
    assert report.errors == []
    assert [e["index"] for e in report.skipped] == [2]  # sorted: Doe_John_1, Doe_John_2, README
    assert "not a DICOM file" in report.skipped[0]["reason"]
    assert "path" not in report.to_dict()["skipped"][0]  # input names may carry PHI
    assert report.to_dict(include_private=True)["skipped"][0]["path"].endswith("README.txt")


def test_two_patients_in_one_call(tmp_path: Path) -> None:
    make_instance(tmp_path / "in" / "a.dcm", index=1)
    make_instance(tmp_path / "in" / "b.dcm", index=2, patient_id="MRN999")
    with pytest.raises(InputError, match="Patient ID differs"):
        run(tmp_path / "in", tmp_path / "out")


def test_duplicate_instance(tmp_path: Path) -> None:
    make_instance(tmp_path / "in" / "a.dcm", index=1)
    make_instance(tmp_path / "in" / "b.dcm", index=1)
    with pytest.raises(InputError, match="duplicate SOPInstanceUID"):
        run(tmp_path / "in", tmp_path / "out")


def test_refuses_to_overwrite_without_force(tmp_path: Path, one: Path) -> None:
    out = tmp_path / "out.dcm"
    run(one, out)
    with pytest.raises(OutputExistsError):
        run(one, out)
    run(one, out, force=True)
    with pytest.raises(InputError, match="overwrite the input"):
        run(one, one, force=True)


def test_output_inside_input_folder_is_refused(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=1)
    with pytest.raises(InputError, match="inside the input folder"):
        run(tmp_path / "in", tmp_path / "in" / "out")


def test_list_of_files_and_dicomdir_skipped(tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", n=2)
    dicomdir = get_testdata_file("DICOMDIR")
    if dicomdir is None:
        pytest.skip("pydicom test file DICOMDIR not available")
    report = run([*files, dicomdir], tmp_path / "out")
    assert len(report.files_written) == 2
    assert report.skipped and "DICOMDIR" in report.skipped[0]["reason"]


def test_infer_subject(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=2)
    assert infer_subject(tmp_path / "in") == "MRN0012345"
    make_instance(tmp_path / "in" / "z.dcm", index=9, patient_id="OTHER")
    with pytest.raises(InputError, match="2 distinct Patient IDs"):
        infer_subject(tmp_path / "in")


def test_find_patients_sorts_files_and_lists_the_rest(tmp_path: Path) -> None:
    a = make_instance(tmp_path / "in" / "a.dcm", index=1)
    b = make_instance(tmp_path / "in" / "b.dcm", index=2, patient_id="MRN999")
    blank = make_instance(tmp_path / "in" / "c.dcm", index=3, patient_id="")
    raw = DicomBytesIO()  # DICOM data without the Part 10 header: an error, not a stray file
    raw.is_little_endian, raw.is_implicit_VR = True, True
    write_dataset(raw, pydicom.dcmread(a))
    (tmp_path / "in" / "d-raw").write_bytes(raw.getvalue())
    (tmp_path / "in" / "e.txt").write_text("Doe, John")
    found = find_patients(tmp_path / "in")
    assert found.patients == {"MRN0012345": [a], "MRN999": [b]}
    assert found.no_patient_id == [blank]
    assert [Path(r["path"]).name for r in found.skipped] == ["e.txt"]
    assert [Path(r["path"]).name for r in found.errors] == ["d-raw"]
    with pytest.raises(InputError, match="Part 10"):
        found.check_bad_files(skip_bad_files=False)


def test_patients_each_get_a_folder_and_a_file_without_patient_id_fails_closed(
    tmp_path: Path,
) -> None:
    make_instance(tmp_path / "in" / "a.dcm", index=1)
    make_instance(tmp_path / "in" / "b.dcm", index=2, patient_id="MRN999")
    make_instance(tmp_path / "in" / "c.dcm", index=3, patient_id="")
    kwargs: dict[str, Any] = {"pseudonymizer": pz(), "policy_options": frozenset()}
    with pytest.raises(InputError, match="no Patient ID"):
        deidentify_dicom_patients(tmp_path / "in", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
    report = deidentify_dicom_patients(
        tmp_path / "in", tmp_path / "out", skip_bad_files=True, **kwargs
    )
    names = {pz().subject_id("MRN0012345"), pz().subject_id("MRN999")}
    assert {p.name for p in (tmp_path / "out").iterdir()} == names
    assert [r.output for r in report.subjects] == sorted(names)
    assert [Path(e["path"]).name for e in report.errors] == ["c.dcm"]
    assert sorted(report.linkage) == sorted(
        [("MRN0012345", pz().subject_id("MRN0012345")), ("MRN999", pz().subject_id("MRN999"))]
    )


# ============================================================================ action log


def test_action_log_has_hashes_never_values(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=2)
    log = tmp_path / "logs" / "actions.jsonl"
    run(tmp_path / "in", tmp_path / "out", {"clean_descriptors"}, action_log=log)
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    text = log.read_text()
    for ident in IDENTIFIERS:
        assert ident.decode() not in text
    rec = json.loads(lines[0])
    assert rec["file"].endswith(".dcm") and rec["index"] == 0
    by_kw = {a["keyword"]: a for a in rec["actions"] if not a.get("path")}
    assert by_kw["PatientName"]["action"] == "D"
    assert by_kw["StudyDate"]["action"] == "Z"
    assert len(by_kw["StudyDate"]["old_sha256"]) == profile_hash_len()
    assert (
        by_kw["InstitutionAddress"]["action"] == "X"
        and "old_sha256" not in by_kw["InstitutionAddress"]
    )
    assert by_kw["StudyDescription"]["action"] == "C"
    nested = [a for a in rec["actions"] if a.get("path", "").startswith("(0008,2218)[0]")]
    assert {a["keyword"] for a in nested} >= {"PersonName", "ReferencedSOPInstanceUID"}
    assert any(a["tag"] == "(0002,0016)" and a["path"] == "meta." for a in rec["actions"])
    # the same old value hashes alike in both files; another key hashes differently
    second = {a["keyword"]: a for a in json.loads(lines[1])["actions"] if not a.get("path")}
    assert second["StudyDate"]["old_sha256"] == by_kw["StudyDate"]["old_sha256"]
    log2 = tmp_path / "other.jsonl"
    run(tmp_path / "in", tmp_path / "out2", action_log=log2, pseudonymizer=pz(OTHER_KEY))
    other = {a["keyword"]: a for a in json.loads(log2.read_text().splitlines()[0])["actions"]}
    assert other["StudyDate"]["old_sha256"] != by_kw["StudyDate"]["old_sha256"]
    # appended, not overwritten
    run(tmp_path / "in", tmp_path / "out3", action_log=log)
    assert len(log.read_text().splitlines()) == 4


def profile_hash_len() -> int:
    from imagedepot.deid.dicom import ACTION_HASH_CHARS

    return ACTION_HASH_CHARS


def test_report_to_dict_is_json_and_private_free(tmp_path: Path, one: Path) -> None:
    report = run(one, tmp_path / "out.dcm", {"retain_uids"})
    d = report.to_dict()
    text = json.dumps(d)
    assert SUBJECT not in text and "linkage" not in d
    assert d["options"] == ["retain_uids"] and d["options_claimed"] == ["retain_uids"]
    assert d["n_written"] == 1 and d["edition"] == profile.EDITION
    assert report.to_dict(include_private=True)["linkage"] == [[SUBJECT, pz().subject_id(SUBJECT)]]


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
def test_transfer_syntaxes_are_kept(tmp_path: Path, one: Path, syntax: str) -> None:
    src = tmp_path / "ts.dcm"
    ds = pydicom.dcmread(one)
    ds.file_meta.TransferSyntaxUID = syntax
    pydicom.dcmwrite(src, ds, enforce_file_format=True)  # encoding follows the syntax
    out = deid_one(tmp_path, src, {"retain_safe_private", "clean_descriptors"})
    assert out.file_meta.TransferSyntaxUID == syntax
    assert method_codes(out) == {"113100", "113105", "113111"}
    assert out.PatientName == pz().subject_id(SUBJECT)
    assert out.StudyDescription == "CT head for on"
    assert np.array_equal(out.pixel_array, pydicom.dcmread(src).pixel_array)
    assert {e.tag for e in out if e.tag.is_private} == {0x00190010, 0x0019100C}


# ============================================================================ pydicom's own files


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "rtplan.dcm",
        "rtdose.dcm",
        "waveform_ecg.dcm",
        "JPEG2000.dcm",
        "image_dfl.dcm",
        "reportsi.dcm",
    ],
)
def test_pydicom_test_files(tmp_path: Path, name: str) -> None:
    src = get_testdata_file(name)
    if src is None:
        pytest.skip(f"pydicom test file {name} not available")
    original = pydicom.dcmread(src)
    try:
        run(src, tmp_path / "out.dcm", subject=str(original.get("PatientID", "x")))
    except InputError as exc:  # e.g. secondary capture: possible burned-in text
        assert "burned-in" in exc.reason, exc.reason
        return
    ds = pydicom.dcmread(tmp_path / "out.dcm")
    assert ds.PatientIdentityRemoved == "YES"
    assert method_codes(ds) == {"113100"}
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert not any(e.tag.is_private for e in walk(ds))
    old_name = str(original.get("PatientName", "") or "")
    if len(old_name) > 3:
        assert old_name.encode() not in (tmp_path / "out.dcm").read_bytes()
    if "PixelData" in original:
        assert ds.PixelData == original.PixelData


def test_pydicom_text_free_secondary_capture_passes(tmp_path: Path) -> None:
    src = get_testdata_file("SC_rgb_small_odd.dcm")
    if src is None:
        pytest.skip("pydicom test file SC_rgb_small_odd.dcm not available")
    run(src, tmp_path / "out.dcm")  # 3 x 3 pixels: no text can be there
    assert pydicom.dcmread(tmp_path / "out.dcm").PixelData == pydicom.dcmread(src).PixelData


# ============================================================================ CLI


def cli(argv: list[str]) -> int:
    from imagedepot.cli import deid

    parser = argparse.ArgumentParser(prog="imagedepot")
    deid.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    (tmp_path / "consent.tsv").write_text("subject\tconsent\nP001\tyes\nP002\tno\n")
    path = tmp_path / "policy.yaml"
    path.write_text(
        "policy_version: 1\nname: test\ndata_use: {permission: 'DUO:0000042'}\n"
        "consent: {required: true, sheet: consent.tsv, consent_column: consent}\n"
        "destinations: {allowed_classes: [internal]}\n"
        "deidentification: {options: [retain_longitudinal_modified_dates], pseudonym_prefix: T}\n"
    )
    return path


def test_cli_deid_dicom(tmp_path: Path, policy_file: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", KEY.decode())
    make_series(tmp_path / "in", n=2)
    rc = cli(
        [
            "deid",
            "dicom",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--policy",
            str(policy_file),
            "--subject",
            "P001",
            "--action-log",
            str(tmp_path / "a.jsonl"),
            "--report",
            str(tmp_path / "report.json"),
            "--linkage",
            str(tmp_path / "link" / "l.tsv"),
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_written"] == 2
    assert printed["policy"]["deid_options"] == ["retain_longitudinal_modified_dates"]
    assert json.loads((tmp_path / "report.json").read_text()) == printed
    assert "P001" not in json.dumps(printed)
    key = Pseudonymizer(KEY, prefix="T")
    assert (tmp_path / "link" / "l.tsv").read_text().splitlines()[
        1
    ] == f"P001\t{key.subject_id('P001')}"
    assert stat.S_IMODE(os.stat(tmp_path / "link" / "l.tsv").st_mode) == 0o600
    out = read_all(tmp_path / "out")
    assert {d.PatientID for d in out} == {key.subject_id("P001")}
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 2


def test_cli_infers_subject_and_refuses_without_consent(
    tmp_path: Path, policy_file: Path, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", KEY.decode())
    make_series(tmp_path / "in", n=1)
    from imagedepot.errors import PolicyError

    # the inferred subject (the Patient ID) is not in the consent sheet
    with pytest.raises(PolicyError, match="no recorded consent"):
        cli(
            [
                "deid",
                "dicom",
                str(tmp_path / "in"),
                str(tmp_path / "out"),
                "--policy",
                str(policy_file),
            ]
        )
    with pytest.raises(PolicyError, match="no recorded consent"):
        cli(
            [
                "deid",
                "dicom",
                str(tmp_path / "in"),
                str(tmp_path / "out"),
                "--policy",
                str(policy_file),
                "--subject",
                "P002",
            ]
        )
    assert not (tmp_path / "out").exists()


def test_cli_input_error_names_the_file(tmp_path: Path, policy_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", KEY.decode())
    us = make_instance(tmp_path / "us.dcm", modality="US", extra={"BurnedInAnnotation": "YES"})
    with pytest.raises(InputError, match=r"us\.dcm: BurnedInAnnotation is YES"):
        cli(
            [
                "deid",
                "dicom",
                str(us),
                str(tmp_path / "out.dcm"),
                "--policy",
                str(policy_file),
                "--subject",
                "P001",
            ]
        )


def test_cli_registers_nifti_and_ome(tmp_path: Path) -> None:
    from imagedepot.cli import deid

    parser = argparse.ArgumentParser(prog="imagedepot")
    deid.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(
        [
            "deid",
            "nifti",
            "a.nii.gz",
            "out",
            "--policy",
            "p.yaml",
            "--subject",
            "S",
            "--sidecar",
            "a.json",
            "--force",
        ]
    )
    assert args.func is deid.run_nifti and args.sidecar == Path("a.json") and args.force
    args = parser.parse_args(
        ["deid", "ome", "a.ome.tif", "out", "--policy", "p.yaml", "--subject", "S"]
    )
    assert args.func is deid.run_ome
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["deid", "nifti", "a.nii.gz", "out", "--policy", "p.yaml"]
        )  # no --subject


def test_cli_jobs_and_policy_recipe_and_pixel_rules(
    tmp_path: Path, policy_file: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", KEY.decode())
    (tmp_path / "site.dicom").write_text(
        "FORMAT dicom\n%header\nREPLACE Manufacturer ACME-REDACTED\n"
        "%filter graylist\nLABEL acme us\n  contains Modality US\n  coordinates 0,0,16,2\n"
    )
    text = policy_file.read_text().replace(
        "deidentification: {options: [retain_longitudinal_modified_dates], pseudonym_prefix: T}",
        "deidentification: {options: [clean_pixel_data], pseudonym_prefix: T, "
        "deid_recipe: site.dicom}",
    )
    policy_file.write_text(text)
    make_series(tmp_path / "in", n=4, modality="US")
    argv = ["deid", "dicom", str(tmp_path / "in"), str(tmp_path / "out")]
    rc = cli([*argv, "--policy", str(policy_file), "--subject", "P001", "--jobs", "2"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_written"] == 4
    assert printed["policy"]["deid_recipe"]["file"] == "site.dicom"
    assert {r["rules"][0] for r in printed["pixel_cleaned"]} == {"graylist:acme us:5"}
    for ds in read_all(tmp_path / "out"):
        assert ds.Manufacturer == "ACME-REDACTED"
        assert (ds.pixel_array[:2] == 0).all() and ds.BurnedInAnnotation == "NO"
    with pytest.raises(SystemExit):
        cli([*argv, "--policy", str(policy_file), "--jobs", "-1"])


def test_action_log_lines_have_sorted_keys(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=2)
    log = tmp_path / "a.jsonl"
    recipe_text = "FORMAT dicom\n%header\nREMOVE Modality\n"
    from imagedepot.deid.recipe import parse_recipe

    run(
        tmp_path / "in",
        tmp_path / "out",
        action_log=log,
        recipe=parse_recipe(recipe_text, name="r"),
    )
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        assert json.dumps(rec, sort_keys=True) == line  # stable, diff-friendly lines
        assert any(a.get("rule") == "recipe:3" for a in rec["actions"])


def test_cli_second_run_into_the_same_output_fails_fast(
    tmp_path: Path, policy_file: Path, monkeypatch
) -> None:
    import subprocess
    import sys

    from imagedepot.errors import ImagedepotError

    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", KEY.decode())
    make_series(tmp_path / "in", n=2)
    out = tmp_path / "out"
    argv = ["deid", "dicom", str(tmp_path / "in"), str(out), "--policy", str(policy_file)]
    argv += ["--subject", "P001", "--force"]
    assert cli(argv) == 0
    before = sorted(p.name for p in out.iterdir())
    # Another run is writing `out` (it holds the output's lock, as `deid dicom` does).
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(tmp_path / ".out.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ImagedepotError, match="another imagedepot deid run") as exc:
            cli(argv)
        assert str(out) in str(exc.value)
        assert sorted(p.name for p in out.iterdir()) == before  # nothing vanished
    finally:
        holder.kill()
        holder.wait()
    assert cli(argv) == 0  # the lock goes with the process that held it
