"""The demo's tables: consent sheet, clinical table and sample sheet."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from imagedepot.demo.cohort import (
    CLINICAL_ROWS,
    FAKE_FILE_NAME,
    SUBJECT_A,
    SUBJECT_B,
    SUBJECT_C,
    SUBJECTS,
)


def _write_rows(path: Path, rows: Sequence[Sequence[object]], delimiter: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator="\n").writerows(rows)


def _write_tables(root: Path) -> None:
    consent: list[Sequence[object]] = [("subject", "consent_imaging", "consent_date")]
    consent += [(s.patient_id, s.consent, s.consent_date) for s in SUBJECTS]
    _write_rows(root / "consent.tsv", consent, "\t")
    clinical: list[Sequence[object]] = [
        ("patient_id", "visit_date", "diagnosis_code", "diagnosis_text", "weight_kg")
    ]
    clinical += [(pid, day, code, text, f"{kg:.1f}") for pid, day, code, text, kg in CLINICAL_ROWS]
    _write_rows(root / "clinical.csv", clinical, ",")


def _sample_rows() -> list[dict[str, str]]:
    human = {"policy": "demo-cohort", "destinations": "local", "organism": "Homo sapiens"}
    micro = {"policy": "open-microscopy", "destinations": "local", "organism": "Mus musculus"}
    mri, ct = "magnetic resonance imaging", "computed tomography"
    widefield = "widefield fluorescence microscopy"
    rows: list[dict[str, str]] = [
        {
            "dataset_id": "dcm-subj01",
            "subject": SUBJECT_A.patient_id,
            "modality_class": "dicom",
            "source": f"inbox/{SUBJECT_A.folder}",
            **human,
            "title": "Brain MRI and head CT, subject 01",
            "description": "Synthetic T1 MR and head CT: two studies mixed in one folder",
            "sample": "head",
            "imaging_method": f"{mri}; {ct}",
        },
        {
            "dataset_id": "dcm-subj02",
            "subject": SUBJECT_B.patient_id,
            "modality_class": "dicom",
            "source": f"inbox/{SUBJECT_B.folder}",
            **human,
            "title": "Chest CT, subject 02",
            "description": "Synthetic chest CT and a screen capture with burned-in identifiers",
            "sample": "chest",
            "imaging_method": ct,
        },
        {
            "dataset_id": "dcm-subj03",
            "subject": SUBJECT_C.patient_id,
            "modality_class": "dicom",
            "source": f"inbox/{SUBJECT_C.folder}",
            **human,
            "title": "Abdominal CT, subject 03",
            "description": "Synthetic abdominal CT of a subject who declined consent",
            "sample": "abdomen",
            "imaging_method": ct,
        },
        {
            "dataset_id": "nii-subj01",
            "subject": SUBJECT_A.patient_id,
            "modality_class": "nifti",
            "source": "inbox/nifti/*.nii.gz",
            **human,
            "title": "Brain MRI volume, subject 01",
            "description": "Synthetic T1 volume in NIfTI-1 with a JSON sidecar",
            "sample": "head",
            "imaging_method": mri,
        },
        {
            "dataset_id": "micro-cells",
            "subject": "specimen-A17",
            "modality_class": "microscopy",
            "source": "inbox/microscopy/cells.ome.tif",
            **micro,
            "title": "Fibroblasts stained for DNA and GFP",
            "description": "Synthetic 2-channel z-stack (DAPI, GFP) of fixed cells in OME-TIFF",
            "sample": "NIH/3T3 fibroblasts, fixed",
            "imaging_method": widefield,
        },
        {
            "dataset_id": "micro-plate",
            "subject": "specimen-P03",
            "modality_class": "microscopy",
            "source": f"inbox/microscopy/{FAKE_FILE_NAME}",
            **micro,
            "title": "Bio-Formats test pattern",
            "description": "Synthetic 2-channel, 2-plane gradient image defined by its file name",
            "sample": "synthetic test pattern",
            "imaging_method": widefield,
        },
    ]
    return rows


#: Columns of the demo sample sheet, required ones first (see docs/architecture.md).
SAMPLE_COLUMNS = (
    "dataset_id",
    "subject",
    "modality_class",
    "source",
    "policy",
    "destinations",
    "title",
    "description",
    "organism",
    "sample",
    "imaging_method",
)


def _write_samples(path: Path) -> None:
    rows = [[row[column] for column in SAMPLE_COLUMNS] for row in _sample_rows()]
    _write_rows(path, [SAMPLE_COLUMNS, *rows], "\t")
