"""NIfTI de-identification: header text and extensions gone, sidecar cleaned, data and geometry
kept."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imagedepot.deid.nifti import deidentify_nifti, sidecar_action, sidecar_for
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError, OutputExistsError
from imagedepot.leakcheck import leakcheck

SUBJECT = "PAT-778812"
PS = Pseudonymizer(key=b"k" * 32, prefix="SUBJ", max_shift_days=365)
MODIFIED = frozenset({"retain_longitudinal_modified_dates"})

SIDECAR = {
    "Modality": "MR",
    "Manufacturer": "Siemens",
    "ManufacturersModelName": "Prisma",
    "MagneticFieldStrength": 3,
    "PatientName": "DOE^JOHN",
    "PatientID": "PAT-778812",
    "PatientBirthDate": "1970-04-12",
    "PatientSex": "M",
    "PatientWeight": 80,
    "InstitutionName": "Saint Example Hospital",
    "InstitutionAddress": "12 Baker Street, Springfield",
    "StationName": "MRSTATION42",
    "DeviceSerialNumber": "SN998877",
    "AcquisitionDateTime": "2024-01-31T09:30:15.000000",
    "StudyDate": "20240131",
    "AcquisitionTime": "09:30:15.000000",
    "SeriesDescription": "T1 for John Doe",
    "ProtocolName": "t1_mprage_sag",
    "ImageComments": "call Dr Roe",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.11223344556678",
    "SeriesNumber": 3,
    "RepetitionTime": 2.3,
    "EchoTime": 0.00298,
    "FlipAngle": 9,
    "SliceTiming": [0.0, 1.1, 0.55],
    "PhaseEncodingDirection": "j-",
}


def make_nifti(path: Path, *, version: int = 1, sidecar: bool = True) -> Path:
    """An int16 image with scaling, units, q/sform, PHI in header text fields and extensions."""
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, size=(4, 5, 6, 2), dtype=np.int16)
    affine = np.array(
        [[0.9, 0.1, 0.0, -90.5], [-0.1, 0.9, 0.05, -120.25], [0.0, -0.05, 1.2, -60.0], [0, 0, 0, 1]]
    )
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = klass(data, affine)
    hdr = img.header
    hdr.set_data_dtype(np.int16)
    hdr.set_slope_inter(2.5, -3.0)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=2)
    hdr["descrip"] = b"John Doe 2024-01-31 PAT-778812"
    hdr["aux_file"] = b"doe_john.txt"
    hdr["intent_name"] = b"MRSTATION42"
    if "db_name" in hdr:
        hdr["db_name"] = b"PAT778812"
    hdr.extensions.append(nib.nifti1.Nifti1Extension(6, b"Patient: Doe, John (PAT-778812)"))
    hdr.extensions.append(nib.nifti1.Nifti1Extension(4, b"<AFNI>SN998877</AFNI>"))
    nib.save(img, path)
    if sidecar:
        sidecar_for(path).write_text(json.dumps(SIDECAR))
    return path


def raw_header(path: Path) -> nib.Nifti1Header:
    """The header as stored in the file (not the image's normalised copy)."""
    klass = nib.load(path).header_class
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return klass.from_fileobj(fh)


def test_round_trip_keeps_data_geometry_scaling(tmp_path: Path) -> None:
    src = make_nifti(tmp_path / "doe_john_t1.nii.gz")
    out = tmp_path / "out" / "SUBJ-X_T1w.nii.gz"
    report = deidentify_nifti(src, out, policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT)
    a, b = nib.load(src), nib.load(out)
    assert np.array_equal(
        np.asarray(a.dataobj.get_unscaled()), np.asarray(b.dataobj.get_unscaled())
    )
    assert np.array_equal(a.get_fdata(), b.get_fdata())
    assert np.array_equal(a.affine, b.affine)
    assert (a.dataobj.slope, a.dataobj.inter) == (b.dataobj.slope, b.dataobj.inter) == (2.5, -3.0)
    ha, hb = raw_header(src), raw_header(out)
    changed = {"descrip", "aux_file", "intent_name", "db_name", "vox_offset"}
    for field in ha:
        if field not in changed:
            assert ha[field].tobytes() == hb[field].tobytes(), field
    assert np.array_equal(a.header.get_qform(), b.header.get_qform())
    assert np.array_equal(a.header.get_sform(), b.header.get_sform())
    assert b.header.get_data_dtype() == np.int16
    for field in ("descrip", "aux_file", "intent_name", "db_name"):
        assert b.header[field].item() == b""
    assert len(b.header.extensions) == 0
    assert int(hb["vox_offset"]) == 352
    rep = report.to_dict()
    assert rep["files"][0]["extensions_removed"] == [6, 4]
    assert set(rep["files"][0]["header_fields_cleaned"]) == {
        "descrip",
        "aux_file",
        "intent_name",
        "db_name",
    }
    assert report.files_written == ["SUBJ-X_T1w.nii.gz", "SUBJ-X_T1w.json"]
    # no original name or time stamp in the gzip header
    raw = out.read_bytes()
    assert raw[3] & 0x08 == 0 and raw[4:8] == b"\x00\x00\x00\x00"


def test_nifti2_and_uncompressed(tmp_path: Path) -> None:
    src = make_nifti(tmp_path / "a.nii", version=2)
    out = tmp_path / "b.nii"
    deidentify_nifti(src, out, policy_options=frozenset(), pseudonymizer=PS, subject=SUBJECT)
    a, b = nib.load(src), nib.load(out)
    assert isinstance(b, nib.Nifti2Image)
    assert np.array_equal(a.get_fdata(), b.get_fdata())
    assert np.array_equal(a.affine, b.affine)
    assert b.header["descrip"].item() == b""
    assert len(b.header.extensions) == 0
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(out.read_bytes())


def test_sidecar_modified_dates(tmp_path: Path) -> None:
    src = make_nifti(tmp_path / "x.nii.gz")
    out = tmp_path / "y.nii.gz"
    report = deidentify_nifti(src, out, policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT)
    side = json.loads((tmp_path / "y.json").read_text())
    for key in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "PatientWeight",
        "InstitutionName",
        "InstitutionAddress",
        "StationName",
        "DeviceSerialNumber",
        "SeriesDescription",
        "ProtocolName",
        "ImageComments",
    ):
        assert key not in side, key
    assert side["AcquisitionDateTime"] == PS.shift_datetime(SIDECAR["AcquisitionDateTime"], SUBJECT)
    assert side["StudyDate"] == PS.shift_date("20240131", SUBJECT)
    assert side["AcquisitionTime"] == SIDECAR["AcquisitionTime"]
    assert side["SeriesInstanceUID"] == PS.uid(SIDECAR["SeriesInstanceUID"])
    for key in (
        "Manufacturer",
        "ManufacturersModelName",
        "MagneticFieldStrength",
        "RepetitionTime",
        "EchoTime",
        "FlipAngle",
        "SliceTiming",
        "PhaseEncodingDirection",
        "SeriesNumber",
        "Modality",
    ):
        assert side[key] == SIDECAR[key], key
    f = report.files[0]
    assert set(f.sidecar_keys_shifted) == {"AcquisitionDateTime", "StudyDate"}
    assert "PatientName" in f.sidecar_keys_removed
    assert f.sidecar_keys_remapped == ["SeriesInstanceUID"]


