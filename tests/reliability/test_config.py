"""Bad configurations and policies are refused at once, with a message that says what to fix.

End to end through the command line (``imagedepot scan --config``, the first step of the
workflow, and ``imagedepot deid item``): each case must stop before any output is written, in
seconds. The YAML bombs run in a child process with a memory limit, so that a regression fails
the test instead of exhausting the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagedepot.cli import main

BOMB = "\n".join(
    ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
)

POLICY: dict[str, Any] = {
    "policy_version": 1,
    "name": "p",
    "data_use": {"permission": "DUO:0000004", "modifiers": ["DUO:0000019"]},
    "consent": {"required": False},
    "destinations": {"allowed_classes": ["internal"]},
    "deidentification": {"options": ["retain_device_identity"]},
}

CONFIG: dict[str, Any] = {
    "samples": "samples.tsv",
    "inbox": "inbox",
    "policies": {"p": "policies/p.yaml"},
    "pseudonymisation": {"linkage_dir": "secure/linkage"},
    "destinations": {"local": {"class": "internal", "type": "folder"}},
}

SECRET = "Sup3r-s3cret"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a one-row sample sheet, one input, a good policy and config."""
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.tif").write_bytes(b"not really a TIFF")
    (tmp_path / "samples.tsv").write_text(
        "dataset_id\tsubject\tmodality_class\tsource\tpolicy\tdestinations\n"
        "d1\tS1\tmicroscopy\tinbox/a.tif\tp\tlocal\n",
        encoding="utf-8",
    )
    (tmp_path / "policies").mkdir()
    write_policy(tmp_path, POLICY)
    write_config(tmp_path, CONFIG)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_policy(root: Path, data: dict[str, Any], extra: str = "") -> Path:
    path = root / "policies" / "p.yaml"
    path.write_text(yaml.safe_dump(data) + extra, encoding="utf-8")
    return path


def write_config(root: Path, data: dict[str, Any], extra: str = "") -> Path:
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(data) + extra, encoding="utf-8")
    return path


def scan(caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    caplog.clear()
    start = time.monotonic()
    rc = main(["scan", "--config", "c.yaml", "--out", "results/ingest/manifest.json"])
    assert time.monotonic() - start < 10
    return rc, caplog.text


def scan_in_child(root: Path) -> subprocess.CompletedProcess[str]:
    """``imagedepot scan`` in a child process limited to 1 GiB of address space and 60 s."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "imagedepot", "scan", "--config", "c.yaml", "--out", "m.json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        env=os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )


def test_the_good_setup_scans(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert scan(caplog)[0] == 0
    assert (workdir / "results" / "ingest" / "manifest.json").is_file()


def test_a_yaml_bomb_in_a_policy_is_refused_at_once(workdir: Path) -> None:
    """A 400-byte policy of nested aliases once took 24 GB (the schema error message expanded it)."""
    policy = write_policy(workdir, POLICY, extra=BOMB + "\ndescription: *a8\n")
    assert policy.stat().st_size < 1000
    start = time.monotonic()
    proc = scan_in_child(workdir)
    assert proc.returncode == 1, proc.stderr
    assert "policies/p.yaml: line " in proc.stderr
    assert "YAML anchors and aliases" in proc.stderr
    assert time.monotonic() - start < 30
    assert not (workdir / "m.json").exists()


def test_a_yaml_bomb_in_the_config_is_refused_at_once(workdir: Path) -> None:
    write_config(workdir, CONFIG, extra=BOMB + "\nscan: {batch_size: *a8}\n")
    proc = scan_in_child(workdir)
    assert proc.returncode == 1, proc.stderr
    assert "c.yaml: line " in proc.stderr
    assert "YAML anchors and aliases" in proc.stderr


def test_an_oversized_policy_is_refused(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_policy(workdir, POLICY, extra="#" * (5 << 20))
    rc, text = scan(caplog)
    assert rc == 1
    assert "policies/p.yaml: policy file is" in text
    assert "bytes, more than the 4,194,304 bytes" in text


@pytest.mark.parametrize(
    ("data_use", "message"),
    [
        (
            {"permission": "DUO:0000004", "modifiers": ["DUO:0000099"]},
            "data_use.modifiers[0]: 'DUO:0000099' is not a DUO modifier term of DUO release",
        ),
        (
            {"permission": "DUO:0000999"},
            "data_use.permission: 'DUO:0000999' is not a DUO permission term",
        ),
        (
            {"permission": "DUO:0000019"},
            "data_use.permission: DUO:0000019 (PUB, publication required) is a DUO modifier, "
            "not a permission",
        ),
        (
            {"permission": "DUO:0000042", "modifiers": ["DUO:0000006"]},
            "data_use.modifiers[0]: DUO:0000006 (HMB, health or medical or biomedical research) "
            "is a DUO permission, not a modifier",
        ),
    ],
)
def test_unknown_or_misplaced_duo_codes_are_refused(
    workdir: Path, caplog: pytest.LogCaptureFixture, data_use: dict[str, Any], message: str
) -> None:
    write_policy(workdir, POLICY | {"data_use": data_use})
    rc, text = scan(caplog)
    assert rc == 1
    assert f"policies/p.yaml: {message}" in text
    assert not (workdir / "results").exists()


@pytest.mark.parametrize(
    "linkage", ["results/stage", "results/stage/local/linkage", "results/secure/linkage"]
)
def test_a_linkage_dir_inside_results_is_refused(
    workdir: Path, caplog: pytest.LogCaptureFixture, linkage: str
) -> None:
    write_config(workdir, CONFIG | {"pseudonymisation": {"linkage_dir": linkage}})
    rc, text = scan(caplog)
    assert rc == 1
    assert f"pseudonymisation.linkage_dir: {linkage!r} lies inside" in text
    assert not (workdir / "results").exists()


def test_a_key_file_inside_results_is_refused(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ps = {"linkage_dir": "secure/linkage", "key_file": "results/stage/local/key"}
    write_config(workdir, CONFIG | {"pseudonymisation": ps})
    rc, text = scan(caplog)
    assert rc == 1
    assert (
        "pseudonymisation.key_file: 'results/stage/local/key' lies inside the staging folder"
        in text
    )


def test_deid_item_refuses_a_linkage_dir_inside_results(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["deid", "item", "item.json", "conv", "out", "--policy", "policies/p.yaml"]
    rc = main([*argv, "--linkage-dir", "results/stage/local/linkage"])
    assert rc == 1
    assert (
        "--linkage-dir: 'results/stage/local/linkage' lies inside the staging folder" in caplog.text
    )


def test_credentials_in_a_url_are_refused_and_never_echoed(
    workdir: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = {
        "class": "internal",
        "type": "bia",
        "url": "https://biostudies.example.org/api",
        "ftp_url": f"ftp://bsftp:{SECRET}@ftp.example.org/secret-dir",
    }
    write_config(workdir, CONFIG | {"destinations": {"local": dest}})
    rc, text = scan(caplog)
    out = capsys.readouterr()
    assert rc == 1
    assert "destinations.local.ftp_url: the URL holds credentials" in text
    assert "$IMAGEDEPOT_BIA_FTP_URL (ftp_url_env)" in text
    assert SECRET not in text + out.out + out.err
