"""A user's deid recipe: parsed fail-closed, applied after the profile, logged like the profile,
and agreeing with deid itself on what it removes (pydicom and deid-data files)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from imagedepot.deid.dicom import deidentify_dicom
from imagedepot.deid.recipe import (
    PROTECTED,
    Recipe,
    RecipeError,
    jitter_value,
    load_recipe,
    parse_field,
    parse_recipe,
)
from imagedepot.errors import InputError
from tests.unit.deid.test_dicom import SUBJECT, make_instance, pz, walk

RECIPE = """\
FORMAT dicom

# a typical site recipe
%header
REMOVE ALL
KEEP Modality
KEEP ImageType
REPLACE BodyPartExamined HEAD
BLANK startswith:Window
ADD ClinicalTrialSponsorName Example Sponsor
ADD PatientIdentityRemoved YES
JITTER StudyDate 3
REMOVE PatientName
"""


def recipe_file(tmp_path: Path, text: str = RECIPE, name: str = "site.dicom") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def deid(
    tmp_path: Path, src: Path, recipe: Recipe, options: Any = (), **kwargs: Any
) -> pydicom.Dataset:
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.dcm"
    deidentify_dicom(
        src,
        out,
        policy_options=frozenset(options),
        pseudonymizer=pz(),
        subject=SUBJECT,
        recipe=recipe,
        **kwargs,
    )
    return pydicom.dcmread(out)


# ============================================================================ parsing


def test_parse_every_action_and_field_form() -> None:
    r = parse_recipe(
        "FORMAT dicom\n%header\n"
        "REMOVE (0010,0030)\nREMOVE 00101040\nREMOVE 0x00101000\n"
        'REMOVE (0029,"SIEMENS CSA HEADER",10)\nREMOVE contains:Physician\n'
        "REMOVE endswith:Time\nBLANK startswith:Institution\nKEEP except:Date\n"
        "REPLACE patientsex O\nJITTER ALL -7\nADD StudyID S1\n",
        name="x",
    )
    kinds = [(a.action, a.field.kind) for a in r.actions]
    assert kinds == [
        ("REMOVE", "tag"),
        ("REMOVE", "tag"),
        ("REMOVE", "tag"),
        ("REMOVE", "private"),
        ("REMOVE", "contains"),
        ("REMOVE", "endswith"),
        ("BLANK", "startswith"),
        ("KEEP", "except"),
        ("REPLACE", "exact"),
        ("JITTER", "all"),
        ("ADD", "tag"),
    ]
    assert [a.field.tag for a in r.actions[:3]] == [0x00100030, 0x00101040, 0x00101000]
    assert r.actions[3].field.creator == "SIEMENS CSA HEADER"
    assert r.actions[9].days == -7
    assert r.actions[10].field.tag == 0x00200010
    assert r.to_provenance()["header_actions"] == {
        "ADD": 1,
        "BLANK": 1,
        "JITTER": 1,
        "KEEP": 1,
        "REMOVE": 6,
        "REPLACE": 1,
    }


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("FORMAT nifti\n", 1, "only FORMAT dicom"),
        ("%header\nREMOVE PatientName\n", 2, "must start with FORMAT dicom"),
        ("FORMAT dicom\n%header\nREPLACE PatientID var:entity_id\n", 3, "var:"),
        ("FORMAT dicom\n%header\nREPLACE PatientID func:make_id\n", 3, "func:"),
        ("FORMAT dicom\n%header\nREMOVE ALL func:is_numeric\n", 3, "func:"),
        ("FORMAT dicom\n%header\nREMOVE ALL 1\n", 3, "conditional"),
        ("FORMAT dicom\n%header\nSHRED PatientName\n", 3, "unknown header action"),
        ("FORMAT dicom\n%header\nJITTER StudyDate soon\n", 3, "whole number of days"),
        ("FORMAT dicom\n%header\nREPLACE PatientSex\n", 3, "needs a value"),
        ("FORMAT dicom\n%header\nREMOVE select:VR:PN\n", 3, "select: is not supported"),
        ("FORMAT dicom\n%header\nADD contains:Name X\n", 3, "one standard attribute"),
        ("FORMAT dicom\n%header\nADD PixelData 00\n", 3, "cannot set a value of VR"),
        ("FORMAT dicom\n%values cookies\nSOME value\n", 2, "%values is not supported"),
        ("FORMAT dicom\n%filter graylist\ncontains Modality US\n", 3, "outside a LABEL"),
        ("FORMAT dicom\n%filter g\nLABEL a\n  wobbles Modality US\n", 4, "unknown filter"),
        ("FORMAT dicom\n%filter g\nLABEL a\n  contains Modality (US\n", 4, "regular expression"),
        ("FORMAT dicom\n%filter g\nLABEL a\n  contains Modality\n", 4, "needs a value"),
        ("FORMAT dicom\n%filter g\nLABEL a\n  coordinates 0,0,10\n", 4, "four"),
        ("FORMAT dicom\n%filter g\nLABEL a\n  coordinates 10,0,5,5\n", 4, "empty rectangle"),
        ("FORMAT dicom\nREMOVE PatientName\n", 2, "outside a section"),
    ],
)
def test_unsupported_or_broken_lines_are_errors_naming_the_line(
    text: str, line: int, what: str
) -> None:
    with pytest.raises(RecipeError, match=what) as exc:
        parse_recipe(text, name="bad")
    assert exc.value.line == line
    assert f"line {line}:" in str(exc.value)


def test_load_recipe_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.dicom")
    bad = tmp_path / "latin.dicom"
    bad.write_bytes(b"FORMAT dicom\n%header\nREPLACE InstitutionName M\xfcnster\n")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(bad)


def test_protected_attributes_are_superseded_and_recipe_pickles() -> None:
    r = parse_recipe(
        "FORMAT dicom\n%header\nREPLACE PatientID X\nREMOVE SOPInstanceUID\n"
        "KEEP PatientName\nREMOVE (0010,0010)\nREMOVE StudyDate\n",
        name="x",
    )
    assert r.superseded == (3, 4, 6)
    assert {"PatientName", "PatientID", "SOPInstanceUID", "PixelData"} <= PROTECTED
    assert pickle.loads(pickle.dumps(r)) == r  # workers receive the recipe


def test_field_matching() -> None:
    name = parse_field("PatientName")
    assert name.matches(0x00100010, "PatientName", "Patient's Name", None)
    assert parse_field("patientname").matches(0x00100010, "PatientName", "Patient's Name", None)
    ends = parse_field("endswith:Date")
    assert ends.matches(0x00080020, "StudyDate", "Study Date", None)
    assert not ends.matches(0x00080030, "StudyTime", "Study Time", None)
    assert parse_field("contains:0010,00").matches(0x00100030, "PatientBirthDate", "x", None)
    assert not parse_field("except:Date").matches(0x00080020, "StudyDate", "Study Date", None)
    private = parse_field('(0029,"SIEMENS CSA HEADER",10)')
    assert private.matches(0x00291010, "", "", "siemens csa header")
    assert private.matches(0x00291110, "", "", "SIEMENS CSA HEADER")  # any block
    assert not private.matches(0x00291010, "", "", "OTHER")
    assert not private.matches(0x00290010, "", "", "SIEMENS CSA HEADER")  # the creator itself


def test_jitter_value() -> None:
    assert jitter_value("20240115", "DA", 3) == "20240118"
    assert jitter_value("20240115\\20240301", "DA", -15) == "20231231\\20240215"
    assert jitter_value("20240115093012.5+0100", "DT", 1) == "20240116093012.5+0100"
    assert jitter_value("yesterday", "DA", 1) is None


# ============================================================================ applying


def test_recipe_runs_after_the_profile(tmp_path: Path) -> None:
    src = make_instance(
        tmp_path / "in.dcm",
        extra={
            "BodyPartExamined": "HEAD",
            "WindowCenter": "40",
            "WindowWidth": "400",
            "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        },
    )
    recipe = load_recipe(recipe_file(tmp_path))
    ds = deid(
        tmp_path,
        src,
        recipe,
        {"retain_longitudinal_modified_dates", "retain_device_identity"},
        action_log=tmp_path / "actions.jsonl",
    )
    original = pydicom.dcmread(src)
    # REMOVE ALL removed what the profile kept; KEEP and protected attributes stayed.
    assert ds.Modality == "CT" and ds.ImageType == original.ImageType
    assert "SeriesDescription" not in ds and "InstanceNumber" not in ds
    assert "DeviceSerialNumber" not in ds  # kept by the option, removed by the recipe
    assert "Manufacturer" not in ds  # REMOVE ALL wins over BLANK (deid's order)
    assert not any(e.tag.is_private for e in walk(ds))
    # REPLACE replaced a value the profile kept
    assert ds.BodyPartExamined == "HEAD"
    # BLANK via expander, where REMOVE ALL would otherwise win? No: REMOVE wins over BLANK.
    assert "WindowCenter" not in ds
    # ADD a new attribute; ADD of a protected one is superseded by imagedepot's own value
    assert ds.ClinicalTrialSponsorName == "Example Sponsor"
    assert ds.PatientIdentityRemoved == "YES"
    # JITTER: three days on top of the subject's shift
    shifted = pz().shift_date(original.StudyDate, SUBJECT)
    assert ds.StudyDate == jitter_value(shifted, "DA", 3)
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    # imagedepot's attributes win: pseudonym, UIDs, pixel data
    assert ds.PatientName == pz().subject_id(SUBJECT) == ds.PatientID
    assert ds.SOPInstanceUID == pz().uid(original.SOPInstanceUID)
    assert ds.StudyInstanceUID == pz().uid(original.StudyInstanceUID)
    assert np.array_equal(ds.pixel_array, original.pixel_array)
    assert ds.DeidentificationMethod[-1] == recipe.method_text
    assert len(recipe.method_text) <= 64
    # the action log: the profile's entries, then the recipe's with their line
    (entry,) = [json.loads(x) for x in (tmp_path / "actions.jsonl").read_text().splitlines()]
    by_rule = {a.get("rule") for a in entry["actions"]}
    assert {None, "recipe:5", "recipe:10", "recipe:12", "recipe:8"} <= by_rule
    jittered = [a for a in entry["actions"] if a.get("rule") == "recipe:12"]
    assert jittered == [
        {
            "action": "C",
            "keyword": "StudyDate",
            "old_sha256": jittered[0]["old_sha256"],
            "rule": "recipe:12",
            "tag": "(0008,0020)",
        }
    ]
    assert "Doe" not in (tmp_path / "actions.jsonl").read_text()


def test_keep_cannot_bring_back_what_the_profile_removed(tmp_path: Path) -> None:
    src = make_instance(tmp_path / "in.dcm")
    recipe = parse_recipe(
        "FORMAT dicom\n%header\nKEEP ALL\nKEEP PatientBirthDate\nKEEP InstitutionName\n",
        name="keep",
    )
    ds = deid(tmp_path, src, recipe)
    plain = deid(tmp_path, src, None)  # type: ignore[arg-type]
    # Z of the profile; X/Z/D, Type 3 in the CT Image IOD: removed
    assert ds.PatientBirthDate == "" and "InstitutionName" not in ds
    assert {e.tag for e in ds} - {0x00120063} == {e.tag for e in plain} - {0x00120063}


def test_blank_replace_in_sequences_and_priorities(tmp_path: Path) -> None:
    src = make_instance(tmp_path / "in.dcm", extra={"BodyPartExamined": "HEAD"})
    recipe = parse_recipe(
        "FORMAT dicom\n%header\n"
        "BLANK CodeMeaning\n"  # at every depth
        "REPLACE BodyPartExamined CHEST\nREPLACE BodyPartExamined ABDOMEN\n"  # the last wins
        "REMOVE Modality\nKEEP Modality\n"  # KEEP wins whatever the order
        "ADD ImageComments added\nREMOVE ImageComments\n",  # ADD wins over REMOVE
        name="seq",
    )
    ds = deid(tmp_path, src, recipe, {"clean_descriptors"})
    codes = [e for e in walk(ds) if e.keyword == "CodeMeaning"]
    assert codes and all(e.value in ("", None) for e in codes[:1])
    region = ds.AnatomicRegionSequence[0]
    assert region.CodeMeaning in ("", None) and region.CodeValue == "T-A0100"
    # the code sequence of the conformance attributes is imagedepot's: left alone
    assert all(item.CodeMeaning for item in ds.DeidentificationMethodCodeSequence)
    assert ds.BodyPartExamined == "ABDOMEN"
    assert ds.Modality == "CT"
    assert ds.ImageComments == "added"


def test_value_that_does_not_fit_quarantines_the_file(tmp_path: Path) -> None:
    src = make_instance(tmp_path / "in.dcm")
    recipe = parse_recipe("FORMAT dicom\n%header\nREPLACE Rows many\n", name="x")
    ds = deid(tmp_path, src, recipe)  # Rows is protected: nothing to do
    assert ds.Rows == 16
    recipe = parse_recipe("FORMAT dicom\n%header\nREPLACE PatientWeight heavy\n", name="x")
    with pytest.raises(InputError, match=r"deid recipe line 3: REPLACE PatientWeight"):
        deid(tmp_path, src, recipe, {"retain_patient_characteristics"})
    recipe = parse_recipe("FORMAT dicom\n%header\nREPLACE AnatomicRegionSequence x\n", name="x")
    with pytest.raises(InputError, match="cannot REPLACE sequence"):
        deid(tmp_path, src, recipe)


# ============================================================================ %filter


FILTERS = """\
FORMAT dicom

