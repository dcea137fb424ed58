"""The workflow itself: lint, dry runs of every test config, a real run of the demo."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.workflow.conftest import CONFIGS, ROOT

pytestmark = pytest.mark.workflow


def test_lint_is_clean(demo_workdir: Path, run_snakemake) -> None:
    proc = run_snakemake(demo_workdir, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_dry_run(demo_workdir: Path, run_snakemake, config: Path) -> None:
    proc = run_snakemake(demo_workdir, "-n", "--cores", "1", config=config)
    assert "scan_inputs" in proc.stdout


def test_snakefmt_clean() -> None:
    exe = shutil.which("snakefmt")
    if exe is None:
        pytest.skip("snakefmt not installed")
    proc = subprocess.run(
        [exe, "--check", "Snakefile", "rules/"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


_SECRET = "Sup3r-s3cret"
_BOMB = "\n".join(
    ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    + ["scan: {batch_size: *a8}", ""]
)


@pytest.mark.parametrize(
    ("patch", "extra", "message"),
    [
        ({}, _BOMB, "c.yaml: line {line}: YAML anchors and aliases"),
        (
            {"pseudonymisation": {"linkage_dir": "results/stage"}},
            "",
            "pseudonymisation.linkage_dir: 'results/stage' lies inside results/stage/",
        ),
        (
            {"fhir": {"server_url": f"https://ada:{_SECRET}@fhir.example.org/fhir"}},
            "",
            "fhir.server_url: the URL holds credentials",
        ),
    ],
    ids=["yaml-bomb", "linkage-in-results", "credentials-in-url"],
)
def test_unsafe_configs_stop_the_workflow_before_any_job(
    tmp_path: Path, patch: dict, extra: str, message: str
) -> None:
    """rules/common.smk runs the package's checks before Snakemake walks the config (its schema
    validation would expand a YAML bomb) and before any rule gets it on its command line. The
    child is limited to 2 GiB of address space so that a regression fails instead of swapping."""
    import resource

    import yaml

    from tests.workflow.conftest import snakemake_cmd

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.update(patch)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config) + extra, encoding="utf-8")
    message = message.format(line=len(yaml.safe_dump(config).splitlines()) + 1)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run(
        [
            *snakemake_cmd(),
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(path),
            "-n",
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert message in out, out
    assert _SECRET not in out
    assert not (tmp_path / "results").exists()


def test_summary_accounts_for_every_input(demo_run: Path) -> None:
    s = json.loads((demo_run / "results" / "summary.json").read_text())
    assert s["found"] == s["processed"] + s["quarantined"] + s["excluded"]
    assert s["processed"] >= 4
    assert s["excluded"] >= 1
    reasons = {Path(q["file"]).name: q["reason"] for q in s["quarantined_items"] if "file" in q}
    assert "IM_CORRUPT" in reasons and "IM9999" in reasons
    assert all(q["reason"] for q in s["quarantined_items"])
    assert any("consent" in e["reason"] for e in s["excluded_items"])
    assert "found =" in (demo_run / "snakemake.out").read_text()


def test_staged_folder_has_converted_deidentified_outputs(demo_run: Path) -> None:
    from imagedepot.stage import verify_stage

    staged = demo_run / "results" / "stage" / "local"
    assert verify_stage(staged) == []
    names = [p.name for p in staged.rglob("*")]
    assert any(n.endswith(".nii.gz") for n in names)
    assert any(n.endswith(".ome.zarr") for n in names)
    assert any(n.endswith(".dcm") for n in names)
    assert any(n == "fhir-bundle.json" for n in names)
    lines = (staged / "MANIFEST.sha256").read_text().splitlines()
    assert len(lines) == json.loads((staged / "summary.json").read_text())["files"]
    # Nothing from the trusted zone leaves.
    assert not any(n == "actions.jsonl" for n in names)


def test_no_demo_phi_in_anything_staged(demo_run: Path) -> None:
    from imagedepot.demo import DEMO_PHI

    staged = demo_run / "results" / "stage" / "local"
    needles = [p.lower() for p in DEMO_PHI if len(p) >= 4]
    for f in staged.rglob("*"):
        rel = str(f.relative_to(staged)).lower()
        assert not any(n in rel for n in needles), rel
        if (
            f.is_file()
            and f.stat().st_size < 5_000_000
            and "/c/" not in str(f)
            and not f.name.isdigit()
        ):
            text = f.read_bytes().decode("latin-1").lower()
            hits = [n for n in needles if n in text]
            assert not hits, (f, len(hits))


def test_linkage_is_private_and_outside_results(demo_run: Path) -> None:
    linkage = list((demo_run / "demo" / "secure" / "linkage").glob("*.tsv"))
    assert linkage
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in linkage)


def test_second_run_has_nothing_to_do(demo_run: Path, run_snakemake) -> None:
    proc = run_snakemake(demo_run, "-n", "--cores", "1")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _planned(out: str) -> set[str]:
    """Rules of a dry run's job table (not just names that appear: make_report lists every
    benchmark file, benchmarks/scan_inputs/... included, among its inputs)."""
    import re

    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", out, re.M)} - {"total"}


def test_a_config_change_reruns_only_the_rules_that_use_it(
    demo_run: Path, run_snakemake, tmp_path: Path
) -> None:
    import yaml

    config = yaml.safe_load(CONFIGS[0].read_text())
    config["fhir"]["version"] = "R4B"
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(config))
    proc = run_snakemake(demo_run, "-n", "--cores", "1", config=changed)
    planned = _planned(proc.stdout + proc.stderr)
    assert "build_fhir_bundles" in planned
    assert "scan_inputs" not in planned and "convert_batch" not in planned


def test_a_changed_original_reruns_only_its_batch(demo_run: Path, run_snakemake) -> None:
    """Originals are tracked by a per-batch fingerprint (size and mtime), not as 10,000 inputs."""
    import json
    import os
    import re

    manifest = json.loads((demo_run / "results" / "ingest" / "manifest.json").read_text())
    batches = {i["batch"] for i in manifest["items"] if i["status"] == "pending"}
    assert len(batches) > 1
    item = next(i for i in manifest["items"] if i["status"] == "pending")
    original = demo_run / item["files"][0]["path"]
    st = original.stat()
    os.utime(original, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        out = run_snakemake(demo_run, "-n", "--cores", "1").stdout
    finally:
        os.utime(original, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert re.search(r"^convert_batch\s+1$", out, re.M), out
    assert f"wildcards: batch={int(item['batch']):04d}" in out
    assert "scan_inputs" not in _planned(out)
