"""Fake identifiers for the corpus: invented names, IDs, dates, accession numbers and
institutions, and the ways each is written on an image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SURNAMES = (
    "DOE", "SMITH", "GARCIA", "NGUYEN", "MUELLER", "ROSSI", "KOWALSKI", "OKAFOR", "TANAKA",
    "JOHANSSON", "MARTIN", "DUBOIS", "SILVA", "HOFFMANN", "OBRIEN", "PETROV", "LINDQVIST",
    "FERREIRA", "NAKAMURA", "ADEYEMI", "VAN DER BERG", "MORENO", "KLEIN", "BRENNAN", "WEBER",
    "FISCHER", "ALVAREZ", "HASSAN", "SCHMIDT", "CAMPBELL", "RAMIREZ", "BECKER",
)  # fmt: skip
_GIVEN_F = (
    "JANE", "MARIA", "ANNA", "SOFIA", "EMMA", "LUCIA", "HANNA", "GRACE", "AMARA", "YUKI",
    "ELENA", "CLARA", "INGRID", "FATIMA", "OLIVIA", "ROSA",
)  # fmt: skip
_GIVEN_M = (
    "JOHN", "PETER", "JAMES", "LUKAS", "MARCO", "DAVID", "AHMED", "KENJI", "OLAF", "TOMAS",
    "MIGUEL", "SAMUEL", "VIKTOR", "CHIDI", "PAUL", "HENRIK",
)  # fmt: skip
_INSTITUTIONS = (
    "NORTHFIELD GENERAL HOSPITAL", "ST. BRIGID MEDICAL CENTER", "LAKESIDE IMAGING CLINIC",
    "RIVERBEND UNIVERSITY HOSPITAL", "HIGHGATE RADIOLOGY", "MAPLE VALLEY HEALTH",
    "KLINIKUM SONNENBERG", "OSPEDALE SAN FAUSTO", "Westbrook Diagnostic Centre",
    "CLINIQUE DES TILLEULS",
)  # fmt: skip
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

#: Technical annotations per modality (kind ``other``).
_OTHER = {
    "CT": ("kV 120", "mA 250", "3.0 mm", "W 400 L 40", "Se 3", "Im 42", "HFS", "0.5 s"),
    "MR": ("TR 500", "TE 15", "T1 SE", "3.0 T", "FOV 240", "Se 5 Im 12", "ET 4", "NEX 2"),
    "CR": ("PA ERECT", "AP PORTABLE", "SUPINE", "kVp 110", "mAs 2.5", "EI 412"),
    "DX": ("PA ERECT", "AP SUPINE", "kVp 125", "mAs 3.2", "EI 388", "DAP 0.8"),
    "MG": ("kVp 29", "mAs 63", "Thk 52 mm", "12 daN", "W/Rh"),
    "US": ("MI 1.1", "TIs 0.3", "Gain 52", "DR 60", "FR 30 Hz", "C5-1", "ABD"),
    "SC": ("Page 1 of 2", "3D VR", "ZOOM 1.5", "Se 601", "Report"),
    "XA": ("LAO 30", "CRA 15", "15 fps", "FD 22 cm", "DAP 12.3"),
}
_SCALE_LABELS = ("5 cm", "10 mm", "2 cm", "1 cm", "50 mm")


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _date(rng: np.random.Generator, first: str, last: str) -> str:
    lo, hi = np.datetime64(first), np.datetime64(last)
    day = lo + np.timedelta64(int(rng.integers(int((hi - lo).astype(int)) + 1)), "D")
    return str(day).replace("-", "")


def _fake_phi(rng: np.random.Generator) -> tuple[dict[str, str], str, str]:
    """Fake header identifiers, the patient's sex and the study time (HHMMSS)."""
    sex = "F" if rng.random() < 0.5 else "M"
    given = _pick(rng, _GIVEN_F if sex == "F" else _GIVEN_M)
    surname = _pick(rng, _SURNAMES)
    style = int(rng.integers(3))
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, 9))
    pid = (digits[:7], digits[:8], "ZX" + digits[:6])[style]
    study = _date(rng, "2016-01-01", "2024-12-31")
    acc = ("A" + digits[1:8], study + digits[5:9], "RAD" + digits[2:8])[int(rng.integers(3))]
    phi = {
        "PatientName": f"{surname}^{given}",
        "PatientID": pid,
        "AccessionNumber": acc,
        "PatientBirthDate": _date(rng, "1930-01-01", "2012-12-31"),
        "StudyDate": study,
        "InstitutionName": _pick(rng, _INSTITUTIONS),
    }
    time = f"{int(rng.integers(7, 20)):02d}{int(rng.integers(60)):02d}{int(rng.integers(60)):02d}"
    return phi, sex, time


def _fmt_date(d: str, style: int) -> str:
    y, m, day = d[:4], d[4:6], d[6:8]
    return (
        f"{y}{m}{day}",
        f"{y}-{m}-{day}",
        f"{day}.{m}.{y}",
        f"{m}/{day}/{y}",
        f"{day}-{_MONTHS[int(m) - 1]}-{y}",
    )[style % 5]


def _fmt_name(pn: str, style: int) -> str:
    surname, given = pn.split("^", 1)
    return (pn, f"{surname}, {given}", f"{given} {surname}")[style % 3]


def _phi_texts(
    rng: np.random.Generator, phi: dict[str, str], time: str
) -> dict[str, tuple[str, str]]:
    """Renderings of the identifiers as overlays draw them: ``{field: (text, kind)}``."""
    ds = int(rng.integers(5))  # one date style per image, as a device would
    pid = phi["PatientID"]
    dob = _fmt_date(phi["PatientBirthDate"], ds)
    study = _fmt_date(phi["StudyDate"], ds)
    hhmm = f"{time[:2]}:{time[2:4]}"
    acc = phi["AccessionNumber"]
    return {
        "name": (_fmt_name(phi["PatientName"], int(rng.integers(3))), "name"),
        "id": (_pick(rng, (f"ID: {pid}", pid, f"MRN {pid}", f"Pat ID {pid}")), "id"),
        "dob": (_pick(rng, (f"DOB: {dob}", dob, f"Born {dob}")), "date"),
        "study": (_pick(rng, (study, f"{study} {hhmm}", f"Study: {study}")), "date"),
        "accession": (_pick(rng, (f"ACC {acc}", f"Acc#: {acc}", acc)), "accession"),
        "institution": (phi["InstitutionName"], "institution"),
    }
