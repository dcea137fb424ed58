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


BODY = "ds1\tS1\tdicom\tin/a\tpol\tlocal\tSouris grise \u00e9t\u00e9 \u2013 \u00b5m\n"


@pytest.mark.parametrize(
    "encoding, bom",
    [
        ("utf-8", b""),
        ("utf-8", b"\xef\xbb\xbf"),
        ("utf-16-le", b"\xff\xfe"),
        ("utf-16-be", b"\xfe\xff"),
        ("utf-32-le", b"\xff\xfe\x00\x00"),
    ],
)
def test_unicode_text_sheets_with_or_without_bom(tmp_path: Path, encoding: str, bom: bytes) -> None:
    p = tmp_path / "s.tsv"
    p.write_bytes(bom + (HEADER + BODY).replace("\n", "\r\n").encode(encoding))
    (ds,) = load_samples(p)
    assert ds.dataset_id == "ds1"
    assert ds.metadata == {"organism": "Souris grise \u00e9t\u00e9 \u2013 \u00b5m"}


def test_undecodable_sheet_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "latin1.tsv"
    p.write_bytes((HEADER + BODY.replace(" \u2013 \u00b5m", "")).encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin1\.tsv: cannot read the table: byte \d+ is not UTF-8"
    ):
        load_samples(p)
    odd = tmp_path / "odd.tsv"
    odd.write_bytes(b"\xff\xfe" + "dataset_id".encode("utf-16-le") + b"\x00")  # odd byte count
    with pytest.raises(ConfigError, match=r"odd\.tsv: cannot read the table: .*UTF-16"):
        read_table(odd)


def _xlsx_with_formula(path: Path, cached: str | None) -> Path:
    """An XLSX whose subject cell B2 is a formula; ``cached`` is the value saved with it, as a
    spreadsheet program writes it (``#...`` an error value), or None as openpyxl writes it."""
    import zipfile

    wb = openpyxl.Workbook()
    wb.active.title = "Samples"
    wb.active.append(
        ["dataset_id", "subject", "modality_class", "source", "policy", "destinations"]
    )
    wb.active.append(["ds1", '=CONCAT("S",1)', "nifti", "x.nii", "pol", "local"])
    wb.save(path)
    if cached is not None:
        with zipfile.ZipFile(path) as z:
            parts = {n: z.read(n) for n in z.namelist()}
        sheet = parts["xl/worksheets/sheet1.xml"].decode()
        kind = "e" if cached.startswith("#") else "str"
        sheet = sheet.replace(
            '<c r="B2"><f>CONCAT("S",1)</f><v /></c>',
            f'<c r="B2" t="{kind}"><f>CONCAT("S",1)</f><v>{cached}</v></c>',
        )
        assert f"<v>{cached}</v>" in sheet
        parts["xl/worksheets/sheet1.xml"] = sheet.encode()
        with zipfile.ZipFile(path, "w") as z:
            for name, data in parts.items():
                z.writestr(name, data)
    return path


def test_xlsx_formula_gives_its_saved_value(tmp_path: Path) -> None:
    (ds,) = load_samples(_xlsx_with_formula(tmp_path / "s.xlsx", "S1"))
    assert ds.subject == "S1"


def test_xlsx_formula_without_saved_value_names_sheet_and_cell(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"s\.xlsx: sheet 'Samples', cell B2: the formula has no"):
        load_samples(_xlsx_with_formula(tmp_path / "s.xlsx", None))
    with pytest.raises(ConfigError, match=r"sheet 'Samples', cell B2: holds the error value #REF!"):
        load_samples(_xlsx_with_formula(tmp_path / "e.xlsx", "#REF!"))
