"""The XNAT test server as a pytest fixture, or a real XNAT when ``XNAT_TEST_URL`` is set.

Import the fixtures into a test module (``from tests.servers.xnat_fixture import xnat_server``).
With ``XNAT_TEST_URL``, ``XNAT_TEST_USER``, ``XNAT_TEST_PASSWORD`` and ``XNAT_TEST_PROJECT`` set,
:func:`xnat_server` yields that server instead (tests that need the test server's fault injection
or statistics skip themselves); the project must exist there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVER = Path(__file__).with_name("xnat_server.py")
START_TIMEOUT = 30.0


@dataclass
class XnatTarget:
    """Where a test deposits: URL, credentials, project; ``process`` is None for a real XNAT."""

    url: str
    user: str
    password: str
    project: str
    process: subprocess.Popen[str] | None = None
    data: Path | None = None

    @property
    def real(self) -> bool:
        return self.process is None

    def _test_call(self, route: str, method: str = "GET") -> Any:
        if self.real:
            pytest.skip("needs the test server's /_test routes")
        req = urllib.request.Request(
            f"{self.url}/_test/{route}", method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body.startswith((b"{", b"[")) else body.decode()

    def stats(self) -> dict[str, Any]:
        """Request counts, writes, uploads, imports and injected faults since the last reset."""
        return dict(self._test_call("stats"))

    def reset_stats(self) -> None:
        self._test_call("reset", "POST")

    def state(self) -> dict[str, Any]:
        """The server's whole archive (projects, subjects, ... files) and prearchive."""
        return dict(self._test_call("state"))

    def expire_sessions(self) -> None:
        self._test_call("expire-sessions", "POST")

    def env(self, prefix: str = "XNAT_DEPOSIT") -> dict[str, str]:
        """Environment variables carrying the credentials under ``prefix``."""
        return {f"{prefix}_USER": self.user, f"{prefix}_PASSWORD": self.password}


def real_xnat_from_env() -> XnatTarget | None:
    """The real XNAT named by ``XNAT_TEST_*`` variables, if all are set."""
    names = ("XNAT_TEST_URL", "XNAT_TEST_USER", "XNAT_TEST_PASSWORD", "XNAT_TEST_PROJECT")
    values = [os.environ.get(n) for n in names]
    if not all(values):
        return None
    url, user, password, project = (str(v) for v in values)
    return XnatTarget(url.rstrip("/"), user, password, project)


@contextlib.contextmanager
def run_xnat_server(
    data: Path, *args: str, project: str = "DEMO", prearchive_code: int = 4
) -> Iterator[XnatTarget]:
    """Start ``xnat_server.py`` on a free loopback port; stop it when the block ends."""
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(SERVER),
        "--port",
        "0",
        "--data",
        str(data),
        "--project",
        f"{project}:{prearchive_code}",
        *args,
    ]
    with open(data / "server.log", "a", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(START_TIMEOUT):
            raise RuntimeError("XNAT test server did not start in time")
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(
                f"XNAT test server failed to start: {(data / 'server.log').read_text()[-2000:]}"
            )
        yield XnatTarget(line.removeprefix("listening on "), "admin", "admin", project, proc, data)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def xnat_server(tmp_path: Path) -> Iterator[XnatTarget]:
    """A real XNAT from ``XNAT_TEST_*``, else the test server (project DEMO, auto-archive)."""
    real = real_xnat_from_env()
    if real is not None:
        yield real
        return
    with run_xnat_server(tmp_path / "xnat-server") as target:
        yield target


@pytest.fixture
def xnat_server_factory(tmp_path: Path) -> Iterator[Callable[..., XnatTarget]]:
    """Start test servers with extra options (``factory("--fail-rate", "0.2")``); skipped
    against a real XNAT, since faults cannot be injected there."""
    if real_xnat_from_env() is not None:
        pytest.skip("fault injection needs the test server")
    stack = contextlib.ExitStack()
    count = 0

    def start(*args: str, prearchive_code: int = 4, data: Path | None = None) -> XnatTarget:
        nonlocal count
        count += 1
        folder = data or tmp_path / f"xnat-server-{count}"
        return stack.enter_context(run_xnat_server(folder, *args, prearchive_code=prearchive_code))

    with stack:
        yield start


def build_staged_demo(root: Path, destination: str = "xnat") -> Path:
    """Run the demo's DICOM and NIfTI datasets through scan, convert, de-identify, leak gate, FHIR
    and generic staging for an XNAT destination (class controlled_repository) as the workflow
    does; return the staged folder ``root/results/stage/<destination>``."""
    from imagedepot.demo import make_demo
    from imagedepot.fhir import bundle_dataset
    from imagedepot.ingest import scan
    from imagedepot.pipeline import (
        ConvertOptions,
        DeidSettings,
        convert_item,
        deidentify_item,
        item_dir,
        leak_report_path,
        leakcheck_item,
    )
    from imagedepot.policy import load_policy
    from imagedepot.samplesheet import load_samples
    from imagedepot.stage import StageInputs, stage_destination

    info = make_demo(root / "demo")
    policies = {name: load_policy(path) for name, path in info.policies.items()}
    destinations = {destination: {"class": "controlled_repository", "type": "xnat"}}
    datasets = load_samples(
        info.samples,
        policies={k: str(v) for k, v in info.policies.items()},
        destinations=destinations | {"local": {"class": "internal", "type": "folder"}},
    )
    datasets = [
        dataclasses.replace(d, destinations=(destination,))
        for d in datasets
        if d.modality_class in {"dicom", "nifti"}
    ]
    manifest = scan(
        root / "demo" / "inbox", datasets=datasets, sheet=info.samples, policies=policies
    )
    res = root / "results"
    manifest.write(res / "ingest" / "manifest.json", res / "ingest" / "items")
    for item in manifest.items:
        if item.status != "pending":
            continue
        record = {"id": item.id, "batch": item.batch}
        item_json = res / "ingest" / "items" / f"{item.id}.json"
        converted = item_dir(res / "convert", record)
        deid = item_dir(res / "deid", record)
        convert_item(item_json, converted, ConvertOptions())
        deidentify_item(
            item_json,
            converted,
            deid,
            DeidSettings(
                policy_path=info.policies[item.policy],
                key_env=None,
                key_file=info.key_file,
                linkage_dir=root / "secure" / "linkage",
            ),
        )
        leak = leak_report_path(res / "leakcheck", record)
        leak.parent.mkdir(parents=True, exist_ok=True)
        leakcheck_item(item_json, deid, leak)
    for ds in sorted({i.dataset for i in manifest.items if i.status == "pending"}):
        bundle_dataset(
            ds,
            manifest=res / "ingest" / "items",
            deid_root=res / "deid",
            leak_root=res / "leakcheck",
            out=res / "fhir" / ds / "bundle.json",
            config={},
        )
    out = res / "stage" / destination
    stage_destination(
        destination,
        "controlled_repository",
        StageInputs(
            res / "ingest" / "manifest.json", res / "deid", res / "leakcheck", res / "fhir"
        ),
        out,
        policies=policies,
    )
    return out


@pytest.fixture(scope="session")
def xnat_staged_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's de-identified DICOM and NIfTI datasets staged for an XNAT destination (shared:
    copy it before changing anything)."""
    return build_staged_demo(tmp_path_factory.mktemp("xnat-demo"))
