"""The sample sheet: one row per dataset, read from TSV, CSV or XLSX and validated.

Errors name the file, the row (as a spreadsheet shows it, header = row 1), the column and the fix.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from imagedepot.config import load_schema
from imagedepot.errors import ConfigError
from imagedepot.safeload import check_sheet_size

REQUIRED = ("dataset_id", "subject", "modality_class", "source", "policy", "destinations")
#: Optional columns that identify the subject's studies: checked against every DICOM file of the
#: dataset by the scan, never kept as descriptive metadata (they are identifiers).
STUDY_COLUMNS = ("study_instance_uid", "accession_number")
#: Optional column naming a text file that lists the dataset's files (for a folder that holds
#: several datasets' files side by side, such as a PACS export): how ``source`` is narrowed.
FILE_LIST_COLUMN = "file_list"

_FIXES = {
    "dataset_id": "use letters, digits, '.', '_' or '-' (max 64), starting with a letter or digit",
    "subject": "give the subject's identifier as in the consent sheet",
    "modality_class": "write one of: dicom, microscopy, nifti",
    "source": "give a file, folder or glob relative to the sheet",
    "policy": "name a policy defined under `policies` in the config",
    "destinations": "list destination names separated by ';', e.g. local;xnat",
    "study_instance_uid": "list the subject's StudyInstanceUIDs (digits and dots) separated by ';'",
    "accession_number": "list the subject's accession numbers separated by ';'",
    "file_list": "give a text file (relative to the sheet) listing the dataset's files, one a line",
}


@dataclass(frozen=True)
class Dataset:
    """One validated row of the sample sheet."""

    dataset_id: str
    subject: str
    modality_class: str
    source: str
    policy: str
    destinations: tuple[str, ...]
    row: int
    metadata: dict[str, str] = field(default_factory=dict)
    #: The sheet's ``study_instance_uid`` values: when given, every DICOM file must be of one of them.
    study_uids: tuple[str, ...] = ()
    #: The sheet's ``accession_number`` values: when given, every DICOM file must carry one of them.
    accession_numbers: tuple[str, ...] = ()
    #: The sheet's ``file_list`` cell (a text file, relative to the sheet) and the paths it lists,
    #: relative to ``source`` (then a folder): the dataset is those files only.
    file_list: str = ""
    files: tuple[str, ...] = ()

    def source_path(self, sheet: Path) -> str:
        """The source as a path (or glob) resolved against the sheet's folder."""
        p = Path(self.source)
        return str(p if p.is_absolute() else sheet.parent / p)

    def file_list_path(self, sheet: str | Path) -> Path | None:
        """The ``file_list`` file resolved against the sheet's folder (None without one)."""
        if not self.file_list:
            return None
        p = Path(self.file_list)
        return p if p.is_absolute() else Path(sheet).parent / p


def read_file_list(path: str | Path) -> tuple[str, ...]:
    """The paths a ``file_list`` file names: one a line (UTF-8), blank lines and lines starting
    with ``#`` ignored, each relative to the dataset's ``source`` folder.

    Raises
    ------
    ConfigError
        Naming the file (and the line): missing, too large, not UTF-8, empty, or a path that is
        absolute or climbs out of the source folder (``..``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file list not found")
    check_sheet_size(p, "file list")
    text = decode_table(p.read_bytes(), p)
    out: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        parts = Path(entry).parts
        if Path(entry).is_absolute() or ".." in parts:
            raise ConfigError(
                f"{p}: line {n}: a listed path must be relative to the dataset's source folder "
                "and stay inside it (no leading '/', no '..')"
            )
        out.append(entry)
    if not out:
        raise ConfigError(f"{p}: the file list names no file")
    return tuple(out)


#: Byte-order marks of the encodings a text table may have, longest first (the UTF-32 LE mark
#: begins with the UTF-16 LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_table(data: bytes, path: str | Path) -> str:
    """Decode a text table: UTF-8, or UTF-8 / UTF-16 / UTF-32 with a byte-order mark (as
    spreadsheet programs save "Unicode text").

    Raises
    ------
    ConfigError
        Naming the file, when the bytes are none of these.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}: cannot read the table: it starts with a {codec.upper()} byte-order "
                    f"mark but byte {exc.start + len(bom) + 1} is not {codec.upper()}; save it "
                    "again as UTF-8"
                ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read the table: byte {exc.start + 1} is not UTF-8 text; save it as "
            "UTF-8 (or UTF-16 with a byte-order mark)"
        ) from None


