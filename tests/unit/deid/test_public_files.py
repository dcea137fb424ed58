"""Must-show properties on data nobody here made up: the test files shipped in pydicom and in
deid-data, and the demo de-identified under its own policy.

* zero leaks by the leak gate after the Basic Profile;
* UID references consistent across a series and across series of a study;
* dates shifted by one offset per subject;
* pseudonyms stable across two separate runs with the same key, different with another key;
* burned-in text cleaned where a rule knows where it is, quarantined where none does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from imagedepot.deid.dicom import deidentify_dicom
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError
from imagedepot.leakcheck import allowed_kinds_for_options, leakcheck
from imagedepot.policy import load_policy
from imagedepot.validate.dicom import iod_errors, new_errors
from tests.unit.deid.test_dicom import KEY, OTHER_KEY, walk
from tests.unit.validate.conftest import needs_dciodvfy

#: pydicom's own test files with patient identity in them (and pixel data in most).
PYDICOM_FILES = [
    "CT_small.dcm",  # its preamble holds a TIFF header: the leak gate reads it as DICOM too
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "examples_overlay.dcm",
    "liver_1frame.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "waveform_ecg.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
]
#: pydicom's test files that may carry burned-in text (Modality OT, Secondary Capture...).
PYDICOM_FLAGGED = [
    "JPEG2000.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
    "image_dfl.dcm",
    "SC_rgb_small_odd.dcm",
    "examples_palette.dcm",
    "SC_rgb_jpeg.dcm",  # says explicit VR, is encoded implicit
]
#: pydicom's character-set files: names in Latin, Greek, Cyrillic, Arabic, Hebrew, Japanese,
#: Korean and Chinese, in every encoding DICOM allows. They are Modality OT images: copied with
#: Burned In Annotation NO (they hold no text) so that the header, not the pixels, is tested.
CHARSET_FILES = [
    "chrArab.dcm",
    "chrFren.dcm",
    "chrGerm.dcm",
    "chrGreek.dcm",
    "chrH31.dcm",
    "chrH32.dcm",
    "chrHbrw.dcm",
    "chrI2.dcm",
    "chrRuss.dcm",
    "chrX1.dcm",
    "chrX2.dcm",
]
#: deid-data files the Basic Profile processes (the others are flagged for burned-in text).
DEID_DATA_FILES = ["animals/cat.dcm"]


def pz(key: bytes = KEY) -> Pseudonymizer:
    return Pseudonymizer(key=key, prefix="SUBJ", max_shift_days=3650)


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return Path(path)


def charset_file(name: str) -> Path:
    found = get_charset_files(name)
    if not found:
        pytest.skip(f"pydicom charset file {name} not available")
    return Path(found[0])


def deid_data(rel: str) -> Path:
    pytest.importorskip("deid_data")
    path = Path(str(resources.files("deid_data").joinpath("data", rel)))
    if not path.is_file():
        pytest.skip(f"deid-data file {rel} not available")
    return path


def assert_no_leak(original: Path, out: Path, options: frozenset[str] = frozenset()) -> None:
    report = leakcheck([original], [out], allow_kinds=allowed_kinds_for_options(options))
    assert report.identifiers, "the leak gate harvested nothing to look for"
    hits = report.to_dict()["hits"]
    assert hits == []


@pytest.mark.parametrize(
    "src",
    [
        *[pytest.param(("pydicom", n), id=n) for n in PYDICOM_FILES],
        *[pytest.param(("charset", n), id=n) for n in CHARSET_FILES],
        *[pytest.param(("deid-data", n), id=n) for n in DEID_DATA_FILES],
    ],
)
def test_basic_profile_leaves_nothing_for_the_leak_gate(
    tmp_path: Path, src: tuple[str, str]
) -> None:
    kind, name = src
    path = {"pydicom": pydicom_file, "charset": charset_file, "deid-data": deid_data}[kind](name)
    original = pydicom.dcmread(path)
    if kind == "charset":
        original.BurnedInAnnotation = "NO"
        path = tmp_path / name
        original.save_as(path)
    out = tmp_path / "out" / "x.dcm"
    try:
        deidentify_dicom(
            path,
            out,
            policy_options=frozenset(),
            pseudonymizer=pz(),
            subject=str(original.get("PatientID") or name),
        )
    except InputError as exc:  # text in the pixels and no clean_pixel_data: refused, not passed
        assert "clean_pixel_data is not in the policy" in exc.reason
        assert not out.exists()
        return
    assert_no_leak(path, out.parent)
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES"
    assert not any(e.tag.is_private for e in walk(ds))
    names = (e for e in walk(ds) if e.VR == "PN" and e.value and e.tag != 0x00100010)
    assert all(str(e.value) == "ANONYMIZED" for e in names)  # D: a dummy, never a name
    if "PixelData" in original:
        assert ds.PixelData == original.PixelData  # copied byte for byte


@needs_dciodvfy
@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_basic_profile_adds_no_iod_errors(tmp_path: Path, name: str) -> None:
    """dciodvfy finds no error in the output that the original does not have (an attribute
    emptied where Type 1, removed where Type 2, a sequence left without items...)."""
    path = pydicom_file(name)
    out = tmp_path / "out" / "x.dcm"
    deidentify_dicom(path, out, policy_options=frozenset(), pseudonymizer=pz(), subject="S")
    assert new_errors(iod_errors(path), iod_errors(out)) == []


@pytest.mark.parametrize("name", PYDICOM_FLAGGED)
def test_pydicom_files_that_may_carry_text_are_read(tmp_path: Path, name: str) -> None:
    """Files the header calls likely to carry text (secondary captures, ultrasound, palette):
    read by OCR; written with what it found blanked and read again, or refused naming the
    file (an undecodable one too). Never copied unread."""
    path = pydicom_file(name)
    out = tmp_path / "out.dcm"
    try:
        report = deidentify_dicom(
            path, out, policy_options={"clean_pixel_data"}, pseudonymizer=pz(), subject="S"
        )
    except InputError as exc:
        assert exc.path == str(path)
        assert "burned-in text" in exc.reason or "cannot check pixel data" in exc.reason
        assert not list(tmp_path.iterdir())
        return
    assert report.ocr_files == 1
    if name == "examples_palette.dcm":  # an ultrasound with its settings burned in
        (text,) = report.pixel_text
        assert text["blanked"] and "text" not in text["regions"][0]  # boxes, never the text
        assert pydicom.dcmread(out).BurnedInAnnotation == "NO"


@needs_dciodvfy
def test_a_data_set_encoded_otherwise_than_its_transfer_syntax_says_is_written_anew(
    tmp_path: Path,
) -> None:
    """SC_rgb_jpeg.dcm declares Explicit VR but is encoded implicit: pydicom reads it but keeps
    the elements it was not asked for without a VR, and its writer failed on them (the batch
    stopped). Written in the declared encoding, readable, and no new IOD error."""
    path = pydicom_file("SC_rgb_jpeg.dcm")
    out = tmp_path / "out" / "x.dcm"
    report = deidentify_dicom(
        path, out, policy_options={"clean_pixel_data"}, pseudonymizer=pz(), subject="S"
    )
    assert report.files_written == ["x.dcm"] and not report.errors
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == pydicom.dcmread(path).file_meta.TransferSyntaxUID
    assert ds.ImageType == ["DERIVED", "SECONDARY", "OTHER"]
    assert ds.pixel_array.shape == (256, 256, 3)
    assert new_errors(iod_errors(path), iod_errors(out)) == []


def test_a_data_set_pydicom_cannot_write_is_an_error_naming_the_file(tmp_path: Path) -> None:
    """What the writer cannot encode (here a number element holding text) is an input error
    naming the file, and no partial file is left."""
    from imagedepot.deid.dicom.writing import _Done, _write

    src = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(src)
    ds.add_new(0x00181020, "US", "not a number")
    dest = tmp_path / "x.dcm"
    with pytest.raises(InputError) as info:
        _write(_Done(ds, "x.dcm", [], [], "P", None), src, dest, exclusive=True)
    assert info.value.path == str(src) and "cannot write" in info.value.reason
    assert not dest.exists()


def test_clean_descriptors_on_non_ascii_names_leaves_nothing(tmp_path: Path) -> None:
    """The free-text cleaner cuts names out of descriptions in any script."""
    for name in ("chrGerm.dcm", "chrX1.dcm", "chrH31.dcm"):
        path = charset_file(name)
        ds = pydicom.dcmread(path)
        names = str(ds.PatientName).replace("=", "^").split("^")
        ds.StudyDescription = f"Kontrolle {' '.join(n for n in names if n)} rechts"
        ds.BurnedInAnnotation = "NO"
        src = tmp_path / f"in-{name}"
        ds.save_as(src)
        out = tmp_path / f"out-{name}"
        options = frozenset({"clean_descriptors"})
        deidentify_dicom(src, out, policy_options=options, pseudonymizer=pz(), subject="S")
        cleaned = pydicom.dcmread(out)
        assert cleaned.StudyDescription.split() == ["Kontrolle", "rechts"]
        assert cleaned.SpecificCharacterSet == ds.SpecificCharacterSet


# ============================================================================ the demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    from imagedepot.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("demo") / "demo")


def _series(folder: Path) -> dict[str, list[Path]]:
    """Files of a demo subject folder by series (the scan's grouping, done here by hand)."""
    out: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(folder.rglob("IM*")):
        if p.name == "IM9999":
            continue
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        out[f"{ds.Modality}-{ds.SeriesNumber}"].append(p)
    return out


def _run_demo(demo, tmp_path: Path, key: bytes, tag: str) -> dict[str, Path | str]:
    """De-identify every series of subjects A and B under the demo policy; quarantine reasons
    in place of output folders."""
    from imagedepot.demo import SUBJECT_A, SUBJECT_B

    policy = load_policy(demo.policies["demo-cohort"])
    pzr = policy.make_pseudonymizer(key)
    results: dict[str, Path | str] = {}
    for n, subject in enumerate((SUBJECT_A, SUBJECT_B)):
        for series, files in _series(demo.root / "inbox" / subject.folder).items():
            out = tmp_path / tag / f"subject{n}-{series}"  # no PHI in output names
            try:
                deidentify_dicom(
                    files,
                    out,
                    pseudonymizer=pzr,
                    subject=subject.patient_id,
                    **policy.dicom_options(),
                )
            except InputError as exc:
                results[f"{subject.folder}-{series}"] = exc.reason
            else:
                results[f"{subject.folder}-{series}"] = out
    return results


@pytest.fixture(scope="module")
def demo_runs(demo, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("runs")
    key = demo.key_file.read_text().strip().encode()
    return (
        _run_demo(demo, tmp, key, "first"),
        _run_demo(demo, tmp, key, "second"),
        _run_demo(demo, tmp, OTHER_KEY, "other"),
    )


def test_demo_burned_in_text_cleaned_or_quarantined(demo, demo_runs) -> None:
    from imagedepot.demo import SC_TEXT_REGION

    first, _, _ = demo_runs
    assert set(first) == {
        "DOE_JOHN_19650312-MR-3",
        "DOE_JOHN_19650312-CT-2",
        "ROE_JANE-CT-2",
        "ROE_JANE-OT-501",
        "ROE_JANE-US-601",
    }
    # the ultrasound of a device no rule knows: its burned-in name is found by OCR and blanked
    us_dir = first["ROE_JANE-US-601"]
    assert isinstance(us_dir, Path), us_dir
    (us,) = [pydicom.dcmread(p) for p in us_dir.iterdir()]
    us_before = pydicom.dcmread(demo.root / "inbox" / "ROE_JANE" / "IM0010")
    rows = us.Rows
    assert us_before.pixel_array[rows - 12 :, :70].max() == 255  # the name's glyphs
    assert us.pixel_array[rows - 12 :, :70].max() < 255
    assert us.BurnedInAnnotation == "NO"
    sc_dir = first["ROE_JANE-OT-501"]
    assert isinstance(sc_dir, Path)
    (sc,) = [pydicom.dcmread(p) for p in sc_dir.iterdir()]
    x0, y0, x1, y1 = SC_TEXT_REGION
    assert not sc.pixel_array[y0:y1, x0:x1].any()
    original = pydicom.dcmread(demo.root / "inbox" / "ROE_JANE" / "IM0009")
    assert original.Modality == "OT"
    assert np.array_equal(sc.pixel_array[y1:], original.pixel_array[y1:])
    assert sc.BurnedInAnnotation == "NO"
    assert "113101" in {i.CodeValue for i in sc.DeidentificationMethodCodeSequence}


def test_demo_outputs_pass_the_leak_gate(demo, demo_runs) -> None:
    from imagedepot.demo import DEMO_PHI, SUBJECT_A, SUBJECT_B

    first, _, _ = demo_runs
    policy = load_policy(demo.policies["demo-cohort"])
    allow = allowed_kinds_for_options(policy.deid_options)
    pzr = policy.make_pseudonymizer(demo.key_file.read_text().strip().encode())
    for subject in (SUBJECT_A, SUBJECT_B):
        originals = sorted((demo.root / "inbox" / subject.folder).rglob("IM0*"))
        outputs = [
            p for k, p in first.items() if k.startswith(subject.folder) and isinstance(p, Path)
        ]
        report = leakcheck(originals, outputs, extra=[subject.patient_id], allow_kinds=allow)
        assert report.status == "clean", report.to_dict()["hits"]
        blob = b"".join(f.read_bytes() for o in outputs for f in o.iterdir()).lower()
        # The key is random: a planted date shifted by this subject's offset can land on
        # another planted date (B's 20230610 back by 39 days is A's 20230502). Such a value is
        # the pseudonymised date, not a leak.
        shifted = {
            pzr.shift_date(p, subject.patient_id)
            for p in DEMO_PHI
            if re.fullmatch(r"\d{8}|\d{4}-\d{2}-\d{2}", p)
        }
        leaked = [p for p in DEMO_PHI if len(p) >= 4 and p.lower().encode() in blob]
        assert not [p for p in leaked if p not in shifted]


@needs_dciodvfy
def test_demo_outputs_add_no_iod_errors(demo, demo_runs) -> None:
    first, _, _ = demo_runs
    outputs = [f for p in first.values() if isinstance(p, Path) for f in sorted(p.iterdir())]
    assert len(outputs) == 42
    originals = [p for p in (demo.root / "inbox").rglob("IM*") if p.name != "IM9999"]
    before = [e for p in originals for e in iod_errors(p)]
    assert before == []  # the demo's own files are IOD-valid
    assert [e for p in outputs for e in iod_errors(p)] == []


def test_demo_uid_references_consistent(demo, demo_runs) -> None:
    first, _, _ = demo_runs
    mr = [pydicom.dcmread(p) for p in first["DOE_JOHN_19650312-MR-3"].iterdir()]  # type: ignore[union-attr]
    ct = [pydicom.dcmread(p) for p in first["DOE_JOHN_19650312-CT-2"].iterdir()]  # type: ignore[union-attr]
    for series in (mr, ct):
        assert len({d.SeriesInstanceUID for d in series}) == 1
        assert len({d.StudyInstanceUID for d in series}) == 1
        assert len({d.FrameOfReferenceUID for d in series}) == 1
        for d in series:
            assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
            # X/Z in PS3.15 and Type 3 in General Study: removed, not left without items
            assert "ReferencedStudySequence" not in d
            assert d.StudyInstanceUID.startswith("2.25.")
    assert mr[0].StudyInstanceUID != ct[0].StudyInstanceUID  # two studies stay two
    sc = pydicom.dcmread(next(first["ROE_JANE-OT-501"].iterdir()))  # type: ignore[union-attr]
    chest = pydicom.dcmread(next(first["ROE_JANE-CT-2"].iterdir()))  # type: ignore[union-attr]
    assert sc.StudyInstanceUID == chest.StudyInstanceUID  # one study across series and calls


def test_demo_dates_shifted_by_one_offset_per_subject(demo, demo_runs) -> None:
    first, _, _ = demo_runs

    def offsets(key: str) -> set[int]:
        out = set()
        folder = first[key]
        assert isinstance(folder, Path)
        for p in folder.iterdir():
            d = pydicom.dcmread(p)
            uid = d.file_meta.MediaStorageSOPInstanceUID
            original = _original_by_uid(demo, uid)
            for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
                new = dt.datetime.strptime(d.data_element(kw).value, "%Y%m%d")
                old = dt.datetime.strptime(original.data_element(kw).value, "%Y%m%d")
                out.add((new - old).days)
        return out

    a = offsets("DOE_JOHN_19650312-MR-3") | offsets("DOE_JOHN_19650312-CT-2")
    b = offsets("ROE_JANE-CT-2") | offsets("ROE_JANE-OT-501")
    assert len(a) == 1 and len(b) == 1 and a != b  # one per subject, across studies and series
    assert all(-3650 <= d <= -1 for d in a | b)


def _original_by_uid(demo, remapped: str) -> pydicom.Dataset:
    key = demo.key_file.read_text().strip().encode()
    pzr = load_policy(demo.policies["demo-cohort"]).make_pseudonymizer(key)
    cache = _ORIGINALS.setdefault(str(demo.root), {})
    if not cache:
        for p in (demo.root / "inbox").rglob("IM0*"):
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            cache[pzr.uid(ds.SOPInstanceUID)] = ds
    return cache[remapped]


_ORIGINALS: dict[str, dict[str, pydicom.Dataset]] = {}


def test_demo_pseudonyms_stable_with_the_key_and_not_without(demo_runs) -> None:
    first, second, other = demo_runs

    def fingerprint(run: dict[str, Path | str]) -> dict[str, tuple]:
        out = {}
        for key, folder in run.items():
            if isinstance(folder, str):
                out[key] = ("quarantined", folder)
                continue
            files = sorted(folder.iterdir())
            ds = pydicom.dcmread(files[0])
            out[key] = (
                ds.PatientID,
                ds.StudyInstanceUID,
                ds.StudyDate,
                tuple(p.name for p in files),
                tuple(p.read_bytes() for p in files),
            )
        return out

    a, b, c = fingerprint(first), fingerprint(second), fingerprint(other)
    assert a == b  # two separate runs, same key: byte-identical outputs
    for key in a:
        if a[key][0] == "quarantined":
            assert c[key] == a[key]
            continue
        assert c[key][0] != a[key][0]  # pseudonym
        assert c[key][1] != a[key][1]  # UIDs
        assert not set(c[key][3]) & set(a[key][3])  # file names (remapped SOP UIDs)
