"""BioImage Archive deposit against real servers: pyftpdlib FTP and the BioStudies API test server."""

# Fixtures are imported from tests/servers/bia_fixture.py (not a conftest), so pytest's fixture
# arguments shadow those imports by design.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from imagedepot.deposit.bia import (
    ApiError,
    BioStudiesClient,
    Credentials,
    FtpTarget,
    deposit_bia,
)
from imagedepot.state import StateDB
from tests.servers.bia_fixture import (  # noqa: F401 - fixtures
    API_LOGIN,
    API_PASSWORD,
    bia_package,
    biostudies_server,
    demo_microscopy_stage,
    ftp_server,
)

CREDS = Credentials(user=API_LOGIN, password=API_PASSWORD)


def _same_tree(local: Path, remote: Path) -> None:
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert files, "nothing to compare"
    for rel in files:
        assert (remote / rel).read_bytes() == (local / rel).read_bytes(), rel


def test_upload_submit_then_second_run_does_nothing(
    bia_package: Path, ftp_server, biostudies_server, tmp_path: Path
) -> None:
    ftp = ftp_server()
    api = biostudies_server(ftp.extra["user_dir"])
    with StateDB(tmp_path / "state.sqlite") as db:
        rep = deposit_bia(
            bia_package,
            ftp_url=ftp.extra["url"],
            api_url=api.extra["url"],
            credentials=CREDS,
            parallel_streams=3,
            state=db,
            destination="bia",
            backoff=0.05,
        )
        assert rep.failed == [], rep.datasets
        (entry,) = rep.datasets
        assert entry["state"] == "submitted" and entry["accession"] == "S-BIAD1"
        _same_tree(bia_package / "micro-cells" / "data" / "upload", ftp.extra["user_dir"])
        row = db.get("bia", "micro-cells")
        assert row is not None and row.state == "submitted" and row.accession == "S-BIAD1"
        assert [e["state"] for e in db.events("bia", "micro-cells")] == [
            "staged", "uploaded", "verified", "submitted"
        ]  # fmt: skip
        stored = requests.get(f"{api.extra['url']}/submissions/S-BIAD1.json", timeout=10).json()
        assert stored["section"]["type"] == "Study"

        # The servers are gone: a second run must not even try to connect.
        ftp.stop()
        api.stop()
        again = deposit_bia(
            bia_package,
            ftp_url=ftp.extra["url"],
            api_url=api.extra["url"],
            credentials=CREDS,
            state=db,
            destination="bia",
            backoff=0.05,
        )
        assert [d["state"] for d in again.datasets] == ["up-to-date"]
        assert db.get("bia", "micro-cells").attempts == 1  # type: ignore[union-attr]


def test_interrupted_upload_resumes_and_completes_with_verified_sizes(
    bia_package: Path, ftp_server, biostudies_server, tmp_path: Path
) -> None:
    # The server drops the data connection of the first uploads after 20,000 bytes.
    ftp = ftp_server(drop_after=20_000, drop_count=4)
    api = biostudies_server(ftp.extra["user_dir"])
    kw = dict(
        ftp_url=ftp.extra["url"],
        api_url=api.extra["url"],
        credentials=CREDS,
        destination="bia",
        backoff=0.05,
        parallel_streams=2,
    )
    with StateDB(tmp_path / "state.sqlite") as db:
        # One attempt per file: the run is interrupted and recorded as failed.
        first = deposit_bia(bia_package, state=db, retries=1, **kw)
        assert [d["state"] for d in first.datasets] == ["failed"]
        row = db.get("bia", "micro-cells")
        assert row is not None and row.state == "failed" and "upload" in (row.reason or "")
        assert "a1b2c3d4-secret" not in (row.reason or "")  # the secret directory is never recorded
        # The next run picks the failed dataset up, resumes the partial files and completes.
        second = deposit_bia(bia_package, state=db, retries=4, **kw)
        assert [d["state"] for d in second.datasets] == ["submitted"], second.datasets
        assert second.datasets[0]["resumed"], "expected at least one resumed file"
        assert db.get("bia", "micro-cells").attempts == 2  # type: ignore[union-attr]
    journal = ftp.extra["journal"].read_text()
    assert journal.count("DROP ") == 4
    assert "REST " in journal and "SIZE " in journal
    _same_tree(bia_package / "micro-cells" / "data" / "upload", ftp.extra["user_dir"])


