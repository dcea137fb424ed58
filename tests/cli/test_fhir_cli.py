"""``imagedepot fhir bundle`` and ``imagedepot fhir push``: files, exit codes, messages."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import imagedepot.cli
from imagedepot.cli import main
from imagedepot.demo import SUBJECT_A
from tests.servers.fhir_fixture import (
    REAL_URL,
    DemoResults,
    build_demo_results,
    fhir_base_url,
    running_fhir_server,
)


@pytest.fixture(autouse=True)
def only_fhir_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    # Build the parser with this verb only (test_help.py checks that every verb registers).
    monkeypatch.setattr(imagedepot.cli, "VERBS", ("fhir",))
    if not REAL_URL:  # a real server (FHIR_TEST_URL) may need the token of the environment
        monkeypatch.delenv("IMAGEDEPOT_FHIR_TOKEN", raising=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResults:
    return build_demo_results(tmp_path_factory.mktemp("fhir-cli"), datasets=("dcm-subj01",))


def _bundle_args(demo: DemoResults, out: Path, *extra: str, config: str | None = None) -> list[str]:
    return [
        "fhir",
        "bundle",
        "dcm-subj01",
        "--manifest",
        str(demo.items_dir),
        "--deid-root",
        str(demo.deid_root),
        "--leak-root",
        str(demo.leak_root),
        "--convert-root",
        str(demo.convert_root),
        "--out",
        str(out),
        "--config-json",
        config or demo.config_json(),
        *extra,
    ]


@pytest.fixture(scope="module")
def bundle(demo: DemoResults, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-bundle") / "fhir" / "bundle.json"
    args = _bundle_args(demo, out, "--clinical", str(demo.demo.clinical))
    args += ["--key-file", str(demo.demo.key_file)]
    assert main(args) == 0
    return out


def test_bundle_writes_bundle_and_status(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = json.loads(bundle.with_name("bundle.status.json").read_text())
    assert status["status"] == "clean"
    assert status["clinical"]["linked"] == 2
    assert status["resources"]["Encounter"] == 2
    data = json.loads(bundle.read_text())
    assert data["resourceType"] == "Bundle" and data["type"] == "transaction"
    assert SUBJECT_A.patient_id not in bundle.read_text()


def test_bundle_reads_clinical_from_the_config_and_refuses_to_overwrite(
    demo: DemoResults,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "bundle.json"
    config = demo.config_json(clinical=str(demo.demo.clinical))
    assert main(_bundle_args(demo, out, config=config)) == 0
    line = capsys.readouterr().out
    assert "fhir bundle dcm-subj01: clean" in line and "2 record(s) linked, 0 rejected" in line
    with caplog.at_level(logging.ERROR):
        assert main(_bundle_args(demo, out, config=config)) == 1
    assert "use --force" in caplog.text
    assert main(_bundle_args(demo, out, "--force", config=config)) == 0


def test_bundle_with_a_wrong_key_fails_without_showing_it(
    demo: DemoResults,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTHER_KEY", "not-the-key-used-for-the-images")
    args = _bundle_args(
        demo, tmp_path / "b.json", "--clinical", str(demo.demo.clinical), "--key-env", "OTHER_KEY"
    )
    with caplog.at_level(logging.ERROR):
        assert main(args) == 1
    assert "key differs" in caplog.text
    assert "not-the-key" not in caplog.text
    assert not (tmp_path / "b.json").exists()


def test_bundle_with_a_missing_clinical_file_fails(
    demo: DemoResults, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = _bundle_args(demo, tmp_path / "b.json", "--clinical", str(tmp_path / "none.csv"))
    with caplog.at_level(logging.ERROR):
        assert main([*args, "--key-file", str(demo.demo.key_file)]) == 1
    assert "clinical records file not found" in caplog.text


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    with fhir_base_url("R5") as url_version:
        yield url_version


def test_push_twice_creates_nothing_new(
    bundle: Path, server: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, version = server
    if version != "R5":
        pytest.skip("the CLI bundle is R5")
    report = tmp_path / "push.json"
    assert main(["fhir", "push", str(bundle), "--url", url, "--report", str(report)]) == 0
    assert main(["fhir", "push", str(bundle), "--url", url]) == 0
    n = len(json.loads(bundle.read_text())["entry"])
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(f"(0 created, {n} already there or updated; 1 attempt(s))"), out[-1]
    saved = json.loads(report.read_text())
    assert saved["bundle"] == "bundle.json" and len(saved["entries"]) == n


@pytest.mark.skipif(bool(REAL_URL), reason="needs the local server (FHIR_TEST_URL set)")
def test_push_token_comes_from_the_environment(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with running_fhir_server("--token", "t0ken-value") as url:
        with caplog.at_level(logging.ERROR):
            assert main(["fhir", "push", str(bundle), "--url", url]) == 1
        assert "HTTP 401" in caplog.text and "error login" in caplog.text
        monkeypatch.setenv("IMAGEDEPOT_FHIR_TOKEN", "t0ken-value")
        assert main(["fhir", "push", str(bundle), "--url", url]) == 0
    assert "t0ken" not in caplog.text


@pytest.mark.skipif(bool(REAL_URL), reason="needs the local server (FHIR_TEST_URL set)")
def test_push_reports_the_operation_outcome(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Observation", "status": "final"},
                        "request": {"method": "POST", "url": "Observation"},
                    }
                ],
            }
        )
    )
    with running_fhir_server() as url, caplog.at_level(logging.ERROR):
        assert main(["fhir", "push", str(bad), "--url", url, "--retries", "0"]) == 1
    assert "refused the transaction (HTTP 400)" in caplog.text
    assert "Bundle.entry[0]" in caplog.text and "code" in caplog.text


def test_push_skips_a_bundle_that_was_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "bundle.status.json").write_text(json.dumps({"status": "leak"}))
    report = tmp_path / "push.json"
    args = ["fhir", "push", str(tmp_path / "bundle.json"), "--url", "http://127.0.0.1:9/"]
    assert main([*args, "--report", str(report)]) == 0
    assert "nothing to push (bundle status: leak)" in capsys.readouterr().out
    assert json.loads(report.read_text())["status"] == "skipped"
    (tmp_path / "bundle.status.json").unlink()
    with caplog.at_level(logging.ERROR):
        assert main(args) == 1  # no bundle and no status: an error
    assert "cannot read the bundle" in caplog.text


def test_help_lists_bundle_and_push(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fhir", "--help"])
    text = capsys.readouterr().out
    assert "bundle" in text and "push" in text


def test_bundle_out_dir_is_private_and_clears_stale_temporaries(
    demo: DemoResults, tmp_path: Path
) -> None:
    import os
    import stat

    from tests.unit.test_io import _dead_pid, plant

    out = tmp_path / "results" / "fhir"
    stale = plant(out, _dead_pid(), is_dir=True)  # left by a killed `fhir bundle --out-dir`
    args = _bundle_args(demo, tmp_path / "unused.json", "--clinical", str(demo.demo.clinical))
    i = args.index("--out")
    args[i : i + 2] = ["--out-dir", str(out)]
    args += ["--key-file", str(demo.demo.key_file)]
    old = os.umask(0o022)
    try:
        assert main(args) == 0
        assert os.umask(0o022) == 0o022  # main() leaves the caller's umask as it found it
    finally:
        os.umask(old)
    assert not stale.exists()
    assert [p.name for p in out.parent.iterdir()] == ["fhir"]
    files = [p for p in out.rglob("*")]
    assert files
    # Pseudonymised clinical data before the leak gate: the trusted zone, owner only.
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
