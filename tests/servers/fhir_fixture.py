"""Helpers of the FHIR tests: the test FHIR server as a process, and de-identified demo results.

``FHIR_TEST_URL`` (and ``FHIR_TEST_VERSION``, default R5) points the push tests at a real server
instead of the local one; tests that need the local server's fault injection skip then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

SERVER = Path(__file__).with_name("fhir_server.py")
REAL_URL = os.environ.get("FHIR_TEST_URL", "").strip()
REAL_VERSION = os.environ.get("FHIR_TEST_VERSION", "R5").strip() or "R5"
TEST_KEY = "imagedepot-fhir-tests-fixed-key-0001"
#: Bearer token for a real server (``FHIR_TEST_URL``); the local server needs none.
REAL_TOKEN = os.environ.get("IMAGEDEPOT_FHIR_TOKEN") if REAL_URL else None


@contextmanager
def running_fhir_server(*args: str, version: str = "R5", timeout: float = 30.0) -> Iterator[str]:
    """Start ``fhir_server.py`` on 127.0.0.1 and a free port; yield its base URL; stop it."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--fhir-version", version, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or "listening on" not in line[0]:
            proc.kill()
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"FHIR test server did not start: {err[-2000:]}")
        url = line[0].split("listening on", 1)[1].strip()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(url + "metadata", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("FHIR test server does not answer")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def fhir_base_url(version: str = "R5") -> Iterator[tuple[str, str]]:
    """``(url, release)`` of the server to test against: ``FHIR_TEST_URL`` or a local one."""
    if REAL_URL:
        yield REAL_URL.rstrip("/") + "/", REAL_VERSION
    else:
        with running_fhir_server(version=version) as url:
            yield url, version


def auth_headers() -> dict[str, str]:
    """``Authorization`` header for a real server that needs a token."""
    return {"Authorization": f"Bearer {REAL_TOKEN}"} if REAL_TOKEN else {}


def search(url: str, rtype: str, system: str, value: str) -> list[dict[str, Any]]:
    """Resources of ``rtype`` with identifier ``system|value`` on the server at ``url``."""
    r = requests.get(
        f"{url.rstrip('/')}/{rtype}",
        params={"identifier": f"{system}|{value}"},
        headers={"Accept": "application/fhir+json"} | auth_headers(),
        timeout=30,
    )
    r.raise_for_status()
    return [e["resource"] for e in r.json().get("entry", [])]


# --------------------------------------------------------------------------- demo results


@dataclass
class DemoResults:
    """The demo, scanned, converted, de-identified and leak-checked for a few datasets."""

    root: Path
    demo: Any  # imagedepot.demo.DemoInfo
    items_dir: Path
    convert_root: Path
    deid_root: Path
    leak_root: Path
    config: dict[str, Any]

    def items(self, dataset: str) -> list[dict[str, Any]]:
        """The scanned items of a dataset."""
        out = [json.loads(p.read_text()) for p in sorted(self.items_dir.glob("*.json"))]
        return [i for i in out if i.get("dataset") == dataset]

    def config_json(self, **fhir: Any) -> str:
        """The config as ``--config-json``, with ``fhir`` keys replaced."""
        cfg = json.loads(json.dumps(self.config))
        cfg["fhir"] = cfg.get("fhir", {}) | fhir
        return json.dumps(cfg)


def build_demo_results(
    root: Path,
    datasets: Sequence[str] = ("dcm-subj01", "dcm-subj02", "micro-cells"),
    *,
    version: str = "R5",
) -> DemoResults:
    """Run the demo through scan, conversion, de-identification and the leak gate (flat layout:
    ``<stage root>/<item>``) for ``datasets``; a random identifier system isolates runs against a
    shared server."""
    from imagedepot.demo import make_demo
    from imagedepot.ingest import scan
    from imagedepot.pipeline import (
        ConvertOptions,
        DeidSettings,
        convert_item,
        deidentify_item,
        leakcheck_item,
    )
    from imagedepot.policy import load_policy
    from imagedepot.samplesheet import load_samples

    demo = make_demo(root / "demo")
    # A fixed key: pseudonyms and date shifts (hence leak-gate outcomes) are the same every run.
    demo.key_file.write_text(TEST_KEY + "\n")
    res = root / "results"
    destinations = {"local": {"class": "internal", "type": "folder"}}
    policies = {name: str(path) for name, path in demo.policies.items()}
    loaded = {name: load_policy(path) for name, path in demo.policies.items()}
    rows = load_samples(demo.samples, policies=policies, destinations=destinations)
    manifest = scan(demo.root / "inbox", datasets=rows, sheet=demo.samples, policies=loaded)
    manifest.write(res / "manifest.json", res / "items")
    out = DemoResults(
        root=root,
        demo=demo,
        items_dir=res / "items",
        convert_root=res / "convert",
        deid_root=res / "deid",
        leak_root=res / "leakcheck",
        config={
            "samples": str(demo.samples),
            "inbox": str(demo.root / "inbox"),
            "policies": policies,
            "pseudonymisation": {
                "key_env": "IMAGEDEPOT_TEST_UNSET_KEY",
                "key_file": str(demo.key_file),
                "linkage_dir": str(root / "secure" / "linkage"),
            },
            "destinations": destinations,
            "fhir": {
                "version": version,
                "identifier_system": f"urn:imagedepot:test:{uuid.uuid4()}",
            },
        },
    )
    for path in sorted(out.items_dir.glob("*.json")):
        item = json.loads(path.read_text())
        if item["status"] != "pending" or item["dataset"] not in datasets:
            continue
        conv = out.convert_root / item["id"]
        deid = out.deid_root / item["id"]
        convert_item(path, conv, ConvertOptions())
        settings = DeidSettings(
            policy_path=demo.policies[item["policy"]],
            key_env=None,
            key_file=demo.key_file,
            linkage_dir=root / "secure" / "linkage",
        )
        deidentify_item(path, conv, deid, settings)
        leakcheck_item(path, deid, out.leak_root / f"{item['id']}.json")
    return out
