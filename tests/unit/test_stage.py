from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagedepot.errors import PolicyError
from imagedepot.io import write_json
from imagedepot.provenance import Provenance
from imagedepot.stage import StageInputs, stage_destination, summarize_run, verify_stage


class Pol:
    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed

    def check_destination(self, name: str, cls: str) -> None:
        if cls not in self.allowed:
            raise PolicyError(f"class {cls} not allowed")


def _item(iid: str, status: str = "pending", reason: str | None = None) -> dict:
    return {
        "id": iid,
        "dataset": "ds",
        "kind": "nifti",
        "status": status,
        "reason": reason,
        "policy": "pol",
        "destinations": ["local"],
        "files": [{"path": f"/in/{iid}"}],
    }


@pytest.fixture
def results(tmp_path: Path) -> StageInputs:
    items = [
        _item("ds-n001"),
        _item("ds-n002"),
        _item("ds-n003"),
        _item("ds-x001", "excluded", "no consent"),
    ]
    manifest = {
        "items": items,
        "quarantine": [{"path": "/in/bad", "reason": "truncated"}],
        "counts": {"files": 5},
    }
    write_json(tmp_path / "manifest.json", manifest)
    for iid, verdict in (("ds-n001", "clean"), ("ds-n002", "leak"), ("ds-n003", "clean")):
        d = tmp_path / "deid" / "batch-0000" / iid
        d.mkdir(parents=True)
        (d / "data.nii.gz").write_bytes(b"x" * 10)
        (d / "actions.jsonl").write_text("{}\n")
        prov = Provenance(step="deidentify", item=iid)
        prov.add_inputs([])
        prov.inputs.append({"path": "/inbox/DOE_JOHN/a", "size": 1, "sha256": "0" * 64})
        prov.write(d / "provenance.json")
        write_json(
            tmp_path / "leak" / "batch-0000" / f"{iid}.json",
            {"status": verdict, "reason": None if verdict == "clean" else "1 hit"},
        )
    (tmp_path / "fhir").mkdir()
    return StageInputs(
        tmp_path / "manifest.json", tmp_path / "deid", tmp_path / "leak", tmp_path / "fhir"
    )


def test_stage_copies_only_clean_items_and_no_trusted_records(
    tmp_path: Path, results: StageInputs
) -> None:
    out = tmp_path / "stage" / "local"
    rep = stage_destination("local", "internal", results, out, policies={"pol": Pol({"internal"})})
    assert rep.staged == ["ds-n001", "ds-n003"]
    assert {s["item"] for s in rep.skipped} == {"ds-n002", "ds-x001"}
    assert not list(out.rglob("actions.jsonl"))
    staged_prov = json.loads((out / "ds" / "ds-n001" / "provenance.json").read_text())
    assert "DOE_JOHN" not in json.dumps(staged_prov)
    assert verify_stage(out) == []
    (out / "ds" / "ds-n001" / "data.nii.gz").write_bytes(b"changed")
    assert any("checksum differs" in p for p in verify_stage(out))


def test_stage_respects_policy_destination_classes(tmp_path: Path, results: StageInputs) -> None:
    rep = stage_destination(
        "local", "public_archive", results, tmp_path / "s", policies={"pol": Pol({"internal"})}
    )
    assert rep.staged == []
    assert all(
        "excluded by policy" in s["reason"] or "excluded" in s["reason"] for s in rep.skipped
    )


def test_summary_identity(tmp_path: Path, results: StageInputs) -> None:
    s = summarize_run(results.manifest, results.leak_root, [])
    assert (s["found"], s["processed"], s["quarantined"], s["excluded"]) == (5, 2, 2, 1)
    # An item without a leak report (it failed) still counts, as quarantined.
    (results.leak_root / "batch-0000" / "ds-n003.json").unlink()
    s2 = summarize_run(results.manifest, results.leak_root, [])
    assert s2["found"] == s2["processed"] + s2["quarantined"] + s2["excluded"]
    assert s2["processed"] == 1


def test_stage_clears_stale_temporaries_and_keeps_usual_modes(
    tmp_path: Path, results: StageInputs
) -> None:
    import os
    import stat

    from tests.unit.test_io import _dead_pid, plant

    out = tmp_path / "stage" / "local"
    stale = plant(out, _dead_pid(), is_dir=True)  # a half-copied stage of a killed run
    for p in (tmp_path / "deid").rglob("*"):  # the trusted zone is private
        p.chmod(0o700 if p.is_dir() else 0o600)
    old = os.umask(0o022)
    try:
        stage_destination("local", "internal", results, out, policies={"pol": Pol({"internal"})})
    finally:
        os.umask(old)
    assert not stale.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".imagedepot-tmp-")]
    # Staged output is meant to leave: usual modes, not the trusted zone's 0600.
    for p in [out, *out.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p


def test_staged_bytes_do_not_depend_on_when_the_steps_ran(
    tmp_path: Path, results: StageInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun (new step times in the trusted zone) stages identical bytes: MANIFEST and manifest."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    manifest = json.loads(results.manifest.read_text())
    for item in manifest["items"]:
        item["data_time"] = "2026-01-02T03:04:05+00:00"
    write_json(results.manifest, manifest)
    staged = []
    for run, clock in enumerate(("2026-05-01T10:00:00+00:00", "2026-05-02T11:30:00+00:00")):
        for prov_file in (tmp_path / "deid").rglob("provenance.json"):
            prov = json.loads(prov_file.read_text())
            prov["started"] = prov["ended"] = clock  # the step ran again at another time
            write_json(prov_file, prov)
        out = tmp_path / "stage" / f"run{run}"
        stage_destination("local", "internal", results, out, policies={"pol": Pol({"internal"})})
        staged.append(out)
    a, b = staged
    assert (a / "MANIFEST.sha256").read_text() == (b / "MANIFEST.sha256").read_text()
    assert (a / "manifest.json").read_text() == (b / "manifest.json").read_text()
    prov = json.loads((a / "ds" / "ds-n001" / "provenance.json").read_text())
    assert prov["data_time"] == "2026-01-02T03:04:05+00:00"
    assert "started" not in prov and "2026-05" not in json.dumps(prov)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # the reproducible-builds override
    stage_destination(
        "local", "internal", results, tmp_path / "epoch", policies={"pol": Pol({"internal"})}
    )
    assert json.loads((tmp_path / "epoch" / "manifest.json").read_text())["created"] == (
        "1970-01-01T00:00:00+00:00"
    )
