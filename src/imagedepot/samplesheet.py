"""The sample sheet: one row per dataset, read from TSV, CSV or XLSX and validated.

Errors name the file, the row (as a spreadsheet shows it, header = row 1), the column and the fix.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from imagedepot.config import load_schema
from imagedepot.errors import ConfigError
from imagedepot.safeload import check_sheet_size

REQUIRED = ("dataset_id", "subject", "modality_class", "source", "policy", "destinations")

_FIXES = {
    "dataset_id": "use letters, digits, '.', '_' or '-' (max 64), starting with a letter or digit",
    "subject": "give the subject's identifier as in the consent sheet",
    "modality_class": "write one of: dicom, microscopy, nifti",
    "source": "give a file, folder or glob relative to the sheet",
    "policy": "name a policy defined under `policies` in the config",
    "destinations": "list destination names separated by ';', e.g. local;xnat",
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

    def source_path(self, sheet: Path) -> str:
        """The source as a path (or glob) resolved against the sheet's folder."""
        p = Path(self.source)
        return str(p if p.is_absolute() else sheet.parent / p)


def read_table(path: str | Path) -> list[dict[str, str]]:
    """Read a TSV, CSV or XLSX table into rows of stripped strings (header = first row)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise ConfigError(f"{p}: table not found")
    check_sheet_size(p, "table")
    if suffix in {".xlsx", ".xlsm"}:
        import openpyxl

        wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
        ws = wb.worksheets[0]
        rows = [
            ["" if v is None else str(v).strip() for v in r] for r in ws.iter_rows(values_only=True)
        ]
        wb.close()
    elif suffix in {".tsv", ".csv", ".txt"}:
        delim = "," if suffix == ".csv" else "\t"
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [[c.strip() for c in r] for r in csv.reader(fh, delimiter=delim)]
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
        meta = {k: v for k, v in raw.items() if k not in REQUIRED and v}
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
            )
        )
    if problems:
        raise ConfigError("invalid sample sheet:\n  " + "\n  ".join(problems))
    return datasets
