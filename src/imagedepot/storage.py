"""Where a job's files live: the working directory, or an S3 bucket through Snakemake's storage.

Two mechanisms, both driven by the environment the workflow sets (``rules/common.smk``):

* **Logical paths.** The manifest, the config and the rules name files by *logical* paths
  (``demo/inbox/a.dcm``, ``results/deid/batch-0001``). On a plain run they are paths in the working
  directory. With Snakemake's default storage provider (``--default-storage-provider s3``) every
  such path is an object under the storage prefix, and a job sees Snakemake's local copy of it under
  ``$IMAGEDEPOT_STORAGE_ROOT`` (for example ``.snakemake/storage/s3/<bucket>/<prefix>``).
  :meth:`Storage.local` maps a logical path to the file the job can open.

* **Trees.** Per-batch results are folders (an item folder per item; OME-Zarr stores inside).
  Snakemake's ``directory()`` outputs on remote storage re-upload whole folders, never delete objects
  a re-run no longer writes and compare folder mtimes by their newest object, so a rule here
  never declares a folder: it declares a small *tree marker* ``<tree>.tree.json`` listing every file
  of the folder ``<tree>/`` with size and SHA-256. :func:`publish_tree` writes the marker (and, on
  S3, uploads the folder object by object and deletes stale objects first);
  :func:`open_tree` gives a consumer the folder, downloading it next to its copy of the marker when
  the files live in S3, and checks every file against the marker. Snakemake tracks only markers.

S3 access uses boto3 with the standard environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``); the workflow copies the
``--storage-s3-*`` settings there when they are not set already.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagedepot.errors import ImagedepotError
from imagedepot.io import atomic_path, file_record, iter_files, read_json, write_json

ENV_ROOT = "IMAGEDEPOT_STORAGE_ROOT"
ENV_PREFIX = "IMAGEDEPOT_STORAGE_PREFIX"
TREE_SUFFIX = ".tree.json"
TREE_FORMAT = "imagedepot.tree/1"
_THREADS = 8


class StorageError(ImagedepotError):
    """A tree or object could not be written, found or verified."""


@dataclass(frozen=True)
class Storage:
    """The storage of the current job: local only (``prefix`` None) or an S3 prefix with its local copy."""

    root: Path | None = None
    prefix: str | None = None

    @classmethod
    def from_env(cls) -> Storage:
        root = os.environ.get(ENV_ROOT) or None
        prefix = os.environ.get(ENV_PREFIX) or None
        if bool(root) != bool(prefix):
            raise StorageError(f"set both {ENV_ROOT} and {ENV_PREFIX}, or neither")
        if prefix is not None and not prefix.startswith("s3://"):
            raise StorageError(f"{ENV_PREFIX}={prefix!r}: only s3:// prefixes are supported")
        return cls(Path(root) if root else None, prefix.rstrip("/") if prefix else None)

    @property
    def remote(self) -> bool:
        return self.prefix is not None

    def local(self, logical: str | Path) -> Path:
        """The file a job opens for a logical path (absolute paths are never remapped)."""
        p = Path(logical)
        if self.root is None or p.is_absolute() or _within(p, self.root):
            return p
        return self.root / p

    def logical(self, local: str | Path) -> str:
        """The logical path of a local file (inverse of :meth:`local`)."""
        p = Path(local)
        if self.root is not None and _within(p, self.root):
            return p.relative_to(self.root).as_posix()
        return p.as_posix()

    def url(self, local: str | Path) -> str | None:
        """The ``s3://`` URL of a local copy, or None on a local-only run."""
        if self.prefix is None:
            return None
        return f"{self.prefix}/{self.logical(local)}"

    def fetch(self, local: str | Path) -> Path:
        """Make sure the local copy of an object exists (downloading it on a storage run)."""
        p = Path(local)
        url = self.url(p)
        if url is not None and not p.exists():
            bucket, key = split_url(url)
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(p) as tmp:
                _client().download_file(bucket, key, str(tmp))
        return p


def _within(p: Path, root: Path) -> bool:
    try:
        p.relative_to(root)
    except ValueError:
        return False
    return True


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise StorageError(f"not an s3://bucket/key URL: {url}")
    bucket, key = url[5:].split("/", 1)
    return bucket, key


def _client() -> Any:
    import boto3

    return boto3.client("s3")


def tree_dir(marker: str | Path) -> Path:
    """The folder a tree marker describes: ``x/batch-0001.tree.json`` -> ``x/batch-0001``."""
    m = Path(marker)
    if not m.name.endswith(TREE_SUFFIX):
        raise StorageError(f"{m}: a tree marker's name ends with {TREE_SUFFIX}")
    return m.with_name(m.name[: -len(TREE_SUFFIX)])