def test_dry_run_stops_before_submitting(
    bia_package: Path, ftp_server, biostudies_server, tmp_path: Path
) -> None:
    ftp = ftp_server()
    api = biostudies_server(ftp.extra["user_dir"])
    with StateDB(tmp_path / "s.sqlite") as db:
        rep = deposit_bia(
            bia_package,
            ftp_url=ftp.extra["url"],
            api_url=api.extra["url"],
            credentials=CREDS,
            dry_run=True,
            state=db,
            backoff=0.05,
        )
        assert [d["state"] for d in rep.datasets] == ["verified"]
        assert db.get("bia", "micro-cells").state == "verified"  # type: ignore[union-attr]
    r = requests.get(f"{api.extra['url']}/submissions/S-BIAD1.json", timeout=10)
    assert r.status_code == 404


def test_package_changed_after_staging_is_refused(
    bia_package: Path, ftp_server, tmp_path: Path
) -> None:
    ftp = ftp_server()
    f = bia_package / "micro-cells/data/upload/micro-cells/micro-cells-m001/provenance.json"
    text = f.read_text()
    f.unlink()
    f.write_text(text + " ")
    rep = deposit_bia(
        bia_package,
        ftp_url=ftp.extra["url"],
        api_url="http://127.0.0.1:9",
        credentials=CREDS,
        backoff=0.05,
    )
    assert rep.failed and "BagError" in rep.failed[0]["reason"]
    assert not any(ftp.extra["user_dir"].iterdir()), "nothing may be uploaded"


def test_policy_changed_since_staging_stops_the_deposit(
    bia_package: Path, ftp_server, demo_microscopy_stage, tmp_path: Path
) -> None:
    ftp = ftp_server()
    pol = demo_microscopy_stage.policies["open-microscopy"]

    class Stricter:
        name, sha256, allowed_classes = pol.name, "f" * 64, pol.allowed_classes

        def check_destination(self, name: str, cls: str) -> None:
            pass

    rep = deposit_bia(
        bia_package,
        ftp_url=ftp.extra["url"],
        api_url="http://127.0.0.1:9",
        credentials=CREDS,
        policies={"open-microscopy": Stricter()},
        backoff=0.05,
    )
    assert "changed since staging" in rep.failed[0]["reason"]
    assert not any(ftp.extra["user_dir"].iterdir())


def test_api_login_submit_errors_and_retries(tmp_path: Path, biostudies_server) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    api = biostudies_server(user_dir, fail_submit=2, fail_login=1)
    client = BioStudiesClient(api.extra["url"], retries=4, backoff=0.05)
    with pytest.raises(ApiError) as err:
        client.login(Credentials(user=API_LOGIN, password="wrong"))
    assert err.value.status == 401 or "503" in str(err.value)
    token = client.login(CREDS)
    assert token and client.token == token
    files = client.user_files()
    assert files == []
    # Two 503 answers, then the validation errors of an incomplete BioImages submission.
    bad = {
        "type": "submission",
        "attributes": [{"name": "Title", "value": "t"}, {"name": "AttachTo", "value": "BioImages"}],
        "section": {"type": "Study", "attributes": []},
    }
    with pytest.raises(ApiError) as err:
        client.submit(bad)
    assert err.value.status == 400
    details = "\n".join(err.value.details)
    assert "'License' is required" in details and "'ReleaseDate' is required" in details
    # Without a token the API refuses.
    anon = requests.post(f"{api.extra['url']}/submissions", json=bad, timeout=10)
    assert anon.status_code == 401 and anon.json()["status"] == "FAIL"
    plain = {
        "type": "submission",
        "attributes": [{"name": "Title", "value": "t"}],
        "section": {"type": "Study"},
    }
    assert client.submit(plain)["accno"] == "S-BSST1"


def test_ftp_url_is_parsed_and_never_printed() -> None:
    t = FtpTarget.parse("ftp://bsftp:pw%40x@ftp.example.org:2121/secret/dir/")
    assert (t.host, t.port, t.user, t.password, t.directory) == (
        "ftp.example.org", 2121, "bsftp", "pw@x", "secret/dir"
    )  # fmt: skip
    assert "secret/dir" not in str(t) and "pw@x" not in str(t)
    assert "secret/dir" not in repr(t) and "pw@x" not in repr(t)
    assert json.dumps(str(t)) == '"ftp://ftp.example.org:2121/<secret directory>"'


# --------------------------------------------------------------------------------------------
# Content verification: the upload area lists no checksum, so remote copies are read back


def _upload_dir(package: Path) -> Path:
    return package / "micro-cells" / "data" / "upload"


def _biggest(package: Path) -> tuple[Path, str]:
    local = _upload_dir(package)
    f = max((p for p in local.rglob("*") if p.is_file()), key=lambda p: (p.stat().st_size, p))
    return f, str(f.relative_to(local))


