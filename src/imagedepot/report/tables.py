"""The run report's numbers: accounting, quarantine reasons, what each policy did, step costs.

Each ``*_rows`` function reads the run's records (the summary, the scan's manifest, the
de-identification provenance, Snakemake's benchmark files) into plain rows; :func:`html_page`
and :func:`html_table` write them as small self-contained HTML documents (Snakemake's report
shows HTML results in a frame).
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import ImagedepotError
from imagedepot.io import read_json
from imagedepot.pipeline import PROVENANCE, item_dir

#: Name shown for inputs that belong to no dataset (a file the sample sheet does not cover).
NO_DATASET = "(no dataset)"

#: DICOM PS3.15 action codes as the action log and provenance count them.
ACTION_NAMES = {
    "D": "replaced by a dummy value (D)",
    "Z": "emptied (Z)",
    "X": "removed (X)",
    "K": "kept (K)",
    "C": "cleaned: dates shifted, text scrubbed, pixels blanked (C)",
    "U": "UID replaced (U)",
}


# ------------------------------------------------------------------------------ accounting


@dataclass
class AccountingRow:
    """Inputs of one dataset: found = processed + quarantined + excluded."""

    dataset: str
    processed: int = 0
    quarantined: int = 0
    excluded: int = 0

    @property
    def found(self) -> int:
        return self.processed + self.quarantined + self.excluded


def accounting_rows(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[AccountingRow]:
    """Per-dataset accounting of the run summary (sorted by dataset); checked against its totals."""
    dataset_of = {i["id"]: i.get("dataset") or NO_DATASET for i in manifest["items"]}
    rows: dict[str, AccountingRow] = {}

    def row(dataset: str | None) -> AccountingRow:
        key = dataset or NO_DATASET
        return rows.setdefault(key, AccountingRow(key))

    for iid in summary["processed_items"]:
        row(dataset_of.get(iid)).processed += 1
    for q in summary["quarantined_items"]:
        row(q.get("dataset")).quarantined += 1
    for e in summary["excluded_items"]:
        row(e.get("dataset")).excluded += 1
    out = [rows[k] for k in sorted(rows)]
    totals = (
        sum(r.processed for r in out),
        sum(r.quarantined for r in out),
        sum(r.excluded for r in out),
    )
    expected = (summary["processed"], summary["quarantined"], summary["excluded"])
    if totals != expected or sum(r.found for r in out) != summary["found"]:
        raise ImagedepotError(
            f"the summary's items do not add up to its counts: {totals} != {expected}"
        )
    return out


def quarantine_rows(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every quarantined input (item or unreadable file) and every exclusion, with its reason."""
    rows = []
    for q in summary["quarantined_items"]:
        rows.append(
            {
                "outcome": "quarantined",
                "dataset": q.get("dataset") or NO_DATASET,
                "input": q.get("item") or q.get("file") or "?",
                "reason": str(q.get("reason") or "(no reason recorded)"),
            }
        )
    for e in summary["excluded_items"]:
        rows.append(
            {
                "outcome": "excluded by policy",
                "dataset": e.get("dataset") or NO_DATASET,
                "input": e.get("item") or "?",
                "reason": str(e.get("reason") or "(no reason recorded)"),
            }
        )
    return rows


# --------------------------------------------------------------------------------- policies


@dataclass
class PolicyUse:
    """What one policy did in the run: its settings (from the de-identification provenance)
    and what its items went through, counted."""

    name: str
    record: dict[str, Any] | None = None
    items: int = 0
    deidentified: int = 0
    quarantined: int = 0
    excluded: int = 0
    dicom_files: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    nifti: Counter[str] = field(default_factory=Counter)
    ome: Counter[str] = field(default_factory=Counter)
    pixel_rules: Counter[str] = field(default_factory=Counter)
    text_images: int = 0
    text_regions: int = 0


