"""The release check on a BioImage Archive package (the demo's microscopy dataset): PageTab
JSON and TSV, File Lists, BagIt, RO-Crate and MANIFEST.sha256, good and broken."""

# Fixtures are imported from tests/servers/bia_fixture.py (not a conftest), so pytest's fixture
# arguments shadow those imports by design.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

from imagedepot.validate import ValidationResult, validate_path, validate_paths
from tests.servers.bia_fixture import bia_package, demo_microscopy_stage  # noqa: F401

DATA = "micro-cells/data"


def by_kind(results: list[ValidationResult]) -> dict[str, list[ValidationResult]]:
    out: dict[str, list[ValidationResult]] = {}
    for r in results:
        out.setdefault(r.kind, []).append(r)
    return out


def test_demo_package_validates_clean(bia_package: Path) -> None:
    results = validate_paths([bia_package])
    assert [r.to_dict() for r in results if r.status == "invalid"] == []
    kinds = by_kind(results)
    for kind in ("bagit", "ro-crate", "pagetab", "pagetab-tsv", "file-list", "manifest"):
        assert kind in kinds, sorted(kinds)
    assert len(kinds["file-list"]) == 2  # the TSV and its JSON form
    assert kinds["ome-zarr"][0].valid
    assert kinds["pagetab"][0].info["file_lists"] == ["micro-cells/micro-cells-filelist.json"]


def test_pagetab_without_study(bia_package: Path) -> None:
    path = bia_package / DATA / "submission" / "pagetab.json"
    doc = json.loads(path.read_text())
    doc["section"]["type"] = "Experiment"
    path.write_text(json.dumps(doc))
    errors = validate_path(path).errors
    assert any("root section must have type 'Study'" in e for e in errors), errors
    del doc["section"]
    path.write_text(json.dumps(doc))
    assert any("root section ('section') is missing" in e for e in validate_path(path).errors)
    tsv = bia_package / DATA / "submission" / "pagetab.tsv"
    lines = [ln for ln in tsv.read_text().splitlines() if not ln.startswith("Study")]
    tsv.write_text("\n".join(lines) + "\n")
    assert "PageTab TSV: no 'Study' section" in validate_path(tsv).errors


def test_file_list_with_a_missing_file_or_a_wrong_size(bia_package: Path) -> None:
    upload = bia_package / DATA / "upload" / "micro-cells"
    tsv = upload / "micro-cells-filelist.tsv"
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    size = rows[0].index("Size (bytes)")
    rows[1][size] = str(int(rows[1][size]) + 1)
    tsv.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    errors = validate_path(tsv).errors
    assert any("bytes, the list says" in e for e in errors), errors
    (upload / "micro-cells-m001" / "provenance.json").unlink()
    errors = validate_path(upload / "micro-cells-filelist.json").errors
    assert any("provenance.json' is missing" in e for e in errors), errors


def test_truncated_bag(bia_package: Path) -> None:
    pkg = bia_package / "micro-cells"
    prov = pkg / "data" / "upload" / "micro-cells" / "micro-cells-m001" / "provenance.json"
    prov.write_bytes(prov.read_bytes()[:10])  # cut short
    result = validate_path(pkg)
    assert result.kind == "bagit" and not result.valid
    assert any("provenance.json" in e for e in result.errors), result.errors
    (pkg / "data" / "submission" / "package.json").unlink()
    errors = validate_path(pkg).errors
    assert any("package.json" in e and "exist" in e for e in errors), errors


def test_wrong_checksum_in_the_manifest(bia_package: Path) -> None:
    manifest = bia_package / DATA / "submission" / "MANIFEST.sha256"
    assert validate_path(manifest).valid, validate_path(manifest).errors
    lines = manifest.read_text().splitlines()
    digest, rest = lines[0].split(" ", 1)
    lines[0] = ("0" if digest[0] != "0" else "1") + digest[1:] + " " + rest
    manifest.write_text("\n".join(lines) + "\n")
    errors = validate_path(manifest).errors
    assert any("checksum differs from the manifest" in e for e in errors), errors


def test_rocrate_entity_missing_or_unreadable(bia_package: Path) -> None:
    crate = bia_package / DATA / "ro-crate-metadata.json"
    doc = json.loads(crate.read_text())
    doc["@graph"].append({"@id": "upload/nowhere.tif", "@type": "File", "name": "gone"})
    root = next(e for e in doc["@graph"] if e["@id"] == "./")
    root.setdefault("hasPart", []).append({"@id": "upload/nowhere.tif"})
    crate.write_text(json.dumps(doc))
    errors = validate_path(crate).errors
    assert "data entity 'upload/nowhere.tif' is not in the crate" in errors, errors
    crate.write_text("{not json")
    assert any("rocrate cannot read" in e for e in validate_path(crate).errors)
