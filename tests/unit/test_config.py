"""Workflow configuration: the schema, and what no schema says (secrets, trusted-zone paths, aliases)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagedepot.config import (
    check_workflow_config,
    config_view,
    load_config,
    private_path_problem,
    secret_problems,
    validate_config,
)
from imagedepot.errors import ConfigError
from tests.unit.test_safeload import yaml_bomb

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "samples": "demo/samples.tsv",
    "inbox": "demo/inbox",
    "policies": {"p": "demo/policies/p.yaml"},
    "pseudonymisation": {"linkage_dir": "secure/linkage"},
    "destinations": {
        "local": {"class": "internal", "type": "folder"},
        "xnat": {"class": "controlled_repository", "type": "xnat", "credentials_env": "XNAT_X"},
        "bia": {"class": "public_archive", "type": "bia", "ftp_url_env": "MY_FTP_URL"},
    },
}


def config(**sections: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    for key, value in sections.items():
        out[key] = value
    return out


def test_the_shipped_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert load_config(ROOT / "config" / "config.yaml")["inbox"] == "demo/inbox"


# ----------------------------------------------------------------------------- linkage and key


@pytest.mark.parametrize(
    ("key", "value", "where"),
    [
        ("linkage_dir", "results/stage", "results/stage/, where the destinations are staged"),
        (
            "linkage_dir",
            "results/stage/local/linkage",
            "the staging folder of destination 'local' (results/stage/local/)",
        ),
        (
            "linkage_dir",
            "./secure/../results/bia/bia",
            "the staging folder of destination 'bia' (results/bia/bia/)",
        ),
        ("linkage_dir", "results", "results/, the workflow's outputs"),
        ("linkage_dir", "results/secure", "results/, the workflow's outputs"),
        ("key_file", "results/pseudonym.key", "results/, the workflow's outputs"),
    ],
)
def test_linkage_and_key_inside_results_are_refused_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    ps = {"linkage_dir": "secure/linkage", key: value}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(pseudonymisation=ps)), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert f"pseudonymisation.{key}: {value!r} lies inside {where}" in msg
    assert "outside results/" in msg


def test_an_absolute_path_or_a_link_into_results_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "results" / "stage").mkdir(parents=True)
    (tmp_path / "secure").symlink_to(tmp_path / "results" / "stage")
    assert private_path_problem("secure/linkage", "k", workdir=tmp_path) is not None
    absolute = str(tmp_path / "results" / "x")
    problem = private_path_problem(absolute, "k", workdir=tmp_path)
    assert problem is not None and problem.startswith(f"k: {absolute!r} lies inside results/")


def test_linkage_and_key_outside_results_are_fine(tmp_path: Path) -> None:
    ps = {"linkage_dir": "secure/linkage", "key_file": "/run/secrets/key"}
    validate_config(config(pseudonymisation=ps), workdir=tmp_path)
    ps = {"linkage_dir": "results-secure/linkage"}  # a sibling whose name starts alike
    validate_config(config(pseudonymisation=ps), workdir=tmp_path)


# ----------------------------------------------------------------------------- secrets

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("patch", "key", "hint"),
    [
        (
            {"destinations": {"bia": {"ftp_url": f"ftp://bsftp:{SECRET}@ftp.example.org/dir"}}},
            "destinations.bia.ftp_url",
            "move the whole URL to the environment variable $MY_FTP_URL (ftp_url_env)",
        ),
        (
            {"destinations": {"xnat": {"url": f"https://ada:{SECRET}@xnat.example.org"}}},
            "destinations.xnat.url",
            "$XNAT_X_USER / $XNAT_X_PASSWORD (credentials_env) or in ~/.netrc",
        ),
        (
            {"destinations": {"bia": {"url": f"https://{SECRET}@biostudies.example.org/api"}}},
            "destinations.bia.url",
            "$<credentials_env>_USER / $<credentials_env>_PASSWORD",
        ),
        (
            {"fhir": {"server_url": f"https://ada:{SECRET}@fhir.example.org/fhir"}},
            "fhir.server_url",
            "fhir.token_env",
        ),
        (
            {"fhir": {"identifier_system": f"http://ada:{SECRET}@example.org/ids"}},
            "fhir.identifier_system",
            "in the environment or in ~/.netrc",
        ),
    ],
)
def test_urls_with_credentials_are_refused_without_echoing_them(
    patch: dict[str, Any], key: str, hint: str
) -> None:
    cfg = config()
    for section, value in patch.items():
        if section == "destinations":
            for name, fields in value.items():
                cfg["destinations"][name].update(fields)
        else:
            cfg[section] = value
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    msg = str(exc.value)
    assert f"config: {key}: the URL holds credentials" in msg
    assert hint in msg
    assert SECRET not in msg
    assert "ada" not in msg


@pytest.mark.parametrize(
    ("cfg", "key", "text"),
    [
        (
            config(pseudonymisation={"linkage_dir": "s", "key": SECRET}),
            "pseudonymisation.key",
            "secrets do not go in the configuration",
        ),
        (
            config(fhir={"token": SECRET}),
            "fhir.token",
            "secrets do not go in the configuration",
        ),
        (
            config(schedule={"notify": {"smtp_password": SECRET}}),
            "schedule.notify.smtp_password",
            "secrets do not go in the configuration",
        ),
        (
            config(fhir={"token_env": f"Bearer {SECRET}"}),
            "fhir.token_env",
            "give the name of an environment variable",
        ),
        (
            config(pseudonymisation={"linkage_dir": "s", "key_env": f"{SECRET}!"}),
            "pseudonymisation.key_env",
            "give the name of an environment variable",
        ),
        (
            config(schedule={"notify": {"smtp_host": f"ada:{SECRET}@smtp.example.org"}}),
            "schedule.notify.smtp_host",
            "give the host name only",
        ),
    ],
)
def test_secret_looking_keys_and_values_are_refused_without_echoing_them(
    cfg: dict[str, Any], key: str, text: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    msg = str(exc.value)
    assert f"config: {key}: {text}" in msg
    assert SECRET not in msg


def test_names_chosen_by_the_user_and_plain_values_are_not_secrets() -> None:
    cfg = config()
    cfg["destinations"]["token-archive"] = {"class": "internal", "type": "folder"}
    cfg["destinations"]["bia"]["study"] = {
        "authors": [{"name": "Ada", "email": "ada@example.org"}],
        "keywords": ["a@b"],
    }
    cfg["destinations"]["xnat"]["url"] = "https://xnat.example.org/path@x?q=a@b"
    cfg["schedule"] = {"notify": {"mail_from": "ada@example.org", "credentials_env": "SMTP"}}
    assert secret_problems(cfg) == [
        "destinations.xnat.url: the URL holds credentials (a user name or password before '@'), "
        "which would be printed and stored with every job; remove them from the URL and give "
        "them in the environment as $XNAT_X_USER / $XNAT_X_PASSWORD (credentials_env) or in "
        "~/.netrc for the host"
    ]  # a path with '@': a false alarm on purpose (an unencoded '/' in a password looks alike)
    cfg["destinations"]["xnat"]["url"] = "https://xnat.example.org"
    assert secret_problems(cfg) == []
    validate_config(cfg)


# ----------------------------------------------------------------------------- aliases


def test_a_yaml_bomb_config_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump(BASE) + yaml_bomb(), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: line \d+: YAML anchors and aliases"):
        load_config(path)


def test_the_workflow_check_rereads_snakemakes_config_files(tmp_path: Path) -> None:
    """common.smk: Snakemake loaded the files with aliases allowed; the package refuses them."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE) + yaml_bomb(), encoding="utf-8")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))  # as Snakemake's loader does
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+: YAML anchors"):
        check_workflow_config(loaded, [path])
    # --config overrides are not files: the shared nodes they would leave are refused as well.
    with pytest.raises(ConfigError, match="is the same value as"):
        check_workflow_config(loaded, [])
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    check_workflow_config(yaml.safe_load(good.read_text(encoding="utf-8")), [good])


def test_validate_config_checks_paths_against_the_working_directory(tmp_path: Path) -> None:
    cfg = config(pseudonymisation={"linkage_dir": str(Path(os.sep, "x", "results", "l"))})
    validate_config(cfg, workdir=tmp_path)  # another folder's results/ is not this run's


def test_a_config_view_keeps_the_required_sections_and_the_ones_named(tmp_path: Path) -> None:
    """What the workflow writes to results/config/<view>.json and passes with --config."""
    full = config(fhir={"version": "R4B"}, scan={"batch_size": 2})
    text = config_view(full, ["fhir"])
    data = yaml.safe_load(text)
    assert set(data) == set(BASE) | {"fhir"}
    # Deterministic: the same config, in any key order, gives the same text (no needless reruns).
    assert config_view(dict(reversed(list(full.items()))), ["fhir"]) == text
    # Another section's change leaves the view unchanged.
    assert config_view(config(fhir={"version": "R4B"}, scan={"batch_size": 9}), ["fhir"]) == text
    assert set(yaml.safe_load(config_view(full))) == set(BASE)
    # The file is a config the CLI reads and validates like any other.
    path = tmp_path / "fhir.json"
    path.write_text(text)
    assert load_config(path) == data
