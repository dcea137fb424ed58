from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from imagedepot.errors import ConfigError
from imagedepot.samplesheet import load_samples, read_table

HEADER = "dataset_id\tsubject\tmodality_class\tsource\tpolicy\tdestinations\torganism\n"


def write(tmp_path: Path, body: str, name: str = "s.tsv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + body)
    return p


def test_valid_sheet_reads_rows_and_free_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "ds1\tS1\tdicom\tin/a\tpol\tlocal; xnat\tHomo sapiens\n")
    (ds,) = load_samples(p, policies={"pol": "x"}, destinations={"local": {}, "xnat": {}})
    assert ds.dataset_id == "ds1"
    assert ds.destinations == ("local", "xnat")
    assert ds.metadata == {"organism": "Homo sapiens"}
    assert ds.row == 2
    assert ds.source_path(p) == str(tmp_path / "in/a")


def test_errors_name_row_column_and_fix(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "ds1\tS1\tdicom\tin/a\tpol\tlocal\tx\n"
        "bad id\tS2\tctscan\tin/b\tnope\tlocal\tx\n"
        "ds1\tS3\tnifti\tin/c\tpol\tmars\tx\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_samples(p, policies={"pol": "x"}, destinations={"local": {}})
    msg = str(exc.value)
    assert "row 3, column 'dataset_id'" in msg
    assert "row 3, column 'modality_class'" in msg and "one of: dicom, microscopy, nifti" in msg
    assert "row 3, column 'policy': unknown policy 'nope'" in msg
    assert "row 4, column 'dataset_id': 'ds1' repeats row 2" in msg
    assert "row 4, column 'destinations': unknown destination 'mars'" in msg


def test_missing_required_column(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("dataset_id,subject\nds1,S1\n")
    with pytest.raises(ConfigError, match="missing column"):
        load_samples(p)


def test_csv_and_xlsx_read_the_same(tmp_path: Path) -> None:
    rows = [
        ["dataset_id", "subject", "modality_class", "source", "policy", "destinations"],
        ["ds1", "S1", "nifti", "x.nii", "pol", "local"],
    ]
    csvp = tmp_path / "s.csv"
    csvp.write_text("\n".join(",".join(r) for r in rows) + "\n")
    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(r)
    xp = tmp_path / "s.xlsx"
    wb.save(xp)
    assert load_samples(csvp) == load_samples(xp)


def test_unsupported_and_empty_tables(tmp_path: Path) -> None:
    (tmp_path / "s.ods").write_text("x")
    with pytest.raises(ConfigError, match="unsupported table format"):
        read_table(tmp_path / "s.ods")
    (tmp_path / "e.tsv").write_text("\n\n")
    with pytest.raises(ConfigError, match="empty"):
        read_table(tmp_path / "e.tsv")