def _xlsx_rows(p: Path) -> list[list[str]]:
    """The first worksheet's cells as stripped strings: a formula cell gives its cached value
    (the one the spreadsheet program saved with the file).

    Raises
    ------
    ConfigError
        Naming the file, sheet and cell, when a formula has no cached value (the file was written
        by a program that does not compute formulas) or holds an error value such as ``#REF!``.
    """
    import openpyxl

    try:
        values = openpyxl.load_workbook(p, data_only=True)
        formulas = openpyxl.load_workbook(p, data_only=False)
    except Exception as exc:  # openpyxl raises many types for a bad workbook
        raise ConfigError(f"{p}: cannot read the table as XLSX ({type(exc).__name__})") from None
    ws, ws_formulas = values.worksheets[0], formulas.worksheets[0]
    rows: list[list[str]] = []
    for row in ws.iter_rows():
        cells: list[str] = []
        for cell in row:
            where = f"{p}: sheet {ws.title!r}, cell {cell.coordinate}"
            if cell.data_type == "e":
                raise ConfigError(
                    f"{where}: holds the error value {cell.value}; correct the cell or its formula"
                )
            if cell.value is None and ws_formulas[cell.coordinate].data_type == "f":
                raise ConfigError(
                    f"{where}: the formula has no saved value (the file was not saved by a "
                    "spreadsheet program that computes formulas); open and save it in one, or "
                    "replace the formula by its value"
                )
            cells.append(_xlsx_text(cell.value))
        rows.append(cells)
    values.close()
    formulas.close()
    return rows


def _xlsx_text(value: Any) -> str:
    """A cell value as text: a whole number stored as a float (``12345.0``, as spreadsheet
    programs keep numbers) is written without its ``.0``, so an ID typed as a number matches."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_table(path: str | Path) -> list[dict[str, str]]:
    """Read a TSV, CSV or XLSX table into rows of stripped strings (header = first row).

    Text tables may be UTF-8 or carry a UTF-8/UTF-16/UTF-32 byte-order mark
    (:func:`decode_table`); XLSX formulas give their saved values.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise ConfigError(f"{p}: table not found")
    check_sheet_size(p, "table")
    if suffix in {".xlsx", ".xlsm"}:
        rows = _xlsx_rows(p)
    elif suffix in {".tsv", ".tab", ".csv", ".txt"}:
        delim = "," if suffix == ".csv" else "\t"
        text = decode_table(p.read_bytes(), p)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
        rows = [[c.strip() for c in r] for r in reader]
    else:
        raise ConfigError(f"{p}: unsupported table format {suffix!r}; use .tsv, .csv or .xlsx")
    rows = [r for r in rows if any(r)]
    if not rows:
        raise ConfigError(f"{p}: the table is empty")
    header = rows[0]
    if len(set(header)) != len(header) or "" in header:
        raise ConfigError(f"{p}: row 1: column names must be unique and non-empty (got {header})")
    out = []
    for n, r in enumerate(rows[1:], start=2):
        if len(r) > len(header) and any(r[len(header) :]):
            raise ConfigError(f"{p}: row {n}: more cells than columns in the header")
        out.append(
            {h: (r[i] if i < len(r) else "") for i, h in enumerate(header)} | {"__row__": str(n)}
        )
    return out


