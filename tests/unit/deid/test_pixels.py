"""Burned-in text: the filter language, which images need cleaning, how rules blank pixels, and
deid's filter database read from the installed package at run time."""

from __future__ import annotations

import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imagedepot.deid import pixels
from imagedepot.deid.pixels import (
    DatasetAttributes,
    PixelRule,
    blank_regions,
    burned_in_reason,
    deid_filter_rules,
)
from imagedepot.deid.rules import WHOLE_IMAGE, Condition, Criteria
from imagedepot.errors import InputError
from tests.unit.deid.test_dicom import make_instance, method_codes, run

DEID_DATA = "deid_data"


def deid_data(rel: str) -> Path:
    pytest.importorskip(DEID_DATA)
    path = Path(str(resources.files(DEID_DATA).joinpath("data", rel)))
    if not path.is_file():
        pytest.skip(f"deid-data file {rel} not available")
    return path


# ============================================================================ filter language


@pytest.mark.parametrize(
    ("cond", "attrs", "expected"),
    [
        (
            Condition("contains", "Manufacturer", "philips"),
            {"Manufacturer": "Philips Medical"},
            True,
        ),
        (
            Condition("contains", "ImageType", "SECONDARY"),
            {"ImageType": ["DERIVED", "SECONDARY"]},
            True,
        ),
        (Condition("contains", "ModelName", "LOGIQE9|V830"), {"ModelName": "V830"}, True),
        (Condition("notcontains", "Manufacturer", "GE"), {"Manufacturer": "Siemens"}, True),
        (Condition("equals", "Rows", "600|768"), {"Rows": 768}, True),
        (Condition("equals", "Rows", "600"), {"Rows": 6000}, False),
        (Condition("equals", "Modality", " us "), {"Modality": "US"}, True),
        (Condition("notequals", "Modality", "US"), {}, True),
        (Condition("missing", "Manufacturer"), {}, True),
        (Condition("missing", "Manufacturer"), {"Manufacturer": ""}, False),
        (Condition("empty", "Manufacturer"), {"Manufacturer": ""}, True),
        (Condition("empty", "Manufacturer"), {}, False),
        (Condition("present", "Manufacturer"), {"Manufacturer": ""}, True),
    ],
)
def test_conditions(cond: Condition, attrs: dict, expected: bool) -> None:
    assert cond.test(attrs) is expected


def test_condition_validation() -> None:
    with pytest.raises(ValueError, match="unknown filter"):
        Condition("resembles", "Modality", "US")
    with pytest.raises(ValueError, match="needs"):
        Condition("contains", "Modality")
    with pytest.raises(ValueError, match="takes no"):
        Condition("missing", "Modality", "US")
    with pytest.raises(ValueError, match="regular expression"):
        Condition("contains", "Modality", "(US")


def test_criteria_fold_left_to_right_lines_first() -> None:
    us = ("and", Condition("equals", "Modality", "US"))
    ge = ("and", Condition("contains", "Manufacturer", "GE"))
    local = ("and", Condition("contains", "ImageType", "LOCAL"))
    dose = ("or", Condition("contains", "SeriesDescription", "Dose"))
    # Modality US and Manufacturer GE and (ImageType LOCAL or SeriesDescription Dose)
    crit = Criteria((("and", (us,)), ("and", (ge,)), ("and", (local, dose))))
    assert crit.evaluate({"Modality": "US", "Manufacturer": "GE", "SeriesDescription": "Dose"})
    assert not crit.evaluate({"Modality": "US", "Manufacturer": "GE"})
    assert not crit.evaluate({"Modality": "CT", "Manufacturer": "GE", "ImageType": "LOCAL"})
    either = Criteria((("and", (us,)), ("or", (ge,))))
    assert either.evaluate({"Modality": "CT", "Manufacturer": "GE"})
    assert not Criteria(()).evaluate({"Modality": "US"})
    assert crit.describe() == (
        "equals Modality US and contains Manufacturer GE and "
        "(contains ImageType LOCAL or contains SeriesDescription Dose)"
    )


