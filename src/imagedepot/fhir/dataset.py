"""One dataset's bundle from the stage folders: :func:`bundle_dataset` builds it from the clean
items, links the subject's clinical records, runs the leak gate on it and writes it with its
status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagedepot.errors import ConfigError
from imagedepot.fhir.build import BundleOptions, build_bundle
from imagedepot.fhir.inputs import ItemOutcome, endpoints_for


@dataclass
class ClinicalSettings:
    """Clinical records for :func:`bundle_dataset`: the file and the pseudonymisation key."""

    path: Path
    key: bytes = field(repr=False)


def item_path(root: Path, item: Mapping[str, Any], suffix: str = "") -> Path:
    """An item's folder (``suffix`` ``""``) or leak report (``".json"``) under a stage root.

    Items live in batch folders (``<root>/batch-NNNN/<item>``); a flat ``<root>/<item>`` is
    used when only that exists.
    """
    name = f"{item['id']}{suffix}"
    batched = root / f"batch-{int(item.get('batch') or 0):04d}" / name
    flat = root / name
    return flat if flat.exists() and not batched.exists() else batched


def _known_subjects(config: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every subject of the sample sheet (``samples`` of the config), else of every item."""
    sheet = config.get("samples")
    if sheet and Path(sheet).is_file():
        from imagedepot.samplesheet import read_table

        return {r["subject"].strip() for r in read_table(sheet) if r.get("subject", "").strip()}
    return {str(i["subject"]) for i in items if i.get("subject")}


def _status_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".json") + ".status.json")


def bundle_dataset(
    dataset_id: str,
    *,
    manifest: Path | Mapping[str, Any],
    deid_root: Path,
    leak_root: Path,
    out: Path,
    config: Mapping[str, Any],
    convert_root: Path | None = None,
    clinical: ClinicalSettings | None = None,
) -> dict[str, Any]:
    """Build the bundle of one dataset from its clean items, run the leak gate on it, write it.

    Writes ``out`` (only when clean) and ``<out stem>.status.json`` with ``status`` ``clean``,
    ``leak`` or ``empty`` (no processed item), the number of entries per resource type and,
    with clinical records, what was linked and the per-record errors (``clinical.errors``:
    ``where`` and ``problem``, never the offending values). Returns the status record.

    Raises
    ------
    InputError
        The clinical file is unusable as a whole (unreadable, a required column missing).
    ConfigError
        The key differs from the one the de-identification used.
    FhirError
        A resource does not validate.
    """
    from imagedepot.io import read_json, write_json
    from imagedepot.leakcheck import allowed_kinds_for_options, harvest, scan
    from imagedepot.pipeline import all_item_files, manifest_items

    fcfg = config.get("fhir", {})
    every = manifest_items(manifest)
    items = [i for i in every if i.get("dataset") == dataset_id and i["status"] == "pending"]
    outcomes: list[ItemOutcome] = []
    pseudonym = None
    policy: dict[str, Any] = {}
    originals: list[Path] = []
    metadata: dict[str, str] = {}
    subject = ""
    for item in items:
        leak = read_json(item_path(leak_root, item, ".json"))
        if leak["status"] != "clean":
            continue
        deid_dir = item_path(deid_root, item)
        prov = read_json(deid_dir / "provenance.json")
        conv = None
        if convert_root is not None:
            conv_file = item_path(convert_root, item) / "provenance.json"
            conv = read_json(conv_file) if conv_file.is_file() else None
        pseudonym = prov["options"]["subject_pseudonym"]
        policy = prov.get("policy") or {}
        metadata = item.get("metadata") or {}
        subject = item.get("subject") or item["id"]
        outcomes.append(
            ItemOutcome(
                item=item,
                deid_dir=deid_dir,
                provenance=prov,
                convert_provenance=conv,
            )
        )
        originals.extend(all_item_files(item))
    status_path = _status_path(out)
    if not outcomes or pseudonym is None:
        status: dict[str, Any] = {"dataset": dataset_id, "status": "empty", "entries": 0}
        if out.exists():
            out.unlink()
        write_json(status_path, status)
        return status

    subjects = sorted({i["subject"] for i in items if i.get("subject")})
    if clinical is not None:
        subjects = sorted(set(subjects) | _known_subjects(config, every))
    allow = allowed_kinds_for_options(policy.get("deid_options", []))
    ids = harvest(originals, extra=subjects)
    linkage = None
    if clinical is not None:
        from imagedepot.clinical import link_clinical, read_clinical
        from imagedepot.deid.pseudonym import Pseudonymizer

        pz = Pseudonymizer(
            key=clinical.key,
            prefix=str(policy.get("pseudonym_prefix", "SUBJ")),
            max_shift_days=int(policy.get("max_date_shift_days", 3650)),
        )
        if pz.subject_id(subject) != pseudonym:
            raise ConfigError(
                f"dataset {dataset_id}: the pseudonymisation key differs from the one used to "
                "de-identify its items; give the same key (pseudonymisation.key_env/key_file)"
            )
        source = read_clinical(clinical.path)
        linkage = link_clinical(
            source,
            subject=subject,
            known_subjects=subjects,
            pseudonymizer=pz,
            deid_options=policy.get("deid_options", []),
            identifiers=ids,
        )
        for value, kind in linkage.source_identifiers:
            ids.add(value, kind)

    bundle = build_bundle(
        dataset_id,
        outcomes,
        pseudonym=pseudonym,
        policy=policy,
        options=BundleOptions(
            identifier_system=fcfg.get("identifier_system", "urn:imagedepot:pseudonym"),
            release=fcfg.get("version", "R5"),
            endpoints=endpoints_for(items[0].get("destinations", []), config),
        ),
        metadata=metadata,
        clinical=linkage,
    )
    tmp_dir = out.parent / f".{out.name}.check"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    candidate = tmp_dir / out.name
    write_json(candidate, bundle)
    try:
        report = scan(ids, [candidate], allow_kinds=allow).to_dict()
    finally:
        candidate.unlink()
        tmp_dir.rmdir()
    types: dict[str, int] = {}
    for e in bundle["entry"]:
        types[e["resource"]["resourceType"]] = types.get(e["resource"]["resourceType"], 0) + 1
    status = {
        "dataset": dataset_id,
        "status": "clean" if report["status"] == "clean" else "leak",
        "fhir_version": fcfg.get("version", "R5"),
        "entries": len(bundle["entry"]),
        "resources": dict(sorted(types.items())),
        "leakcheck": report,
    }
    if linkage is not None:
        status["clinical"] = linkage.to_status()
    if status["status"] == "clean":
        write_json(out, bundle)
    elif out.exists():
        out.unlink()
    write_json(status_path, status)
    return status