def load_samples(
    path: str | Path,
    *,
    policies: dict[str, Any] | None = None,
    destinations: dict[str, Any] | None = None,
) -> list[Dataset]:
    """Read and validate the sample sheet.

    Checks every row against the shipped schema, the uniqueness of ``dataset_id``, and, when given,
    that ``policy`` and ``destinations`` name entries of the configuration. All problems are reported
    together in one :class:`ConfigError`.
    """
    p = Path(path)
    rows = read_table(p)
    missing = [c for c in REQUIRED if c not in rows[0]] if rows else list(REQUIRED)
    if missing:
        raise ConfigError(
            f"{p}: row 1: missing column(s) {', '.join(missing)}; add them to the header"
        )
    validator = jsonschema.Draft202012Validator(load_schema("samples"))
    problems: list[str] = []
    datasets: list[Dataset] = []
    seen: dict[str, int] = {}
    for raw in rows:
        n = int(raw.pop("__row__"))
        for err in validator.iter_errors(raw):
            column = str(err.absolute_path[0]) if err.absolute_path else "?"
            value = raw.get(column, "")
            fix = _FIXES.get(column, "correct the value")
            problems.append(f"{p}: row {n}, column {column!r}: invalid value {value!r}; {fix}")
        ds_id = raw.get("dataset_id", "")
        if ds_id in seen:
            problems.append(
                f"{p}: row {n}, column 'dataset_id': {ds_id!r} repeats row {seen[ds_id]}; make it unique"
            )
        seen.setdefault(ds_id, n)
        if policies is not None and raw.get("policy") and raw["policy"] not in policies:
            problems.append(
                f"{p}: row {n}, column 'policy': unknown policy {raw['policy']!r}; "
                f"define it under `policies` in the config (known: {', '.join(sorted(policies))})"
            )
        dests = tuple(d.strip() for d in raw.get("destinations", "").split(";") if d.strip())
        if destinations is not None:
            for d in dests:
                if d not in destinations:
                    problems.append(
                        f"{p}: row {n}, column 'destinations': unknown destination {d!r}; define it "
                        f"under `destinations` in the config (known: {', '.join(sorted(destinations))})"
                    )
        files: tuple[str, ...] = ()
        listed = raw.get(FILE_LIST_COLUMN, "")
        if listed:
            list_path = Path(listed) if Path(listed).is_absolute() else p.parent / listed
            try:
                files = read_file_list(list_path)
            except ConfigError as exc:
                problems.append(
                    f"{p}: row {n}, column {FILE_LIST_COLUMN!r}: {exc}; {_FIXES[FILE_LIST_COLUMN]}"
                )
        skip = (*REQUIRED, *STUDY_COLUMNS, FILE_LIST_COLUMN)
        meta = {k: v for k, v in raw.items() if k not in skip and v}
        datasets.append(
            Dataset(
                dataset_id=ds_id,
                subject=raw.get("subject", ""),
                modality_class=raw.get("modality_class", ""),
                source=raw.get("source", ""),
                policy=raw.get("policy", ""),
                destinations=dests,
                row=n,
                metadata=meta,
                study_uids=_split(raw.get("study_instance_uid", "")),
                accession_numbers=_split(raw.get("accession_number", "")),
                file_list=listed,
                files=files,
            )
        )
    if problems:
        raise ConfigError("invalid sample sheet:\n  " + "\n  ".join(problems))
    return datasets


def file_lists(datasets: Sequence[Dataset], sheet: str | Path) -> list[str]:
    """The ``file_list`` files of the sheet's rows (resolved against the sheet's folder), sorted,
    each once: inputs of the scan, so that editing one scans again."""
    paths = {ds.file_list_path(sheet) for ds in datasets}
    return sorted(str(p) for p in paths if p is not None)


def _split(cell: str) -> tuple[str, ...]:
    """The ``;``-separated values of a cell, stripped, empty ones dropped."""
    return tuple(v.strip() for v in cell.split(";") if v.strip())