%filter whitelist
LABEL Everything is clean # never used: a recipe cannot declare images clean
  contains Modality US

%filter graylist
LABEL Acme console # top band
  contains Manufacturer ACME
  + contains Modality US
  + equals Rows 8|16
  ctpcoordinates 0,0,16,3
  coordinates 10,10,40,40

LABEL Acme keep # everything but the middle
  contains Manufacturer ACME
  + contains Modality XA
  keepcoordinates 4,4,12,12

%filter blacklist
LABEL Scanned documents
  contains Modality DOC || contains SeriesDescription Scanned
"""


def test_filter_labels_become_pixel_rules() -> None:
    r = parse_recipe(FILTERS, name="f")
    rules = {rule.name.split(":")[1]: rule for rule in r.pixel_rules()}
    assert set(rules) == {"Acme console", "Acme keep", "Scanned documents"}  # no whitelist
    console = rules["Acme console"]
    assert console.regions == ((0, 0, 16, 3), (10, 10, 40, 40)) and console.cleans
    assert rules["Acme keep"].keep == ((4, 4, 12, 12),)
    assert not rules["Scanned documents"].cleans  # flags only
    assert console.matches({"Manufacturer": "Acme Medical", "Modality": "US", "Rows": 16})
    assert not console.matches({"Manufacturer": "Acme Medical", "Modality": "US", "Rows": 32})
    assert pickle.loads(pickle.dumps(console)) == console
    assert "or contains SeriesDescription" in rules["Scanned documents"].to_dict()["criteria"]


def test_recipe_filters_clean_or_quarantine(tmp_path: Path) -> None:
    rules = parse_recipe(FILTERS, name="f").pixel_rules()
    us = make_instance(tmp_path / "us.dcm", modality="US")
    ds = deid(tmp_path, us, None, {"clean_pixel_data"}, pixel_rules=rules)  # type: ignore[arg-type]
    before = pydicom.dcmread(us).pixel_array
    assert (ds.pixel_array[:3] == 0).all() and (ds.pixel_array[10:, 10:] == 0).all()
    assert np.array_equal(ds.pixel_array[3:10], before[3:10])
    assert ds.BurnedInAnnotation == "NO"

    xa = make_instance(tmp_path / "xa.dcm", modality="XA")
    ds = deid(tmp_path, xa, None, {"clean_pixel_data"}, pixel_rules=rules)  # type: ignore[arg-type]
    px = ds.pixel_array
    assert (px[:4] == 0).all() and (px[12:] == 0).all() and (px[:, :4] == 0).all()
    assert (px[4:12, 4:12] > 0).all()

    # A flag-only label: refused (no rule cleans it) even with an explicit NO elsewhere absent.
    doc = make_instance(tmp_path / "doc.dcm", extra={"SeriesDescription": "Scanned consent"})
    with pytest.raises(InputError, match=r"flagged by 'blacklist:Scanned documents"):
        deid(tmp_path, doc, None, {"clean_pixel_data"}, pixel_rules=rules)  # type: ignore[arg-type]


# ============================================================================ against deid itself


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # deid imports pydicom's old modules
def test_same_removals_as_deid_on_public_files(tmp_path: Path) -> None:
    """deid's replace_identifiers and imagedepot honour the same recipe: whatever deid removes
    or blanks is gone from imagedepot's output too, and what deid replaces has deid's value."""
    pytest.importorskip("deid")
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    text = (
        "FORMAT dicom\n%header\n"
        "REMOVE endswith:Date\nREMOVE contains:Physician\nREMOVE InstitutionName\n"
        "BLANK startswith:Operator\nREPLACE SliceThickness 2.5\n"
        "REPLACE Manufacturer ACME\nKEEP Modality\n"
    )
    path = recipe_file(tmp_path, text, "deid.dicom")
    ours = load_recipe(path)
    theirs = DeidRecipe(str(path))
    names = ["CT_small.dcm", "MR_small.dcm"]
    for name in names:
        src = get_testdata_file(name)
        assert src is not None
        original = pydicom.dcmread(src)
        (deid_ds,) = replace_identifiers([src], deid=theirs, save=False, remove_private=True)
        ds = deid(tmp_path, Path(src), ours, {"retain_device_identity"})
        for elem in original:
            if elem.keyword in ("", "PixelData") or elem.VR == "SQ":
                continue
            if elem.keyword not in deid_ds or deid_ds[elem.keyword].value in ("", None):
                # deid removed or blanked it: no original value survives in ours
                assert elem.keyword not in ds or ds[elem.keyword].value in ("", None), (
                    name,
                    elem.keyword,
                )
        assert float(ds.SliceThickness) == float(deid_ds.SliceThickness) == 2.5
        assert ds.Manufacturer == deid_ds.Manufacturer == "ACME"
        assert ds.Modality == deid_ds.Modality
