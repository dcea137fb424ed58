"""The synthetic demo inbox: every file parses back with the PHI, geometry and grouping planted."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import stat
import warnings
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
import yaml
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from imagedepot.demo import (
    DEMO_PHI,
    DEMO_UID_ROOT,
    FAKE_FILE_NAME,
    SC_SHAPE,
    SC_TEXT_REGION,
    US_SHAPE,
    DemoInfo,
    make_demo,
)
from imagedepot.errors import OutputExistsError

OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoInfo:
    return make_demo(tmp_path_factory.mktemp("demo") / "demo")


def _dicoms(folder: Path) -> dict[Path, pydicom.Dataset]:
    return {p: pydicom.dcmread(p) for p in sorted(folder.rglob("IM*")) if p.name != "IM9999"}


def _series(datasets: dict[Path, pydicom.Dataset]) -> dict[tuple[str, str], list[pydicom.Dataset]]:
    out: dict[tuple[str, str], list[pydicom.Dataset]] = defaultdict(list)
    for ds in datasets.values():
        out[(ds.StudyInstanceUID, ds.SeriesInstanceUID)].append(ds)
    return out


def test_layout_and_info(demo: DemoInfo) -> None:
    root = demo.root
    for rel in [
        "README.md",
        "samples.tsv",
        "consent.tsv",
        "clinical.csv",
        "policies/demo-cohort.yaml",
        "policies/open-microscopy.yaml",
        "secrets/pseudonym.key",
        "inbox/DOE_JOHN_19650312/DICOMDIR",
        "inbox/ROE_JANE/IM9999",
        "inbox/microscopy/cells.ome.tif",
        f"inbox/microscopy/{FAKE_FILE_NAME}",
        "inbox/nifti/brain.nii.gz",
        "inbox/nifti/brain.json",
    ]:
        assert (root / rel).is_file(), rel
    assert demo.samples == root / "samples.tsv"
    assert demo.consent == root / "consent.tsv"
    assert demo.clinical == root / "clinical.csv"
    assert demo.key_file == root / "secrets" / "pseudonym.key"
    assert set(demo.policies) == {"demo-cohort", "open-microscopy"}
    assert all(p.is_file() for p in demo.policies.values())
    assert demo.phi == list(DEMO_PHI)
    readme = (root / "README.md").read_text()
    assert "CC0" in readme and "synthetic" in readme.lower() and "fake PHI" in readme
    # DICOM files carry no extension, as exported by scanners.
    assert all("." not in p.name for p in (root / "inbox").rglob("IM*"))


def test_subject_a_mixes_two_studies_in_one_folder(demo: DemoInfo) -> None:
    folder = demo.root / "inbox" / "DOE_JOHN_19650312"
    datasets = _dicoms(folder)
    assert len(datasets) == 32
    assert any(p.parent != folder for p in datasets), "some files sit in a nested subfolder"
    series = _series(datasets)
    assert len({study for study, _ in series}) == 2
    assert sorted((s[0].Modality, len(s)) for s in series.values()) == [("CT", 12), ("MR", 20)]
    # Shuffled: the two studies interleave in file-name order.
    order = [datasets[p].Modality for p in sorted(datasets, key=lambda p: p.name)]
    assert order != sorted(order) and order != sorted(order, reverse=True)
    for ds in datasets.values():
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == (MRImageStorage if ds.Modality == "MR" else CTImageStorage)
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert uid.startswith(DEMO_UID_ROOT + ".") and len(uid) <= 64 and uid.is_valid
        assert ds.PatientName == "DOE^JOHN"
        assert ds.PatientID == "MRN0012345"
        assert ds.PatientBirthDate == "19650312"
        assert ds.PatientSex == "M"
    assert len({ds.SOPInstanceUID for ds in datasets.values()}) == 32


def test_headers_are_full_of_fake_phi(demo: DemoInfo) -> None:
    ds = next(iter(_dicoms(demo.root / "inbox" / "DOE_JOHN_19650312").values()))
    for keyword in [
        "OtherPatientIDs",
        "PatientAge",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "InstitutionAddress",
        "ReferringPhysicianName",
        "OperatorsName",
        "PerformingPhysicianName",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "StudyDescription",
        "SeriesDescription",
        "DeviceSerialNumber",
        "StationName",
    ]:
        assert str(ds.data_element(keyword).value), keyword
    assert ds.InstitutionName == "St. Example General Hospital"
    assert ds.StudyDate in DEMO_PHI and ds.AccessionNumber in DEMO_PHI
    assert ds.PatientAddress in DEMO_PHI and ds.PatientTelephoneNumbers in DEMO_PHI
    request = ds.RequestAttributesSequence[0]
    assert request.RequestedProcedureID in DEMO_PHI
    assert "John Doe" in request.ReasonForTheRequestedProcedure
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID
    assert ds.OtherPatientIDsSequence[0].PatientID == ds.OtherPatientIDs


def test_geometry_is_consistent(demo: DemoInfo) -> None:
    datasets = {}
    for folder in ("DOE_JOHN_19650312", "ROE_JANE", "POE_EDGAR"):
        datasets.update(_dicoms(demo.root / "inbox" / folder))
    for (_, _), slices in _series(datasets).items():
        if slices[0].Modality in ("OT", "US"):
            continue
        slices.sort(key=lambda d: int(d.InstanceNumber))
        iop = np.array(slices[0].ImageOrientationPatient, dtype=float)
        assert np.allclose(iop, [1, 0, 0, 0, 1, 0])
        normal = np.cross(iop[:3], iop[3:])
        positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in slices])
        steps = np.diff(positions @ normal)
        assert np.allclose(steps, float(slices[0].SliceThickness))
        assert np.allclose(positions[:, :2], positions[0, :2])
        assert len({d.FrameOfReferenceUID for d in slices}) == 1
        for d in slices:
            assert float(d.SliceLocation) == pytest.approx(float(d.ImagePositionPatient[2]))
            assert d.Rows == d.Columns == 64
            assert len(d.PixelSpacing) == 2
            assert d.pixel_array.shape == (64, 64)
        if slices[0].Modality == "MR":
            assert slices[0].pixel_array.dtype == np.uint16
            assert slices[0].PhotometricInterpretation == "MONOCHROME2"
            for keyword in ("RepetitionTime", "EchoTime", "FlipAngle", "MagneticFieldStrength"):
                assert keyword in slices[0]
            assert slices[0].Manufacturer == "SIEMENS"
        else:
            d = slices[len(slices) // 2]
            assert d.pixel_array.dtype == np.int16
            hu = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
            assert hu.min() < -900 and hu.max() > 300  # air and bone


def test_mr_has_siemens_private_block_with_the_name(demo: DemoInfo) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "DICOM readers are highly experimental"
        from nibabel.nicom import csareader

    datasets = _dicoms(demo.root / "inbox" / "DOE_JOHN_19650312").values()
    mr = next(ds for ds in datasets if ds.Modality == "MR")
    block = mr.private_block(0x0029, "SIEMENS CSA HEADER")
    assert b"DOE^JOHN" in block[0x10].value and b"DOE^JOHN" in block[0x20].value
    csa = csareader.read(block[0x10].value)
    assert csa["tags"]["PatientName"]["items"] == ["DOE^JOHN"]


def test_dicomdir_is_a_real_file_set_descriptor(demo: DemoInfo) -> None:
    ds = pydicom.dcmread(demo.root / "inbox" / "DOE_JOHN_19650312" / "DICOMDIR")
    assert ds.file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage
    records = Counter(r.DirectoryRecordType for r in ds.DirectoryRecordSequence)
    assert records == {"PATIENT": 1, "STUDY": 2, "SERIES": 2, "IMAGE": 32}


def test_subject_b_secondary_capture_and_truncated_file(demo: DemoInfo) -> None:
    folder = demo.root / "inbox" / "ROE_JANE"
    datasets = _dicoms(folder)
    by_modality = Counter(ds.Modality for ds in datasets.values())
    assert by_modality == {"CT": 8, "OT": 1, "US": 1}
    assert len({ds.StudyInstanceUID for ds in datasets.values()}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets.values()}) == 3
    sc = next(ds for ds in datasets.values() if ds.Modality == "OT")
    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert sc.BurnedInAnnotation == "YES"
    pixels = sc.pixel_array
    assert pixels.shape == SC_SHAPE == (128, 128)
    x0, y0, x1, y1 = SC_TEXT_REGION
    text = pixels[y0:y1, x0:x1]
    assert text.max() == 255 and (text == 255).sum() > 100  # the burned-in text
    assert pixels[y1:].max() < 255  # and none outside the region the policy's rule blanks

    # The ultrasound capture: text burned in, from a device that no pixel-cleaning rule knows.
    us = next(ds for ds in datasets.values() if ds.Modality == "US")
    assert us.SOPClassUID == SecondaryCaptureImageStorage
    assert us.BurnedInAnnotation == "YES"
    assert us.Manufacturer == "NONAME SONICS"
    assert us.pixel_array.shape == US_SHAPE
    assert (us.pixel_array[-14:] == 255).sum() > 50

    truncated = folder / "IM9999"
    assert truncated.stat().st_size == 200
    assert (folder / "IM0001").read_bytes().startswith(truncated.read_bytes())
    # pydicom reads the cut meta group leniently (no exception), but nothing usable is in it.
    ds = pydicom.dcmread(truncated)
    assert "SOPInstanceUID" not in ds and "PixelData" not in ds and "StudyInstanceUID" not in ds


def test_subject_c_has_no_consent(demo: DemoInfo) -> None:
    datasets = _dicoms(demo.root / "inbox" / "POE_EDGAR")
    assert [ds.Modality for ds in datasets.values()] == ["CT"] * 5
    assert {str(ds.PatientName) for ds in datasets.values()} == {"POE^EDGAR"}
    with open(demo.consent, newline="") as fh:
        consent = {r["subject"]: r for r in csv.DictReader(fh, delimiter="\t")}
    assert consent["MRN0099999"]["consent_imaging"] == "no"


def test_ome_tiff_reads_back(demo: DemoInfo) -> None:
    path = demo.root / "inbox" / "microscopy" / "cells.ome.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        assert series.axes == "CZYX"
        assert series.shape == (2, 3, 256, 256)
        data = series.asarray()
        xml = tif.ome_metadata
    assert data.dtype == np.uint16
    dapi_in_focus = data[0, 1]
    assert dapi_in_focus.max() > 10 * np.median(dapi_in_focus)  # bright nuclei on dark ground
    assert data[0, 1].max() > data[0, 0].max()  # middle plane in focus

    assert xml is not None
    root = ET.fromstring(xml)
    assert root.tag == f"{OME}OME"
    image = root.find(f"{OME}Image")
    assert image is not None
    # Children in schema order.
    children = [c.tag.removeprefix(OME) for c in image]
    assert children[:3] == ["AcquisitionDate", "ExperimenterRef", "Description"]
    assert children.index("Pixels") < children.index("AnnotationRef")
    pixels = image.find(f"{OME}Pixels")
    assert pixels is not None
    assert float(pixels.get("PhysicalSizeX", "0")) == 0.325
    assert float(pixels.get("PhysicalSizeY", "0")) == 0.325
    assert float(pixels.get("PhysicalSizeZ", "0")) == 1.0
    assert pixels.get("PhysicalSizeXUnit") == "µm"
    assert [c.get("Name") for c in pixels.findall(f"{OME}Channel")] == ["DAPI", "GFP"]
    experimenter = root.find(f"{OME}Experimenter")
    assert experimenter is not None
    assert experimenter.get("FirstName") == "Alice"
    assert experimenter.get("LastName") == "Smithee"
    assert experimenter.get("Email") == "alice.smithee@example.org"
    ref = image.find(f"{OME}ExperimenterRef")
    assert ref is not None and ref.get("ID") == experimenter.get("ID")
    assert image.findtext(f"{OME}AcquisitionDate")
    assert "Alice Smithee" in (image.findtext(f"{OME}Description") or "")
    comment = root.find(f"{OME}StructuredAnnotations/{OME}CommentAnnotation/{OME}Value")
    assert comment is not None and "Alice Smithee" in (comment.text or "")


def test_bioformats_fake_file_uses_known_keys(demo: DemoInfo) -> None:
    path = demo.root / "inbox" / "microscopy" / FAKE_FILE_NAME
    assert path.stat().st_size == 0
    name, *pairs = path.name.removesuffix(".fake").split("&")
    keys = dict(pair.split("=", 1) for pair in pairs)
    assert name == "plate"
    known = {"sizeX", "sizeY", "sizeZ", "sizeC", "sizeT", "pixelType", "physicalSizeX"}
    assert set(keys) <= known | {"physicalSizeY", "physicalSizeZ"}
    assert keys["pixelType"] == "uint16" and float(keys["physicalSizeX"]) == 0.5


def test_nifti_carries_phi_in_header_extension_and_sidecar(demo: DemoInfo) -> None:
    folder = demo.root / "inbox" / "nifti"
    img = nib.load(folder / "brain.nii.gz")
    assert img.shape == (32, 32, 16)
    assert np.allclose(np.diag(img.affine), [2, 2, 3, 1])
    hdr = img.header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1
    assert hdr.get_zooms() == (2.0, 2.0, 3.0)
    assert hdr["descrip"].item() == b"DOE^JOHN MRN0012345"
    assert b"DOE_JOHN" in hdr["aux_file"].item()
    assert hdr["db_name"].item() == b"MRN0012345"
    (ext,) = hdr.extensions
    assert ext.get_code() == 6 and b"DOE^JOHN" in ext.get_content()
    assert np.asarray(img.dataobj).max() > 500
    sidecar = json.loads((folder / "brain.json").read_text())
    for key in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "AcquisitionDateTime",
        "InstitutionName",
        "RepetitionTime",
        "EchoTime",
    ):
        assert key in sidecar
    assert sidecar["PatientID"] == "MRN0012345" and sidecar["RepetitionTime"] == 0.5


def test_sheets(demo: DemoInfo) -> None:
    with open(demo.consent, newline="") as fh:
        consent = list(csv.DictReader(fh, delimiter="\t"))
    assert [(r["subject"], r["consent_imaging"]) for r in consent] == [
        ("MRN0012345", "yes"),
        ("MRN0067890", "yes"),
        ("MRN0099999", "no"),
    ]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["consent_date"]) for r in consent)
    with open(demo.clinical, newline="") as fh:
        clinical = list(csv.DictReader(fh))
    assert {r["patient_id"] for r in clinical} == {"MRN0012345", "MRN0067890", "MRN0099999"}
    assert all(re.fullmatch(r"[A-Z]\d{2}(\.\w+)?", r["diagnosis_code"]) for r in clinical)
    assert all(float(r["weight_kg"]) > 0 and r["diagnosis_text"] for r in clinical)

    with open(demo.samples, newline="") as fh:
        rows = {r["dataset_id"]: r for r in csv.DictReader(fh, delimiter="\t")}
    expected = {
        "dcm-subj01": ("MRN0012345", "dicom", "demo-cohort"),
        "dcm-subj02": ("MRN0067890", "dicom", "demo-cohort"),
        "dcm-subj03": ("MRN0099999", "dicom", "demo-cohort"),
        "nii-subj01": ("MRN0012345", "nifti", "demo-cohort"),
        "micro-cells": ("specimen-A17", "microscopy", "open-microscopy"),
        "micro-plate": ("specimen-P03", "microscopy", "open-microscopy"),
    }
    assert {
        k: (r["subject"], r["modality_class"], r["policy"]) for k, r in rows.items()
    } == expected
    for row in rows.values():
        assert row["destinations"] == "local"
        assert row["organism"] in {"Homo sapiens", "Mus musculus"}
        assert row["title"] and row["description"] and row["sample"] and row["imaging_method"]
        assert list(demo.samples.parent.glob(row["source"])), row["source"]
        assert not any(p in row["title"] + row["description"] for p in DEMO_PHI)


def test_policies(demo: DemoInfo) -> None:
    cohort = yaml.safe_load(demo.policies["demo-cohort"].read_text())
    assert cohort["data_use"] == {"permission": "DUO:0000042", "modifiers": ["DUO:0000019"]}
    assert cohort["consent"]["required"] is True
    sheet = demo.policies["demo-cohort"].parent / cohort["consent"]["sheet"]
    assert sheet.resolve() == demo.consent.resolve()
    assert cohort["destinations"]["allowed_classes"] == ["internal", "controlled_repository"]
    assert cohort["deidentification"]["options"] == [
        "retain_longitudinal_modified_dates",
        "clean_pixel_data",
    ]
    (rule,) = cohort["deidentification"]["pixel_cleaning"]
    assert rule["regions"] == [list(SC_TEXT_REGION)]
    assert (rule["match"]["Rows"], rule["match"]["Columns"]) == SC_SHAPE
    assert cohort["deidentification"]["pseudonym_prefix"] == "SUBJ"
    micro = yaml.safe_load(demo.policies["open-microscopy"].read_text())
    assert micro["consent"] == {"required": False}
    assert micro["data_use"]["permission"] == "DUO:0000004"
    assert micro["destinations"]["allowed_classes"] == ["internal", "public_archive"]


def test_policies_and_sheet_pass_the_project_loaders(demo: DemoInfo) -> None:
    from imagedepot.policy import load_policy
    from imagedepot.samplesheet import load_samples

    policies = {name: load_policy(path) for name, path in demo.policies.items()}
    datasets = load_samples(
        demo.samples, policies=policies, destinations={"local": {"class": "internal"}}
    )
    assert len(datasets) == 6


def test_key_file_is_private(demo: DemoInfo) -> None:
    assert stat.S_IMODE(demo.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(demo.key_file.parent.stat().st_mode) == 0o700
    assert re.fullmatch(r"[0-9a-f]{64}", demo.key_file.read_text().strip())


def test_every_listed_phi_string_is_planted(demo: DemoInfo) -> None:
    corpus = b""
    for p in sorted(demo.root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            corpus += gzip.decompress(data) if p.name.endswith(".gz") else data
    corpus += "\n".join(str(p.relative_to(demo.root)) for p in demo.root.rglob("*")).encode()
    for value in DEMO_PHI:
        iso = f"{value[:4]}-{value[4:6]}-{value[6:]}" if re.fullmatch(r"\d{8}", value) else None
        # Dates written only in ISO form are listed in DICOM form too (where they could leak).
        assert value.encode() in corpus or (iso and iso.encode() in corpus), value
    assert not any(re.fullmatch(r"[MF]|\d{3}Y", v) for v in DEMO_PHI), "no uselessly short strings"


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_deterministic_except_the_key(demo: DemoInfo, tmp_path: Path) -> None:
    other = make_demo(tmp_path / "again")
    first, second = _digests(demo.root), _digests(other.root)
    assert first.keys() == second.keys()
    differing = [k for k in first if first[k] != second[k]]
    assert differing == ["secrets/pseudonym.key"]


def test_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError):
        make_demo(target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]

    info = make_demo(target, force=True)
    assert (target / "notes.txt").read_text() == "keep me"
    key = info.key_file.read_text()
    (target / "inbox" / "stale-file").write_text("left over")
    info = make_demo(target, force=True)
    assert not (target / "inbox" / "stale-file").exists()
    assert info.key_file.read_text() != key
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imagedepot-tmp-")]


def test_an_existing_empty_folder_is_fine(tmp_path: Path) -> None:
    info = make_demo(tmp_path)
    assert info.root == tmp_path.absolute()
    assert (tmp_path / "samples.tsv").is_file()
