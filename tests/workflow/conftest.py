"""Workflow fixtures: a working directory holding the demo, and a snakemake runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The test servers' fixtures, for the workflow's deposit-target tests.
from tests.servers.bia_fixture import biostudies_server, ftp_server  # noqa: F401
from tests.servers.xnat_fixture import xnat_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [
    ROOT / "config" / "config.yaml",
    *sorted((ROOT / "tests/workflow/configs").glob("*.yaml")),
]


def snakemake_cmd() -> list[str]:
    exe = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or shutil.which(
        "snakemake"
    )
    if exe is None:
        pytest.skip("snakemake is not installed (pip install -e '.[workflow]')")
    return [exe]


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with the demo made by `imagedepot demo` (shared, read-only use)."""
    from imagedepot.demo import make_demo

    work = tmp_path_factory.mktemp("wf")
    make_demo(work / "demo")
    return work


@pytest.fixture(scope="session")
def run_snakemake() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(workdir: Path, *args: str, config: Path = CONFIGS[0], check: bool = True):
        env = os.environ | {
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
        }
        env.pop("IMAGEDEPOT_PSEUDONYM_KEY", None)
        cmd = [
            *snakemake_cmd(),
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(config),
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run of the demo workflow, shared by the workflow and report tests (read-only
    use: a test that changes the run's outputs makes its own)."""
    from imagedepot.demo import make_demo

    work = tmp_path_factory.mktemp("run")
    make_demo(work / "demo")
    # A corrupt file dropped into the inbox: must end in the quarantine list, the rest completes.
    (work / "demo" / "inbox" / "DOE_JOHN_19650312" / "IM_CORRUPT").write_bytes(b"\x00" * 50)
    cmd = [
        *snakemake_cmd(),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(CONFIGS[0]),
        "--cores",
        "2",
    ]
    env = os.environ | {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    env.pop("IMAGEDEPOT_PSEUDONYM_KEY", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (work / "snakemake.out").write_text(proc.stdout + proc.stderr)
    return work
