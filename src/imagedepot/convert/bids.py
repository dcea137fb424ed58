"""BIDS-like layout of converted series: which folder (datatype), suffix and entities each NIfTI gets.

The mapping reads the JSON sidecar that :func:`imagedepot.convert.nifti.convert_dicom_series`
writes next to each NIfTI and returns a path such as
``sub-SUBJ7Q3K/ses-1/anat/sub-SUBJ7Q3K_ses-1_T1w.nii.gz``. Use the sidecar of the *conversion*
(trusted zone): the de-identified sidecar may have lost ``SeriesDescription`` and
``ProtocolName``, which most rules read. Only the path built from the rules leaves, never the
matched text.

Rules
-----
A rules file is YAML (the default ships as ``imagedepot/data/bids_rules.yaml``; pass another with
:func:`load_rules`)::

    bids_rules_version: 1
    fallback: {datatype: unknown, suffix: unknown}
    rules:
      - name: t1w
        match: {"SeriesDescription|ProtocolName": '(?<![a-z0-9])t1(?![0-9])|mprage'}
        datatype: anat
        suffix: T1w

The **first rule whose conditions all match wins**; a sidecar no rule matches goes to the
fallback (never dropped). A condition is ``field: regular expression``:

* the expression is searched (Python :func:`re.search`, case-insensitive) in the field's value;
* ``A|B`` as the field matches when either field matches;
* a list value (``ImageType``) is joined with ``\\`` (``ORIGINAL\\PRIMARY\\M\\ND``), a number is
  written as JSON (``EchoNumber`` 1 is ``1``), ``true``/``false`` for booleans;
* a field the sidecar lacks never matches.

A rule sets ``datatype`` (lower-case letters) and ``suffix`` (letters and digits), and may set:

* ``entities``: fixed labels, e.g. ``{task: rest, acq: mprage}`` (entities ``task``, ``acq``,
  ``ce``, ``rec``, ``dir``, ``mod``, ``inv``, ``mt``, ``flip``);
* ``labels_from``: fields (``A|B``) whose text is searched for ``<entity>-<label>`` pairs, as in
  ReproIn-style protocol names (``func-bold_task-nback_dir-AP``); found labels override
  ``entities``;
* ``echo: false``: do not add ``echo-<EchoNumber>`` (by default it is added when the sidecar has
  an ``EchoNumber``, as for multi-echo series; field-map magnitudes carry the echo in their
  suffix instead);
* ``part: false``: do not add ``part-phase`` to phase images (``ImageType`` with ``P`` or
  ``PHASE``); by default phase images get ``part-phase`` and, in :func:`bids_layout`, the
  magnitude images of the same acquisition get ``part-mag``.

Datatypes outside the BIDS specification (:data:`BIDS_DATATYPES`) are allowed on purpose: the
default rules use ``ct`` for CT (BIDS has no CT datatype yet), ``localizer`` for localizers and
scouts, ``derived`` for images the scanner derived (ADC, FA, MPR...) and ``unknown`` for the
fallback. :meth:`BidsRules.bidsignore` lists them for a ``.bidsignore`` file so that BIDS
validators skip them.

Labels
------
BIDS labels are letters and digits only: :func:`bids_label` drops everything else (the
pseudonym ``SUBJ-7Q3K9D2M4XHA`` becomes ``SUBJ7Q3K9D2M4XHA``). A label that ends up empty is an
error.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from imagedepot.errors import ConfigError, ImagedepotError

#: Version of the rules file format understood here.
RULES_VERSION = 1

#: Datatypes (folders) of the BIDS specification; others are "non-standard" (see bidsignore).
BIDS_DATATYPES = frozenset(
    {
        "anat",
        "beh",
        "dwi",
        "eeg",
        "fmap",
        "func",
        "ieeg",
        "meg",
        "micr",
        "motion",
        "mrs",
        "nirs",
        "perf",
        "pet",
    }
)

#: Entities a rule may set, in the order BIDS writes them in a file name (after sub and ses).
RULE_ENTITIES = ("task", "acq", "ce", "rec", "dir", "mod", "flip", "inv", "mt")

#: Order of every entity in a file name.
ENTITY_ORDER = (
    "sub",
    "ses",
    "task",
    "acq",
    "ce",
    "rec",
    "dir",
    "run",
    "mod",
    "echo",
    "flip",
    "inv",
    "mt",
    "part",
)

_RULE_KEYS = frozenset(
    {"name", "match", "datatype", "suffix", "entities", "labels_from", "echo", "part"}
)
_DATATYPE = re.compile(r"[a-z]+")
_SUFFIX = re.compile(r"[A-Za-z0-9]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9]")
_PHASE = re.compile(r"(^|\\)(P|PHASE)(\\|$)", re.IGNORECASE)


def bids_label(text: str, what: str = "label") -> str:
    """``text`` with everything but letters and digits removed (a valid BIDS label).

    Raises
    ------
    ValueError
        When nothing is left.
    """
    label = _NOT_LABEL.sub("", str(text))
    if not label:
        raise ValueError(f"{what} {text!r} has no letter or digit: not usable as a BIDS label")
    return label


def field_text(sidecar: Mapping[str, Any], key: str) -> str | None:
    """A sidecar value as the rules see it (see the module docstring), None when absent."""
    if key not in sidecar or sidecar[key] is None:
        return None
    value = sidecar[key]
    if isinstance(value, list):
        return "\\".join(field_text({"v": v}, "v") or "" for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class BidsTarget:
    """Where one NIfTI goes: datatype folder, suffix, entities, and the rule that decided."""

    datatype: str
    suffix: str
    rule: str
    entities: tuple[tuple[str, str], ...] = ()
    echo: bool = True
    part: bool = True


@dataclass(frozen=True)
class BidsRule:
    """One rule: every condition must match (``(fields, pattern)``: any of the fields)."""

    name: str
    conditions: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]
    datatype: str
    suffix: str
    entities: tuple[tuple[str, str], ...] = ()
    labels_from: tuple[str, ...] = ()
    echo: bool = True
    part: bool = True

    def matches(self, sidecar: Mapping[str, Any]) -> bool:
        """True when every condition finds its pattern in one of its fields."""
        for fields, pattern in self.conditions:
            texts = (field_text(sidecar, f) for f in fields)
            if not any(t is not None and pattern.search(t) for t in texts):
                return False
        return True

    def target(self, sidecar: Mapping[str, Any]) -> BidsTarget:
        """The target of a matching sidecar, with labels read from ``labels_from``."""
        entities = dict(self.entities)
        for f in self.labels_from:
            text = field_text(sidecar, f) or ""
            for key, label in re.findall(r"(?<![A-Za-z0-9])([a-z]+)-([A-Za-z0-9]+)", text):
                if key in RULE_ENTITIES:
                    entities[key] = label
        ordered = tuple((k, entities[k]) for k in RULE_ENTITIES if k in entities)
        return BidsTarget(self.datatype, self.suffix, self.name, ordered, self.echo, self.part)


@dataclass(frozen=True)
class BidsRules:
    """An ordered rule list, its fallback and where it came from."""

    rules: tuple[BidsRule, ...]
    fallback: BidsTarget
    source: str = "<rules>"

    def target(self, sidecar: Mapping[str, Any]) -> BidsTarget:
        """The first matching rule's target, else the fallback."""
        for rule in self.rules:
            if rule.matches(sidecar):
                return rule.target(sidecar)
        return self.fallback

    def nonstandard_datatypes(self) -> list[str]:
        """Datatypes these rules can produce that the BIDS specification does not define."""
        used = {r.datatype for r in self.rules} | {self.fallback.datatype}
        return sorted(used - BIDS_DATATYPES)

    def bidsignore(self) -> str:
        """Lines for a ``.bidsignore`` file that hide the non-standard datatype folders."""
        return "".join(f"**/{d}/\n" for d in self.nonstandard_datatypes())


