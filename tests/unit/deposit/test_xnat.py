"""XNAT deposit: the plan, then real deposits with the xnatpy client against the test server (or a
real XNAT when ``XNAT_TEST_URL`` and friends are set), including faults, resumption and repair."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from imagedepot.demo import DEMO_PHI
from imagedepot.deposit.retry import RetryExhaustedError, RetryPolicy, is_transient, retry_call
from imagedepot.deposit.xnat import (
    Credentials,
    DepositReport,
    XnatDepositError,
    build_plan,
    deposit_xnat,
    iter_plan_files,
    load_plan,
    resolve_credentials,
    stage_xnat,
    xnat_label,
)
from imagedepot.deposit.xnat.plan import _assign_scan_ids
from imagedepot.errors import ConfigError
from imagedepot.io import file_record, read_json, write_json
from tests.servers import xnat_fixture
from tests.servers.xnat_fixture import XnatTarget

# Fixtures live in tests/servers/xnat_fixture.py (not a conftest): bound here so pytest finds them.
xnat_server = xnat_fixture.xnat_server
xnat_server_factory = xnat_fixture.xnat_server_factory
xnat_staged_demo = xnat_fixture.xnat_staged_demo

FAST = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05, jitter=0.0)


@pytest.fixture(scope="module")
def plan_file(xnat_staged_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "xnat.xnat-plan.json"
    stage_xnat(xnat_staged_demo, out)
    return out


def n_dicom(plan: dict) -> int:
    """DICOM files in a plan (they go through the import service, not one upload each)."""
    return sum(
        len(res["files"])
        for subj in plan["subjects"]
        for sess in subj["sessions"]
        for scan in sess["scans"]
        for res in scan["resources"]
        if res["label"] == "DICOM"
    )


def deposit(target: XnatTarget, plan: Path | dict, **kw: Any) -> DepositReport:
    kw.setdefault("backoff", FAST)
    kw.setdefault("timeout", 20)
    return deposit_xnat(
        plan,
        target.url,
        project=target.project,
        credentials=Credentials(target.user, target.password),
        **kw,
    )


# --------------------------------------------------------------------------------------------
# What is on the server, read back over REST (works against a real XNAT too)


def rest_tree(target: XnatTarget, plan: dict) -> dict[str, Any]:
    import xnat

    tree: dict[str, Any] = {}
    with xnat.connect(
        target.url,
        user=target.user,
        password=target.password,
        no_parse_model=True,
        logger=logging.getLogger("test-xnat-readback"),
    ) as s:

        def rows(path: str) -> list[dict]:
            return list(s.get_json(path)["ResultSet"]["Result"])

        def files(path: str) -> dict[str, tuple[int, str]]:
            out = {}
            for r in rows(f"{path}/files"):
                rel = r["URI"].split("/files/", 1)[1]
                out[rel] = (int(r["Size"]), r.get("digest") or "")
            return out

        def resources(path: str) -> dict[str, Any]:
            return {
                r["label"]: files(f"{path}/resources/{r['label']}")
                for r in rows(f"{path}/resources")
            }

        for subj in plan["subjects"]:
            base = f"/data/projects/{target.project}/subjects/{subj['label']}"
            entry: dict[str, Any] = {"resources": resources(base), "sessions": {}}
            for exp in rows(f"{base}/experiments"):
                epath = f"{base}/experiments/{exp['label']}"
                scans = {}
                for sc in rows(f"{epath}/scans"):
                    fields = s.get_json(f"{epath}/scans/{sc['ID']}")["items"][0]["data_fields"]
                    scans[sc["ID"]] = {
                        "uid": fields.get("UID") or None,
                        "type": sc.get("type", ""),
                        "xsi": sc.get("xsiType"),
                        "resources": resources(f"{epath}/scans/{sc['ID']}"),
                    }
                entry["sessions"][exp["label"]] = {"xsi": exp.get("xsiType"), "scans": scans}
            tree[subj["label"]] = entry
        pre = rows(f"/data/prearchive/projects/{target.project}")
        ours = {s["label"] for subj in plan["subjects"] for s in subj["sessions"]}
        tree["_prearchive"] = [p for p in pre if p.get("name") in ours]
    return tree


def assert_matches_plan(tree: dict[str, Any], plan: dict, *, real: bool = False) -> None:
    """Exactly the planned sessions, scans and files, with planned sizes and MD5 digests (a real
    XNAT may list no digests when its checksums are off: then sizes only)."""

    def expect(files: list[dict], have: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
        if real and not any(d for _, d in have.values()):
            return {f["name"]: (f["size"], "") for f in files}
        return {f["name"]: (f["size"], f["md5"]) for f in files}

    assert tree["_prearchive"] == []
    for subj in plan["subjects"]:
        got = tree[subj["label"]]
        for res in subj["resources"]:
            have = got["resources"][res["label"]]
            assert have == expect(res["files"], have)
        assert set(got["sessions"]) == {s["label"] for s in subj["sessions"]}
        for sess in subj["sessions"]:
            server = got["sessions"][sess["label"]]
            assert server["xsi"] == sess["xsi_type"]
            assert len(server["scans"]) == len(sess["scans"])
            for scan in sess["scans"]:
                uid = scan["series_instance_uid"]
                sid = (
                    next(k for k, v in server["scans"].items() if v["uid"] == uid)
                    if uid
                    else scan["id"]
                )
                assert sid == scan["id"]
                on_server = server["scans"][sid]
                if not real:
                    assert on_server["type"] == scan["type"]
                assert set(on_server["resources"]) >= {r["label"] for r in scan["resources"]}
                for res in scan["resources"]:
                    have = on_server["resources"][res["label"]]
                    want = expect(res["files"], have)
                    if res.get("import"):  # renamed by XNAT on import: compare the contents
                        assert Counter(have.values()) == Counter(want.values())
                    else:
                        assert have == want


def state_counts(target: XnatTarget, plan: dict) -> dict[str, int]:
    """Objects of the planned subjects in the test server's own state (no faults on this route)."""
    state = target.state()
    project = state["projects"][target.project]
    ours = {s["label"] for s in plan["subjects"]}
    subjects = [s for s in project["subjects"].values() if s["label"] in ours]
    exps = [e for s in subjects for e in s["experiments"].values()]
    scans = [sc for e in exps for sc in e["scans"].values()]
    files = [
        f
        for owner in [*subjects, *exps, *scans]
        for r in owner["resources"].values()
        for f in r["files"].values()
    ]
    return {
        "subjects": len(subjects),
        "sessions": len(exps),
        "scans": len(scans),
        "files": len(files),
        "prearchive": len(state["prearchive"]),
    }


