"""The leak gate finds every kind of planted identifier, reports no values, passes clean outputs."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from imagedepot.errors import InputError, LeakError
from imagedepot.leakcheck import (
    Identifiers,
    LeakReport,
    allowed_kinds_for_options,
    harvest,
    leakcheck,
    scan,
)

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
STUDY_UID = "1.2.826.0.1.3680043.8.498.11223344556677"
SERIES_UID = "1.2.826.0.1.3680043.8.498.11223344556678"
SOP_UID = "1.2.826.0.1.3680043.8.498.11223344556679"

#: Every identifying value planted in the originals (none may appear in a report).
PLANTED = [
    "DOE^JOHN^QUINCY",
    "DOE",
    "JOHN",
    "QUINCY",
    "PAT-778812",
    "19700412",
    "1970-04-12",
    "20240131",
    "2024-01-31",
    "Saint Example Hospital",
    "12 Baker Street, Springfield",
    "MRSTATION42",
    "SN998877",
    "ACC55512",
    "RPX4471",
    "ROE^RICHARD",
    "ROE",
    "RICHARD",
    STUDY_UID,
    SERIES_UID,
    SOP_UID,
    "Mayfield",
    "jmayfield",
    "jane.mayfield@example.org",
]


def make_dicom(path: Path) -> Path:
    """A small MR header with PHI in plain, nested and private elements."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_STORAGE
    meta.MediaStorageSOPInstanceUID = SOP_UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MR_STORAGE
    ds.SOPInstanceUID = SOP_UID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.PatientName = "DOE^JOHN^QUINCY"
    ds.PatientID = "PAT-778812"
    ds.PatientBirthDate = "19700412"
    ds.PatientSex = "M"
    ds.StudyDate = "20240131"
    ds.AcquisitionDateTime = "20240131093015.000000"
    ds.InstitutionName = "Saint Example Hospital"
    ds.InstitutionAddress = "12 Baker Street, Springfield"
    ds.StationName = "MRSTATION42"
    ds.DeviceSerialNumber = "SN998877"
    ds.AccessionNumber = "ACC55512"
    ds.StudyID = "7"
    ds.Modality = "MR"
    ds.SeriesNumber = 3
    item = Dataset()
    item.RequestedProcedureID = "RPX4471"
    ds.RequestAttributesSequence = [item]
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "ACME scanner text")
    block.add_new(0x02, "PN", "ROE^RICHARD")
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def make_ome_tiff(path: Path, *, last_name: str = "Mayfield") -> Path:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        f'<Experimenter ID="Experimenter:0" FirstName="Jane" LastName="{last_name}" '
        'Email="jane.mayfield@example.org" UserName="jmayfield"/>'
        '<Image ID="Image:0" Name="slide"><AcquisitionDate>2024-01-31T10:00:00</AcquisitionDate>'
        '<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="8" SizeY="8" SizeC="1" '
        'SizeZ="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>'
    )
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), description=xml, metadata=None)
    return path


@pytest.fixture
def originals(tmp_path: Path) -> Path:
    root = tmp_path / "inbox"
    root.mkdir()
    make_dicom(root / "IM0001.dcm")
    make_ome_tiff(root / "slide.ome.tif")
    return root


@pytest.fixture
def ids(originals: Path) -> Identifiers:
    return harvest([originals])


def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir(exist_ok=True)
    return d


def assert_no_values(report: LeakReport) -> None:
    text = json.dumps(report.to_dict()).lower()
    for value in PLANTED:
        assert value.lower() not in text, "a harvested identifier appears in the report"


def kinds(report: LeakReport) -> set[str]:
    return {h["kind"] for h in report.hits}


# --------------------------------------------------------------------------- harvest


def test_harvest_collects_every_kind(ids: Identifiers) -> None:
    counts = ids.counts()
    for kind in (
        "person_name",
        "birth_date",
        "date",
        "uid",
        "id",
        "institution",
        "device",
        "email",
        "username",
    ):
        assert counts.get(kind), kind
    values = {v for v, _k in ids.values()}
    assert {"19700412", "1970-04-12", "20240131", "2024-01-31"} <= values
    assert STUDY_UID in values
    assert "doe" in values and "roe" in values  # private PN and its parts
    assert "rpx4471" in values  # nested sequence
    assert not any(v.startswith("1.2.840.10008.") for v in values)  # SOP class, transfer syntax