def _fields(spec: Any, where: str) -> tuple[str, ...]:
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}: a field name (or 'A|B') is needed, not {spec!r}")
    names = tuple(p.strip() for p in spec.split("|"))
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) for n in names):
        raise ConfigError(f"{where}: {spec!r} is not a field name or 'A|B' list of them")
    return names


def _target(spec: Mapping[str, Any], where: str) -> tuple[str, str]:
    datatype, suffix = spec.get("datatype"), spec.get("suffix")
    if not isinstance(datatype, str) or not _DATATYPE.fullmatch(datatype):
        raise ConfigError(f"{where}: datatype must be lower-case letters, not {datatype!r}")
    if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
        raise ConfigError(f"{where}: suffix must be letters and digits, not {suffix!r}")
    return datatype, suffix


def _rule(spec: Any, index: int, source: str) -> BidsRule:
    where = f"{source}: rule {index + 1}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a mapping is needed, not {type(spec).__name__}")
    name = str(spec.get("name") or f"rule-{index + 1}")
    where = f"{source}: rule {index + 1} ({name})"
    unknown = sorted(set(spec) - _RULE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_RULE_KEYS)}")
    match = spec.get("match")
    if not isinstance(match, Mapping) or not match:
        raise ConfigError(f"{where}: 'match' must map field names to regular expressions")
    conditions = []
    for key, pattern in match.items():
        fields = _fields(key, where)
        if not isinstance(pattern, str):
            raise ConfigError(f"{where}: pattern for {key!r} must be a string")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"{where}: bad regular expression for {key!r}: {exc}") from exc
        conditions.append((fields, compiled))
    datatype, suffix = _target(spec, where)
    entities = spec.get("entities") or {}
    if not isinstance(entities, Mapping):
        raise ConfigError(f"{where}: 'entities' must map entity names to labels")
    fixed = []
    for key in RULE_ENTITIES:
        if key in entities:
            try:
                fixed.append((key, bids_label(entities[key], f"entity {key}")))
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
    extra = sorted(set(entities) - set(RULE_ENTITIES))
    if extra:
        raise ConfigError(f"{where}: entities {extra} cannot be set; allowed: {RULE_ENTITIES}")
    labels_from = _fields(spec["labels_from"], where) if spec.get("labels_from") else ()
    for flag in ("echo", "part"):
        if not isinstance(spec.get(flag, True), bool):
            raise ConfigError(f"{where}: '{flag}' must be true or false")
    return BidsRule(
        name=name,
        conditions=tuple(conditions),
        datatype=datatype,
        suffix=suffix,
        entities=tuple(fixed),
        labels_from=labels_from,
        echo=bool(spec.get("echo", True)),
        part=bool(spec.get("part", True)),
    )


