"""The demo's NIfTI volume and its BIDS-like sidecar, with PHI in header fields, an
extension and the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imagedepot.demo.cohort import (
    _DEVICES,
    INSTITUTION,
    INSTITUTION_ADDRESS,
    NIFTI_ACQUISITION,
    STUDIES,
    SUBJECT_A,
    _iso,
)
from imagedepot.demo.phantoms import _head_mr, _rng


def _write_nifti(folder: Path) -> None:
    """32x32x16 T1-like volume of subject A, RAS+ affine (2 x 2 x 3 mm), PHI in header fields."""
    import nibabel as nib

    s = SUBJECT_A
    vol = _head_mr(_rng("nifti"), 16, 32, 32)  # (z, y, x) with rows anterior first
    data = np.ascontiguousarray(vol.transpose(2, 1, 0)[:, ::-1, :]).astype(np.int16)  # (i, j, k)
    affine = np.array([[2.0, 0, 0, -31.0], [0, 2.0, 0, -31.0], [0, 0, 3.0, -22.5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    hdr = img.header
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = f"{s.name} {s.patient_id}".encode()
    hdr["aux_file"] = f"{s.folder}.txt".encode()
    hdr["db_name"] = s.patient_id.encode()
    note = (
        f"Patient {s.name} ({s.patient_id}), born {_iso(s.birth_date)}, "
        f"scanned {_iso(STUDIES[0].date)} at {INSTITUTION}"
    )
    hdr.extensions.append(nib.nifti1.Nifti1Extension("comment", note.encode()))
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(img, folder / "brain.nii.gz")
    sidecar = {
        "Modality": "MR",
        "MagneticFieldStrength": 3,
        "Manufacturer": "Siemens",
        "ManufacturersModelName": "Prisma",
        "InstitutionName": INSTITUTION,
        "InstitutionAddress": INSTITUTION_ADDRESS,
        "DeviceSerialNumber": _DEVICES["MR"][3],
        "StationName": _DEVICES["MR"][2],
        "PatientName": s.name,
        "PatientID": s.patient_id,
        "PatientBirthDate": _iso(s.birth_date),
        "PatientSex": s.sex,
        "AcquisitionDateTime": NIFTI_ACQUISITION,
        "SeriesDescription": "T1 SE AXIAL",
        "ProtocolName": "t1_se_tra",
        "RepetitionTime": 0.5,
        "EchoTime": 0.015,
        "FlipAngle": 90,
        "SliceThickness": 3.0,
        "ConversionSoftware": "imagedepot demo",
    }
    (folder / "brain.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