def test_harvest_drops_weak_tokens() -> None:
    ids = Identifiers()
    for value in ("7", "12", "Li", "brain", "UNKNOWN", "12345", "MR Brain"):
        ids.add(value, "extra")
    assert len(ids) == 0
    assert ids.add("123456", "id") == 1


def test_harvest_missing_original_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        harvest([tmp_path / "nope"])


# --------------------------------------------------------------------------- leaks found


def test_dicom_private_and_nested_leaks(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    ds = pydicom.dcmread(make_dicom(tmp_path / "copy.dcm"))
    ds.PatientName = "SUBJ-ABC"
    ds.PatientID = "SUBJ-ABC"
    for kw in ("PatientBirthDate", "StudyDate", "AcquisitionDateTime", "InstitutionName"):
        delattr(ds, kw)
    for kw in ("InstitutionAddress", "StationName", "DeviceSerialNumber", "AccessionNumber"):
        delattr(ds, kw)
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, kw, generate_uid(prefix="2.25."))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(out / "0001.dcm")
    report = scan(ids, [out])
    assert report.status == "leak"
    locations = {(h["location"], h["kind"]) for h in report.hits}
    assert ("(0011,1002)", "person_name") in locations
    assert ("RequestAttributesSequence[0].RequestedProcedureID", "id") in locations
    assert all(h["file"] == "out/0001.dcm" for h in report.hits)
    assert_no_values(report)