# --------------------------------------------------------------------------------------------
# Plan


def test_plan_maps_demo_onto_xnat_model(xnat_staged_demo: Path, plan_file: Path) -> None:
    plan = load_plan(plan_file)
    manifest = read_json(xnat_staged_demo / "manifest.json")
    # Every staged file is in the plan exactly once, with the manifest's checksum.
    entries = list(iter_plan_files(plan))
    assert sorted(f["source"] for f in entries) == sorted(r["path"] for r in manifest["files"])
    by_path = {r["path"]: r for r in manifest["files"]}
    assert all(f["sha256"] == by_path[f["source"]]["sha256"] for f in entries)
    assert plan["counts"] == {
        "subjects": 2,
        "sessions": 4,
        "scans": 6,  # MR, CT; CT + the cleaned secondary capture + the ultrasound; NIfTI
        "files": len(entries),
        "bytes": sum(f["size"] for f in entries),
    }
    # Subjects are pseudonyms; one session per de-identified study (subject 01 has MR and CT).
    sessions = {s["label"]: s for subj in plan["subjects"] for s in subj["sessions"]}
    for subj in plan["subjects"]:
        assert subj["label"].startswith("SUBJ-")
        assert [r["label"] for r in subj["resources"]] == ["FHIR"]
        for s in subj["sessions"]:
            assert s["label"].startswith(f"{subj['label']}_{s['dataset']}")
    mr = [
        s
        for s in sessions.values()
        if s["xsi_type"] == "xnat:mrSessionData" and s["study_instance_uid"]
    ]
    ct = [s for s in sessions.values() if s["xsi_type"] == "xnat:ctSessionData"]
    assert len(mr) == 1 and len(ct) == 2
    assert mr[0]["label"].split("_")[-2] == "MR"
    assert [sc["id"] for sc in mr[0]["scans"]] == ["3"]  # the demo's SeriesNumber
    assert {r["label"] for r in mr[0]["scans"][0]["resources"]} == {
        "DICOM",
        "NIFTI",
        "BIDS",
        "PROVENANCE",
    }
    nifti_only = next(s for s in sessions.values() if s["study_instance_uid"] is None)
    assert nifti_only["scans"][0]["id"] == "1"
    assert {r["label"] for r in nifti_only["scans"][0]["resources"]} == {
        "NIFTI",
        "BIDS",
        "PROVENANCE",
    }
    # No identifier of the originals and no absolute path in the plan; relative staged_dir.
    text = plan_file.read_text()
    assert not [phi for phi in DEMO_PHI if phi in text]
    assert str(xnat_staged_demo.parent) not in text
    assert (plan_file.parent / plan["staged_dir"]).resolve() == xnat_staged_demo.resolve()


