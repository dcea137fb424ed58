"""The layout of a staged package, its content hash, and finding packages.

:func:`~imagedepot.deposit.bia.stage.stage_bia` writes one package per dataset under
``results/bia/<destination>/<dataset>/``::

    bagit.txt  bag-info.txt  manifest-sha256.txt  tagmanifest-sha256.txt      BagIt 1.0 bag
    data/ro-crate-metadata.json                 RO-Crate 1.1 (root = data/)
    data/submission/pagetab.json                PageTab submission (what the API receives)
    data/submission/pagetab.tsv                 the same in PageTab TSV, for humans
    data/submission/MANIFEST.sha256             checksums of data/upload/ (sha256sum -c format)
    data/submission/package.json                dataset, policy, content hash, counts
    data/upload/<dataset>/                      exactly what goes to the secret FTP directory:
        <dataset>-filelist.tsv / .json          the File List (``Files`` column first)
        <item>/<item>.ome.zarr/ ...             the de-identified images
        <item>/provenance.json                  what made them (no inbox paths)

The content hash (of the upload checksums and the PageTab) identifies what was deposited in the
state database.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from imagedepot.errors import ConfigError

#: Version of the package layout written by :func:`stage_bia`.
PACKAGE_VERSION = 1


#: Package paths (relative to the bag root).
UPLOAD_DIR = "data/upload"


SUBMISSION_DIR = "data/submission"


def content_hash(package: str | Path) -> str:
    """The content hash of a package: sha256 over its upload checksums and its PageTab JSON.

    Stable across re-staging of identical content (no timestamps enter it).
    """
    sub = Path(package) / SUBMISSION_DIR
    h = hashlib.sha256()
    h.update((sub / "MANIFEST.sha256").read_bytes())
    h.update(b"\0")
    h.update((sub / "pagetab.json").read_bytes())
    return h.hexdigest()


def find_packages(path: str | Path) -> list[Path]:
    """The packages under ``path``: the bag itself, or every bag one level below."""
    p = Path(path)
    if (p / "bagit.txt").is_file():
        return [p]
    if not p.is_dir():
        raise ConfigError(f"{p}: no staged BioImage Archive package here")
    return sorted(c for c in p.iterdir() if (c / "bagit.txt").is_file())