def test_rule_matching_and_pickling() -> None:
    rule = PixelRule(name="r", match={"Modality": "US", "Rows": 480}, regions=((0, 0, 4, 4),))
    assert rule.matches({"Modality": " us ", "Rows": "480"})
    assert not rule.matches({"Modality": "US", "Rows": "abc"})
    assert not rule.matches({"Modality": "US"})
    assert not PixelRule(name="empty").matches({"Modality": "US"})  # matches nothing
    crit = Criteria((("and", (("and", Condition("contains", "Manufacturer", "acme")),)),))
    both = PixelRule(name="b", match={"Modality": "US"}, criteria=crit, regions=WHOLE_IMAGE[:0])
    assert both.matches({"Modality": "US", "Manufacturer": "ACME"}) and not both.cleans
    assert not both.matches({"Modality": "CT", "Manufacturer": "ACME"})
    from types import MappingProxyType

    frozen = PixelRule(name="f", match=MappingProxyType({"Rows": 1}), regions=((0, 0, 1, 1),))
    assert pickle.loads(pickle.dumps(frozen)) == PixelRule(
        name="f", match={"Rows": 1}, regions=((0, 0, 1, 1),)
    )


# ============================================================================ which images


@pytest.mark.parametrize(
    ("attrs", "flagged"),
    [
        ({"BurnedInAnnotation": "YES", "Modality": "CT"}, True),
        ({"BurnedInAnnotation": "NO", "Modality": "US"}, False),
        ({"Modality": "US"}, True),
        ({"Modality": "XA"}, True),
        ({"Modality": "RF"}, True),
        ({"Modality": "OT"}, True),
        ({"Modality": "CT"}, False),
        ({"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, True),
        ({"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7.4"}, True),
        ({"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}, False),
    ],
)
def test_burned_in_reason(attrs: dict, flagged: bool) -> None:
    assert (burned_in_reason(attrs) is not None) is flagged


def test_dataset_attributes_reads_data_set_file_meta_and_hex_tags() -> None:
    ds = Dataset()
    ds.Modality = "US"
    ds.Manufacturer = ""
    ds.file_meta = Dataset()
    ds.file_meta.ImplementationVersionName = "MINDRAY_1"
    attrs = DatasetAttributes(ds)
    assert attrs.get("Modality") == "US"
    assert attrs.get("0x00080060") == "US"
    assert attrs.get("Manufacturer") == ""
    assert attrs.get("Rows") is None and attrs.get("NotAKeyword") is None
    assert attrs.get("0xZZ") is None
    assert attrs.get("ImplementationVersionName") == "MINDRAY_1"


# ============================================================================ blanking


def _image(rows: int = 16, cols: int = 20, frames: int = 1, samples: int = 1) -> Dataset:
    ds = Dataset()
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    shape = (frames, rows, cols, samples) if frames > 1 else (rows, cols, samples)
    if frames > 1:
        ds.NumberOfFrames = frames
    data = np.full(shape, 200, dtype=np.uint8)
    ds.PixelData = data.tobytes()
    return ds


def test_blank_regions_every_frame_and_sample() -> None:
    ds = _image(frames=3, samples=3)
    blank_regions(ds, [PixelRule(name="top", regions=((0, 0, 20, 2), (18, 0, 99, 99)))])
    px = ds.pixel_array
    assert px.shape == (3, 16, 20, 3)
    assert (px[:, :2] == 0).all() and (px[:, :, 18:] == 0).all()
    assert (px[:, 2:, :18] == 200).all()


def test_keep_regions_and_regions_from_the_file() -> None:
    ds = _image(rows=16, cols=16)
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 2, 3
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 9, 12
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    keep = PixelRule(name="keep", keep_from=("SequenceOfUltrasoundRegions",))
    blank_regions(ds, [keep])
    px = ds.pixel_array
    kept = np.zeros((16, 16), dtype=bool)
    kept[3:12, 2:9] = True  # the max row and column are not kept (the safer reading)
    assert (px[kept] == 200).all() and (px[~kept] == 0).all()

    ds = _image(rows=16, cols=16)
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    blank_regions(ds, [PixelRule(name="from", regions_from=("SequenceOfUltrasoundRegions",))])
    px = ds.pixel_array
    assert (px[3:13, 2:10] == 0).all() and px[13:].min() == 200  # max row/column blanked too

    ds = _image()
    with pytest.raises(ValueError, match="no region to keep"):
        blank_regions(ds, [keep])  # no Sequence of Ultrasound Regions: nothing to keep
    ds.BitsAllocated = 32
    with pytest.raises(ValueError, match="BitsAllocated 32"):
        blank_regions(ds, [keep])


def test_whole_image() -> None:
    ds = _image()
    blank_regions(ds, [PixelRule(name="all", regions=(WHOLE_IMAGE,))])
    assert not ds.pixel_array.any()


def test_compressed_input_is_cleaned_and_written_uncompressed(tmp_path: Path) -> None:
    """A JPEG Secondary Capture: decoded, cleaned, stored as Explicit VR Little Endian (the
    transfer syntax of the output follows the new pixel data)."""
    src = deid_data("humans/ctbrain1.dcm")
    original = pydicom.dcmread(src)
    assert original.file_meta.TransferSyntaxUID.is_compressed
    rule = PixelRule(
        name="ctbrain", match={"Modality": "CT", "Columns": 510}, regions=((0, 0, 510, 40),)
    )
    out = tmp_path / "out.dcm"
    report = run(src, out, {"clean_pixel_data"}, pixel_rules=[rule], subject="x")
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation == "RGB"
    px = ds.pixel_array
    assert px.shape == (456, 510, 3) and not px[:40].any() and px[40:].any()
    assert report.pixel_cleaned == [{"file": "out.dcm", "rules": ["ctbrain"]}]
    assert "113101" in method_codes(ds)


# ============================================================================ deid's database


def test_deid_database_is_read_from_the_installed_package() -> None:
    pytest.importorskip("deid")
    db = deid_filter_rules()
    assert db.source == "deid/data/deid.dicom"
    assert db.version and db.sha256 and len(db.sha256) == 64
    assert len(db.rules) > 50 and db.skipped == 0
    assert all(r.cleans and r.criteria is not None for r in db.rules)
    assert all(r.source.startswith("deid ") for r in db.rules)
    assert not any(r.name.startswith("whitelist:") for r in db.rules)
    # ctpcoordinates x,y,width,height became x0,y0,x1,y1
    epiq = [r for r in db.rules if "EPIQ 7G" in r.name]
    assert epiq and all(x1 > x0 and y1 > y0 for r in epiq for x0, y0, x1, y1 in r.regions)
    assert db.to_provenance()["rules"] == len(db.rules)


def test_without_deid_no_rules_and_more_quarantine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixels, "DEID_DATABASE", ("imagedepot_no_such_package", "deid.dicom"))
    deid_filter_rules.cache_clear()
    try:
        db = deid_filter_rules()
        assert db.rules == () and db.source == "not installed" and db.version is None
    finally:
        deid_filter_rules.cache_clear()


@pytest.mark.parametrize(
    ("rel", "rule", "band"),
    [
        ("ultrasounds/GREYSCALE_IMAGE.dcm", "EPIQ 7G", 49),  # Philips EPIQ, 768 rows
        ("ultrasounds/RGB_IMAGE.dcm", "SIEMMENS", 60),  # Siemens S2000, 768 x 1024
    ],
)
def test_deid_rules_and_ocr_clean_deid_data_ultrasounds(
    tmp_path: Path, rel: str, rule: str, band: int
) -> None:
    """Public pseudo-PHI ultrasounds: the device's rule blanks its band, OCR blanks the rest of
    the text, the output is read again and holds no readable identifier."""
    pytest.importorskip("deid")
    from imagedepot.pixeltext.dicom import PixelTextSettings, find_text

    src = deid_data(rel)
    rules = deid_filter_rules().rules
    out = tmp_path / "out.dcm"
    with pytest.raises(InputError, match="clean_pixel_data is not in the policy"):
        run(src, out, pixel_rules=rules, subject="x")
    try:
        report = run(src, out, {"clean_pixel_data"}, pixel_rules=rules, subject="x")
    except InputError as exc:  # fail closed is allowed, never a silent pass
        assert "burned-in text" in exc.reason
        return
    (cleaned,) = report.pixel_cleaned
    assert any(rule in name for name in cleaned["rules"])
    before, after = pydicom.dcmread(src).pixel_array, pydicom.dcmread(out).pixel_array
    assert before[:band].any() and not after[:band].any()  # the text band is black
    regions, _ = find_text(pydicom.dcmread(out), PixelTextSettings())
    original = pydicom.dcmread(src)
    names = [str(original.get(k) or "") for k in ("PatientName", "PatientID")]
    for r in regions:
        for name in names:
            assert not name or name.upper() not in r.text.upper()


def test_deid_data_without_a_rule_is_read_by_ocr(tmp_path: Path) -> None:
    """A secondary capture with no manufacturer (the 'dicom cookies'), which no rule knows: OCR
    reads it; it is written with its text blanked or refused, never passed as it was."""
    pytest.importorskip("deid")
    rules = deid_filter_rules().rules
    src = deid_data("dicom-cookies/image1.dcm")
    try:
        report = run(src, tmp_path / "out.dcm", {"clean_pixel_data"}, pixel_rules=rules)
    except InputError as exc:
        assert "burned-in text" in exc.reason and not (tmp_path / "out.dcm").exists()
        return
    if report.pixel_text:
        assert report.pixel_text[0]["blanked"]
    else:
        out = pydicom.dcmread(tmp_path / "out.dcm")
        assert out.PixelData == pydicom.dcmread(src).PixelData


def test_explicit_no_is_trusted_unless_cleaning(tmp_path: Path) -> None:
    rule = PixelRule(name="acme", match={"Manufacturer": "ACME"}, regions=((0, 0, 16, 2),))
    no = make_instance(tmp_path / "no.dcm", extra={"BurnedInAnnotation": "NO"})
    absent = make_instance(tmp_path / "absent.dcm")
    out = run(no, tmp_path / "a.dcm", pixel_rules=[rule])
    assert out.pixel_cleaned == []
    # a known device whose image has no text OCR can see passes (the rule is an extra)
    run(absent, tmp_path / "b.dcm", pixel_rules=[rule])
    out = run(absent, tmp_path / "c.dcm", {"clean_pixel_data"}, pixel_rules=[rule])
    assert out.pixel_cleaned == [{"file": "c.dcm", "rules": ["acme"]}]
    assert (pydicom.dcmread(tmp_path / "c.dcm").pixel_array[:2] == 0).all()


def test_rule_cleaned_image_gets_before_after_thumbnails(tmp_path: Path) -> None:
    """The run report shows what a pixel-cleaning rule blanked: the rule's band outlined on the
    first frame before and after (trusted zone, next to the pixel-text thumbnails)."""
    import cv2

    rule = PixelRule(name="acme", match={"Manufacturer": "ACME"}, regions=((0, 0, 16, 4),))
    src = make_instance(tmp_path / "in.dcm")
    thumbs = tmp_path / "thumbs"
    run(src, tmp_path / "out.dcm", {"clean_pixel_data"}, pixel_rules=[rule], thumbnails=thumbs)
    names = sorted(p.name for p in thumbs.iterdir())
    assert len(names) == 2 and all(".rules." in n for n in names), names
    after = cv2.imread(str(next(thumbs.glob("*.rules.after.png"))))
    assert after.shape[:2] == (16, 16)
    # the outline of the blanked band is red (BGR), the rest of the image is grey
    assert tuple(after[0, 0]) == (0, 0, 255) and tuple(after[10, 8])[2] == after[10, 8][0]
    # without thumbnails asked for, nothing is rendered
    run(src, tmp_path / "out2.dcm", {"clean_pixel_data"}, pixel_rules=[rule])
    assert len(list(thumbs.iterdir())) == 2


def test_mask_boxes() -> None:
    from imagedepot.pixeltext.dicom import mask_boxes

    mask = np.zeros((10, 12), dtype=bool)
    mask[0:2, 0:12] = True
    mask[5:7, 3:5] = True
    assert sorted(mask_boxes(mask)) == [(0, 0, 12, 2), (3, 5, 5, 7)]
    assert mask_boxes(np.zeros((4, 4), dtype=bool)) == []
