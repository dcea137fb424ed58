"""The BagIt 1.0 bag (SHA-256 manifests) that makes a package immutable.

:func:`verify_bag` re-hashes every file, and
:func:`~imagedepot.deposit.bia.deposit.deposit_bia` refuses a package changed after staging.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagedepot import __version__
from imagedepot.io import file_record, iter_files, sha256_file, write_text
from imagedepot.provenance import now

BAGIT_VERSION = "1.0"


def write_bag(root: str | Path, info: Mapping[str, str]) -> None:
    """Turn ``root`` (holding ``data/``) into a BagIt 1.0 bag with SHA-256 manifests."""
    r = Path(root)
    payload = [file_record(p, r) for p in iter_files(r / "data")]
    write_text(
        r / "bagit.txt", f"BagIt-Version: {BAGIT_VERSION}\nTag-File-Character-Encoding: UTF-8\n"
    )
    write_text(
        r / "manifest-sha256.txt",
        "".join(f"{f['sha256']}  {_bag_path(f['path'])}\n" for f in payload),
    )
    octets = sum(f["size"] for f in payload)
    lines = {
        "Bagging-Date": now()[:10],
        "Bag-Software-Agent": f"imagedepot {__version__}",
        "Payload-Oxum": f"{octets}.{len(payload)}",
        **info,
    }
    write_text(r / "bag-info.txt", "".join(f"{k}: {v}\n" for k, v in lines.items()))
    tags = [file_record(r / n, r) for n in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt")]
    write_text(r / "tagmanifest-sha256.txt", "".join(f"{f['sha256']}  {f['path']}\n" for f in tags))


def _bag_path(path: str) -> str:
    # BagIt 1.0: CR, LF and % in paths are percent-encoded in manifests.
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _unbag_path(path: str) -> str:
    return path.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def _read_manifest(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, _, name = line.partition(" ")
            out[_unbag_path(name.lstrip(" *"))] = digest.lower()
    return out


def verify_bag(root: str | Path) -> list[str]:
    """Re-check a bag: declaration, every payload and tag checksum, no extra or missing file, and the
    Payload-Oxum. Returns the problems (empty when the bag is intact)."""
    r = Path(root)
    problems: list[str] = []
    decl = r / "bagit.txt"
    if not decl.is_file() or "BagIt-Version:" not in decl.read_text(encoding="utf-8"):
        return [f"{decl.name}: missing or not a BagIt declaration"]
    for name in ("manifest-sha256.txt", "tagmanifest-sha256.txt"):
        if not (r / name).is_file():
            problems.append(f"{name}: missing")
    if problems:
        return problems
    listed = _read_manifest(r / "manifest-sha256.txt")
    present = (
        {str(p.relative_to(r)) for p in iter_files(r / "data")} if (r / "data").is_dir() else set()
    )
    for name, digest in sorted(listed.items()):
        p = r / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{name}: checksum differs from the manifest (changed after staging)")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: not in the manifest (added after staging)")
    for name, digest in sorted(_read_manifest(r / "tagmanifest-sha256.txt").items()):
        p = r / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{name}: checksum differs from the tag manifest")
    info = _read_bag_info(r)
    if "Payload-Oxum" in info and not problems:
        octets = sum((r / n).stat().st_size for n in listed)
        if info["Payload-Oxum"] != f"{octets}.{len(listed)}":
            problems.append("bag-info.txt: Payload-Oxum does not match the payload")
    return problems


def _read_bag_info(r: Path) -> dict[str, str]:
    info: dict[str, str] = {}
    p = r / "bag-info.txt"
    if p.is_file():
        for line in p.read_text(encoding="utf-8").splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                info[k.strip()] = v.strip()
    return info
