"""Policies: schema, fail-closed compilation, presets, conflicts, consent, destinations."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagedepot.deid.profile import EDITION, OPTIONS
from imagedepot.errors import PolicyError
from imagedepot.policy import (
    PRESET_FORBIDDEN,
    PRESETS,
    PUBLIC_FORBIDDEN_OPTIONS,
    load_policy,
    policy_schema,
)

BASE: dict[str, Any] = {
    "policy_version": 1,
    "name": "demo-cohort",
    "data_use": {"permission": "DUO:0000042", "modifiers": ["DUO:0000019"]},
    "consent": {
        "required": True,
        "sheet": "../consent.tsv",
        "subject_column": "subject",
        "consent_column": "consent_imaging",
        "consent_values": ["yes"],
    },
    "destinations": {"allowed_classes": ["internal", "controlled_repository"]},
    "deidentification": {
        "options": ["retain_longitudinal_modified_dates"],
        "pseudonym_prefix": "SUBJ",
        "max_date_shift_days": 3650,
    },
}

CONSENT_TSV = "subject\tconsent_imaging\nP001\tyes\nP002\tno\nP003\t YES \nP004\tyes\nP004\tno\n"


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.fixture
def write_policy(tmp_path: Path):
    (tmp_path / "consent.tsv").write_text(CONSENT_TSV, encoding="utf-8")
    (tmp_path / "policies").mkdir()

    def write(patch: dict[str, Any] | None = None, name: str = "p.yaml") -> Path:
        path = tmp_path / "policies" / name
        path.write_text(yaml.safe_dump(merge(BASE, patch or {})), encoding="utf-8")
        return path

    return write


def test_architecture_example_loads(write_policy) -> None:
    pol = load_policy(write_policy())
    assert pol.name == "demo-cohort"
    assert pol.deid_options == {"retain_longitudinal_modified_dates"}
    assert pol.data_use["permission"] == "DUO:0000042"
    assert pol.pseudonym_prefix == "SUBJ"
    assert pol.max_date_shift_days == 3650
    assert pol.preset is None


def test_demo_policies_of_the_demo_module_load(tmp_path: Path) -> None:
    from imagedepot import demo

    folder = tmp_path / "policies"
    folder.mkdir()
    (tmp_path / "consent.tsv").write_text(CONSENT_TSV, encoding="utf-8")
    for name, text in [
        ("demo-cohort.yaml", demo.DEMO_COHORT_POLICY),
        ("open-microscopy.yaml", demo.OPEN_MICROSCOPY_POLICY),
    ]:
        (folder / name).write_text(text, encoding="utf-8")
        assert load_policy(folder / name).name == name.removesuffix(".yaml")


def test_schema_describes_every_property_and_forbids_extras() -> None:
    schema = policy_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, sub in node.get("properties", {}).items():
                assert sub.get("description"), f"{where}.{key} has no description"
            for key, sub in node.items():
                if key not in ("if", "then"):  # conditions, not property definitions
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, "schema")
    enum = schema["properties"]["deidentification"]["properties"]["options"]["items"]["enum"]
    assert set(enum) == OPTIONS


# ----------------------------------------------------------------------------- fail closed


@pytest.mark.parametrize(
    ("patch", "rule", "what"),
    [
        (
            {"deidentification": {"options": ["retain_everything"]}},
            "deidentification.options[0]",
            "retain_everything",
        ),
        ({"deidentification": {"preset": "hipaa_full"}}, "deidentification.preset", "hipaa_full"),
        ({"data_use": {"permission": "DUO:42"}}, "data_use.permission", "DUO:42"),
        ({"data_use": {"modifiers": ["DUO:0000019", "GRU"]}}, "data_use.modifiers[1]", "GRU"),
        (
            {"destinations": {"allowed_classes": ["internal", "public"]}},
            "destinations.allowed_classes[1]",
            "public",
        ),
        ({"surprise": 1}, "(top level)", "surprise"),
        (
            {"deidentification": {"max_date_shift_days": 0}},
            "deidentification.max_date_shift_days",
            "0",
        ),
        ({"policy_version": 2}, "policy_version", "1"),
        ({"consent": {"consent_column": None}}, "consent", "consent_column"),
        (
            {"deidentification": {"pseudonym_prefix": "S-1"}},
            "deidentification.pseudonym_prefix",
            "S-1",
        ),
    ],
)
def test_invalid_policies_name_rule_and_file(write_policy, patch, rule, what) -> None:
    path = write_policy(patch)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert rule in msg
    assert what in msg


def test_not_yaml_and_duplicate_keys_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nname: b\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="duplicate key 'name'"):
        load_policy(dup)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")


def test_yaml_aliases_and_oversized_files_are_refused(write_policy, tmp_path: Path) -> None:
    path = write_policy()
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "description: &d text\nextra: *d\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"p\.yaml: line \d+: YAML anchors and aliases"):
        load_policy(path)
    path.write_text(text + "#" * (4 << 20), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"p\.yaml: policy file is [\d,]+ bytes, more than"):
        load_policy(path)


def test_an_oversized_consent_sheet_is_refused(
    write_policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagedepot import safeload

    monkeypatch.setattr(safeload, "MAX_SHEET_BYTES", 20)
    with pytest.raises(PolicyError, match=r"consent\.tsv: consent sheet is \d+ bytes"):
        load_policy(write_policy())


# ----------------------------------------------------------------------------- data use (DUO)


@pytest.mark.parametrize(
    ("data_use", "rule", "message"),
    [
        (
            {"permission": "DUO:0000099"},
            "data_use.permission",
            "'DUO:0000099' is not a DUO permission term of DUO release 2021-02-23",
        ),
        (
            {"permission": "DUO:0000042", "modifiers": ["DUO:0000019", "DUO:1234567"]},
            "data_use.modifiers[1]",
            "'DUO:1234567' is not a DUO modifier term",
        ),
        (
            {"permission": "DUO:0000043"},
            "data_use.permission",
            "DUO:0000043 (CC, clinical care use) is a DUO modifier, not a permission; list it "
            "under data_use.modifiers",
        ),
        (
            {"permission": "DUO:0000042", "modifiers": ["DUO:0000007"]},
            "data_use.modifiers[0]",
            "DUO:0000007 (DS, disease specific research) is a DUO permission, not a modifier",
        ),
        (
            {"permission": "DUO:0000001"},
            "data_use.permission",
            "DUO:0000001 (data use permission) is a DUO parent class, not a term",
        ),
        (
            {"permission": "DUO:0000042", "modifiers": ["DUO:0000017"]},
            "data_use.modifiers[0]",
            "DUO:0000017 (data use modifier) is a DUO parent class",
        ),
    ],
)
def test_unknown_or_misplaced_duo_codes_are_refused(
    write_policy, data_use: dict[str, Any], rule: str, message: str
) -> None:
    path = write_policy({"data_use": data_use})
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    assert f"{path}: {rule}: {message}" in str(exc.value)


@pytest.mark.parametrize(
    ("permission", "modifiers"),
    [
        ("DUO:0000004", []),
        ("DUO:0000006", ["DUO:0000021", "DUO:0000043"]),
        ("DUO:0000007", ["DUO:0000046"]),
        ("DUO:0000011", ["DUO:0000028"]),
        ("DUO:0000042", ["DUO:0000019", "DUO:0000024", "DUO:0000044", "DUO:0000045"]),
    ],
)
def test_known_duo_terms_in_their_places_load(write_policy, permission, modifiers) -> None:
    pol = load_policy(
        write_policy({"data_use": {"permission": permission, "modifiers": modifiers}})
    )
    assert pol.data_use == {"permission": permission, "modifiers": tuple(modifiers)}
    assert pol.to_provenance()["duo_release"] == "2021-02-23"


# ----------------------------------------------------------------------------- presets, conflicts


def test_presets_expand_and_add_explicit_options(write_policy) -> None:
    for preset, expanded in PRESETS.items():
        pol = load_policy(write_policy({"deidentification": {"preset": preset, "options": []}}))
        assert pol.deid_options == expanded
        assert pol.preset == preset
    pol = load_policy(
        write_policy(
            {
                "deidentification": {
                    "preset": "gdpr_pseudonymised",
                    "options": ["retain_device_identity"],
                }
            }
        )
    )
    assert pol.deid_options == PRESETS["gdpr_pseudonymised"] | {"retain_device_identity"}


def test_anonymising_presets_keep_nothing_linkable() -> None:
    for preset in ("hipaa_safe_harbor", "gdpr_anonymised"):
        assert not PRESETS[preset] & PUBLIC_FORBIDDEN_OPTIONS
        assert "retain_longitudinal_modified_dates" in PRESET_FORBIDDEN[preset]
        assert "clean_pixel_data" in PRESETS[preset]


@pytest.mark.parametrize("preset", ["hipaa_safe_harbor", "gdpr_anonymised"])
def test_preset_rejects_options_that_undo_it(write_policy, preset) -> None:
    path = write_policy({"deidentification": {"preset": preset, "options": ["retain_uids"]}})
    with pytest.raises(PolicyError, match=f"preset {preset} conflicts with option.*retain_uids"):
        load_policy(path)


def test_full_and_modified_dates_conflict(write_policy) -> None:
    both = ["retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"]
    with pytest.raises(
        PolicyError,
        match="retain_longitudinal_full_dates conflicts with retain_longitudinal_modified_dates",
    ):
        load_policy(write_policy({"deidentification": {"options": both}}))


@pytest.mark.parametrize("option", sorted(PUBLIC_FORBIDDEN_OPTIONS))
def test_public_archive_rejects_linkable_options(write_policy, option) -> None:
    path = write_policy(
        {
            "destinations": {"allowed_classes": ["internal", "public_archive"]},
            "deidentification": {"options": [option]},
        }
    )
    with pytest.raises(PolicyError, match=f"public_archive conflicts with option.*{option}"):
        load_policy(path)


def test_public_archive_rejects_pseudonymised_preset(write_policy) -> None:
    path = write_policy(
        {
            "destinations": {"allowed_classes": ["public_archive"]},
            "deidentification": {"preset": "gdpr_pseudonymised", "options": []},
        }
    )
    with pytest.raises(
        PolicyError, match="public_archive conflicts with preset gdpr_pseudonymised"
    ):
        load_policy(path)


def test_public_archive_with_anonymising_preset_is_fine(write_policy) -> None:
    path = write_policy(
        {
            "destinations": {"allowed_classes": ["public_archive"]},
            "deidentification": {"preset": "gdpr_anonymised", "options": []},
        }
    )
    load_policy(path).check_destination("zenodo", "public_archive")


# ----------------------------------------------------------------------------- destinations


def test_check_destination(write_policy) -> None:
    pol = load_policy(write_policy())
    pol.check_destination("local", "internal")
    pol.check_destination("ega", "controlled_repository")
    with pytest.raises(
        PolicyError, match="does not allow destination 'zenodo' of class public_archive"
    ):
        pol.check_destination("zenodo", "public_archive")
    with pytest.raises(PolicyError, match="unknown class 'cloud'"):
        pol.check_destination("s3", "cloud")


# ----------------------------------------------------------------------------- consent


def test_consent_from_tsv(write_policy) -> None:
    pol = load_policy(write_policy())
    assert pol.consented("P001")
    assert not pol.consented("P002")  # answered no
    assert pol.consented("P003")  # case and spaces ignored
    assert not pol.consented("P004")  # one of two rows says no
    assert not pol.consented("P999")  # not in the sheet


def test_consent_not_required_means_everyone(write_policy) -> None:
    pol = load_policy(
        write_policy({"consent": {"required": False, "sheet": None, "consent_column": None}})
    )
    assert pol.consented("anyone")


def test_consent_from_csv_and_xlsx(write_policy, tmp_path: Path) -> None:
    (tmp_path / "consent.csv").write_text("subject,consent_imaging\nP010,Yes\n", encoding="utf-8")
    pol = load_policy(write_policy({"consent": {"sheet": "../consent.csv"}}))
    assert pol.consented("P010")

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["subject", "consent_imaging"])
    sheet.append([11, "yes"])  # a numeric subject id
    book.save(tmp_path / "consent.xlsx")
    pol = load_policy(write_policy({"consent": {"sheet": "../consent.xlsx"}}))
    assert pol.consented("11")


def test_missing_consent_sheet_or_column(write_policy) -> None:
    path = write_policy({"consent": {"sheet": "../nowhere.tsv"}})
    with pytest.raises(
        PolicyError, match=r"consent\.sheet: consent sheet .*nowhere\.tsv not found"
    ):
        load_policy(path)
    path = write_policy({"consent": {"consent_column": "consent_mri"}})
    with pytest.raises(
        PolicyError, match=r"consent\.consent_column: column 'consent_mri' not found"
    ):
        load_policy(path)
    path = write_policy({"consent": {"subject_column": "participant"}})
    with pytest.raises(
        PolicyError, match=r"consent\.subject_column: column 'participant' not found"
    ):
        load_policy(path)


# ----------------------------------------------------------------------------- pixel rules


def test_pixel_cleaning_rules(write_policy) -> None:
    rule = {
        "name": "us-bar",
        "match": {"Modality": "US", "Rows": 480},
        "regions": [[0, 0, 640, 40]],
    }
    pol = load_policy(write_policy({"deidentification": {"pixel_cleaning": [rule]}}))
    (r,) = pol.pixel_rules
    assert r.regions == ((0, 0, 640, 40),)
    assert r.matches({"Modality": "us ", "Rows": 480})
    assert not r.matches({"Modality": "US", "Rows": 600})
    assert not r.matches({"Modality": "US"})
    bad = dict(rule, regions=[[10, 0, 5, 40]])
    with pytest.raises(PolicyError, match=r"pixel_cleaning\[0\]\.regions\[0\]: empty rectangle"):
        load_policy(write_policy({"deidentification": {"pixel_cleaning": [bad]}}))
    odd = dict(rule, match={"PatientName": "x"})
    with pytest.raises(PolicyError, match="PatientName"):
        load_policy(write_policy({"deidentification": {"pixel_cleaning": [odd]}}))


# ----------------------------------------------------------------------------- provenance


def test_to_provenance_has_no_secrets_or_absolute_paths(write_policy, tmp_path: Path) -> None:
    path = write_policy({"deidentification": {"preset": "gdpr_pseudonymised"}})
    prov = load_policy(path).to_provenance()
    import hashlib

    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["file"] == "p.yaml"
    assert prov["profile_edition"] == EDITION
    assert prov["deid_options"] == sorted(
        PRESETS["gdpr_pseudonymised"] | {"retain_longitudinal_modified_dates"}
    )
    assert prov["data_use"] == {"permission": "DUO:0000042", "modifiers": ["DUO:0000019"]}
    assert prov["consent"]["sheet"] == "../consent.tsv"
    text = json.dumps(prov)
    assert str(tmp_path) not in text
    assert "P001" not in text  # no subject ids from the consent sheet


def test_make_pseudonymizer_uses_policy_settings(write_policy) -> None:
    pol = load_policy(
        write_policy({"deidentification": {"pseudonym_prefix": "COH", "max_date_shift_days": 7}})
    )
    pz = pol.make_pseudonymizer(b"0123456789abcdef0123")
    assert pz.subject_id("P001").startswith("COH-")
    assert -7 <= pz.date_offset_days("P001") <= -1


def test_yaml_text_from_the_architecture_page(tmp_path: Path) -> None:
    (tmp_path / "consent.tsv").write_text(CONSENT_TSV, encoding="utf-8")
    sub = tmp_path / "policies"
    sub.mkdir()
    text = textwrap.dedent(
        """\
        policy_version: 1
        name: demo-cohort
        data_use: {permission: "DUO:0000042", modifiers: ["DUO:0000019"]}
        consent: {required: true, sheet: ../consent.tsv, subject_column: subject,
                  consent_column: consent_imaging, consent_values: ["yes"]}
        destinations: {allowed_classes: [internal, controlled_repository]}
        deidentification:
          preset: gdpr_pseudonymised          # optional; expands to options
          options: [retain_longitudinal_modified_dates]
          pseudonym_prefix: SUBJ
          max_date_shift_days: 3650
        """
    )
    (sub / "demo.yaml").write_text(text, encoding="utf-8")
    pol = load_policy(sub / "demo.yaml")
    assert pol.preset == "gdpr_pseudonymised"


# ----------------------------------------------------------------------------- every conflict


@pytest.mark.parametrize(
    ("preset", "option"),
    sorted((p, o) for p, forbidden in PRESET_FORBIDDEN.items() for o in forbidden),
)
def test_every_option_a_preset_forbids_is_rejected_by_name(write_policy, preset, option) -> None:
    path = write_policy({"deidentification": {"preset": preset, "options": [option]}})
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    msg = str(exc.value)
    assert str(path) in msg and "deidentification" in msg
    assert f"preset {preset} conflicts with option(s) {option}" in msg


def test_public_archive_names_every_conflicting_option(write_policy) -> None:
    options = sorted(PUBLIC_FORBIDDEN_OPTIONS - {"retain_longitudinal_full_dates"})
    path = write_policy(
        {
            "destinations": {"allowed_classes": ["public_archive"]},
            "deidentification": {"options": options},
        }
    )
    with pytest.raises(PolicyError, match=r"destinations\.allowed_classes") as exc:
        load_policy(path)
    assert f"option(s) {', '.join(options)}" in str(exc.value)


# ----------------------------------------------------------------------------- deid recipe


RECIPE = "FORMAT dicom\n%header\nREMOVE contains:Physician\nJITTER StudyDate 2\n"


def test_deid_recipe_is_loaded_and_recorded(write_policy, tmp_path: Path) -> None:
    (tmp_path / "policies" / "site.dicom").write_text(
        RECIPE + "%filter graylist\nLABEL Acme\n  contains Manufacturer ACME\n"
        "  coordinates 0,0,10,10\n",
        encoding="utf-8",
    )
    pol = load_policy(write_policy({"deidentification": {"deid_recipe": "site.dicom"}}))
    assert pol.recipe is not None and [a.action for a in pol.recipe.actions] == [
        "REMOVE",
        "JITTER",
    ]
    kwargs = pol.dicom_options()
    assert kwargs["recipe"] is pol.recipe
    assert kwargs["policy_options"] == pol.deid_options
    names = [r.name for r in kwargs["pixel_rules"]]
    assert "graylist:Acme:6" in names
    prov = pol.to_provenance()
    assert prov["deid_recipe"]["file"] == "site.dicom"
    assert prov["deid_recipe"]["sha256"] == pol.recipe.sha256
    assert prov["deid_recipe"]["header_actions"] == {"JITTER": 1, "REMOVE": 1}
    assert str(tmp_path) not in json.dumps(prov)


def test_deid_recipe_errors_name_policy_rule_and_line(write_policy, tmp_path: Path) -> None:
    (tmp_path / "policies" / "bad.dicom").write_text(
        "FORMAT dicom\n%header\nREPLACE PatientID var:entity_id\n", encoding="utf-8"
    )
    path = write_policy({"deidentification": {"deid_recipe": "bad.dicom"}})
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    msg = str(exc.value)
    assert str(path) in msg and "deidentification.deid_recipe: bad.dicom: line 3" in msg
    assert "var:" in msg
    path = write_policy({"deidentification": {"deid_recipe": "missing.dicom"}})
    with pytest.raises(PolicyError, match=r"deid_recipe: missing\.dicom: cannot read recipe"):
        load_policy(path)


def test_recipe_that_moves_dates_conflicts_with_full_dates(write_policy, tmp_path: Path) -> None:
    (tmp_path / "policies" / "site.dicom").write_text(RECIPE, encoding="utf-8")
    path = write_policy(
        {
            "deidentification": {
                "options": ["retain_longitudinal_full_dates"],
                "deid_recipe": "site.dicom",
            }
        }
    )
    with pytest.raises(
        PolicyError,
        match=r"JITTER \(recipe line 4\) conflicts with option retain_longitudinal_full_dates",
    ):
        load_policy(path)


def test_deid_filter_database_is_used_unless_turned_off(write_policy) -> None:
    pytest.importorskip("deid")
    on = load_policy(write_policy())
    assert on.deid_filters
    sources = {r.source for r in on.pixel_cleaning_rules()}
    assert any(s.startswith("deid ") for s in sources)
    assert on.to_provenance()["deid_filters"]["source"] == "deid/data/deid.dicom"
    off = load_policy(write_policy({"deidentification": {"deid_filters": False}}))
    assert off.pixel_cleaning_rules() == off.pixel_rules
    assert off.to_provenance()["deid_filters"] == {"source": "off"}


def test_subject_id_check_defaults_strict_and_is_validated(write_policy) -> None:
    assert load_policy(write_policy()).subject_id_check == "patient_id"
    pol = load_policy(write_policy({"subject_id_check": "other_patient_ids"}))
    assert pol.subject_id_check == "other_patient_ids"
    assert pol.to_provenance()["subject_id_check"] == "other_patient_ids"
    with pytest.raises(PolicyError, match="subject_id_check"):
        load_policy(write_policy({"subject_id_check": "name"}))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_consent_sheet_in_unicode_text_is_read_like_sample_sheets(tmp_path, encoding) -> None:
    """A consent sheet saved as "Unicode text" (UTF-16 with a byte-order mark) is read, not a
    raw UnicodeDecodeError."""
    from imagedepot.policy import _read_sheet

    sheet = tmp_path / "consent.tsv"
    sheet.write_text("subject\tconsent\nS1\tyes\nS2\tno\n", encoding=encoding)
    header, rows = _read_sheet(sheet, tmp_path / "policy.yaml")
    assert header == ["subject", "consent"]
    assert [r["consent"] for r in rows] == ["yes", "no"]


def test_consent_sheet_xlsx_numbers_read_as_typed(tmp_path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    from imagedepot.policy import _read_sheet

    book = openpyxl.Workbook()
    book.active.append(["subject", "consent"])
    book.active.append([12345, 1])
    book.save(tmp_path / "consent.xlsx")
    _, rows = _read_sheet(tmp_path / "consent.xlsx", tmp_path / "policy.yaml")
    assert rows == [{"subject": "12345", "consent": "1"}]
