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
    load_config,
    private_path_problem,
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