def _add_report(use: PolicyUse, key: str, report: Mapping[str, Any]) -> None:
    if key == "dicom":
        use.dicom_files += int(report.get("n_written") or 0)
        use.actions.update({str(k): int(v) for k, v in (report.get("actions") or {}).items()})
        for cleaned in report.get("pixel_cleaned") or []:
            for rule in cleaned.get("rules") or []:
                if rule != "pixel_text":
                    use.pixel_rules[str(rule)] += 1
        for text in report.get("pixel_text") or []:
            if text.get("blanked"):
                use.text_images += 1
                use.text_regions += len(text["blanked"])
    elif key == "nifti":
        use.nifti.update({str(k): int(v) for k, v in (report.get("totals") or {}).items()})
    elif report.get("format") in ("ome-zarr", "ome-tiff"):
        use.ome["images"] += 1
        for k, v in (report.get("xml") or {}).items():
            if isinstance(v, int):
                use.ome[f"XML {k.replace('_', ' ')}"] += v
        for k in ("zarr_fields_removed", "zarr_names_replaced"):
            use.ome[k.replace("zarr_", "Zarr ").replace("_", " ")] += int(report.get(k) or 0)
        use.ome["TIFF tags cleaned"] += len(report.get("tiff_tags_cleaned") or {})


def policy_uses(manifest: Mapping[str, Any], deid_root: str | Path) -> list[PolicyUse]:
    """One :class:`PolicyUse` per policy named in the manifest, from the items' de-identification
    provenance (``<deid root>/batch-NNNN/<item>/provenance.json``)."""
    uses: dict[str, PolicyUse] = {}
    for item in manifest["items"]:
        name = str(item.get("policy") or "(no policy)")
        use = uses.setdefault(name, PolicyUse(name))
        if item["status"] == "excluded":
            use.excluded += 1
            continue
        if item["status"] != "pending":
            continue
        use.items += 1
        prov_file = item_dir(deid_root, item) / PROVENANCE
        if not prov_file.is_file():
            continue
        prov = read_json(prov_file)
        if use.record is None and prov.get("policy"):
            use.record = dict(prov["policy"])
        if prov.get("status") != "processed":
            use.quarantined += 1
            continue
        use.deidentified += 1
        for key, report in ((prov.get("options") or {}).get("reports") or {}).items():
            _add_report(use, key, report)
    return [uses[k] for k in sorted(uses)]


