"""Deposit staged, de-identified data to XNAT: plan locally, upload, verify, resume.

Two steps, matching the workflow's split between local staging and network deposit:
:func:`stage_xnat` (local, no network, idempotent) writes the XNAT plan of a staged folder, and
:func:`deposit_xnat` (network) brings the server to the plan and verifies every file. The modules,
each importing only those above it:

- :mod:`~imagedepot.deposit.xnat.errors`: :class:`XnatDepositError`.
- :mod:`~imagedepot.deposit.xnat.plan`: the plan, staged files mapped onto XNAT's model.
- :mod:`~imagedepot.deposit.xnat.client`: credentials; the xnatpy session with retries and re-login.
- :mod:`~imagedepot.deposit.xnat.report`: the report of a run and the local receipt.
- :mod:`~imagedepot.deposit.xnat.run`: the state of one deposit run, shared by the parts below.
- :mod:`~imagedepot.deposit.xnat.verification`: what XNAT holds, compared with the plan.
- :mod:`~imagedepot.deposit.xnat.upload`: creating resources and scans, uploading files.
- :mod:`~imagedepot.deposit.xnat.dicom_import`: the DICOM import service and the prearchive.
- :mod:`~imagedepot.deposit.xnat.deposit`: :func:`deposit_xnat`, the rounds per session.
"""

from __future__ import annotations

from imagedepot.deposit.xnat.client import Credentials, XnatClient, resolve_credentials
from imagedepot.deposit.xnat.deposit import deposit_xnat
from imagedepot.deposit.xnat.errors import XnatDepositError
from imagedepot.deposit.xnat.plan import (
    build_plan,
    iter_plan_files,
    load_plan,
    stage_xnat,
    xnat_label,
)
from imagedepot.deposit.xnat.report import DepositReport

__all__ = [
    "Credentials",
    "DepositReport",
    "XnatClient",
    "XnatDepositError",
    "build_plan",
    "deposit_xnat",
    "iter_plan_files",
    "load_plan",
    "resolve_credentials",
    "stage_xnat",
    "xnat_label",
]
