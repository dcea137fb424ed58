"""Attribute types in IODs (PS3.3) and how the profile's combination codes resolve from them."""

from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.uid import (
    ComprehensiveSRStorage,
    CTImageStorage,
    EnhancedCTImageStorage,
    RTPlanStorage,
    TwelveLeadECGWaveformStorage,
)

from imagedepot.deid import iod, profile


def tag(keyword: str) -> int:
    t = tag_for_keyword(keyword)
    assert t is not None, keyword
    return t


@pytest.mark.parametrize(
    ("sop_class", "keyword", "expected"),
    [
        (CTImageStorage, "ReferencedStudySequence", "3"),  # General Study, Type 3
        (CTImageStorage, "InstitutionName", "3"),  # General Equipment
        (CTImageStorage, "ContentDate", "2"),  # General Image, Type 2C
        (EnhancedCTImageStorage, "ContentDate", "1"),  # Multi-frame Functional Groups
        (EnhancedCTImageStorage, "DeviceSerialNumber", "1"),  # Enhanced General Equipment
        (ComprehensiveSRStorage, "ContentDate", "1"),  # SR Document General
        (ComprehensiveSRStorage, "VerifyingObserverSequence", "1"),  # Type 1C
        (ComprehensiveSRStorage, "ReferencedPerformedProcedureStepSequence", "2"),
        (RTPlanStorage, "RTPlanDate", "2"),  # RT General Plan: Type 2 though PS3.15 says X/D
        (TwelveLeadECGWaveformStorage, "AcquisitionDateTime", "1"),  # Waveform Identification
        (CTImageStorage, "RTPlanDate", iod.NOT_IN_IOD),
    ],
)
def test_attribute_types_from_ps3_3(sop_class: str, keyword: str, expected: str) -> None:
    assert iod.attribute_type(sop_class, tag(keyword), set()) == expected


def test_unknown_sop_class_or_attribute_has_no_type() -> None:
    assert iod.attribute_type("1.2.3.4", tag("ContentDate"), set()) is None
    assert not iod.known_sop_class("1.2.3.4") and iod.known_sop_class(CTImageStorage)
    assert iod.attribute_type(CTImageStorage, tag("Modality"), set()) is None  # not recorded


def test_optional_module_counts_when_the_file_carries_it() -> None:
    # Contrast/Bolus is a conditional module of the CT Image IOD; its agent is Type 2 there.
    agent = tag("ContrastBolusAgent")
    assert iod.attribute_type(CTImageStorage, agent, set()) == iod.NOT_IN_IOD
    assert iod.attribute_type(CTImageStorage, agent, {tag("ContrastBolusRoute")}) == "2"


@pytest.mark.parametrize(
    ("code", "iod_type", "sequence", "expected"),
    [
        ("X/Z", "3", True, "X"),  # e.g. Referenced Study Sequence in General Study
        ("X/Z", "2", False, "Z"),
        ("X/Z", None, False, "Z"),  # unknown IOD, a value: empty keeps Types 2 and 3 valid
        ("X/Z", None, True, "X"),  # unknown IOD, a sequence: never left without items
        ("X/Z/D", "1", False, "D"),  # e.g. Device Serial Number in Enhanced General Equipment
        ("X/Z/D", "3", False, "X"),
        ("X/Z/D", iod.NOT_IN_IOD, False, "X"),
        ("Z/D", "1", False, "D"),  # e.g. Content Date in SR Document General
        ("Z/D", "3", False, "Z"),
        ("X/D", "2", False, "Z"),  # e.g. RT Plan Date: Type 2, nothing fabricated
        ("X/D", "1", False, "D"),
        ("X/D", None, False, "X"),
        ("X/Z/U*", "3", True, "U"),
        ("D", "3", False, "D"),  # single codes are what they are
    ],
)
def test_resolve_combination(
    code: str, iod_type: str | None, sequence: bool, expected: str
) -> None:
    assert profile.resolve_combination(code, iod_type, sequence=sequence) == expected


def test_action_for_takes_the_iod_type() -> None:
    assert profile.action_for(tag("ContentDate")) == "Z"
    assert profile.action_for(tag("ContentDate"), iod_type="1") == "D"
    assert profile.action_for(tag("ReferencedStudySequence"), iod_type="3", sequence=True) == "X"
    assert profile.tag_actions()[tag("ReferencedStudySequence")] == "X/Z"  # decided per file
    # an option's single code wins over the combination
    assert profile.action_for(tag("ContentDate"), {"retain_longitudinal_full_dates"}) == "K"


def test_table_covers_every_iod_dependent_attribute() -> None:
    dependent = {
        r.value for r in profile.table() if not r.is_wildcard and profile.is_combination(r.basic)
    }
    assert dependent <= iod.attributes()
