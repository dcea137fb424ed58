"""Trees and logical paths (imagedepot.storage): local runs and runs with S3 storage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imagedepot.storage import (
    ENV_PREFIX,
    ENV_ROOT,
    Storage,
    StorageError,
    input_root,
    open_tree,
    publish_tree,
    tree_dir,
)

BUCKET = "imagedepot-unit"


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def test_logical_paths_map_to_the_local_copies(tmp_path: Path) -> None:
    st = Storage(root=tmp_path / "copy", prefix="s3://b/runs")
    assert st.local("demo/inbox/a.dcm") == tmp_path / "copy" / "demo/inbox/a.dcm"
    assert st.local("/abs/a.dcm") == Path("/abs/a.dcm")  # absolute paths are never remapped
    assert st.logical(tmp_path / "copy" / "results/x.json") == "results/x.json"
    assert st.url(tmp_path / "copy" / "results/x.json") == "s3://b/runs/results/x.json"
    plain = Storage()
    assert plain.local("demo/a.dcm") == Path("demo/a.dcm") and plain.url("x") is None


def test_environment_must_set_both_or_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ROOT, "/tmp/x")
    monkeypatch.delenv(ENV_PREFIX, raising=False)
    with pytest.raises(StorageError, match="both"):
        Storage.from_env()
    monkeypatch.setenv(ENV_PREFIX, "gs://bucket/x")
    with pytest.raises(StorageError, match="s3://"):
        Storage.from_env()


def test_local_tree_lists_every_file_and_catches_damage(tmp_path: Path) -> None:
    marker = tmp_path / "results" / "deid" / "batch-0000.tree.json"
    folder = tree_dir(marker)
    _write(folder, {"a/provenance.json": b"{}", "a/img.ome.zarr/0/0.0": b"\x01" * 10})
    doc = publish_tree(marker, Storage())
    assert doc["n_files"] == 2 and doc["bytes"] == 12 and doc["url"] is None
    assert {f["path"] for f in doc["files"]} == {"a/provenance.json", "a/img.ome.zarr/0/0.0"}
    assert open_tree(marker, Storage()) == folder
    (folder / "a" / "provenance.json").write_bytes(b"{ changed }")
    with pytest.raises(StorageError, match=r"missing or changed \(a/provenance.json\)"):
        open_tree(marker, Storage())


def test_input_root_of_markers_is_their_folder(tmp_path: Path) -> None:
    markers = []
    for b in (0, 1):
        m = tmp_path / "leakcheck" / f"batch-000{b}.tree.json"
        _write(tree_dir(m), {f"item{b}.json": b"{}"})
        publish_tree(m, Storage())
        markers.append(m)
    assert input_root(markers, Storage()) == tmp_path / "leakcheck"
    assert input_root([tmp_path / "leakcheck"], Storage()) == tmp_path / "leakcheck"
    with pytest.raises(StorageError, match="tree markers only"):
        input_root([markers[0], tmp_path / "leakcheck"], Storage())


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    moto = pytest.importorskip("moto")
    import boto3

    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with moto.mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _keys(client, prefix: str) -> set[str]:
    got = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"] for o in got}


def test_s3_tree_uploads_replaces_and_downloads(tmp_path: Path, s3) -> None:
    producer = Storage(root=tmp_path / "producer", prefix=f"s3://{BUCKET}/run")
    marker = producer.local("results/convert/batch-0000.tree.json")
    folder = tree_dir(marker)
    _write(folder, {"x/provenance.json": b"{}", "x/old.txt": b"old", "x/z.zarr/0/0": b"abc"})
    publish_tree(marker, producer)
    assert _keys(s3, "run/results/convert/batch-0000/") == {
        "run/results/convert/batch-0000/x/provenance.json",
        "run/results/convert/batch-0000/x/old.txt",
        "run/results/convert/batch-0000/x/z.zarr/0/0",
    }
    # A re-run that writes fewer files leaves no stale object behind.
    (folder / "x" / "old.txt").unlink()
    doc = publish_tree(marker, producer)
    assert doc["url"] == f"s3://{BUCKET}/run/results/convert/batch-0000"
    assert "run/results/convert/batch-0000/x/old.txt" not in _keys(s3, "run/")

    # Another machine: only the marker (as Snakemake would retrieve it); the folder comes from S3.
    consumer = Storage(root=tmp_path / "consumer", prefix=f"s3://{BUCKET}/run")
    s3.upload_file(str(marker), BUCKET, "run/results/convert/batch-0000.tree.json")
    their_marker = consumer.local("results/convert/batch-0000.tree.json")
    consumer.fetch(their_marker)
    got = open_tree(their_marker, consumer)
    assert (got / "x" / "z.zarr" / "0" / "0").read_bytes() == b"abc"
    assert not (got / "x" / "old.txt").exists()

    # Only part of a tree: a staged folder's summary.
    (got / "x" / "provenance.json").unlink()
    (got / "x" / "z.zarr" / "0" / "0").unlink()
    open_tree(their_marker, consumer, only=["x/provenance.json"])
    assert (got / "x" / "provenance.json").exists()
    assert not (got / "x" / "z.zarr" / "0" / "0").exists()


def test_s3_download_is_checked_against_the_marker(tmp_path: Path, s3) -> None:
    st = Storage(root=tmp_path / "a", prefix=f"s3://{BUCKET}/run")
    marker = st.local("results/deid/batch-0000.tree.json")
    _write(tree_dir(marker), {"i/f.bin": b"good"})
    publish_tree(marker, st)
    s3.put_object(Bucket=BUCKET, Key="run/results/deid/batch-0000/i/f.bin", Body=b"evil")
    other = Storage(root=tmp_path / "b", prefix=f"s3://{BUCKET}/run")
    their = other.local("results/deid/batch-0000.tree.json")
    their.parent.mkdir(parents=True)
    their.write_text(json.dumps(json.loads(marker.read_text())))
    with pytest.raises(StorageError, match="SHA-256 differs"):
        open_tree(their, other)


def test_known_records_are_not_hashed_again_unless_the_size_changed(tmp_path: Path) -> None:
    marker = tmp_path / "stage" / "local.tree.json"
    _write(tree_dir(marker), {"a.bin": b"1234", "b.bin": b"xy"})
    known = {
        "a.bin": {"path": "a.bin", "size": 4, "sha256": "recorded-by-the-caller"},
        "b.bin": {"path": "b.bin", "size": 99, "sha256": "stale"},
    }
    doc = publish_tree(marker, Storage(), known=known)
    got = {f["path"]: f["sha256"] for f in doc["files"]}
    assert got["a.bin"] == "recorded-by-the-caller"
    assert got["b.bin"] == hashlib.sha256(b"xy").hexdigest()