def test_sidecar_full_dates_and_no_dates(tmp_path: Path) -> None:
    src = make_nifti(tmp_path / "x.nii.gz")
    full = frozenset({"retain_longitudinal_full_dates"})
    deidentify_nifti(
        src, tmp_path / "f.nii.gz", policy_options=full, pseudonymizer=PS, subject=SUBJECT
    )
    side = json.loads((tmp_path / "f.json").read_text())
    assert side["AcquisitionDateTime"] == SIDECAR["AcquisitionDateTime"]
    assert side["StudyDate"] == "20240131"
    assert "PatientBirthDate" not in side
    deidentify_nifti(
        src, tmp_path / "n.nii.gz", policy_options=frozenset(), pseudonymizer=PS, subject=SUBJECT
    )
    side = json.loads((tmp_path / "n.json").read_text())
    assert not {"AcquisitionDateTime", "StudyDate", "AcquisitionTime"} & set(side)


def test_retain_options_and_descriptors(tmp_path: Path) -> None:
    src = make_nifti(tmp_path / "x.nii.gz")
    options = frozenset(
        {
            "retain_patient_characteristics",
            "retain_device_identity",
            "retain_institution_identity",
            "clean_descriptors",
        }
    )
    deidentify_nifti(
        src, tmp_path / "o.nii.gz", policy_options=options, pseudonymizer=PS, subject=SUBJECT
    )
    side = json.loads((tmp_path / "o.json").read_text())
    assert side["PatientSex"] == "M" and side["PatientWeight"] == 80
    assert side["StationName"] == "MRSTATION42" and side["DeviceSerialNumber"] == "SN998877"
    assert side["InstitutionName"] == "Saint Example Hospital"
    assert side["ProtocolName"] == "t1_mprage_sag"  # clean descriptor kept
    assert "SeriesDescription" not in side  # names the patient
    assert "PatientName" not in side and "PatientID" not in side