def test_plan_is_byte_stable(xnat_staged_demo: Path, plan_file: Path, tmp_path: Path) -> None:
    again = tmp_path / "plan.json"
    stage_xnat(xnat_staged_demo, again)
    first, second = read_json(plan_file), read_json(again)
    first.pop("staged_dir"), second.pop("staged_dir")
    assert first == second


def test_plan_refuses_a_file_changed_after_staging(xnat_staged_demo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "staged"
    shutil.copytree(xnat_staged_demo, copy)
    victim = next(copy.rglob("*.json"))
    while victim.name in {"manifest.json", "summary.json"}:
        victim = next(p for p in copy.rglob("provenance.json"))
    victim.write_text(victim.read_text() + " ")
    with pytest.raises(XnatDepositError, match="differs from the staged manifest"):
        build_plan(copy)
    with pytest.raises(XnatDepositError, match=r"no manifest\.json"):
        build_plan(tmp_path)


def test_scan_ids_follow_series_numbers_then_ordinals() -> None:
    def scan(item: str, number: int | None, uid: str | None) -> dict:
        return {"item": item, "series_number": number, "series_instance_uid": uid}

    session = {
        "scans": [
            scan("a", 3, "1.3"),
            scan("b", 3, "1.2"),
            scan("c", None, "1.9"),
            scan("d", 1, "1.1"),
            scan("e", None, None),
        ]
    }
    _assign_scan_ids(session)
    assert {s["item"]: s["id"] for s in session["scans"]} == {
        "d": "1",
        "b": "3",
        "a": "3-1",
        "e": "2",  # no number: ordinals after the numbered ones, in (UID, item) order
        "c": "4",
    }
    assert xnat_label("ds.1 x/y") == "ds_1_x_y"


# --------------------------------------------------------------------------------------------
# Credentials and retries


def test_credentials_from_environment_then_netrc(tmp_path: Path) -> None:
    env = {"XD_USER": "alice", "XD_PASSWORD": "s3cret"}
    creds = resolve_credentials("https://xnat.example.org", "XD", environ=env)
    assert (creds.user, creds.password) == ("alice", "s3cret")
    assert "s3cret" not in repr(creds)
    rc = tmp_path / "netrc"
    rc.write_text("machine xnat.example.org:8443 login bob password pw1\n")
    rc.chmod(0o600)
    creds = resolve_credentials(
        "https://xnat.example.org:8443/xnat", "XD", environ={}, netrc_file=rc
    )
    assert (creds.user, creds.password) == ("bob", "pw1")
    with pytest.raises(ConfigError, match="XD_USER") as err:
        resolve_credentials("https://other.example.org", "XD", environ={}, netrc_file=rc)
    assert "pw1" not in str(err.value)
    with pytest.raises(ConfigError, match="must not contain credentials"):
        resolve_credentials("https://u:p@xnat.example.org", None, environ={})


def test_retry_call_retries_transient_failures_only() -> None:
    import requests

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise requests.ConnectionError("reset")
        return "ok"

    waits: list[float] = []
    policy = RetryPolicy(attempts=4, base_delay=1.0, multiplier=2.0, max_delay=1.5, jitter=0.0)
    assert retry_call(flaky, policy=policy, what="op", sleep=waits.append) == "ok"
    assert waits == [1.0, 1.5]

    class Refused(Exception):
        status_code = 403

    with pytest.raises(Refused):
        retry_call(
            lambda: (_ for _ in ()).throw(Refused()), policy=policy, what="op", sleep=waits.append
        )

    class Gateway(Exception):
        status_code = 502

    assert is_transient(Gateway()) and not is_transient(Refused())
    with pytest.raises(RetryExhaustedError, match="after 4 attempt"):
        retry_call(
            lambda: (_ for _ in ()).throw(Gateway()), policy=policy, what="op", sleep=waits.append
        )


# --------------------------------------------------------------------------------------------
# Deposits


def test_deposit_builds_the_structure_and_a_rerun_transfers_nothing(
    xnat_server: XnatTarget, plan_file: Path, tmp_path: Path
) -> None:
    plan = load_plan(plan_file)
    receipt = tmp_path / "receipt.json"
    report = deposit(xnat_server, plan_file, receipt=receipt)
    assert report.status == "complete", report.problems
    assert report.verified_files == plan["counts"]["files"]
    if not xnat_server.real:
        assert report.verified_by_digest == plan["counts"]["files"]
        assert report.archive_mode == "archive"
        assert sorted(report.created["subjects"]) == sorted(s["label"] for s in plan["subjects"])
        assert len(report.created["sessions"]) == 4
        assert report.dicom_imports == 3  # one per DICOM session
        assert report.uploaded_files == plan["counts"]["files"] - n_dicom(
            plan
        )  # DICOM went by import
    assert_matches_plan(rest_tree(xnat_server, plan), plan, real=xnat_server.real)

    if not xnat_server.real:
        xnat_server.reset_stats()
    again = deposit(xnat_server, plan_file, receipt=receipt)
    assert again.status == "complete"
    assert not again.transferred
    assert (again.uploaded_files, again.dicom_imports, again.uploaded_bytes) == (0, 0, 0)
    if not xnat_server.real:
        assert xnat_server.stats()["writes"] == []
    rec = read_json(receipt)
    assert [r["status"] for r in rec["runs"]][-2:] == ["complete", "complete"]
    assert set(rec["sessions"]) == {
        s["label"] for subj in plan["subjects"] for s in subj["sessions"]
    }
    assert xnat_server.password not in receipt.read_text()


def test_dry_run_writes_nothing(xnat_server_factory, plan_file: Path) -> None:
    target = xnat_server_factory()
    report = deposit(target, plan_file, dry_run=True)
    assert report.status == "dry_run"
    assert target.stats()["writes"] == []
    plan = load_plan(plan_file)
    assert len(report.would_create["subjects"]) == 2
    assert len(report.would_create["sessions"]) == 4
    assert len(report.would_upload) == plan["counts"]["files"]
    assert state_counts(target, plan)["subjects"] == 0


@pytest.mark.parametrize("prearchive_code", [0, 4])
def test_twenty_percent_faults_complete_without_duplicates(
    xnat_server_factory, plan_file: Path, prearchive_code: int
) -> None:
    """2 in 10 requests fail (502 or dropped connection, half of them after the server acted)."""
    target = xnat_server_factory(
        "--fail-rate",
        "0.1",
        "--drop-rate",
        "0.1",
        "--seed",
        "7",
        "--prearchive-build-ms",
        "50",
        prearchive_code=prearchive_code,
    )
    plan = load_plan(plan_file)
    report = deposit(target, plan_file, parallel_streams=3)
    assert report.status == "complete", report.problems
    assert report.retries > 0
    stats = target.stats()
    assert sum(stats["faults"].values()) >= 0.1 * stats["requests"]
    assert report.verified_by_digest == plan["counts"]["files"]
    assert state_counts(target, plan) == {
        "subjects": 2,
        "sessions": 4,
        "scans": 6,
        "files": plan["counts"]["files"],
        "prearchive": 0,
    }
    target.reset_stats()
    again = deposit(target, plan_file)
    assert again.status == "complete" and not again.transferred
    assert target.stats()["writes"] == []
    faults = target.stats()["faults"]
    assert sum(faults.values()) > 0  # the verification run was faulted too


@pytest.mark.parametrize("prearchive_code", [0, 4])
def test_lost_answers_to_imports_are_not_resent(
    xnat_server_factory, plan_file: Path, prearchive_code: int
) -> None:
    """Every import and archive request is processed but its answer is lost once (502)."""
    target = xnat_server_factory(
        "--fault-only",
        r"^POST /data/services/(import|archive)",
        "--fail-rate",
        "1",
        "--after-fraction",
        "1",
        "--max-consecutive",
        "1",
        prearchive_code=prearchive_code,
    )
    plan = load_plan(plan_file)
    report = deposit(target, plan_file)
    assert report.status == "complete", report.problems
    assert report.dicom_imports == 3  # the lost answers did not make it send the DICOM again
    assert target.stats()["imports"] == 3
    assert state_counts(target, plan)["files"] == plan["counts"]["files"]
    assert state_counts(target, plan)["prearchive"] == 0


def test_interrupted_deposit_resumes_from_the_server_state(
    xnat_server_factory, plan_file: Path, tmp_path: Path
) -> None:
    target = xnat_server_factory()
    plan = load_plan(plan_file)
    receipt = tmp_path / "receipt.json"
    seen: list[dict] = []

    class Interrupt(Exception):
        pass

    def stop_after_five(event: dict) -> None:
        seen.append(event)
        if sum(e["event"] == "uploaded" for e in seen) == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        deposit(target, plan_file, receipt=receipt, progress=stop_after_five, parallel_streams=1)
    first = target.stats()["uploads"]
    assert 5 <= first < plan["counts"]["files"] - n_dicom(plan)
    assert read_json(receipt)["status"] == "failed"
    target.reset_stats()
    report = deposit(target, plan_file, receipt=receipt)
    assert report.status == "complete"
    assert target.stats()["uploads"] + first == plan["counts"]["files"] - n_dicom(
        plan
    )  # nothing sent twice
    assert report.dicom_imports < 3  # the sessions imported before the interruption are kept
    assert state_counts(target, plan)["files"] == plan["counts"]["files"]
    assert [r["status"] for r in read_json(receipt)["runs"]] == ["failed", "complete"]


def test_changed_and_missing_files_are_sent_again(
    xnat_server: XnatTarget, xnat_staged_demo: Path, plan_file: Path, tmp_path: Path
) -> None:
    import xnat

    deposit(xnat_server, plan_file)
    plan = load_plan(plan_file)
    # A staged sidecar changes (re-staged): only it is uploaded again, replacing the old one.
    copy = tmp_path / "staged"
    shutil.copytree(xnat_staged_demo, copy)
    manifest = read_json(copy / "manifest.json")
    rec = next(
        r
        for r in manifest["files"]
        if r["path"].startswith("nii-subj01/")
        and r["path"].endswith(".json")
        and "/nifti/" in r["path"]
    )
    side = copy / rec["path"]
    data = json.loads(side.read_text())
    data["Comment"] = "re-staged"
    side.write_text(json.dumps(data))
    rec.update(file_record(side, copy))
    write_json(copy / "manifest.json", manifest)
    changed = build_plan(copy)
    report = deposit(xnat_server, changed, staged=copy)
    assert report.status == "complete"
    assert (report.uploaded_files, report.dicom_imports) == (1, 0)
    # A file deleted in XNAT is found missing and uploaded again.
    subj = plan["subjects"][0]
    fhir = subj["resources"][0]["files"][0]["name"]
    with xnat.connect(
        xnat_server.url,
        user=xnat_server.user,
        password=xnat_server.password,
        no_parse_model=True,
        logger=logging.getLogger("t"),
    ) as s:
        s.delete(
            f"/data/projects/{xnat_server.project}/subjects/{subj['label']}/resources/FHIR/files/{fhir}"
        )
    report = deposit(xnat_server, plan_file)
    assert (report.uploaded_files, report.dicom_imports) == (
        2,
        0,
    )  # the FHIR bundle + the sidecar back
    assert_matches_plan(rest_tree(xnat_server, plan), plan, real=xnat_server.real)


def test_unexpected_file_on_the_server_fails_loudly(
    xnat_server: XnatTarget, plan_file: Path
) -> None:
    import xnat

    deposit(xnat_server, plan_file)
    plan = load_plan(plan_file)
    subj = plan["subjects"][0]["label"]
    path = f"/data/projects/{xnat_server.project}/subjects/{subj}/resources/FHIR/files/stray.txt"
    with xnat.connect(
        xnat_server.url,
        user=xnat_server.user,
        password=xnat_server.password,
        no_parse_model=True,
        logger=logging.getLogger("t"),
    ) as s:
        s.put(path, data=b"stray", query={"inbody": "true"})
        try:
            with pytest.raises(
                XnatDepositError,
                match=rf"subject {subj} resource FHIR holds 1 file\(s\) not in the plan: stray.txt",
            ):
                deposit(xnat_server, plan_file)
        finally:
            s.delete(path)


def test_missing_project_and_refused_login_are_clear(xnat_server_factory, plan_file: Path) -> None:
    target = xnat_server_factory()
    with pytest.raises(XnatDepositError, match=r"project 'NOPE' does not exist .* administrator"):
        deposit_xnat(
            plan_file,
            target.url,
            project="NOPE",
            credentials=Credentials("admin", "admin"),
            backoff=FAST,
        )
    with pytest.raises(XnatDepositError, match="login refused for user 'admin'") as err:
        deposit_xnat(
            plan_file,
            target.url,
            project="DEMO",
            credentials=Credentials("admin", "wrong-pw"),
            backoff=FAST,
        )
    assert "wrong-pw" not in str(err.value)


def test_without_digests_every_file_is_downloaded_and_hashed_and_a_rerun_sends_nothing(
    xnat_server_factory, plan_file: Path
) -> None:
    target = xnat_server_factory("--no-digest")
    plan = load_plan(plan_file)
    report = deposit(target, plan_file)
    assert report.status == "complete"
    # DICOM too (renamed on import): matched by the MD5 of the downloaded file, not by size.
    assert report.verified_by_download == plan["counts"]["files"]
    assert report.verified_by_size_only == 0
    target.reset_stats()
    again = deposit(target, plan_file)
    assert again.status == "complete" and not again.transferred
    assert target.stats()["writes"] == []


def _session(target: XnatTarget) -> Any:
    import xnat

    return xnat.connect(
        target.url,
        user=target.user,
        password=target.password,
        no_parse_model=True,
        logger=logging.getLogger("t"),
    )


def _overwrite_same_size(target: XnatTarget, path: str) -> bytes:
    """Replace a server file by other bytes of the same size; returns what the server now holds."""
    with _session(target) as s:
        data = s.get(path).content
        wrong = bytes(b ^ 0xFF for b in data)
        s.put(path, data=wrong, query={"inbody": "true", "overwrite": "true"})
        assert s.get(path).content == wrong
    return wrong


def _fhir_file(target: XnatTarget, plan: dict, staged: Path) -> tuple[str, Path]:
    subj = plan["subjects"][0]
    f = subj["resources"][0]["files"][0]
    path = (
        f"/data/projects/{target.project}/subjects/{subj['label']}/resources/FHIR/files/{f['name']}"
    )
    return path, staged / f["source"]


def test_without_digests_a_file_with_right_size_and_wrong_bytes_is_replaced(
    xnat_server_factory, plan_file: Path, xnat_staged_demo: Path
) -> None:
    target = xnat_server_factory("--no-digest")
    plan = load_plan(plan_file)
    deposit(target, plan_file)
    path, local = _fhir_file(target, plan, xnat_staged_demo)
    _overwrite_same_size(target, path)
    report = deposit(target, plan_file)
    assert report.status == "complete"
    assert (report.uploaded_files, report.dicom_imports) == (1, 0)
    with _session(target) as s:
        assert s.get(path).content == local.read_bytes()


def test_without_digests_a_file_over_the_limit_fails_instead_of_passing_on_its_size(
    xnat_server_factory, plan_file: Path, xnat_staged_demo: Path
) -> None:
    target = xnat_server_factory("--no-digest")
    plan = load_plan(plan_file)
    deposit(target, plan_file)
    path, local = _fhir_file(target, plan, xnat_staged_demo)
    wrong = _overwrite_same_size(target, path)
    name = path.rsplit("/", 1)[1]
    with pytest.raises(
        XnatDepositError, match=rf"resource FHIR 1 file\(s\) larger .*{name}"
    ) as err:
        deposit(target, plan_file, download_verify_limit=local.stat().st_size - 1)
    assert "Raise download_verify_limit" in str(err.value)
    with _session(target) as s:
        assert s.get(path).content == wrong  # refused, not "verified" and not touched
    # With the limit above every file (the default, 1 GiB), it is downloaded, found different
    # and replaced.
    report = deposit(target, plan_file)
    assert report.status == "complete" and report.uploaded_files == 1
    with _session(target) as s:
        assert s.get(path).content == local.read_bytes()


def test_without_digests_a_dicom_file_with_other_bytes_is_found_by_its_md5(
    xnat_server_factory, plan_file: Path
) -> None:
    target = xnat_server_factory("--no-digest")
    plan = load_plan(plan_file)
    deposit(target, plan_file)
    subj = next(
        s
        for s in plan["subjects"]
        if any(r.get("import") for x in s["sessions"] for c in x["scans"] for r in c["resources"])
    )
    sess = next(
        x
        for x in subj["sessions"]
        if any(r.get("import") for c in x["scans"] for r in c["resources"])
    )
    base = f"/data/projects/{target.project}/subjects/{subj['label']}/experiments/{sess['label']}"
    with _session(target) as s:
        sid = s.get_json(f"{base}/scans")["ResultSet"]["Result"][0]["ID"]
        rows = s.get_json(f"{base}/scans/{sid}/resources/DICOM/files")["ResultSet"]["Result"]
    _overwrite_same_size(target, rows[0]["URI"])
    with pytest.raises(XnatDepositError, match=r"holds 1 DICOM file\(s\) that .* differ"):
        deposit(target, plan_file)


def test_expired_session_logs_in_again(xnat_server_factory, plan_file: Path) -> None:
    target = xnat_server_factory()
    expired: list[int] = []

    def expire_once(event: dict) -> None:
        if event["event"] == "uploaded" and not expired:
            expired.append(1)
            target.expire_sessions()

    report = deposit(target, plan_file, progress=expire_once, parallel_streams=1)
    assert report.status == "complete"
    assert target.stats()["logins"] == 2


def test_timeouts_are_retried(xnat_server_factory, plan_file: Path) -> None:
    """One answer in twenty comes after 0.4 s; the client gives up after 0.2 s and tries again."""
    target = xnat_server_factory("--slow", "400", "--slow-rate", "0.05", "--seed", "3")
    plan = load_plan(plan_file)
    report = deposit(target, plan_file, timeout=0.2)
    assert report.status == "complete", report.problems
    assert target.stats()["faults"]["slow"] > 0 and report.retries > 0
    counts = state_counts(target, plan)
    assert (counts["sessions"], counts["scans"], counts["files"]) == (4, 6, plan["counts"]["files"])


def test_xnatpy_object_model_sees_the_deposit(xnat_server: XnatTarget, plan_file: Path) -> None:
    """xnatpy with its parsed data model (no ``no_parse_model``) reads what was deposited."""
    import xnat

    deposit(xnat_server, plan_file)
    plan = load_plan(plan_file)
    subj_plan = plan["subjects"][0]
    with xnat.connect(
        xnat_server.url, user=xnat_server.user, password=xnat_server.password, loglevel="WARNING"
    ) as s:
        subject = s.projects[xnat_server.project].subjects[subj_plan["label"]]
        assert {e.label for e in subject.experiments.values()} >= {
            x["label"] for x in subj_plan["sessions"]
        }
        session = subject.experiments[subj_plan["sessions"][0]["label"]]
        scan_plan = subj_plan["sessions"][0]["scans"][0]
        session_scan = session.scans[scan_plan["id"]]
        assert session_scan.uid == scan_plan["series_instance_uid"]
        nifti = next(r for r in scan_plan["resources"] if r["label"] == "NIFTI")["files"][0]
        listed = session_scan.resources["NIFTI"].files[nifti["name"]]
        assert listed.digest == nifti["md5"]
        assert [r.label for r in subject.resources.values()] == ["FHIR"]


def test_an_archive_request_lost_before_the_server_acted_is_checked_again(
    xnat_server_factory, plan_file: Path
) -> None:
    """Prearchive project: every first archive request is dropped before the server acts. The
    client cannot know, so it must list the prearchive again and archive what is still there."""
    target = xnat_server_factory(
        "--fault-only", r"^POST /data/services/archive",
        "--drop-rate", "1.0", "--after-fraction", "0.0", "--max-consecutive", "1",
        prearchive_code=0,
    )  # fmt: skip
    plan = load_plan(plan_file)
    report = deposit(target, plan_file)
    assert report.status == "complete", report.problems
    assert target.stats()["faults"]["drop"] > 0
    assert state_counts(target, plan)["prearchive"] == 0
    assert state_counts(target, plan)["files"] == plan["counts"]["files"]
