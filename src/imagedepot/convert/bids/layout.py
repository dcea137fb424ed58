"""BIDS paths of a subject's images: entities, echo and part, run numbers
(:func:`bids_layout`, :func:`bids_relpath`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagedepot.convert.bids.rules import BidsRules, BidsTarget, bids_label, field_text, load_rules

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


_PHASE = re.compile(r"(^|\\)(P|PHASE)(\\|$)", re.IGNORECASE)


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
