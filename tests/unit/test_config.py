"""Workflow configuration: the schema, and what no schema says (secrets, trusted-zone paths, aliases)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagedepot.config import (
    check_workflow_config,
    load_config,
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