def test_sidecar_action_rules() -> None:
    assert sidecar_action("RepetitionTime", frozenset()) == "keep"
    assert sidecar_action("PatientName", frozenset()) == "remove"
    assert sidecar_action("ContentDate", frozenset()) == "date"
    assert sidecar_action("MyCustomDateTime", frozenset()) == "date"
    assert sidecar_action("StudyInstanceUID", frozenset()) == "uid"
    assert sidecar_action("StudyInstanceUID", frozenset({"retain_uids"})) == "keep"
    assert sidecar_action("OperatorComments", frozenset()) == "remove"
    assert sidecar_action("ProtocolName", frozenset({"clean_descriptors"})) == "descriptor"


def test_folder_mode_pseudonymous_names(tmp_path: Path) -> None:
    inbox = tmp_path / "Doe_John"
    inbox.mkdir()
    make_nifti(inbox / "doe_john_t1.nii.gz")
    make_nifti(inbox / "doe_john_t2.nii", sidecar=False)
    out = tmp_path / "deid"
    report = deidentify_nifti(
        inbox, out, policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT
    )
    pseudonym = PS.subject_id(SUBJECT)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"{pseudonym}_001.nii.gz", f"{pseudonym}_001.json", f"{pseudonym}_002.nii"]
    )
    assert report.to_dict()["totals"]["files"] == 2
    leak = leakcheck([inbox], [out], extra=[SUBJECT])
    assert leak.status == "clean", leak.hits


def test_leakcheck_clean_after_deid(tmp_path: Path) -> None:
    (tmp_path / "orig").mkdir()
    src = make_nifti(tmp_path / "orig" / "img.nii.gz")
    out = tmp_path / "out" / "SUBJ.nii.gz"
    deidentify_nifti(src, out, policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT)
    before = leakcheck([src.parent], [src.parent])
    assert before.status == "leak"
    kinds = {h["kind"] for h in before.hits}
    assert {"person_name", "id", "date", "device", "institution", "uid"} <= kinds
    after = leakcheck([src.parent], [out.parent], extra=[SUBJECT])
    assert after.status == "clean", after.hits


def test_refuses_overwrite_and_bad_input(tmp_path: Path) -> None:
    src = make_nifti(tmp_path / "x.nii.gz")
    out = tmp_path / "y.nii.gz"
    kw = {"policy_options": MODIFIED, "pseudonymizer": PS, "subject": SUBJECT}
    deidentify_nifti(src, out, **kw)
    with pytest.raises(OutputExistsError):
        deidentify_nifti(src, out, **kw)
    deidentify_nifti(src, out, force=True, **kw)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not nifti")
    with pytest.raises(InputError):
        deidentify_nifti(bad, tmp_path / "z.nii.gz", **kw)
    assert not (tmp_path / "z.nii.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imagedepot-tmp-")]
    with pytest.raises(InputError):
        deidentify_nifti(tmp_path / "missing.nii", tmp_path / "m.nii", **kw)


def test_explicit_sidecar(tmp_path: Path) -> None:
    src = make_nifti(tmp_path / "x.nii.gz", sidecar=False)
    other = tmp_path / "meta" / "whatever.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"PatientName": "DOE^JOHN", "EchoTime": 0.03}))
    deidentify_nifti(
        src,
        tmp_path / "o.nii.gz",
        policy_options=MODIFIED,
        pseudonymizer=PS,
        subject=SUBJECT,
        sidecar=other,
    )
    assert json.loads((tmp_path / "o.json").read_text()) == {"EchoTime": 0.03}


def test_sidecar_uid_fields_that_are_not_uids_are_removed_not_remapped(tmp_path) -> None:
    """dcm2niix writes SeriesTime into SeriesInstanceUID: a remapped '094233' would be a UID that
    matches nothing; it is removed instead, while real UIDs are remapped."""
    import json

    import nibabel as nib
    import numpy as np

    from imagedepot.deid.nifti import deidentify_nifti
    from imagedepot.deid.pseudonym import Pseudonymizer

    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), src)
    (tmp_path / "in.json").write_text(
        json.dumps({"SeriesInstanceUID": "094233", "StudyInstanceUID": "1.2.3.4"})
    )
    pseudo = Pseudonymizer(b"k" * 32)
    deidentify_nifti(
        src, tmp_path / "out", policy_options=frozenset(), pseudonymizer=pseudo, subject="S1"
    )
    (side,) = (tmp_path / "out").glob("*.json")
    data = json.loads(side.read_text())
    assert "SeriesInstanceUID" not in data
    assert data["StudyInstanceUID"] == pseudo.uid("1.2.3.4")
