"""The state one deposit run shares between its parts, and the quoting of XNAT REST paths.

:class:`_RunState` is the base of the parts of the depositor: reading and comparing
(:mod:`imagedepot.deposit.xnat.verification`), writing (:mod:`imagedepot.deposit.xnat.upload`),
DICOM import (:mod:`imagedepot.deposit.xnat.dicom_import`), all put together in
:mod:`imagedepot.deposit.xnat.deposit`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imagedepot.deposit.xnat.client import XnatClient
from imagedepot.deposit.xnat.report import DepositReport, _Receipt

log = logging.getLogger(__name__)


def _q(text: str) -> str:
    return quote(text, safe="")


def _qpath(path: str) -> str:
    return "/".join(_q(p) for p in path.split("/"))


class _RunState:
    """One deposit run's settings, client, report and receipt, with the helpers every part uses."""

    def __init__(
        self,
        client: XnatClient,
        plan: Mapping[str, Any],
        staged: Path,
        project: str,
        report: DepositReport,
        *,
        rounds: int,
        parallel_streams: int,
        dry_run: bool,
        dicom_verify: str,
        download_verify_limit: int,
        prearchive_wait: float,
        progress: Callable[[dict[str, Any]], None] | None,
        receipt: _Receipt | None,
    ) -> None:
        self.client = client
        self.plan = plan
        self.staged = staged
        self.project = project
        self.report = report
        self.rounds = max(1, rounds)
        self.streams = max(1, parallel_streams)
        self.dry_run = dry_run
        self.count_dicom = dicom_verify == "count"
        self.download_limit = download_verify_limit
        self.prearchive_wait = prearchive_wait
        self.progress = progress
        self.receipt = receipt
        self.archive_dest = "/prearchive"
        self.project_path = f"/data/projects/{_q(project)}"
        self._downloaded: dict[tuple[str, int], tuple[str, str]] = {}
        self._lock = threading.Lock()

    # helpers -------------------------------------------------------------------------------
    def _emit(self, event: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(event)

    def fail(self, message: str) -> None:
        log.error("%s", message)
        self.report.problems.append(message)

    def _pause(self, rnd: int) -> None:
        policy = self.client.policy
        time.sleep(min(policy.max_delay, policy.base_delay * policy.multiplier ** max(0, rnd - 2)))
