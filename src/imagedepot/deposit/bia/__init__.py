"""BioImage Archive: stage a BioStudies PageTab submission and deposit it.

Two steps, as everywhere in imagedepot: a local, idempotent *stage* (:func:`stage_bia`, in the
default run) and a network *deposit* (:func:`deposit_bia`, a separate target). The modules, each
importing only those above it:

- :mod:`~imagedepot.deposit.bia.errors`: the exceptions.
- :mod:`~imagedepot.deposit.bia.study`: study-level metadata (authors, licence, release date...).
- :mod:`~imagedepot.deposit.bia.pagetab`: the PageTab submission of a dataset (REMBI), JSON and TSV.
- :mod:`~imagedepot.deposit.bia.validation`: PageTab checks, naming where to set each field.
- :mod:`~imagedepot.deposit.bia.ome_metadata`: instrument and acquisition from the OME-XML.
- :mod:`~imagedepot.deposit.bia.filelist`: the File List and its checks.
- :mod:`~imagedepot.deposit.bia.rocrate`: the RO-Crate metadata of a package.
- :mod:`~imagedepot.deposit.bia.bag`: writing and verifying the BagIt bag.
- :mod:`~imagedepot.deposit.bia.package`: the package layout, its content hash, finding packages.
- :mod:`~imagedepot.deposit.bia.stage`: :func:`stage_bia`, one package per dataset.
- :mod:`~imagedepot.deposit.bia.ftp`: the FTP upload, verified by content.
- :mod:`~imagedepot.deposit.bia.biostudies`: the BioStudies submission API and its credentials.
- :mod:`~imagedepot.deposit.bia.deposit`: :func:`deposit_bia`, upload then submission.

The names below are those the rest of imagedepot uses; everything else is in its module.
"""

from __future__ import annotations

from imagedepot.deposit.bia.bag import verify_bag
from imagedepot.deposit.bia.biostudies import BioStudiesClient, Credentials, credentials_from_env
from imagedepot.deposit.bia.deposit import deposit_bia
from imagedepot.deposit.bia.errors import ApiError, BiaValidationError
from imagedepot.deposit.bia.filelist import validate_file_list
from imagedepot.deposit.bia.ftp import FtpTarget
from imagedepot.deposit.bia.package import content_hash, find_packages
from imagedepot.deposit.bia.pagetab import pagetab_to_tsv
from imagedepot.deposit.bia.stage import stage_bia
from imagedepot.deposit.bia.study import StudyMetadata, load_study_metadata
from imagedepot.deposit.bia.validation import validate_pagetab

__all__ = [
    "ApiError",
    "BiaValidationError",
    "BioStudiesClient",
    "Credentials",
    "FtpTarget",
    "StudyMetadata",
    "content_hash",
    "credentials_from_env",
    "deposit_bia",
    "find_packages",
    "load_study_metadata",
    "pagetab_to_tsv",
    "stage_bia",
    "validate_file_list",
    "validate_pagetab",
    "verify_bag",
]
