from __future__ import annotations

from pathlib import Path

import pytest

from imagedepot.errors import PolicyError
from imagedepot.policy import load_policy

POLICY = """policy_version: 1
name: p
data_use: {{permission: "DUO:0000042", modifiers: []}}
consent: {{required: false}}
destinations: {{allowed_classes: [internal]}}
deidentification:
  options: [retain_patient_characteristics]
  {extra}
"""


def test_birth_date_detail_defaults_to_age_and_is_recorded(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(POLICY.format(extra=""))
    assert load_policy(p).to_provenance()["birth_date_detail"] == "age"
    p.write_text(POLICY.format(extra="birth_date_detail: year"))
    assert load_policy(p).to_provenance()["birth_date_detail"] == "year"


def test_unknown_birth_date_detail_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(POLICY.format(extra="birth_date_detail: full"))
    with pytest.raises(PolicyError, match="birth_date_detail"):
        load_policy(p)
