"""BioImage Archive staging: PageTab + File List from the demo microscopy, validation, bag, RO-Crate."""

# Fixtures are imported from tests/servers/bia_fixture.py (not a conftest), so pytest's fixture
# arguments shadow those imports by design.
# ruff: noqa: F811

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from imagedepot.deposit.bia import (
    BiaValidationError,
    StudyMetadata,
    content_hash,
    pagetab_to_tsv,
    stage_bia,
    validate_file_list,
    validate_pagetab,
    verify_bag,
)
from imagedepot.errors import ConfigError, PolicyError
from tests.servers.bia_fixture import (  # noqa: F401 - fixtures
    STUDY,
    DemoStage,
    bia_package,
    demo_microscopy_stage,
)


def _read(pkg: Path, rel: str) -> str:
    return (pkg / rel).read_text(encoding="utf-8")


def test_demo_microscopy_gives_a_valid_pagetab_and_file_list(bia_package: Path) -> None:
    pkg = bia_package / "micro-cells"
    doc = json.loads(_read(pkg, "data/submission/pagetab.json"))
    assert validate_pagetab(doc) == []
    attrs = {a["name"]: a["value"] for a in doc["attributes"]}
    assert attrs["Title"] == "Fibroblasts stained for DNA and GFP"
    assert attrs["AttachTo"] == "BioImages"
    assert attrs["ReleaseDate"] == "2030-01-01"
    types = [s["type"] for s in doc["section"]["subsections"]]
    for t in (
        "author",
        "organization",
        "Biosample",
        "Specimen",
        "Image Acquisition",
        "Study Component",
    ):
        assert t in types
    acq = next(s for s in doc["section"]["subsections"] if s["type"] == "Image Acquisition")
    acq_attrs = {a["name"]: a["value"] for a in acq["attributes"]}
    # Derived from the de-identified OME-XML: instrument, physical sizes and channel names.
    assert "EX-1000" in acq_attrs["Imaging Instrument"]
    assert "0.325" in acq_attrs["Image Acquisition Parameters"]
    assert "DAPI" in acq_attrs["Image Acquisition Parameters"]
    # The File List: `Files` first, one OME-Zarr folder per image, every path in the upload tree.
    upload = pkg / "data" / "upload"
    with open(upload / "micro-cells" / "micro-cells-filelist.tsv", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0][0] == "Files"
    assert validate_file_list(rows[0], rows[1:], upload) == []
    zarr = [r for r in rows[1:] if r[0].endswith(".ome.zarr")]
    assert zarr == [r for r in rows[1:] if r[2] == "image"] and len(zarr) == 1
    assert zarr[0][-1] == "DAPI; GFP"
    fl_json = json.loads(_read(pkg, "data/upload/micro-cells/micro-cells-filelist.json"))
    assert [e["path"] for e in fl_json] == [r[0] for r in rows[1:]]
    # The TSV PageTab (for people) names the TSV file list and keeps the reference attribute.
    tsv = _read(pkg, "data/submission/pagetab.tsv")
    assert "File List\tmicro-cells/micro-cells-filelist.tsv" in tsv
    assert "<affiliation>\to1" in tsv
    assert "Associations\tAssociations-1\tStudy-Component-1" in tsv
    # No trusted-zone content: no inbox path, no planted experimenter.
    everything = "".join(p.read_text(errors="ignore") for p in pkg.rglob("*.json"))
    assert "Smithee" not in everything and "/inbox/" not in everything


def test_checksum_manifest_bag_and_rocrate(bia_package: Path) -> None:
    pkg = bia_package / "micro-cells"
    assert verify_bag(pkg) == []
    for name in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt"):
        assert (pkg / name).is_file()
    assert "BagIt-Version: 1.0" in _read(pkg, "bagit.txt")
    manifest = _read(pkg, "data/submission/MANIFEST.sha256").splitlines()
    uploads = sorted(
        str(p.relative_to(pkg / "data" / "upload"))
        for p in (pkg / "data/upload").rglob("*")
        if p.is_file()
    )
    assert sorted(line.split("  ", 1)[1] for line in manifest) == uploads
    crate = json.loads(_read(pkg, "data/ro-crate-metadata.json"))
    graph = {e["@id"]: e for e in crate["@graph"]}
    assert graph["ro-crate-metadata.json"]["conformsTo"]["@id"] == "https://w3id.org/ro/crate/1.1"
    root = graph["./"]
    assert root["@type"] == "Dataset" and root["license"]["@id"].startswith(
        "https://creativecommons.org"
    )
    files = [e for e in crate["@graph"] if e["@type"] == "File"]
    assert len(files) == len(root["hasPart"]) > 20
    assert all(len(f["sha256"]) == 64 and int(f["contentSize"]) >= 0 for f in files)
    action = next(e for e in crate["@graph"] if e["@type"] == "CreateAction")
    tool = graph[action["instrument"]["@id"]]
    assert (
        tool["@type"] == "SoftwareApplication" and tool["name"] == "imagedepot" and tool["version"]
    )
    assert action["startTime"] <= action["endTime"]
    pkgjson = json.loads(_read(pkg, "data/submission/package.json"))
    assert pkgjson["content_hash"] == content_hash(pkg)
    assert pkgjson["policy"]["name"] == "open-microscopy"
    assert "public_archive" in pkgjson["policy"]["allowed_classes"]


