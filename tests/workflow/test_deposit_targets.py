"""The network targets of the workflow, end to end, against the protocol-faithful test servers:
the default run stages XNAT plans and BioImage Archive packages; `deposit_xnat_all` and
`deposit_bia_all` upload them; a second deposit run finds nothing to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.servers.bia_fixture import API_LOGIN, API_PASSWORD
from tests.workflow.conftest import CONFIGS, ROOT, route_to_repositories, snakemake_cmd

pytestmark = pytest.mark.workflow


def _snakemake(work: Path, config: Path, *args: str, env: dict[str, str]) -> str:
    cmd = [*snakemake_cmd(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(config), "--cores", "2", *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout + proc.stderr


def test_stage_and_deposit_targets(
    tmp_path: Path, xnat_server, ftp_server, biostudies_server
) -> None:
    from imagedepot.demo import make_demo

    if xnat_server.real:
        pytest.skip("this workflow test drives the local test servers only")
    work = tmp_path / "work"
    make_demo(work / "demo")
    route_to_repositories(work / "demo" / "samples.tsv", work / "demo" / "samples-deposit.tsv")
    ftp = ftp_server()
    api = biostudies_server(ftp.extra["user_dir"])
    config = yaml.safe_load(CONFIGS[0].read_text())
    config["samples"] = "demo/samples-deposit.tsv"
    config["destinations"]["xnat"].update(url=xnat_server.url, project=xnat_server.project)
    config["destinations"]["bia"]["url"] = api.extra["url"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = os.environ | {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        "XNAT_DEMO_USER": xnat_server.user,
        "XNAT_DEMO_PASSWORD": xnat_server.password,
        "IMAGEDEPOT_BIA_FTP_URL": ftp.extra["url"],
        "BIA_DEMO_USER": API_LOGIN,
        "BIA_DEMO_PASSWORD": API_PASSWORD,
    }
    env.pop("IMAGEDEPOT_PSEUDONYM_KEY", None)

    # Default run: local staging only, no network.
    _snakemake(work, cfg, env=env)
    plan = json.loads((work / "results" / "stage" / "xnat.xnat-plan.json").read_text())
    assert plan["counts"]["subjects"] == 2
    packages = work / "results" / "bia" / "bia"
    assert (packages / "micro-cells" / "bagit.txt").is_file()
    assert not (work / "results" / "deposit").exists()

    # Network targets.
    _snakemake(work, cfg, "deposit_xnat_all", env=env)
    receipt = json.loads((work / "results" / "deposit" / "xnat.xnat-receipt.json").read_text())
    assert "admin" not in json.dumps(receipt)  # no credentials in receipts
    state = xnat_server.state()
    assert len(state["projects"][xnat_server.project]["subjects"]) == 2

    _snakemake(work, cfg, "deposit_bia_all", env=env)
    report = json.loads((work / "results" / "deposit" / "bia.bia.json").read_text())
    assert "S-BIAD" in json.dumps(report)
    uploaded = [p for p in ftp.extra["user_dir"].rglob("*") if p.is_file()]
    assert uploaded
    assert ftp.extra["url"].split("/")[-1] not in json.dumps(
        report
    )  # the secret directory stays secret

    # Second run of the targets: Snakemake finds them up to date.
    out = _snakemake(work, cfg, "deposit_xnat_all", "deposit_bia_all", "-n", env=env)
    assert "Nothing to be done" in out
