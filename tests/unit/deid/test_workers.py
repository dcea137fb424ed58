"""Parallel de-identification: any number of workers gives the same files, report and log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagedepot.errors import InputError
from tests.unit.deid.test_dicom import make_instance, make_series, run


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_workers_give_identical_outputs_report_and_log(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=9)
    (tmp_path / "in" / "junk.txt").write_text("not dicom")
    options = {"retain_longitudinal_modified_dates", "clean_descriptors"}
    one = run(
        tmp_path / "in",
        tmp_path / "one",
        options,
        workers=1,
        skip_bad_files=True,
        action_log=tmp_path / "one.jsonl",
    )
    two = run(
        tmp_path / "in",
        tmp_path / "two",
        options,
        workers=2,
        skip_bad_files=True,
        action_log=tmp_path / "two.jsonl",
    )
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    a, b = one.to_dict(include_private=True), two.to_dict(include_private=True)
    a.pop("output"), b.pop("output")
    assert a == b
    assert len(one.files_written) == 9 and len(one.skipped) == 1 and not one.errors
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "two.jsonl").read_text()
    lines = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [x["index"] for x in lines] == sorted(x["index"] for x in lines)


def test_workers_check_patients_and_duplicates_across_processes(tmp_path: Path) -> None:
    for i in range(1, 7):
        make_instance(tmp_path / "in" / f"a{i}.dcm", index=i)
    make_instance(tmp_path / "in" / "z-other.dcm", index=20, patient_id="MRN999")
    with pytest.raises(InputError, match="Patient ID differs") as exc:
        run(tmp_path / "in", tmp_path / "out", workers=2)
    assert exc.value.path.endswith("z-other.dcm")
    assert not (tmp_path / "out").exists()
    report = run(tmp_path / "in", tmp_path / "out", workers=2, skip_bad_files=True)
    assert len(report.files_written) == 6
    assert len(list((tmp_path / "out").iterdir())) == 6  # the other patient's file is gone

    make_instance(tmp_path / "dup" / "a.dcm", index=1)
    for i in range(2, 6):
        make_instance(tmp_path / "dup" / f"b{i}.dcm", index=i)
    make_instance(tmp_path / "dup" / "c.dcm", index=1)
    with pytest.raises(InputError, match="duplicate SOPInstanceUID"):
        run(tmp_path / "dup", tmp_path / "dup-out", workers=2)


def test_workers_must_be_positive(tmp_path: Path) -> None:
    make_series(tmp_path / "in", n=1)
    with pytest.raises(ValueError, match="at least 1"):
        run(tmp_path / "in", tmp_path / "out", workers=0)
