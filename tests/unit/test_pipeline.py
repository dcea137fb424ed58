from __future__ import annotations

import json
from pathlib import Path

from imagedepot.pipeline import ConvertOptions, convert_item, nifti_skip_reason, read_status


def test_non_volume_series_are_not_converted_but_pass_on() -> None:
    assert nifti_skip_reason({"sop_class_uid": "1.2.840.10008.5.1.4.1.1.7", "modality": "OT"})
    assert nifti_skip_reason({"sop_class_uid": "1.2.840.10008.5.1.4.1.1.88.22", "modality": "SR"})
    assert (
        nifti_skip_reason({"sop_class_uid": "1.2.840.10008.5.1.4.1.1.4", "modality": "MR"}) is None
    )


def test_convert_item_quarantines_bad_input_and_writes_record(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    item = {"id": "ds-n001", "kind": "nifti", "files": [{"path": str(bad)}]}
    (tmp_path / "item.json").write_text(json.dumps(item))
    prov = convert_item(tmp_path / "item.json", tmp_path / "out", ConvertOptions())
    assert prov.status == "quarantined"
    assert "broken.nii.gz" in (prov.reason or "")
    status = read_status(tmp_path / "out")
    assert status["status"] == "quarantined"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["provenance.json"]


def test_convert_item_skips_secondary_capture(tmp_path: Path, dicom_factory) -> None:
    f = dicom_factory(tmp_path / "sc", study="1.2", series="1.2.1", instance=1)
    item = {
        "id": "ds-d001",
        "kind": "dicom",
        "files": [{"path": str(f)}],
        "dicom": {"sop_class_uid": "1.2.840.10008.5.1.4.1.1.7", "modality": "OT"},
    }
    (tmp_path / "item.json").write_text(json.dumps(item))
    prov = convert_item(tmp_path / "item.json", tmp_path / "out", ConvertOptions())
    assert prov.status == "processed"
    assert "not converted" in prov.options["nifti"]


def test_batch_writers_clear_stale_temporaries(tmp_path: Path) -> None:
    from imagedepot.pipeline import run_batch
    from tests.unit.test_io import _dead_pid, plant

    for step, root in (("convert", "convert"), ("deidentify", "deid"), ("leakcheck", "leakcheck")):
        out = tmp_path / "results" / root / "batch-0000"
        stale = plant(out, _dead_pid(), is_dir=True)
        run_batch(step, {"items": []}, 0, out, upstream=tmp_path, deid_settings=object())
        assert not stale.exists(), step
        assert [p.name for p in out.parent.iterdir()] == ["batch-0000"]