def _join(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def policy_settings(use: PolicyUse) -> list[tuple[str, str]]:
    """(setting, value) pairs of a policy as applied (from its provenance record)."""
    r = use.record
    if r is None:
        return [("settings", "no item reached de-identification under this policy")]
    data_use = r.get("data_use") or {}
    consent = r.get("consent") or {}
    text = r.get("pixel_text") or {}
    rules = r.get("pixel_cleaning") or []
    recipe = r.get("deid_recipe")
    filters = r.get("deid_filters") or {}
    return [
        ("file (SHA-256)", f"{r.get('file')} ({str(r.get('sha256', ''))[:12]})"),
        ("de-identification options", _join(r.get("deid_options") or [])),
        ("profile", str(r.get("profile_edition") or "")),
        ("data use (DUO)", _join([data_use.get("permission"), *data_use.get("modifiers", [])])),
        ("allowed destination classes", _join(r.get("allowed_classes") or [])),
        ("consent required", "yes" if consent.get("required") else "no"),
        ("birth date kept as", str(r.get("birth_date_detail") or "")),
        ("maximum date shift (days)", str(r.get("max_date_shift_days") or "")),
        ("burned-in text (OCR) mode", str(text.get("mode") or "off")),
        ("pixel-cleaning rules", _join(x.get("name") for x in rules)),
        ("deid recipe", str(recipe.get("file")) if isinstance(recipe, Mapping) else "none"),
        (
            "deid filter rules",
            f"{filters.get('rules')} from {filters.get('source')}"
            if filters.get("rules")
            else str(filters.get("source") or "off"),
        ),
    ]


def policy_counts(use: PolicyUse) -> list[tuple[str, int]]:
    """(what, how many) the policy did in the run."""
    counts: list[tuple[str, int]] = [
        ("items under the policy", use.items + use.excluded),
        ("items excluded (consent, media index...)", use.excluded),
        ("items de-identified", use.deidentified),
        ("items quarantined up to de-identification", use.quarantined),
    ]
    if use.dicom_files:
        counts.append(("DICOM files written", use.dicom_files))
        counts += [
            (f"DICOM attributes {ACTION_NAMES.get(code, code)}", n)
            for code, n in sorted(use.actions.items())
        ]
        counts += [
            (f"images blanked by pixel-cleaning rule {rule}", n)
            for rule, n in sorted(use.pixel_rules.items())
        ]
        counts.append(("images with burned-in text blanked (OCR)", use.text_images))
        counts.append(("text regions blanked (OCR)", use.text_regions))
    counts += [(f"NIfTI {k.replace('_', ' ')}", n) for k, n in sorted(use.nifti.items())]
    counts += [(f"OME {k}", n) for k, n in sorted(use.ome.items())]
    return counts


# ------------------------------------------------------------------------------- benchmarks


@dataclass
class BenchmarkJob:
    """One job's benchmark file (Snakemake's ``benchmark:``; repeats averaged)."""

    rule: str
    job: str
    seconds: float
    max_rss_mb: float | None
    cpu_seconds: float | None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None  # "NA": the job ended before the first memory sample
    return value if math.isfinite(value) else None


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def read_benchmark(path: str | Path) -> BenchmarkJob:
    """Read ``benchmarks/<rule>/<job>.tsv``: tab-separated, a header then one row per repeat."""
    p = Path(path)
    lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ImagedepotError(f"{p}: not a Snakemake benchmark file (no data row)")
    header = lines[0].split("\t")
    if "s" not in header:
        raise ImagedepotError(f"{p}: not a Snakemake benchmark file (no 's' column)")
    rows = [dict(zip(header, ln.split("\t"), strict=False)) for ln in lines[1:]]

    def column(name: str) -> float | None:
        return _mean([_number(r.get(name, "NA")) for r in rows])

    return BenchmarkJob(
        rule=p.parent.name,
        job=p.stem,
        seconds=column("s") or 0.0,
        max_rss_mb=column("max_rss"),
        cpu_seconds=column("cpu_time"),
    )


@dataclass
class RuleCost:
    """Time and memory of one rule's jobs."""

    rule: str
    jobs: int
    seconds: float
    seconds_max: float
    cpu_seconds: float | None
    max_rss_mb: float | None


def rule_costs(jobs: Sequence[BenchmarkJob]) -> list[RuleCost]:
    """Per rule (in the order the rules first appear): jobs, wall-clock seconds (sum, slowest
    job), CPU seconds (sum) and peak resident memory (largest job)."""
    by_rule: dict[str, list[BenchmarkJob]] = {}
    for j in jobs:
        by_rule.setdefault(j.rule, []).append(j)
    out = []
    for rule, js in by_rule.items():
        cpu = [j.cpu_seconds for j in js if j.cpu_seconds is not None]
        rss = [j.max_rss_mb for j in js if j.max_rss_mb is not None]
        out.append(
            RuleCost(
                rule=rule,
                jobs=len(js),
                seconds=sum(j.seconds for j in js),
                seconds_max=max(j.seconds for j in js),
                cpu_seconds=sum(cpu) if cpu else None,
                max_rss_mb=max(rss) if rss else None,
            )
        )
    return out


# ------------------------------------------------------------------------------------ HTML

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 14px; margin: 16px; color: #1f2937; }
h1 { font-size: 20px; margin: 0 0 8px 0; }
h2 { font-size: 16px; margin: 20px 0 6px 0; }
p.note { color: #4b5563; margin: 4px 0 10px 0; }
table { border-collapse: collapse; margin-bottom: 12px; }
th, td { border: 1px solid #d1d5db; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #e5e7eb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; background: #f3f4f6; }
"""


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: numbers rounded, None as an en dash."""
    if value is None:
        return "\u2013"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def html_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    total: Sequence[Any] | None = None,
    table_id: str | None = None,
) -> str:
    """An HTML table; numeric cells are right-aligned, ``total`` is a highlighted last row."""

    def cells(values: Sequence[Any], tag: str = "td") -> str:
        out = []
        for v in values:
            cls = ' class="num"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
            out.append(f"<{tag}{cls}>{html.escape(fmt(v))}</{tag}>")
        return "".join(out)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(f"<tr>{cells(r)}</tr>" for r in rows)
    if total is not None:
        body += f'<tr class="total">{cells(total)}</tr>'
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, sections: Iterable[tuple[str, str, str]]) -> str:
    """A self-contained HTML document: a title, then sections of (heading, note, body HTML)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, note, body in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        if note:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        parts.append(body)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
