"""Safe reading of the files people write: no YAML aliases, no duplicate keys, size caps."""

from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from imagedepot import safeload
from imagedepot.errors import ConfigError, PolicyError
from imagedepot.safeload import (
    MAX_YAML_BYTES,
    check_sheet_size,
    load_config_file,
    load_yaml,
    parse_yaml,
    refuse_shared_nodes,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "imagedepot"


def yaml_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": ``levels`` lists of 9 aliases of the previous one."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_bomb_is_refused_at_once_naming_file_and_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(yaml_bomb(), encoding="utf-8")
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: line 1: YAML anchors and aliases"):
        load_yaml(bomb, what="policy")
    assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: &x 1\nb: 2\n", 1),  # an anchor alone
        ("a: 1\nb: &x [1]\nc: *x\n", 2),
        ("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", 1),  # merge key
    ],
)
def test_anchors_aliases_and_merge_keys_are_refused(text: str, line: int) -> None:
    with pytest.raises(ConfigError, match=rf"f\.yaml: line {line}: .*&name / \*name"):
        parse_yaml(text, "f.yaml")


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        parse_yaml("a: 1\nb: {c: 1}\na: 2\n", "f.yaml")
    with pytest.raises(ConfigError, match="duplicate key 'c'"):
        parse_yaml("b: {c: 1, c: 2}\n", "f.yaml")


def test_plain_yaml_loads_as_before() -> None:
    text = "a: [1, {b: c}]\nd: 2024-01-02\ne: null\nf: 'x'\n"
    assert parse_yaml(text, "f.yaml") == yaml.safe_load(text)
    assert parse_yaml(b"", "f.yaml") is None


def test_errors_raise_the_given_exception_type(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not valid YAML"):
        parse_yaml("a: [", "p.yaml", error=PolicyError)
    with pytest.raises(PolicyError, match="not UTF-8"):
        parse_yaml(b"a: \xff\n", "p.yaml", error=PolicyError)
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_yaml(tmp_path / "absent.yaml", what="policy", error=PolicyError)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError, match=r"f\.yaml"):
        parse_yaml("[" * 100_000, "f.yaml")


def test_files_over_the_size_cap_are_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_YAML_BYTES + 1))
    with pytest.raises(ConfigError, match=r"big\.yaml: policy is 4,194,305 bytes, more than"):
        load_yaml(big, what="policy")
    small = tmp_path / "small.yaml"
    small.write_text("a: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="more than the 3 bytes"):
        load_yaml(small, max_bytes=3)


def test_config_files_json_or_yaml_mapping_no_aliases(tmp_path: Path) -> None:
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"a": [1, 2]}), encoding="utf-8")
    assert load_config_file(js) == {"a": [1, 2]}
    ym = tmp_path / "c.yaml"
    ym.write_text("a: [1, 2]\n", encoding="utf-8")
    assert load_config_file(ym) == {"a": [1, 2]}
    ym.write_text(yaml_bomb(), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 1: YAML anchors"):
        load_config_file(ym)
    ym.write_text("- a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config_file(ym)


def test_shared_nodes_left_by_another_loader_are_refused_fast() -> None:
    loaded = yaml.safe_load(yaml_bomb())  # what Snakemake's loader builds: shared references
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"config: a\d.* is the same value as a\d"):
        refuse_shared_nodes(loaded, "config")
    assert time.monotonic() - start < 1
    refuse_shared_nodes({"a": [1, 2], "b": [1, 2], "c": {"d": []}, "e": []}, "config")


def test_sheets_over_the_cap_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safeload, "MAX_SHEET_BYTES", 1000)
    tsv = tmp_path / "s.tsv"
    tsv.write_text("a\tb\n" + "x\ty\n" * 300, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"s\.tsv: sample sheet is 1,204 bytes"):
        check_sheet_size(tsv, "sample sheet")
    # An XLSX is a zip: what counts is what it unpacks to, not its size on disk.
    xlsx = tmp_path / "s.xlsx"
    with zipfile.ZipFile(xlsx, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", "0" * 5000)
    assert xlsx.stat().st_size < 1000
    with pytest.raises(ConfigError, match=r"s\.xlsx: sheet \(uncompressed\) is 5,000 bytes"):
        check_sheet_size(xlsx)


def test_the_sample_sheet_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagedepot.samplesheet import read_table

    monkeypatch.setattr(safeload, "MAX_SHEET_BYTES", 100)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("dataset_id\tsubject\n" + "d\ts\n" * 50, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"samples\.tsv: table is \d+ bytes"):
        read_table(sheet)


def test_every_yaml_load_in_the_package_goes_through_safeload() -> None:
    """The one loader: a new ``yaml.safe_load`` elsewhere would reopen the alias hole."""
    pattern = re.compile(r"yaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all)\(")
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "safeload.py" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
