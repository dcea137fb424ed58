"""BIDS-like layout: rules, labels, paths and run numbering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from imagedepot.convert.bids import (
    BIDS_DATATYPES,
    bids_label,
    bids_layout,
    bids_relpath,
    default_rules_text,
    load_rules,
    parse_rules,
)
from imagedepot.errors import ConfigError

MAG = ["ORIGINAL", "PRIMARY", "M", "ND"]
PHASE = ["ORIGINAL", "PRIMARY", "P", "ND"]
PSEUDONYM = "SUBJ-7Q3K9D2M4XHA"
SUB = "SUBJ7Q3K9D2M4XHA"


def side(description: str = "", modality: str = "MR", image_type=MAG, **extra) -> dict:
    """A dcm2niix-like sidecar."""
    return {
        "Modality": modality,
        "SeriesDescription": description,
        "ProtocolName": description,
        "ImageType": image_type,
        **extra,
    }


def path(sidecar: dict, **kw) -> str:
    kw.setdefault("pseudonym", PSEUDONYM)
    kw.setdefault("session", "1")
    return bids_relpath(sidecar, **kw)


def test_the_example_of_the_issue() -> None:
    assert path(side("t1_mprage_sag_p2_iso")) == (
        f"sub-{SUB}/ses-1/anat/sub-{SUB}_ses-1_T1w.nii.gz"
    )


@pytest.mark.parametrize(
    ("sidecar", "where"),
    [
        (side("T1w_MPR"), "anat/*_T1w"),
        (side("MPRAGE_GRAPPA2"), "anat/*_T1w"),
        (side("t2_tse_tra"), "anat/*_T2w"),
        (side("t2_flair_tra_fs"), "anat/*_FLAIR"),  # FLAIR before T2
        (side("T2star_gre"), "anat/*_T2starw"),
        (side("PD_tse"), "anat/*_PDw"),
        (side("tof_fl3d_tra"), "anat/*_angio"),
        (side("ep2d_bold_moco"), "func/*_task-unknown_bold"),
        (side("rs_fMRI_ep2d"), "func/*_task-rest_bold"),
        (side("cmrr_mbep2d_bold_task-nback_dir-AP"), "func/*_task-nback_dir-AP_bold"),
        (side("cmrr_mbep2d_bold_SBRef"), "func/*_task-unknown_sbref"),
        (side("ep2d_diff_mddw_30"), "dwi/*_dwi"),
        (side("gre_field_mapping", EchoNumber=1), "fmap/*_magnitude1"),
        (side("gre_field_mapping", EchoNumber=2), "fmap/*_magnitude2"),
        (side("gre_field_mapping", image_type=PHASE, EchoNumber=2), "fmap/*_phasediff"),
        (side("SpinEchoFieldMap_dir-PA"), "fmap/*_dir-PA_epi"),
        (side("anat-T1w_acq-mprage"), "anat/*_acq-mprage_T1w"),
        (side("func-bold_task-rest_run-1"), "func/*_task-rest_bold"),
        (side("Head 5.0 H30s", modality="CT"), "ct/*_ct"),
        (side("PET AC", modality="PT"), "pet/*_pet"),
        (side("AAHead_Scout_32ch-head-coil"), "localizer/*_localizer"),
        (side("t1_x", image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"]), "localizer/*_localizer"),
        (side("ep2d_diff_ADC", image_type=["DERIVED", "PRIMARY", "ADC"]), "derived/*_derived"),
        (side("CT MPR cor", modality="CT", image_type=["DERIVED", "SECONDARY"]), "derived/*"),
        (side("Patient Protocol"), "unknown/*_unknown"),
        ({"Modality": "MR"}, "unknown/*_unknown"),  # no description at all: kept, not lost
    ],
)
def test_default_rules(sidecar: dict, where: str) -> None:
    got = path(sidecar)
    folder, name = where.split("/")
    assert got.split("/")[2] == folder
    pattern = re.escape(name).replace(r"\*", f"sub-{SUB}_ses-1.*") + r"\.nii\.gz"
    assert re.fullmatch(pattern, got.split("/")[3]), got


def test_entities_echo_and_part() -> None:
    me = side("me_bold_task-rest", EchoNumber=2)
    assert path(me).endswith(f"sub-{SUB}_ses-1_task-rest_echo-2_bold.nii.gz")
    ph = side("T2star_gre", image_type=PHASE)
    assert path(ph).endswith("_part-phase_T2starw.nii.gz")
    assert path(side("t1"), run=2).endswith(f"sub-{SUB}_ses-1_run-2_T1w.nii.gz")


def test_session_and_extension() -> None:
    assert path(side("t1"), session=None, extension=".json") == (
        f"sub-{SUB}/anat/sub-{SUB}_T1w.json"
    )
    assert path(side("t1"), session="pre-op 2").startswith(f"sub-{SUB}/ses-preop2/anat/")


def test_labels() -> None:
    assert bids_label("SUBJ-7Q3K") == "SUBJ7Q3K"
    assert bids_label("a_b.c d") == "abcd"
    with pytest.raises(ValueError, match="no letter or digit"):
        bids_label("--")
    with pytest.raises(ValueError, match="pseudonym"):
        path(side("t1"), pseudonym="-_-")
    with pytest.raises(ValueError, match="run"):
        path(side("t1"), run=0)


def test_every_path_is_made_of_bids_labels() -> None:
    for description in ("t1", "bold task-a_b", "weird/../name", "dwi ß"):
        p = path(side(description))
        for part in p.split("/")[:-1]:
            assert re.fullmatch(r"(sub|ses)-[A-Za-z0-9]+|[a-z]+", part)
        assert re.fullmatch(r"([a-z]+-[A-Za-z0-9]+_)+[A-Za-z0-9]+\.nii\.gz", p.split("/")[-1])


def test_layout_numbers_runs_and_parts() -> None:
    entries = [
        ("t1-a", side("t1_mprage", SeriesNumber=3)),
        ("t1-b", side("t1_mprage", SeriesNumber=9)),
        ("t2", side("t2_tse", SeriesNumber=4)),
        ("me-e1", side("bold_task-rest", SeriesNumber=5, EchoNumber=1)),
        ("me-e2", side("bold_task-rest", SeriesNumber=5, EchoNumber=2)),
        ("swi-mag", side("t2star_swi", SeriesNumber=6)),
        ("swi-pha", side("t2star_swi", SeriesNumber=6, image_type=PHASE)),
        ("loc-1", side("localizer", SeriesNumber=1)),
        ("loc-2", side("localizer", SeriesNumber=1)),
        ("loc-3", side("localizer", SeriesNumber=1)),
    ]
    got = bids_layout(entries, pseudonym="P-1", session="1")
    names = {k: v.rsplit("/", 1)[1] for k, v in got.items()}
    assert names["t1-a"] == "sub-P1_ses-1_run-1_T1w.nii.gz"  # series 3 before series 9
    assert names["t1-b"] == "sub-P1_ses-1_run-2_T1w.nii.gz"
    assert names["t2"] == "sub-P1_ses-1_T2w.nii.gz"  # alone: no run
    assert names["me-e1"] == "sub-P1_ses-1_task-rest_echo-1_bold.nii.gz"  # echoes: one run
    assert names["me-e2"] == "sub-P1_ses-1_task-rest_echo-2_bold.nii.gz"
    assert names["swi-mag"] == "sub-P1_ses-1_part-mag_T2starw.nii.gz"
    assert names["swi-pha"] == "sub-P1_ses-1_part-phase_T2starw.nii.gz"
    assert sorted(names[f"loc-{n}"] for n in (1, 2, 3)) == [
        f"sub-P1_ses-1_run-{n}_localizer.nii.gz" for n in (1, 2, 3)
    ]
    assert len(set(got.values())) == len(got)  # nothing overwritten
    assert got == bids_layout(list(reversed(entries)), pseudonym="P-1", session="1")  # stable
    with pytest.raises(ValueError, match="unique"):
        bids_layout([("a", side("t1")), ("a", side("t2"))], pseudonym="P", session=None)


def test_default_rules_file_is_valid_and_documented() -> None:
    rules = load_rules()
    assert rules is load_rules()  # parsed once
    assert rules.fallback.datatype == "unknown"
    assert rules.nonstandard_datatypes() == ["ct", "derived", "localizer", "unknown"]
    assert rules.bidsignore() == "**/ct/\n**/derived/\n**/localizer/\n**/unknown/\n"
    text = default_rules_text()
    for datatype in rules.nonstandard_datatypes():
        assert re.search(rf"^#\s+{datatype}\s", text, re.MULTILINE)  # each one explained
    assert {r.datatype for r in rules.rules} - set(rules.nonstandard_datatypes()) <= BIDS_DATATYPES


def test_custom_rules_file(tmp_path: Path) -> None:
    custom = tmp_path / "rules.yaml"
    custom.write_text(
        yaml.safe_dump(
            {
                "bids_rules_version": 1,
                "fallback": {"datatype": "misc", "suffix": "other"},
                "rules": [
                    {
                        "name": "site-t1",
                        "match": {"ProtocolName": "^SITE_T1$", "Modality": "MR"},
                        "datatype": "anat",
                        "suffix": "T1w",
                        "entities": {"acq": "site"},
                    }
                ],
            }
        )
    )
    rules = load_rules(custom)
    assert path(side("SITE_T1"), rules=rules).endswith(
        "anat/sub-SUBJ7Q3K9D2M4XHA_ses-1_acq-site_T1w.nii.gz"
    )
    # Every condition must match: the MR rule does not take a CT.
    assert "/misc/" in path(side("SITE_T1", modality="CT"), rules=rules)
    assert rules.bidsignore() == "**/misc/\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "mapping"),
        ({"rules": []}, "bids_rules_version"),
        ({"bids_rules_version": 1, "rules": {}}, "'rules' must be a list"),
        ({"bids_rules_version": 1, "rules": [], "extra": 1}, "unknown key"),
        ({"bids_rules_version": 1, "rules": [{"datatype": "anat", "suffix": "T1w"}]}, "'match'"),
        (
            {
                "bids_rules_version": 1,
                "rules": [{"match": {"X": "("}, "datatype": "a", "suffix": "b"}],
            },
            "bad regular expression",
        ),
        (
            {
                "bids_rules_version": 1,
                "rules": [{"match": {"X": "x"}, "datatype": "Anat", "suffix": "b"}],
            },
            "datatype",
        ),
        (
            {
                "bids_rules_version": 1,
                "rules": [{"match": {"X": "x"}, "datatype": "a", "suffix": "T1_w"}],
            },
            "suffix",
        ),
        (
            {
                "bids_rules_version": 1,
                "rules": [
                    {"match": {"X": "x"}, "datatype": "a", "suffix": "b", "entities": {"sub": "x"}}
                ],
            },
            "cannot be set",
        ),
        (
            {
                "bids_rules_version": 1,
                "rules": [{"match": {"X": "x"}, "datatype": "a", "suffix": "b", "colour": 1}],
            },
            "unknown key",
        ),
        (
            {
                "bids_rules_version": 1,
                "rules": [{"match": {"A||B": "x"}, "datatype": "a", "suffix": "b"}],
            },
            "field name",
        ),
        ({"bids_rules_version": 1, "rules": [], "fallback": {"datatype": "x"}}, "suffix"),
    ],
)
def test_bad_rules_say_what_to_fix(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_rules(data, "my-rules.yaml")


def test_bad_rules_name_the_file_and_rule(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("bids_rules_version: 1\nrules:\n  - name: t1\n    match: {X: '['}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: rule 1 \(t1\)"):
        load_rules(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    (tmp_path / "n.yaml").write_text("a: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(tmp_path / "n.yaml")


def _tree_item(root: Path, item_id: str, description: str, *, pseudonym: str = PSEUDONYM) -> dict:
    """One clean DICOM item as the workflow leaves it: conversion sidecar, de-identified NIfTI."""
    import json

    from imagedepot.pipeline import batch_name

    batch = batch_name(0)
    conv = root / "convert" / batch / item_id / "nifti"
    deid = root / "deid" / batch / item_id
    conv.mkdir(parents=True)
    (deid / "nifti").mkdir(parents=True)
    (conv / "series.nii.gz").write_bytes(b"original " + item_id.encode())
    (conv / "series.json").write_text(json.dumps(side(description, SeriesNumber=2)), "utf-8")
    (deid / "nifti" / f"{pseudonym}_001.nii.gz").write_bytes(b"deid " + item_id.encode())
    (deid / "nifti" / f"{pseudonym}_001.json").write_text("{}", "utf-8")
    (deid / "provenance.json").write_text(
        json.dumps({"options": {"subject_pseudonym": pseudonym}}), "utf-8"
    )
    (root / "leak" / batch).mkdir(parents=True, exist_ok=True)
    (root / "leak" / batch / f"{item_id}.json").write_text('{"status": "clean"}', "utf-8")
    return {"id": item_id, "status": "pending", "kind": "dicom", "batch": 0,
            "dicom": {"study_instance_uid": "1.2.3"}}  # fmt: skip


def _write_tree(root: Path, items: list[dict], rules=None) -> dict:
    from imagedepot.convert.bids import write_bids_tree

    return write_bids_tree(
        {"items": items},
        convert_root=root / "convert",
        deid_root=root / "deid",
        leak_root=root / "leak",
        out=root / "bids",
        rules=rules,
    )


def test_tree_numbers_runs_across_items_and_never_overwrites(tmp_path: Path) -> None:
    items = [_tree_item(tmp_path, f"item-{n}", "t1_mprage") for n in (1, 2)]
    summary = _write_tree(tmp_path, items)
    anat = tmp_path / "bids" / f"sub-{SUB}" / "anat"
    images = sorted(p.name for p in anat.glob("*.nii.gz"))
    assert images == [f"sub-{SUB}_run-1_T1w.nii.gz", f"sub-{SUB}_run-2_T1w.nii.gz"]
    assert sorted(p.name for p in anat.glob("*.json")) == [
        f"sub-{SUB}_run-1_T1w.json",
        f"sub-{SUB}_run-2_T1w.json",
    ]
    # Both series survive (one did not overwrite the other) and the count is the files written.
    assert {(anat / n).read_bytes() for n in images} == {b"deid item-1", b"deid item-2"}
    assert summary["images"] == len(images) == len(summary["files"])


def test_tree_name_clash_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagedepot.convert import bids

    items = [_tree_item(tmp_path, f"item-{n}", "t1_mprage") for n in (1, 2)]
    # A layout that cannot tell two images apart must not let one overwrite the other.
    monkeypatch.setattr(
        bids.tree,
        "bids_layout",
        lambda entries, **kw: {k: "sub-X/anat/sub-X_T1w.nii.gz" for k, _ in entries},
    )
    with pytest.raises(bids.BidsClashError, match="sub-X_T1w"):
        _write_tree(tmp_path, items)
    assert not (tmp_path / "bids").exists()