def publish_tree(
    marker: str | Path,
    storage: Storage | None = None,
    *,
    known: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Record the folder of ``marker`` in the marker (and upload it on a storage run).

    ``known``: records (``size``, ``sha256``) this process computed for files of the folder
    moments ago (provenance, a staging manifest), by path relative to the folder; a file whose
    size still matches is not hashed again.

    Upload order makes a crash safe: stale objects are deleted and new ones uploaded before the
    marker is written, and Snakemake uploads the marker after the job, so a marker in storage
    always describes a complete tree.
    """
    storage = storage or Storage.from_env()
    folder = tree_dir(marker)
    if not folder.is_dir():
        raise StorageError(f"{folder}: tree folder missing; nothing to publish for {marker}")
    known = known or {}
    records = []
    for p in iter_files(folder):
        rel = p.relative_to(folder).as_posix()
        k = known.get(rel)
        if k is not None and k.get("sha256") and k.get("size") == p.stat().st_size:
            records.append({"path": rel, "size": k["size"], "sha256": k["sha256"]})
        else:
            records.append(file_record(p, folder) | {"path": rel})
    url = storage.url(folder)
    if url is not None:
        _upload(folder, url, [r["path"] for r in records])
    doc = {
        "format": TREE_FORMAT,
        "tree": storage.logical(folder),
        "url": url,
        "n_files": len(records),
        "bytes": sum(r["size"] for r in records),
        "files": records,
    }
    write_json(marker, doc)
    return doc


def _upload(folder: Path, url: str, paths: Sequence[str]) -> None:
    bucket, prefix = split_url(url.rstrip("/") + "/")
    client = _client()
    wanted = {prefix + p for p in paths}
    stale = [k for k in _list_keys(client, bucket, prefix) if k not in wanted]
    for i in range(0, len(stale), 1000):
        chunk = [{"Key": k} for k in stale[i : i + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})

    def put(rel: str) -> None:
        client.upload_file(str(folder / rel), bucket, prefix + rel)

    _run_all(put, paths)


def _list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _run_all(fn: Any, items: Iterable[str]) -> None:
    with ThreadPoolExecutor(_THREADS) as pool:
        for _ in pool.map(fn, items):
            pass


def read_marker(marker: str | Path, storage: Storage | None = None) -> dict[str, Any]:
    storage = storage or Storage.from_env()
    doc = read_json(storage.fetch(marker))
    if doc.get("format") != TREE_FORMAT:
        raise StorageError(f"{marker}: not a tree marker ({TREE_FORMAT})")
    return dict(doc)


def open_tree(
    marker: str | Path, storage: Storage | None = None, *, only: Sequence[str] | None = None
) -> Path:
    """The folder of a tree marker, complete and checked, ready to read.

    Local run: every listed file must be there with its size (the bytes were hashed when the tree
    was published in this working directory). Storage run: missing or different files are
    downloaded from the marker's URL and checked against their SHA-256. ``only``: just these
    files of the tree (relative paths), e.g. a staged folder's ``summary.json``.
    """
    storage = storage or Storage.from_env()
    doc = read_marker(marker, storage)
    folder = tree_dir(marker)
    missing = []
    wanted = set(only) if only is not None else None
    for r in doc["files"]:
        if wanted is not None and r["path"] not in wanted:
            continue
        p = folder / r["path"]
        if not p.is_file() or p.stat().st_size != r["size"]:
            missing.append(r)
    if missing and doc.get("url"):
        bucket, prefix = split_url(doc["url"].rstrip("/") + "/")
        client = _client()

        def get(rel: str) -> None:
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest, force=True) as tmp:
                client.download_file(bucket, prefix + rel, str(tmp))

        _run_all(get, [r["path"] for r in missing])
        for r in missing:
            got = file_record(folder / r["path"], folder)["sha256"]
            if got != r["sha256"]:
                raise StorageError(f"{folder / r['path']}: SHA-256 differs from {marker}")
    elif missing:
        names = ", ".join(r["path"] for r in missing[:5])
        raise StorageError(
            f"{folder}: {len(missing)} file(s) listed in {marker} are missing or changed ({names});"
            " re-run the rule that made it"
        )
    return folder


def open_trees(markers: Sequence[str | Path], storage: Storage | None = None) -> Path:
    """Open several trees of one stage (``results/deid/batch-*.tree.json``); return their parent."""
    storage = storage or Storage.from_env()
    parents = {tree_dir(m).parent for m in markers}
    if len(parents) > 1:
        raise StorageError(
            f"trees of one stage must share a folder, got {sorted(map(str, parents))}"
        )
    for m in markers:
        open_tree(m, storage)
    return parents.pop() if parents else Path(".")


def is_marker(path: str | Path) -> bool:
    """True for a tree marker path (``*.tree.json``)."""
    return str(path).endswith(TREE_SUFFIX)


def input_folder(path: str | Path, storage: Storage | None = None) -> Path:
    """The folder behind an input argument: a tree marker (opened, from storage when needed) or a
    plain folder (as is)."""
    return open_tree(path, storage) if is_marker(path) else Path(path)


def input_root(paths: Sequence[str | Path], storage: Storage | None = None) -> Path:
    """The root folder of one stage's outputs, given as its root folder or as the tree markers of
    its parts (``results/deid/batch-*.tree.json`` -> ``results/deid``)."""
    if len(paths) == 1 and not is_marker(paths[0]):
        return Path(paths[0])
    if not all(is_marker(p) for p in paths):
        raise StorageError(f"give one folder or tree markers only, got {[str(p) for p in paths]}")
    return open_trees(paths, storage)


def output_folder(path: str | Path) -> Path:
    """The folder a step writes for an output argument (a tree marker or a folder)."""
    return tree_dir(path) if is_marker(path) else Path(path)


def finish_output(
    path: str | Path,
    storage: Storage | None = None,
    *,
    known: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """After writing :func:`output_folder` of ``path``: publish it when ``path`` is a marker
    (``known``: see :func:`publish_tree`)."""
    if is_marker(path):
        publish_tree(path, storage, known=known)
