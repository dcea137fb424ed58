"""De-identify the clinical records of one subject: :func:`link_clinical`.

What :func:`link_clinical` does for the records of one subject:

* re-keys them to the subject's pseudonym (the same keyed pseudonym as the images);
* shifts every date by the subject's offset when the policy has
  ``retain_longitudinal_modified_dates`` (the same :class:`~imagedepot.deid.pseudonym.Pseudonymizer`
  offset as in the images), keeps dates under ``retain_longitudinal_full_dates`` and removes
  them otherwise;
* keeps free text (the diagnosis text) only when it holds nothing that looks like an
  identifier: no date, long number, e-mail or phone number, and nothing the leak harvest of
  the subject's originals (and of the clinical input's Patient) knows; otherwise drops it with a
  warning;
* rejects bad records one by one (unknown subject, malformed or implausible date, code outside
  its value set, value not a number or out of range, wrong unit) with an error that names the
  record (``line 4``, ``entry 2``) and the problem, never the offending value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

from imagedepot.clinical.records import (
    LOINC,
    ClinicalFact,
    ClinicalInput,
    ClinicalIssue,
    ClinicalLinkage,
)
from imagedepot.deid.pseudonym import Pseudonymizer, date_mode
from imagedepot.identifiers import Identifiers

#: Free text that looks like an identifier: dates, long numbers, e-mail addresses, phones.
_LOOKS_IDENTIFYING = re.compile(
    r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"
    r"|\d{5,}"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\+?\d[\d ()-]{6,}\d"
)


def text_is_safe(text: str, identifiers: Identifiers | None) -> bool:
    """True when free text holds nothing that looks like an identifier (see module docstring)."""
    if _LOOKS_IDENTIFYING.search(text):
        return False
    return not (identifiers is not None and identifiers.find(text))


def _resolve(candidates: Sequence[str], known: set[str]) -> str | None:
    for c in candidates:
        if c.strip() in known:
            return c.strip()
    return None


def link_clinical(
    source: ClinicalInput,
    *,
    subject: str,
    known_subjects: Iterable[str],
    pseudonymizer: Pseudonymizer,
    deid_options: Iterable[str],
    identifiers: Identifiers | None = None,
) -> ClinicalLinkage:
    """De-identify the clinical records of ``subject`` (see the module docstring).

    Parameters
    ----------
    subject
        The original subject ID (sample sheet ``subject``) whose records to link.
    known_subjects
        Every subject of the sample sheet: records of others are left to their own bundles;
        records of a patient not among them are errors ("unknown subject").
    pseudonymizer
        Built with the key and policy that de-identified the images.
    deid_options
        The policy's de-identification options (what to do with dates).
    identifiers
        The leak harvest of the subject's originals. Free text matching it, or the identifying
        values of the subject's ``Patient`` in the clinical input, is dropped. The returned
        :attr:`ClinicalLinkage.source_identifiers` are for the caller's leak gate.
    """
    known = {s.strip() for s in known_subjects} | {subject.strip()}
    mode = date_mode(deid_options)
    pseudonym = pseudonymizer.subject_id(subject)
    link = ClinicalLinkage(source=source.source, pseudonym=pseudonym, dates=mode)
    ids = Identifiers()
    if identifiers is not None:
        ids.update(identifiers)
    own = source.identifiers.get(subject.strip(), [])
    link.source_identifiers.append((subject, "extra"))
    link.source_identifiers.extend(own)
    for value, kind in own:
        ids.add(value, kind)

    for issue in source.issues:
        who = _resolve(issue.patient, known)
        if issue.severity == "warning" and who in (None, subject.strip()):
            link.warnings.append(issue)
        elif who is None and issue.patient:
            link.errors.append(ClinicalIssue(issue.where, "unknown subject; " + issue.problem))
        elif who is None or who == subject.strip():
            link.errors.append(issue)

    ordinal = 0
    for rec in source.records:
        link.records += 1
        who = _resolve(rec.patient, known)
        if who is None:
            link.errors.append(
                ClinicalIssue(rec.where, "unknown subject (not in the sample sheet)")
            )
            continue
        if who != subject.strip():
            link.other_subjects += 1
            continue
        link.linked += 1
        ordinal += 1
        if rec.date is not None:
            link.source_identifiers.append((rec.date.isoformat(), "date"))
        date: str | None
        if rec.date is None or mode == "remove":
            date = None
        elif mode == "shift":
            date = pseudonymizer.shift_date(rec.date.isoformat(), subject)
        else:
            date = rec.date.isoformat()
        stamp = date or f"#{ordinal}"
        enc_key = None
        if rec.encounter:
            enc_key = _key(pseudonym, "encounter", stamp)
            link.facts.append(
                ClinicalFact("encounter", enc_key, date, encounter_class=rec.encounter)
            )
        if rec.condition is not None:
            text = rec.condition_text
            if text and not text_is_safe(text, ids):
                link.warnings.append(
                    ClinicalIssue(
                        rec.where, "diagnosis text dropped: it may identify the patient", "warning"
                    )
                )
                text = None
            link.facts.append(
                ClinicalFact(
                    "condition",
                    _key(pseudonym, "condition", stamp, *rec.condition),
                    date,
                    code=rec.condition,
                    text=text,
                    encounter=enc_key,
                )
            )
        for m in rec.measurements:
            link.facts.append(
                ClinicalFact(
                    "observation",
                    _key(pseudonym, "observation", stamp, m.loinc),
                    date,
                    code=(LOINC, m.loinc),
                    value=m.value,
                    encounter=enc_key,
                )
            )
    return link


_KEY_NS = uuid.UUID("0b7a3f8e-5d2c-4e61-9c1a-7f3e2d4b6a58")


def _key(*parts: str) -> str:
    return str(uuid.uuid5(_KEY_NS, "|".join(parts)))
