"""Verification: what XNAT holds, compared with the plan.

Verification compares what XNAT lists (``ResultSet.Result`` of the ``files`` listing: ``URI``,
``Size``, ``digest``) with the plan: every planned file present with the planned size and MD5
digest. DICOM files are renamed by XNAT on import, so they are matched by content: MD5 digest and
size. When the server lists no digest, the files are downloaded (streamed, up to
``download_verify_limit`` bytes each) and hashed; a larger file is not accepted on its size: the
deposit fails naming it and the setting to raise (:mod:`imagedepot.deposit.verify`). Only
``dicom_verify="count"``, chosen explicitly, checks DICOM by size and count alone.
A site or project DICOM anonymisation script rewrites headers and so changes checksums: such a
deposit fails naming the scan (disable the script for this project, the data is already
de-identified, or pass ``dicom_verify="count"``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from imagedepot.deposit.verify import HashSink, over_limit_message
from imagedepot.deposit.xnat.run import _q, _RunState

_FILES_IN_URI = re.compile(r"^.*?/resources/[^/]+/files/")


@dataclass
class _ServerFile:
    path: str
    size: int | None
    digest: str | None
    uri: str


@dataclass
class _ServerScan:
    id: str
    xsi_type: str
    type: str
    uid: str | None
    resources: dict[str, list[_ServerFile]]


@dataclass
class _Diff:
    send: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tally: Counter[str] = field(default_factory=Counter)


@dataclass
class _Work:
    """What one round found missing in one scope (a session or a subject's own resources)."""

    imports: list[dict[str, Any]] = field(default_factory=list)
    creates: list[Mapping[str, Any]] = field(default_factory=list)
    updates: list[tuple[Mapping[str, Any], _ServerScan]] = field(default_factory=list)
    new_resources: list[tuple[str, Mapping[str, Any], str]] = field(default_factory=list)
    uploads: list[tuple[str, Mapping[str, Any], Mapping[str, Any], str]] = field(
        default_factory=list
    )
    pending: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra_scans: list[str] = field(default_factory=list)
    tally: Counter[str] = field(default_factory=Counter)

    def empty(self) -> bool:
        return not (
            self.imports
            or self.creates
            or self.updates
            or self.new_resources
            or self.uploads
            or self.pending
        )


class _Verifier(_RunState):
    """Reads what XNAT holds and compares it with the plan."""

    # listings ------------------------------------------------------------------------------
    def _files(self, resource_path: str) -> list[_ServerFile]:
        out = []
        for r in self.client.result_set(f"{resource_path}/files"):
            uri = str(r.get("URI") or "")
            path = unquote(_FILES_IN_URI.sub("", uri, count=1)) if uri else str(r.get("Name", ""))
            size = str(r.get("Size") or "").strip()
            digest = str(r.get("digest") or "").strip().lower() or None
            out.append(_ServerFile(path, int(size) if size.isdigit() else None, digest, uri))
        return out

    def _resources(self, base: str, wanted: Iterable[str]) -> dict[str, list[_ServerFile]]:
        labels = {str(r.get("label")) for r in self.client.result_set(f"{base}/resources")}
        return {w: self._files(f"{base}/resources/{_q(w)}") for w in wanted if w in labels}

    def _scans(self, exp_path: str, session: Mapping[str, Any]) -> dict[str, _ServerScan]:
        need_uid = any(s.get("series_instance_uid") for s in session["scans"])
        labels = {r["label"] for s in session["scans"] for r in s["resources"]}
        scans: dict[str, _ServerScan] = {}
        for row in self.client.result_set(f"{exp_path}/scans"):
            sid = str(row.get("ID"))
            uid = None
            if need_uid:
                detail = self.client.get_json(f"{exp_path}/scans/{_q(sid)}")
                try:
                    uid = str(detail["items"][0]["data_fields"].get("UID") or "") or None
                except (KeyError, IndexError, TypeError, AttributeError):
                    uid = None
            scans[sid] = _ServerScan(
                id=sid,
                xsi_type=str(row.get("xsiType") or ""),
                type=str(row.get("type") or ""),
                uid=uid,
                resources=self._resources(f"{exp_path}/scans/{_q(sid)}", labels),
            )
        return scans

    # comparison ----------------------------------------------------------------------------
    def _download_hashes(self, sf: _ServerFile) -> tuple[str, str]:
        """(MD5, SHA-256) of a server file, downloaded in a stream (memory flat in its size)."""
        key = (sf.uri, sf.size if sf.size is not None else -1)
        if key not in self._downloaded:
            path = urlsplit(sf.uri).path
            got = self.client.call("GET", path, sink=HashSink, what=f"download {path}")
            self._downloaded[key] = (got.md5.hexdigest(), got.sha256.hexdigest())
        return self._downloaded[key]

    def _over_limit(self, sf: _ServerFile) -> bool:
        return sf.size is not None and sf.size > self.download_limit

    def _refuse_over_limit(self, diff: _Diff, paths: list[str]) -> None:
        if paths:
            diff.problems.append(
                over_limit_message(
                    paths, self.download_limit, "download_verify_limit (--download-verify-limit)"
                )
            )

    def _compare(
        self, res: Mapping[str, Any], server: list[_ServerFile] | None, *, count: bool = False
    ) -> _Diff:
        """What of one planned resource is missing or different on the server."""
        diff = _Diff()
        if server is None:
            diff.send = list(res["files"])
            return diff
        if res.get("import"):
            # DICOM: XNAT renames files on import, so match by content (MD5 and size). A file the
            # server lists without a digest is downloaded and hashed ("count": sizes only).
            pool: Counter[tuple[str | None, int | None, str]] = Counter()
            too_big = []
            for listed in server:
                if count:
                    pool[(None, listed.size, "size")] += 1
                elif listed.digest is not None:
                    pool[(listed.digest, listed.size, "digest")] += 1
                elif self._over_limit(listed):
                    too_big.append(listed.path)
                else:
                    pool[(self._download_hashes(listed)[0], listed.size, "download")] += 1
            self._refuse_over_limit(diff, too_big)
            for f in res["files"]:
                md5 = None if count else f["md5"]
                how = next(
                    (h for h in ("digest", "download", "size") if pool[(md5, f["size"], h)] > 0),
                    None,
                )
                if how is None:
                    diff.send.append(f)
                    continue
                pool[(md5, f["size"], how)] -= 1
                diff.tally[how] += 1
            extra = sum(pool.values())
            if extra:
                hint = (
                    ""
                    if count
                    else " (a DICOM anonymisation script on the project or site rewrites files "
                    "on import; disable it for this project or use dicom_verify='count')"
                )
                diff.problems.append(
                    f"holds {extra} DICOM file(s) that are not in the plan or differ from it{hint}"
                )
            return diff
        by_path = {sf.path: sf for sf in server}
        too_big = []
        for f in res["files"]:
            sf = by_path.get(f["name"])
            if sf is None or (sf.size is not None and sf.size != f["size"]):
                diff.send.append(f)
            elif sf.digest is not None:
                if sf.digest == f["md5"]:
                    diff.tally["digest"] += 1
                else:
                    diff.send.append(f)
            elif self._over_limit(sf):
                too_big.append(sf.path)
            elif self._download_hashes(sf)[1] == f["sha256"]:
                diff.tally["download"] += 1
            else:
                self._downloaded.pop((sf.uri, sf.size if sf.size is not None else -1), None)
                diff.send.append(f)
        self._refuse_over_limit(diff, too_big)
        extra_names = sorted(set(by_path) - {f["name"] for f in res["files"]})
        if extra_names:
            diff.problems.append(
                f"holds {len(extra_names)} file(s) not in the plan: {', '.join(extra_names[:5])}"
            )
        return diff

    def _resource_work(
        self,
        base: str,
        resources: Iterable[Mapping[str, Any]],
        server: Mapping[str, list[_ServerFile]] | None,
        scope: str,
        work: _Work,
    ) -> None:
        """Compare the non-DICOM resources of one object (``server`` None: object not there yet)."""
        for res in resources:
            if res.get("import"):
                continue
            diff = self._compare(res, None if server is None else server.get(res["label"]))
            work.problems += [f"{scope} resource {res['label']} {p}" for p in diff.problems]
            work.tally += diff.tally
            if not diff.send:
                continue
            where = f"{scope}/resources/{res['label']}"
            work.missing.append(f"{where}: {len(diff.send)} file(s) missing or different")
            if server is None:
                work.pending += [f"{where}/{f['name']}" for f in diff.send]
                continue
            if res["label"] not in server:
                work.new_resources.append((base, res, scope))
            work.uploads += [(base, res, f, scope) for f in diff.send]
