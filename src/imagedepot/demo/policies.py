"""The demo's two policies: the human cohort's and open microscopy's."""

from __future__ import annotations

from pathlib import Path

DEMO_COHORT_POLICY = """\
# Human imaging of the demo cohort: consent required, pseudonymised, controlled access.
policy_version: 1
name: demo-cohort
description: Synthetic demo cohort (fake patients); general research use, publication required.
data_use: {permission: "DUO:0000042", modifiers: ["DUO:0000019"]}
consent: {required: true, sheet: ../consent.tsv, subject_column: subject,
          consent_column: consent_imaging, consent_values: ["yes"]}
destinations: {allowed_classes: [internal, controlled_repository]}
deidentification:
  options: [retain_longitudinal_modified_dates, clean_pixel_data]
  pseudonym_prefix: SUBJ
  max_date_shift_days: 3650
  # The CT console's "patient protocol" screen writes name and MRN in its top 30 rows.
  pixel_cleaning:
    - name: somatom-force-protocol-screen
      match: {Modality: OT, Manufacturer: SIEMENS, ManufacturerModelName: SOMATOM Force,
              Rows: 128, Columns: 128}
      regions: [[0, 0, 128, 30]]
"""

OPEN_MICROSCOPY_POLICY = """\
# Non-human microscopy: no consent needed, may go to public archives without restriction.
policy_version: 1
name: open-microscopy
description: Synthetic cell images (non-human); no restriction. Experimenter data still removed.
data_use: {permission: "DUO:0000004", modifiers: []}
consent: {required: false}
destinations: {allowed_classes: [internal, public_archive]}
deidentification:
  options: [retain_device_identity]
  pseudonym_prefix: SPEC
"""


def _write_policies(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo-cohort.yaml").write_text(DEMO_COHORT_POLICY, encoding="utf-8")
    (folder / "open-microscopy.yaml").write_text(OPEN_MICROSCOPY_POLICY, encoding="utf-8")