def test_content_hash_is_stable_across_restaging(
    demo_microscopy_stage: DemoStage, bia_package: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    stage_bia(
        bia_package.parent.parent / "stage" / "bia",
        demo_microscopy_stage.items_dir,
        again,
        destination="bia",
        study=StudyMetadata.from_mapping(STUDY),
        policies=demo_microscopy_stage.policies,
    )
    assert content_hash(again / "micro-cells") == content_hash(bia_package / "micro-cells")


def test_a_changed_file_after_staging_is_detected(bia_package: Path) -> None:
    pkg = bia_package / "micro-cells"
    target = pkg / "data/upload/micro-cells/micro-cells-m001/provenance.json"
    text = target.read_text()
    target.unlink()  # the payload may be hard-linked: replace, never edit in place
    target.write_text(text.replace("micro-cells", "micro-cellz"))
    (pkg / "data/upload/micro-cells/extra.txt").write_text("added later\n")
    problems = verify_bag(pkg)
    assert any("provenance.json: checksum differs" in p for p in problems)
    assert any("extra.txt: not in the manifest" in p for p in problems)
    shutil.rmtree(pkg / "data/upload/micro-cells/micro-cells-m001/micro-cells-m001.ome.zarr/OME")
    assert any("METADATA.ome.xml: missing" in p for p in verify_bag(pkg))


def test_missing_rembi_fields_are_named_with_their_source(
    demo_microscopy_stage: DemoStage, tmp_path: Path
) -> None:
    study = dict(STUDY)
    del study["license"], study["authors"], study["sample_preparation"]
    with pytest.raises(BiaValidationError) as err:
        stage_bia(
            demo_microscopy_stage.staged,
            demo_microscopy_stage.items_dir,
            tmp_path / "out",
            destination="bia",
            study=StudyMetadata.from_mapping(study),
            policies=demo_microscopy_stage.policies,
        )
    text = str(err.value)
    assert "'License' is missing" in text and "study 'license'" in text
    assert "'author' section is required" in text and "study 'authors'" in text
    assert "'Sample Preparation Protocol' is missing" in text and "sample_preparation" in text
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_policy_without_public_archive_is_never_packaged(
    demo_microscopy_stage: DemoStage, tmp_path: Path
) -> None:
    class Closed:
        name, sha256, allowed_classes = "open-microscopy", "0" * 64, frozenset({"internal"})

        def check_destination(self, name: str, cls: str) -> None:
            raise PolicyError(f"class {cls} not allowed")

    rep = stage_bia(
        demo_microscopy_stage.staged,
        demo_microscopy_stage.items_dir,
        tmp_path / "out",
        destination="bia",
        study=StudyMetadata.from_mapping(STUDY),
        policies={"open-microscopy": Closed()},
    )
    assert rep.packages == {} and rep.skipped[0]["dataset"] == "micro-cells"
    assert not (tmp_path / "out" / "micro-cells").exists()
    with pytest.raises(ConfigError, match="public_archive"):
        stage_bia(
            demo_microscopy_stage.staged,
            demo_microscopy_stage.items_dir,
            tmp_path / "out2",
            destination="bia",
            destination_class="internal",
            study=StudyMetadata.from_mapping(STUDY),
            policies=demo_microscopy_stage.policies,
        )


def test_pagetab_structure_errors() -> None:
    assert validate_pagetab([]) == ["submission: the PageTab document must be a JSON object"]
    assert "root section" in validate_pagetab({"type": "submission", "attributes": []})[0]
    doc = {
        "type": "submission",
        "attributes": [{"name": "Title", "value": "t"}, {"name": "", "value": "x"}],
        "section": {
            "type": "Study",
            "attributes": [{"name": "Description", "value": 3}],
            "subsections": [
                {"type": "A", "accno": "x-1"},
                {"type": "B", "accno": "x-1", "files": [{"attributes": []}]},
                [{"type": "T", "accno": "t1", "files": [{"path": "f"}]}],
            ],
        },
    }
    problems = validate_pagetab(doc)
    assert any("'name' must be non-empty" in p for p in problems)
    assert any("'value' must be text" in p for p in problems)
    assert any("accno 'x-1' used twice" in p for p in problems)
    assert any("needs a non-empty 'path'" in p for p in problems)
    assert any("sections table cannot hold files" in p for p in problems)
    # A plain BioStudies submission (not BioImages) needs no REMBI sections.
    plain = {
        "type": "submission",
        "attributes": [{"name": "Title", "value": "t"}],
        "section": {"type": "Study"},
    }
    assert validate_pagetab(plain) == []
    assert pagetab_to_tsv(plain).startswith("Submission\t\nTitle\tt\n")


def test_file_list_rules(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.tif").write_bytes(b"1")
    ok = validate_file_list(["Files", "Channel"], [["a/x.tif", "DAPI"]], tmp_path)
    assert ok == []
    bad = validate_file_list(
        ["Path", "C"],
        [
            ["/abs.tif", "1"],
            ["a\\b.tif", "1"],
            ["../up.tif", "1"],
            ["a/missing.tif", "1"],
            ["a/x.tif"],
        ],
        tmp_path,
    )
    text = "\n".join(bad)
    assert "first column of the header must be 'Files'" in text
    assert "must be relative" in text and "does not accept" in text and "'..'" in text
    assert "not in the upload folder" in text and "1 cells for 2 columns" in text


def test_study_metadata_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        StudyMetadata.from_mapping({"licence": "CC0"})
    with pytest.raises(ConfigError, match=r"authors\[0\]"):
        StudyMetadata.from_mapping({"authors": [{"name": "x"}]})
    assert StudyMetadata.from_mapping({"keywords": "a; b"}).keywords == ["a", "b"]