def _verify_only(package: Path, ftp, **kw):
    """Upload and verify (dry run), no API: the FTP side only."""
    return deposit_bia(
        package,
        ftp_url=ftp.extra["url"],
        api_url="http://127.0.0.1:9",
        credentials=CREDS,
        dry_run=True,
        backoff=0.05,
        **kw,
    )


def _journal_since(ftp, mark: int) -> list[str]:
    return ftp.extra["journal"].read_text().splitlines()[mark:]


def _journal_len(ftp) -> int:
    j = ftp.extra["journal"]
    return len(j.read_text().splitlines()) if j.exists() else 0


def test_remote_file_with_right_size_and_wrong_bytes_is_replaced(
    bia_package: Path, ftp_server
) -> None:
    ftp = ftp_server()
    assert [d["state"] for d in _verify_only(bia_package, ftp).datasets] == ["verified"]
    local, rel = _biggest(bia_package)
    remote = ftp.extra["user_dir"] / rel
    data = bytearray(remote.read_bytes())
    data[len(data) // 2] ^= 0xFF
    remote.write_bytes(bytes(data))
    assert remote.stat().st_size == local.stat().st_size

    mark = _journal_len(ftp)
    (entry,) = _verify_only(bia_package, ftp).datasets
    assert entry["state"] == "verified", entry
    _same_tree(_upload_dir(bia_package), ftp.extra["user_dir"])
    assert entry["replaced"] == [rel] and entry["sent_bytes"] == local.stat().st_size
    stored = [line for line in _journal_since(ftp, mark) if line.startswith(("STOR", "APPE"))]
    assert len(stored) == 1 and stored[0].split()[1].endswith(rel), stored


def test_correct_remote_files_are_read_back_and_not_sent_again(
    bia_package: Path, ftp_server
) -> None:
    ftp = ftp_server()
    (first,) = _verify_only(bia_package, ftp).datasets
    assert first["state"] == "verified" and first["sent_bytes"] == first["bytes"]
    assert first["verified_by_sha256"] == first["files"] and first["replaced"] == []

    mark = _journal_len(ftp)
    (second,) = _verify_only(bia_package, ftp).datasets
    assert second["state"] == "verified"
    assert (second["sent_bytes"], second["replaced"], second["resumed"]) == (0, [], [])
    assert second["verified_by_sha256"] == second["files"]
    lines = _journal_since(ftp, mark)
    assert not [line for line in lines if line.startswith(("STOR", "APPE", "RECEIVED"))]
    assert sum(line.startswith("RETR ") for line in lines) == second["files"]


def test_resume_over_a_partial_file_with_other_bytes_sends_the_whole_file(
    bia_package: Path, ftp_server
) -> None:
    ftp = ftp_server()
    local, rel = _biggest(bia_package)
    half = local.read_bytes()[: local.stat().st_size // 2]
    remote = ftp.extra["user_dir"] / rel
    remote.parent.mkdir(parents=True)
    remote.write_bytes(bytes(b ^ 0x5A for b in half))  # a shorter copy that is not ours

    (entry,) = _verify_only(bia_package, ftp).datasets
    assert entry["state"] == "verified", entry
    assert entry["resumed"] == [rel] and entry["replaced"] == [rel]
    _same_tree(_upload_dir(bia_package), ftp.extra["user_dir"])


def test_file_over_the_verification_cap_is_refused_not_trusted_on_its_size(
    bia_package: Path, ftp_server, tmp_path: Path
) -> None:
    ftp = ftp_server()
    _verify_only(bia_package, ftp)
    local, rel = _biggest(bia_package)
    remote = ftp.extra["user_dir"] / rel
    wrong = bytes(b ^ 0xFF for b in local.read_bytes())  # same size, other bytes
    remote.write_bytes(wrong)
    cap = local.stat().st_size - 1

    mark = _journal_len(ftp)
    with StateDB(tmp_path / "state.sqlite") as db:
        (entry,) = _verify_only(bia_package, ftp, state=db, download_verify_limit=cap).datasets
        assert entry["state"] == "failed"
        assert "download_verify_limit" in entry["reason"] and rel in entry["reason"]
        assert "nothing was uploaded" in entry["reason"]
        assert db.get("bia", "micro-cells").state == "failed"  # type: ignore[union-attr]
        assert _journal_since(ftp, mark) == [], "refused before connecting"
        assert remote.read_bytes() == wrong

        # With the cap raised above the file, it is read back, found different and replaced.
        cap = local.stat().st_size
        (entry,) = _verify_only(bia_package, ftp, state=db, download_verify_limit=cap).datasets
        assert entry["state"] == "verified" and entry["replaced"] == [rel]
        assert db.get("bia", "micro-cells").state == "verified"  # type: ignore[union-attr]
    _same_tree(_upload_dir(bia_package), ftp.extra["user_dir"])
