"""``imagedepot stage bia`` / ``deposit bia`` through their argparse registration."""

# Fixtures are imported from tests/servers/bia_fixture.py (not a conftest), so pytest's fixture
# arguments shadow those imports by design.
# ruff: noqa: F811

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from imagedepot.cli.bia import register_deposit, register_stage
from imagedepot.deposit.bia import BiaValidationError, verify_bag
from imagedepot.errors import ConfigError
from tests.servers.bia_fixture import (  # noqa: F401 - fixtures
    API_LOGIN,
    API_PASSWORD,
    STUDY,
    DemoStage,
    biostudies_server,
    demo_microscopy_stage,
    ftp_server,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagedepot")
    sub = p.add_subparsers(dest="verb", required=True)
    register_stage(sub.add_parser("stage").add_subparsers(dest="c", required=True))
    register_deposit(sub.add_parser("deposit").add_subparsers(dest="c", required=True))
    return p


def run(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return int(args.func(args))


def write_config(demo: DemoStage, path: Path, **dest: object) -> Path:
    config = {
        "samples": str(demo.root / "demo" / "samples.tsv"),
        "inbox": str(demo.root / "demo" / "inbox"),
        "policies": {
            "demo-cohort": str(demo.root / "demo" / "policies" / "demo-cohort.yaml"),
            "open-microscopy": str(demo.root / "demo" / "policies" / "open-microscopy.yaml"),
        },
        "pseudonymisation": {"linkage_dir": str(demo.root / "linkage")},
        "destinations": {
            "local": {"class": "internal", "type": "folder"},
            "bia": {
                "class": "public_archive",
                "type": "bia",
                "ftp_url_env": "TEST_BIA_FTP_URL",
                "credentials_env": "TEST_BIA",
                "parallel_streams": 2,
                "retries": 2,
                **dest,
            },
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_stage_then_deposit_from_the_cli(
    demo_microscopy_stage: DemoStage,
    tmp_path: Path,
    ftp_server,
    biostudies_server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ftp = ftp_server()
    api = biostudies_server(ftp.extra["user_dir"])
    cfg = write_config(demo_microscopy_stage, tmp_path / "config.yaml", url=api.extra["url"])
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "results" / "bia" / "bia"
    rc = run(
        "stage", "bia", "bia", str(out),
        "--staged", str(demo_microscopy_stage.staged),
        "--manifest", str(demo_microscopy_stage.items_dir),
        "--study-metadata", str(study),
        "--config", str(cfg),
    )  # fmt: skip
    assert rc == 0 and verify_bag(out / "micro-cells") == []
    assert "1 package(s)" in capsys.readouterr().out

    monkeypatch.setenv("TEST_BIA_FTP_URL", ftp.extra["url"])
    monkeypatch.setenv("TEST_BIA_USER", API_LOGIN)
    monkeypatch.setenv("TEST_BIA_PASSWORD", API_PASSWORD)
    report = tmp_path / "report.json"
    db = tmp_path / "state.sqlite"
    argv = (
        "deposit",
        "bia",
        "bia",
        str(out),
        "--config",
        str(cfg),
        "--state-db",
        str(db),
        "--report",
        str(report),
    )
    assert run(*argv) == 0
    printed = capsys.readouterr().out
    assert "micro-cells: submitted S-BIAD1" in printed
    assert ftp.extra["url"] not in printed and "secret" not in printed
    assert json.loads(report.read_text())["datasets"][0]["accession"] == "S-BIAD1"
    assert run(*argv) == 0
    assert "micro-cells: up-to-date" in capsys.readouterr().out


def test_stage_errors_name_the_missing_field(
    demo_microscopy_stage: DemoStage, tmp_path: Path
) -> None:
    cfg = write_config(demo_microscopy_stage, tmp_path / "c.yaml")
    with pytest.raises(BiaValidationError, match="'License' is missing"):
        run(
            "stage", "bia", "bia", str(tmp_path / "out"),
            "--staged", str(demo_microscopy_stage.staged),
            "--manifest", str(demo_microscopy_stage.items_dir),
            "--config", str(cfg),
        )  # fmt: skip


def test_deposit_needs_the_secret_ftp_url(
    demo_microscopy_stage: DemoStage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_BIA_FTP_URL", raising=False)
    cfg = write_config(demo_microscopy_stage, tmp_path / "c.yaml", url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"\$TEST_BIA_FTP_URL"):
        run("deposit", "bia", "bia", str(tmp_path), "--config", str(cfg))
    with pytest.raises(ConfigError, match="not bia"):
        run("deposit", "bia", "local", str(tmp_path), "--config", str(cfg))


def test_download_verify_limit_from_the_config_refuses_larger_files(
    demo_microscopy_stage: DemoStage,
    tmp_path: Path,
    ftp_server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ftp = ftp_server()
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "results" / "bia" / "bia"
    cfg = write_config(demo_microscopy_stage, tmp_path / "c.yaml", download_verify_limit=100)
    run(
        "stage", "bia", "bia", str(out),
        "--staged", str(demo_microscopy_stage.staged),
        "--manifest", str(demo_microscopy_stage.items_dir),
        "--study-metadata", str(study),
        "--config", str(cfg),
    )  # fmt: skip
    monkeypatch.setenv("TEST_BIA_FTP_URL", ftp.extra["url"])
    capsys.readouterr()
    argv = ("deposit", "bia", "bia", str(out), "--config", str(cfg), "--dry-run")
    assert run(*argv) == 1
    printed = capsys.readouterr().out
    assert "micro-cells: failed" in printed and "raise download_verify_limit" in printed.lower()
    assert not any(ftp.extra["user_dir"].iterdir())
    # The option overrides the config: with a cap above every file, everything is verified.
    assert run(*argv, "--download-verify-limit", str(1 << 30)) == 0
    assert "micro-cells: verified" in capsys.readouterr().out