def parse_rules(data: Any, source: str = "<rules>") -> BidsRules:
    """Check and compile rules already read from YAML (see the module docstring).

    Raises
    ------
    ConfigError
        Naming the source, the rule and what to fix.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a mapping with 'bids_rules_version' and 'rules' is needed")
    unknown = sorted(set(data) - {"bids_rules_version", "fallback", "rules"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}")
    if data.get("bids_rules_version") != RULES_VERSION:
        raise ConfigError(
            f"{source}: bids_rules_version must be {RULES_VERSION}, "
            f"not {data.get('bids_rules_version')!r}"
        )
    rules = data.get("rules")
    if not isinstance(rules, list):
        raise ConfigError(f"{source}: 'rules' must be a list")
    fallback = data.get("fallback") or {"datatype": "unknown", "suffix": "unknown"}
    if not isinstance(fallback, Mapping) or set(fallback) - {"datatype", "suffix"}:
        raise ConfigError(f"{source}: 'fallback' must be {{datatype: ..., suffix: ...}}")
    datatype, suffix = _target(fallback, f"{source}: fallback")
    return BidsRules(
        rules=tuple(_rule(spec, i, source) for i, spec in enumerate(rules)),
        fallback=BidsTarget(datatype, suffix, "fallback"),
        source=source,
    )


def default_rules_text() -> str:
    """The text of the rules shipped with the package."""
    ref = resources.files("imagedepot") / "data" / "bids_rules.yaml"
    return ref.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _default_rules() -> BidsRules:
    from imagedepot.safeload import parse_yaml

    return parse_rules(parse_yaml(default_rules_text(), "bids_rules.yaml"), "bids_rules.yaml")


def load_rules(path: str | Path | None = None) -> BidsRules:
    """Load a rules file (``None``: the rules shipped with the package).

    Raises
    ------
    ConfigError
        The file cannot be read or is not valid (the message says where and what to fix).
    """
    from imagedepot.safeload import load_yaml

    if path is None:
        return _default_rules()
    return parse_rules(load_yaml(path, what="BIDS rules"), str(path))


@dataclass
class _Planned:
    key: str
    target: BidsTarget
    echo: int | None
    phase: bool
    order: tuple[Any, ...]
    entities: dict[str, str] = field(default_factory=dict)


def _plan(
    key: str, sidecar: Mapping[str, Any], rules: BidsRules, order: tuple[Any, ...]
) -> _Planned:
    target = rules.target(sidecar)
    echo = sidecar.get("EchoNumber")
    image_type = field_text(sidecar, "ImageType") or ""
    return _Planned(
        key=key,
        target=target,
        echo=int(echo) if isinstance(echo, int | float) and target.echo else None,
        phase=bool(target.part and _PHASE.search(image_type)),
        order=order,
    )


def _path(
    planned: _Planned, pseudonym: str, session: str | None, run: int | None, extension: str
) -> str:
    sub = bids_label(pseudonym, "pseudonym")
    entities: dict[str, str] = {"sub": sub}
    folders = [f"sub-{sub}"]
    if session is not None:
        ses = bids_label(session, "session")
        entities["ses"] = ses
        folders.append(f"ses-{ses}")
    entities.update(planned.target.entities)
    if run is not None:
        if run < 1:
            raise ValueError(f"run {run}: BIDS run indices start at 1")
        entities["run"] = str(int(run))
    if planned.echo is not None:
        entities["echo"] = str(planned.echo)
    entities.update(planned.entities)
    if planned.phase:
        entities["part"] = "phase"
    name = "_".join(f"{k}-{entities[k]}" for k in ENTITY_ORDER if k in entities)
    folders.append(planned.target.datatype)
    return "/".join([*folders, f"{name}_{planned.target.suffix}{extension}"])


def bids_relpath(
    sidecar: Mapping[str, Any],
    *,
    pseudonym: str,
    session: str | None,
    run: int | None = None,
    rules: BidsRules | None = None,
    extension: str = ".nii.gz",
) -> str:
    """Relative BIDS-like path of one converted NIfTI.

    Parameters
    ----------
    sidecar
        The dcm2niix sidecar of the conversion (trusted zone; see the module docstring).
    pseudonym
        The subject's pseudonym; reduced to letters and digits (``SUBJ-7Q3K`` → ``SUBJ7Q3K``).
    session
        Session label (``"1"``...), reduced the same way; ``None`` for no session level.
    run
        Run index (1, 2...) when the subject and session have several of the same kind;
        ``None`` for none. :func:`bids_layout` numbers runs for a whole session.
    rules
        Compiled rules (default: the package's, :func:`load_rules`).
    extension
        ``.nii.gz`` (default), ``.nii``, ``.json``, ``.bval``, ``.bvec``...

    Returns
    -------
    str
        e.g. ``sub-SUBJ7Q3K/ses-1/anat/sub-SUBJ7Q3K_ses-1_T1w.nii.gz`` (``/`` separators).

    Raises
    ------
    ValueError
        The pseudonym or session has no letter or digit, or ``run`` is below 1.
    """
    planned = _plan("", sidecar, rules or load_rules(), ())
    return _path(planned, pseudonym, session, run, extension)


def _sort_key(sidecar: Mapping[str, Any]) -> tuple[Any, ...]:
    series = sidecar.get("SeriesNumber")
    time = sidecar.get("AcquisitionTime")
    return (
        series if isinstance(series, int | float) else float("inf"),
        str(time) if time is not None else "",
    )


def bids_layout(
    entries: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    pseudonym: str,
    session: str | None,
    rules: BidsRules | None = None,
    extension: str = ".nii.gz",
) -> dict[str, str]:
    """Paths for every NIfTI of one subject and session, with run numbers where needed.

    ``entries`` are ``(key, sidecar)`` pairs (the key is yours, e.g. the NIfTI path).

    * An acquisition is told apart by ``SeriesNumber`` and ``AcquisitionTime``. Its echoes and
      parts (phase, magnitude) share one run number; several outputs of one acquisition that
      would get the same name (a three-plane localizer...) count as separate runs.
    * Outputs of the same datatype, suffix and entities are numbered ``run-1``, ``run-2``... in
      the order of ``SeriesNumber``, ``AcquisitionTime``, then key; a kind with a single run
      gets no run entity.
    * Magnitude images that share a name with a phase image (``part-phase``) get ``part-mag``.

    Returns
    -------
    dict
        key → relative path, as :func:`bids_relpath` writes it.
    """
    compiled = rules or load_rules()
    planned = [_plan(k, s, compiled, (*_sort_key(s), k)) for k, s in entries]
    if len({p.key for p in planned}) != len(planned):
        raise ValueError("bids_layout: keys must be unique")

    def kind(p: _Planned) -> tuple[Any, ...]:
        return (p.target.datatype, p.target.suffix, p.target.entities)

    def stem(p: _Planned) -> tuple[Any, ...]:
        return (*kind(p), p.echo, p.phase)

    phased = {(*kind(p), p.echo) for p in planned if p.phase}
    for p in planned:
        if not p.phase and p.target.part and (*kind(p), p.echo) in phased:
            p.entities["part"] = "mag"
    # A run unit: one acquisition, and the n-th of its outputs that share a name.
    same: dict[tuple[Any, ...], list[_Planned]] = {}
    for p in sorted(planned, key=lambda p: p.order):
        same.setdefault((*stem(p), p.order[:2]), []).append(p)
    unit = {p.key: (p.order[:2], group.index(p)) for group in same.values() for p in group}
    units: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for p in planned:
        units.setdefault(kind(p), [])
        if unit[p.key] not in units[kind(p)]:
            units[kind(p)].append(unit[p.key])
    out: dict[str, str] = {}
    for p in planned:
        ordered = sorted(units[kind(p)])
        run = ordered.index(unit[p.key]) + 1 if len(ordered) > 1 else None
        out[p.key] = _path(p, pseudonym, session, run, extension)
    return out


__all__ = [
    "BIDS_DATATYPES",
    "BidsClashError",
    "BidsRule",
    "BidsRules",
    "BidsTarget",
    "bids_label",
    "bids_layout",
    "bids_relpath",
    "default_rules_text",
    "field_text",
    "load_rules",
    "parse_rules",
]


# --- The results/bids/ tree of the workflow -------------------------------------------------------


class BidsClashError(ImagedepotError):
    """Two images of the BIDS tree would get the same path (never overwritten)."""


def _nifti_files(folder: Path) -> list[Path]:
    """NIfTI files of a folder in the order the NIfTI de-identifier numbers them (sorted paths)."""
    if not folder.is_dir():
        return []
    return [
        p for p in sorted(folder.rglob("*")) if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
    ]


def write_bids_tree(
    manifest: Mapping[str, Any],
    *,
    convert_root: Path,
    deid_root: Path,
    leak_root: Path,
    out: Path,
    rules: BidsRules | None = None,
) -> dict[str, Any]:
    """Lay the de-identified NIfTI of every clean DICOM/NIfTI item out as a BIDS-like tree.

    Names come from the *conversion* sidecars (inside the trusted zone, before de-identification
    removes SeriesDescription / ProtocolName); the files copied are the *de-identified* NIfTI and
    sidecars (the de-identifier numbers them ``<pseudonym>_NNN`` in sorted order of its inputs).
    Sessions: the studies of a subject, numbered ``1, 2, ...`` in StudyInstanceUID order of the
    manifest, or no session level when the subject has one study. Writes ``dataset_description.json``
    and ``.bidsignore`` (for the non-standard datatypes). Returns a summary.
    """
    import shutil

    from imagedepot.io import atomic_path, read_json, write_json
    from imagedepot.pipeline import item_dir, leak_report_path

    compiled = rules or load_rules()
    per_subject: dict[str, list[tuple[Mapping[str, Any], str]]] = {}
    for item in manifest["items"]:
        if item["status"] != "pending" or item["kind"] not in ("dicom", "nifti"):
            continue
        leak = leak_report_path(leak_root, item)
        if not leak.is_file() or read_json(leak).get("status") != "clean":
            continue
        prov = read_json(item_dir(deid_root, item) / "provenance.json")
        pseudonym = prov.get("options", {}).get("subject_pseudonym")
        if pseudonym:
            per_subject.setdefault(pseudonym, []).append((item, pseudonym))
    # Run numbers are counted per subject and session across all items (two series with the same
    # description in one session are run-1 and run-2), so every image of a session is laid out
    # by one bids_layout call; keys are unique across items.
    groups: dict[tuple[str, str | None], list[tuple[str, Mapping[str, Any], Path, str]]] = {}
    for pseudonym, entries in sorted(per_subject.items()):
        studies = sorted(
            {(e[0].get("dicom") or {}).get("study_instance_uid") or e[0]["id"] for e in entries}
        )
        for item, _ in entries:
            study = (item.get("dicom") or {}).get("study_instance_uid") or item["id"]
            session = str(studies.index(study) + 1) if len(studies) > 1 else None
            conv = _nifti_files(item_dir(convert_root, item) / "nifti")
            deid = item_dir(deid_root, item) / "nifti"
            group = groups.setdefault((pseudonym, session), [])
            for n, src in enumerate(conv, 1):
                side = src.with_name(src.name.removesuffix(".gz").removesuffix(".nii") + ".json")
                sidecar = json.loads(side.read_text("utf-8")) if side.is_file() else {}
                ext = ".nii.gz" if src.name.endswith(".gz") else ".nii"
                group.append((f"{item['id']}/{pseudonym}_{n:03d}", sidecar, deid, ext))
    written: list[str] = []
    with atomic_path(out, force=True, is_dir=True, remove_stale=True) as tmp:
        for (pseudonym, session), group in sorted(
            groups.items(), key=lambda g: (g[0][0], g[0][1] or "")
        ):
            names = bids_layout(
                [(k, s) for k, s, _, _ in group], pseudonym=pseudonym, session=session,
                rules=compiled,
            )  # fmt: skip
            for key, _, deid, ext in group:
                rel = names[key] if ext == ".nii.gz" else names[key].removesuffix(".gz")
                src_img = deid / f"{key.rsplit('/', 1)[1]}{ext}"
                if not src_img.is_file():
                    continue
                dst = tmp / rel
                side = deid / f"{key.rsplit('/', 1)[1]}.json"
                dst_side = dst.with_name(dst.name.removesuffix(ext) + ".json")
                for target in (dst, dst_side) if side.is_file() else (dst,):
                    if os.path.lexists(target):
                        raise BidsClashError(
                            f"BIDS tree: two images would be written to {os.path.relpath(target, tmp)}; "
                            "refusing to overwrite (check the BIDS rules file for outputs it cannot "
                            "tell apart)"
                        )
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src_img, dst)
                written.append(rel)
                if side.is_file():
                    shutil.copy2(side, dst_side)
        write_json(
            tmp / "dataset_description.json",
            {"Name": "imagedepot de-identified NIfTI", "BIDSVersion": "1.9.0",
             "DatasetType": "raw", "GeneratedBy": [{"Name": "imagedepot"}]},
        )  # fmt: skip
        (tmp / ".bidsignore").write_text(compiled.bidsignore(), encoding="utf-8")
    return {"subjects": len(per_subject), "images": len(written), "files": sorted(written)}