def test_dicom_file_meta_uid_leak(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    ds = pydicom.dcmread(make_dicom(tmp_path / "copy.dcm"))
    for elem in list(ds):
        if elem.tag != 0x00080016:
            del ds[elem.tag]
    ds.SOPInstanceUID = generate_uid(prefix="2.25.")
    ds.save_as(out / "x.dcm")  # file meta still holds the original SOP instance UID
    report = scan(ids, [out])
    assert {(h["location"], h["kind"]) for h in report.hits} == {
        ("file_meta.MediaStorageSOPInstanceUID", "uid")
    }


def test_json_sidecar_leak(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    sidecar = {"RepetitionTime": 2.0, "AcquisitionDateTime": "2024-01-31T09:30:15", "x": [1]}
    (out / "sub.json").write_text(json.dumps(sidecar))
    report = scan(ids, [out])
    assert report.hits == [
        {
            "file": "out/sub.json",
            "location": "AcquisitionDateTime",
            "kind": "date",
            "token": report.hits[0]["token"],
        }
    ]
    assert scan(ids, [out], allow_kinds=["date"]).status == "clean"


def test_filename_and_folder_name_leak_are_redacted(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    (out / "Doe_John").mkdir()
    (out / "Doe_John" / "t1.txt").write_text("nothing here\n")
    report = scan(ids, [out])
    assert report.status == "leak"
    assert {h["location"] for h in report.hits} == {"dirname"}
    assert report.hits[0]["file"].startswith("out/<redacted-")
    assert "doe" not in json.dumps(report.to_dict()).lower()


def test_nifti_extension_and_header_leak(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    img.header["descrip"] = b"acq 20240131"
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"Patient: John Doe"))
    nib.save(img, out / "img.nii.gz")
    report = scan(ids, [out])
    locations = {(h["location"], h["kind"]) for h in report.hits}
    assert ("header.descrip", "date") in locations
    assert ("extension[0] (code 6)", "person_name") in locations
    assert_no_values(report)


def test_gzip_original_name_leak(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    with open(out / "data.bin.gz", "wb") as raw, gzip.GzipFile("doe_john.dat", "wb", 6, raw) as gz:
        gz.write(b"\x00\x01")
    report = scan(ids, [out])
    assert {h["location"] for h in report.hits} == {"gzip.filename"}


def test_ome_tiff_xml_leak(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    make_ome_tiff(out / "image.ome.tif")
    report = scan(ids, [out])
    found = {(h["location"], h["kind"]) for h in report.hits}
    assert ("page 0 ImageDescription Experimenter@LastName", "person_name") in found
    assert ("page 0 ImageDescription Experimenter@Email", "email") in found
    assert ("page 0 ImageDescription AcquisitionDate text", "date") in found
    assert_no_values(report)


def test_ome_zarr_metadata_leak_and_chunks_skipped(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    store = out / "img.ome.zarr"
    (store / "OME").mkdir(parents=True)
    (store / ".zgroup").write_text('{"zarr_format": 2}')
    (store / ".zattrs").write_text(json.dumps({"multiscales": [{"name": "Doe John"}]}))
    (store / "OME" / "METADATA.ome.xml").write_text(
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Experimenter ID="Experimenter:0" UserName="jmayfield"/></OME>'
    )
    (store / "0").mkdir()
    (store / "0" / "0.0").write_bytes(b"DOE JOHN 20240131 " * 10)  # chunk: not read
    report = scan(ids, [out])
    found = {(h["file"], h["location"], h["kind"]) for h in report.hits}
    assert found == {
        ("out/img.ome.zarr/.zattrs", "multiscales[0].name", "person_name"),
        ("out/img.ome.zarr/OME/METADATA.ome.xml", "Experimenter@UserName", "username"),
    }
    assert not any(h["file"].endswith("0.0") for h in report.hits)
    assert report.files_names_only >= 1


def test_person_name_separators(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    for i, text in enumerate(["Doe, John", "john doe", "DOE^JOHN", "Dr. Richard Roe"]):
        (out / f"{i}.tsv").write_text(f"who\n{text}\n")
    report = scan(ids, [out])
    assert {h["file"] for h in report.hits} == {f"out/{i}.tsv" for i in range(4)}
    assert kinds(report) == {"person_name"}


def test_no_false_positives_on_lookalikes(tmp_path: Path, ids: Identifiers) -> None:
    out = out_dir(tmp_path)
    text = (
        "does John's-day? no: Johnson; uid 1.2.826.0.1.3680043.8.498.112233445566771 "
        "date 20240132 20240130 brain 7 SN9988770 1.2.840.10008.5.1.4.1.1.4\n"
    )
    (out / "notes.txt").write_text(text.replace("John's-day", "Jon-day"))
    report = scan(ids, [out])
    assert report.status == "clean", report.hits


def test_uid_boundaries() -> None:
    ids = Identifiers()
    ids.add("1.2.3.4.5.6", "uid")
    assert ids.find("x 1.2.3.4.5.6.")
    assert not ids.find("1.2.3.4.5.67")
    assert not ids.find("11.2.3.4.5.6")
    assert not ids.find("1.2.3.4.5.6.7")


def test_dates_in_every_spelling() -> None:
    ids = Identifiers()
    ids.add("20240131", "date")
    for text in ("20240131", "2024-01-31", "2024:01:31 10:00", "20240131093015.0", "2024/01/31"):
        assert ids.find(text), text
    assert not ids.find("120240131")


def test_extra_identifiers_and_id_inside_words(tmp_path: Path, originals: Path) -> None:
    out = out_dir(tmp_path)
    (out / "sheet.csv").write_text("id,value\nxQX7781y,1\n")
    report = leakcheck([originals], [out], extra=["QX7781", "42"])
    assert report.status == "leak"
    assert kinds(report) == {"extra"}


# --------------------------------------------------------------------------- clean outputs


def test_clean_output_passes(
    tmp_path: Path, originals: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = out_dir(tmp_path)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MR_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MR_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
    ds.PatientName = ds.PatientID = "SUBJ-7Q3K9D2M4XHA"
    ds.StudyDate = "20230517"
    ds.PatientSex = "M"
    ds.Modality = "MR"
    ds.StudyID = "7"
    pydicom.dcmwrite(out / "SUBJ-7Q3K9D2M4XHA_001.dcm", ds, enforce_file_format=True)
    (out / "SUBJ-7Q3K9D2M4XHA_001.json").write_text(
        json.dumps({"RepetitionTime": 2.3, "EchoTime": 0.00298, "Manufacturer": "Siemens"})
    )
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), out / "s.nii.gz")
    (out / "provenance.json").write_text(json.dumps({"status": "processed", "n": 3}))
    with caplog.at_level(logging.DEBUG, logger="imagedepot"):
        report = leakcheck([originals], [out])
    assert report.status == "clean", report.hits
    assert report.files_scanned == 4
    assert report.to_dict()["counts"]["hits"] == 0
    report.raise_for_leak()
    for value in PLANTED:
        assert value.lower() not in caplog.text.lower()


def test_report_and_logs_never_hold_values(
    tmp_path: Path, originals: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = out_dir(tmp_path)
    shutil.copytree(originals, out / "copy")  # everything leaks
    with caplog.at_level(logging.DEBUG, logger="imagedepot"):
        report = leakcheck([originals], [out])
    assert report.status == "leak"
    assert report.counts["hits"] >= 20
    assert_no_values(report)
    for value in PLANTED:
        assert value.lower() not in caplog.text.lower()
    with pytest.raises(LeakError) as err:
        report.raise_for_leak()
    for value in PLANTED:
        assert value.lower() not in str(err.value).lower()
    tokens = {h["token"] for h in report.hits}
    assert all(len(t) == 10 for t in tokens)


def test_allowed_kinds_for_options() -> None:
    assert allowed_kinds_for_options(
        ["retain_longitudinal_full_dates", "retain_device_identity", "clean_descriptors"]
    ) == {"date", "device"}


def test_scan_missing_output_raises(ids: Identifiers, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        scan(ids, [tmp_path / "missing"])


# ----------------------------------------------------------------------------- found in public files


def test_dicom_with_a_tiff_preamble_is_harvested_and_scanned_as_dicom(tmp_path: Path) -> None:
    """A DICOM file whose preamble holds a TIFF header (pydicom's CT_small.dcm is one) must not
    be read as a TIFF only: its DICOM identifiers are harvested and scanned too."""
    (tmp_path / "orig").mkdir()
    src = make_dicom(tmp_path / "orig" / "dual.dcm")
    data = bytearray(src.read_bytes())
    data[:8] = b"II*\x00\x08\x00\x00\x00"  # a TIFF header in the preamble
    src.write_bytes(bytes(data))
    ids = harvest([src])
    assert "DOE^JOHN^QUINCY" in ids and STUDY_UID in ids
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(src, out / "dual.tif")  # a TIFF name does not hide the DICOM data set
    report = scan(ids, [out])
    assert report.leaked and "PatientName" in {h["location"] for h in report.hits}


def test_coding_scheme_uids_and_common_words_are_not_identifiers(tmp_path: Path) -> None:
    ds = pydicom.dcmread(make_dicom(tmp_path / "a.dcm"))
    item = Dataset()
    item.CodingSchemeDesignator = "99_OFFIS_DCMTK"
    item.CodingSchemeUID = "1.2.276.0.7230010.3.0.0.1"
    ds.CodingSchemeIdentificationSequence = [item]
    ds.InstitutionName = "Here"
    ds.save_as(tmp_path / "a.dcm")
    ids = harvest([tmp_path / "a.dcm"])
    assert "1.2.276.0.7230010.3.0.0.1" not in ids  # names a coding scheme, kept on purpose
    assert "Here" not in ids  # a common word, not an institution on its own
    assert STUDY_UID in ids


def test_enumerated_sr_code_strings_are_words_of_the_standard(tmp_path: Path) -> None:
    """An observer named "Text Contains" (reportsi.dcm's is "Enter text"): the Value Type TEXT
    and the Relationship Type CONTAINS of the report tree are the standard's words, not the
    name; the name in a free-text element, or in a code string that is not an enumerated
    value, is still found."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    original = pydicom.dcmread(make_dicom(inbox / "IM0001.dcm"))
    observer = Dataset()
    observer.PersonName = "Contains^Text"
    original.ContentSequence = [observer]
    original.save_as(inbox / "IM0001.dcm")
    ids = harvest([inbox])

    runs = iter(range(3))

    def released(value_type: str, relationship: str, comment: str) -> Path:
        out = tmp_path / f"out{next(runs)}"  # (a folder name is scanned too)
        out.mkdir()
        ds = Dataset()
        ds.file_meta = original.file_meta
        ds.SOPClassUID, ds.SOPInstanceUID = MR_STORAGE, generate_uid(prefix="2.25.")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        item = Dataset()
        item.ValueType, item.RelationshipType = value_type, relationship
        item.TextValue = comment
        ds.ContentSequence = [item]
        pydicom.dcmwrite(out / "0001.dcm", ds, enforce_file_format=True)
        return out

    assert scan(ids, [released("TEXT", "CONTAINS", "no comment")]).status == "clean"
    free_text = scan(ids, [released("TEXT", "CONTAINS", "seen by Text Contains")])
    assert {h["location"] for h in free_text.hits} == {"ContentSequence[0].TextValue"}
    not_enumerated = scan(ids, [released("CONTAINS TEXT", "CONTAINS", "")])
    assert {h["location"] for h in not_enumerated.hits} == {"ContentSequence[0].ValueType"}
