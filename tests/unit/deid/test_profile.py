"""The PS3.15 Table E.1-1 lookup: editions, codes, wildcards, combination codes, options."""

from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.sr.codedict import codes

from imagedepot.deid import profile
from imagedepot.deid.profile import action_for


def tag(keyword: str) -> int:
    t = tag_for_keyword(keyword)
    assert t is not None, keyword
    return t


def test_table_loads_once_with_every_row() -> None:
    rows = profile.table()
    assert rows is profile.table()  # cached
    assert len(rows) == 620  # 621 rows in the shipped edition, the private-attributes row apart
    assert {r.basic for r in rows} <= set(profile.COMBINATION_RESOLUTION) | set("DZXKCU")


def test_edition_names_the_shipped_table() -> None:
    assert "PS3.15" in profile.EDITION and "2025" in profile.EDITION
    assert len(profile.EDITION_SHORT) <= 64  # fits a DICOM LO value


def test_option_codes_match_cid_7050() -> None:
    assert frozenset(profile.OPTION_CODES) == profile.OPTIONS
    assert len(profile.OPTIONS) == 12
    cid = {}
    for name in codes.DCM.concepts:
        code = getattr(codes.DCM, name)
        cid[code.value] = code.meaning
    for code in [profile.BASIC_PROFILE_CODE, *profile.OPTION_CODES.values()]:
        assert code.scheme == "DCM"
        assert cid[code.value] == code.meaning
        assert len(code.meaning) <= 64


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        ("PatientName", "Z"),
        ("PatientID", "Z"),  # Z/D resolves to Z
        ("PatientBirthDate", "Z"),
        ("PatientAge", "X"),
        ("SOPInstanceUID", "U"),
        ("StudyInstanceUID", "U"),
        ("AcquisitionDateTime", "Z"),  # X/Z/D resolves to Z
        ("SeriesDate", "X"),
        ("StudyDate", "Z"),
        ("ReferencedImageSequence", "U"),  # X/Z/U*: keep, remap UIDs inside
        ("AcquisitionDeviceProcessingDescription", "X"),  # X/D resolves to X
        ("PersonName", "D"),
        ("Modality", None),  # not listed
        ("Rows", None),
    ],
)
def test_basic_profile_actions(keyword: str, expected: str | None) -> None:
    assert action_for(tag(keyword), frozenset()) == expected


def test_combination_resolution_is_documented_and_conservative() -> None:
    assert profile.COMBINATION_RESOLUTION == {
        "X/Z": "Z",
        "Z/D": "Z",
        "X/Z/D": "Z",
        "X/D": "X",
        "X/Z/U*": "U",
    }
    with pytest.raises(ValueError, match="unknown action code"):
        profile.resolve_basic("Q")


def test_wildcards_and_private_tags() -> None:
    assert action_for(0x50001234) == "X"  # (50XX,XXXX) curve data
    assert action_for(0x501E3000) == "X"
    assert action_for(0x60003000) == "X"  # (60XX,3000) overlay data
    assert action_for(0x601E4000) == "X"  # (60XX,4000) overlay comments
    assert action_for(0x60000010) is None  # overlay rows: not listed
    assert action_for(0x60024000, {"clean_graphics"}) == "C"
    assert action_for(0x00091001) == "X"
    assert action_for(0x00290010) == "X"  # private creator
    assert action_for(0x00091001, {"retain_safe_private"}) == "C"


@pytest.mark.parametrize(
    ("option", "keyword", "expected"),
    [
        ("retain_longitudinal_modified_dates", "StudyDate", "C"),
        ("retain_longitudinal_modified_dates", "AcquisitionDateTime", "C"),
        ("retain_longitudinal_full_dates", "StudyDate", "K"),
        ("retain_patient_characteristics", "PatientAge", "K"),
        ("retain_patient_characteristics", "PatientSex", "K"),
        ("retain_patient_characteristics", "Allergies", "C"),
        ("retain_device_identity", "DeviceSerialNumber", "K"),
        ("retain_device_identity", "StationAETitle", "C"),
        ("retain_institution_identity", "InstitutionName", "K"),
        ("retain_uids", "SOPInstanceUID", "K"),
        ("retain_uids", "ReferencedImageSequence", "K"),
        ("clean_descriptors", "StudyDescription", "C"),
        ("clean_structured_content", "ContentSequence", "C"),
        ("clean_graphics", "GraphicAnnotationSequence", "C"),
    ],
)
def test_each_option_changes_its_column(option: str, keyword: str, expected: str) -> None:
    assert action_for(tag(keyword), {option}) == expected
    assert action_for(tag(keyword), frozenset()) != expected


def test_options_apply_only_where_the_table_says() -> None:
    assert action_for(tag("PatientName"), profile.OPTIONS) == "Z"
    assert action_for(tag("PatientID"), profile.OPTIONS) == "Z"


def test_clean_wins_over_keep_when_options_overlap() -> None:
    # Date of Last Calibration: device identity says K, modified dates say C.
    t = tag("DateOfLastCalibration")
    assert action_for(t, {"retain_device_identity"}) == "K"
    assert action_for(t, {"retain_device_identity", "retain_longitudinal_modified_dates"}) == "C"
    assert action_for(t, {"retain_device_identity", "retain_longitudinal_full_dates"}) == "K"
    # both date options (a policy rejects this): modified dates win
    both = {"retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"}
    assert action_for(tag("StudyDate"), both) == "C"


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="retain_everything"):
        action_for(tag("PatientName"), {"retain_everything"})


def test_tag_actions_is_cached_per_option_set() -> None:
    a = profile.tag_actions({"retain_uids"})
    assert a is profile.tag_actions(frozenset({"retain_uids"}))
    assert a[tag("SOPInstanceUID")] == "K"
