"""``imagedepot stage xnat`` and ``imagedepot deposit xnat``, through a throwaway parser built with
``register_stage`` / ``register_deposit`` (the lead wires them into the real verbs)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from imagedepot.cli.xnat import register_deposit, register_stage
from imagedepot.deposit.xnat import XnatDepositError
from imagedepot.errors import ConfigError, OutputExistsError
from imagedepot.io import read_json
from tests.servers import xnat_fixture
from tests.servers.xnat_fixture import XnatTarget

xnat_server = xnat_fixture.xnat_server
xnat_staged_demo = xnat_fixture.xnat_staged_demo


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="imagedepot")
    verbs = parser.add_subparsers(dest="verb", required=True)
    register_stage(verbs.add_parser("stage").add_subparsers(dest="stage_command", required=True))
    register_deposit(
        verbs.add_parser("deposit").add_subparsers(dest="deposit_command", required=True)
    )
    args = parser.parse_args(argv)
    return int(args.func(args))


def config_json(**destination: object) -> str:
    return json.dumps(
        {
            "samples": "samples.tsv",
            "inbox": "inbox",
            "policies": {"demo-cohort": "policy.yaml"},
            "pseudonymisation": {"linkage_dir": "secure"},
            "destinations": {
                "xnat": {"class": "controlled_repository", "type": "xnat", **destination},
                "local": {"class": "internal", "type": "folder"},
            },
        }
    )


def test_stage_xnat_writes_the_plan_and_refuses_to_overwrite(
    xnat_staged_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "xnat.xnat-plan.json"
    conf = config_json(url="https://xnat.invalid", project="COHORT1")
    assert (
        run(
            [
                "stage",
                "xnat",
                str(xnat_staged_demo),
                str(out),
                "--destination",
                "xnat",
                "--config-json",
                conf,
            ]
        )
        == 0
    )
    plan = read_json(out)
    assert plan["project"] == "COHORT1"
    assert "4 session(s)" in capsys.readouterr().out
    with pytest.raises(OutputExistsError):
        run(["stage", "xnat", str(xnat_staged_demo), str(out)])
    assert (
        run(["stage", "xnat", str(xnat_staged_demo), str(out), "--force", "--project", "P2"]) == 0
    )
    assert read_json(out)["project"] == "P2"
    with pytest.raises(ConfigError, match="not xnat"):
        run(
            [
                "stage",
                "xnat",
                str(xnat_staged_demo),
                str(out),
                "--force",
                "--destination",
                "local",
                "--config-json",
                conf,
            ]
        )


def test_deposit_xnat_uploads_verifies_and_reruns_idempotently(
    xnat_server: XnatTarget,
    xnat_staged_demo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in xnat_server.env("XNAT_DEPOSIT").items():
        monkeypatch.setenv(key, value)
    plan = tmp_path / "plan.json"
    run(["stage", "xnat", str(xnat_staged_demo), str(plan)])
    receipt = tmp_path / "deposit" / "xnat.receipt.json"
    conf = config_json(
        url=xnat_server.url,
        project=xnat_server.project,
        credentials_env="XNAT_DEPOSIT",
        retries=4,
        parallel_streams=2,
    )
    argv = [
        "deposit",
        "xnat",
        str(xnat_staged_demo),
        "--plan",
        str(plan),
        "--destination",
        "xnat",
        "--config-json",
        conf,
        "--receipt",
        str(receipt),
    ]

    # Dry run first: nothing written (on a fresh test server, everything would be sent).
    assert run([*argv[:-2], "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(dry run)" in out
    if not xnat_server.real:
        assert "would create 2 subject(s), 4 session(s)" in out
        assert xnat_server.stats()["writes"] == []

    assert run(argv) == 0
    out = capsys.readouterr().out
    assert ": complete:" in out and str(receipt) in out
    assert read_json(receipt)["status"] == "complete"
    assert xnat_server.password not in receipt.read_text()

    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "complete: 0 file(s) uploaded (0 bytes), 0 DICOM import(s)" in out


def test_deposit_xnat_needs_url_project_and_credentials(
    xnat_staged_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    staged = str(xnat_staged_demo)
    with pytest.raises(ConfigError, match="--url"):
        run(["deposit", "xnat", staged, "--project", "P"])
    with pytest.raises(ConfigError, match="--project"):
        run(["deposit", "xnat", staged, "--url", "http://127.0.0.1:9"])
    with pytest.raises(ConfigError, match="NOCRED_USER"):
        run(
            [
                "deposit",
                "xnat",
                staged,
                "--url",
                "http://127.0.0.1:9",
                "--project",
                "P",
                "--credentials-env",
                "NOCRED",
            ]
        )
    monkeypatch.setenv("NOCRED_USER", "u")
    monkeypatch.setenv("NOCRED_PASSWORD", "topsecret")
    with pytest.raises(XnatDepositError, match=re.escape("log in to http://127.0.0.1:9")) as err:
        run(
            [
                "deposit",
                "xnat",
                staged,
                "--url",
                "http://127.0.0.1:9",
                "--project",
                "P",
                "--credentials-env",
                "NOCRED",
                "--retries",
                "1",
                "--timeout",
                "2",
            ]
        )
    assert "topsecret" not in str(err.value)
