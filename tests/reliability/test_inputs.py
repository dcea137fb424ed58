"""End to end through the CLI (no Snakemake): unusual inboxes still account for every input and
write no identifier where it does not belong.

Each test builds a tiny inbox of pydicom files carrying the demo's fake patients, with the demo's
policy, consent sheet and key (:func:`imagedepot.demo.make_demo`), then runs the steps as the
workflow's rules do: scan, convert, de-identify, leak gate, FHIR bundles, staging, summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydicom
import pytest

from imagedepot.cli import main
from imagedepot.demo import SUBJECT_A, SUBJECT_B, SUBJECT_C, make_demo

#: Folders of ``results/`` that are the trusted zone: they name original paths and subjects.
TRUSTED = ("ingest", "convert")


@pytest.fixture
def patient_file(dicom_factory: Callable[..., Path]) -> Callable[..., Path]:
    """Write a small MR file of one of the demo's fake patients (name, IDs, birth date); the
    study UID is ``<series>`` without its last part."""

    def write(path: Path, series: str, instance: int, subject: Any) -> Path:
        study = series.rsplit(".", 1)[0]
        dicom_factory(path, study=study, series=series, instance=instance)
        ds = pydicom.dcmread(path)
        ds.PatientName = subject.name
        ds.PatientID = subject.patient_id
        ds.OtherPatientIDs = subject.other_id
        ds.PatientBirthDate = subject.birth_date
        ds.save_as(path)
        return path

    return write


def _identifiers(*subjects: Any) -> list[str]:
    out = []
    for s in subjects:
        out += [s.family, s.given, s.patient_id, s.other_id, s.birth_date]
    return out


def _project(root: Path, rows: Iterable[str]) -> None:
    """Sample sheet and configuration in ``root`` (the working directory), demo policy and key."""
    make_demo(root / "demo")
    (root / "samples.tsv").write_text(
        "dataset_id\tsubject\tmodality_class\tsource\tpolicy\tdestinations\n" + "".join(rows),
        encoding="utf-8",
    )
    config = {
        "samples": "samples.tsv",
        "inbox": "inbox",
        "policies": {"demo-cohort": "demo/policies/demo-cohort.yaml"},
        "pseudonymisation": {
            "key_env": "IMAGEDEPOT_TEST_UNSET_KEY",
            "key_file": "demo/secrets/pseudonym.key",
            "linkage_dir": "secure/linkage",
        },
        "destinations": {"local": {"class": "internal", "type": "folder"}},
    }
    (root / "config.yaml").write_text(json.dumps(config), encoding="utf-8")


def _run() -> dict:
    """Every step of the workflow on batch 0, as its rules call the CLI; the run summary."""
    m, cfg = "results/ingest/manifest.json", "--config config.yaml"
    roots = "--deid-root results/deid --leak-root results/leakcheck"
    steps = [
        f"scan {cfg} --out {m}",
        f"batch convert {m} 0 results/convert/batch-0000",
        f"batch deid {m} 0 results/convert/batch-0000 results/deid/batch-0000 {cfg}",
        f"batch leakcheck {m} 0 results/deid/batch-0000 results/leakcheck/batch-0000",
        f"fhir bundle --manifest {m} {roots} --out-dir results/fhir {cfg}",
        f"stage local local results/stage/local --manifest {m} {roots} --fhir-root results/fhir {cfg}",
        f"summary --manifest {m} --leak-root results/leakcheck --stage-dirs results/stage/local "
        "--fhir-root results/fhir --out results/summary.json",
    ]
    for step in steps:
        assert main(step.split()) == 0, step
    summary: dict = json.loads(Path("results/summary.json").read_text(encoding="utf-8"))
    assert summary["found"] == summary["processed"] + summary["quarantined"] + summary["excluded"]
    return summary


def _files_holding(values: Iterable[str], *, skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Which files under ``results/`` (but the folders in ``skip``) hold which of ``values``."""
    hits: dict[str, list[str]] = {}
    for p in sorted(Path("results").rglob("*")):
        if not p.is_file() or p.relative_to("results").parts[0] in skip:
            continue
        data = p.read_bytes()
        found = [v for v in values if v.encode() in data]
        if found:
            hits[str(p)] = found
    return hits


def test_another_patients_file_in_a_subjects_folder_never_reaches_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patient_file: Callable[..., Path]
) -> None:
    """A file of a patient who declined consent (C) copied into the folder of a subject (B) is
    quarantined at the scan; B's dataset, FHIR bundle and staged folder hold only B's series."""
    monkeypatch.chdir(tmp_path)
    for i in range(3):
        patient_file(tmp_path / "inbox" / "s02" / f"im{i}", "1.2.826.0.1.3.1", i + 1, SUBJECT_B)
    patient_file(tmp_path / "inbox" / "s03" / "im0", "1.2.826.0.1.4.1", 1, SUBJECT_C)
    intruder = tmp_path / "inbox" / "s02" / "x"
    intruder.write_bytes((tmp_path / "inbox" / "s03" / "im0").read_bytes())
    _project(
        tmp_path,
        [
            f"ds-02\t{SUBJECT_B.patient_id}\tdicom\tinbox/s02\tdemo-cohort\tlocal\n",
            f"ds-03\t{SUBJECT_C.patient_id}\tdicom\tinbox/s03\tdemo-cohort\tlocal\n",
        ],
    )
    summary = _run()
    assert (summary["found"], summary["processed"], summary["quarantined"]) == (3, 1, 1)
    assert summary["excluded"] == 1  # C declined consent
    (q,) = summary["quarantined_items"]
    assert q == {
        "file": "inbox/s02/x",
        "dataset": "ds-02",
        "reason": "Patient ID differs from the sample sheet's subject",
    }
    staged = json.loads(Path("results/stage/local/manifest.json").read_text(encoding="utf-8"))
    assert "1.2.826.0.1.4" not in json.dumps(staged)  # C's study is not in B's deposit
    bundle = Path("results/fhir/ds-02/bundle.json").read_text(encoding="utf-8")
    assert "1.2.826.0.1.4" not in bundle and "1.2.826.0.1.3" not in bundle  # UIDs are new
    # No identifier of either patient outside the trusted zone; C's name and other IDs nowhere.
    assert _files_holding(_identifiers(SUBJECT_B, SUBJECT_C), skip=TRUSTED) == {}
    assert _files_holding([SUBJECT_C.family, SUBJECT_C.given, SUBJECT_C.other_id]) == {}


def test_linked_folders_and_links_out_of_the_inbox_are_all_accounted_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patient_file: Callable[..., Path]
) -> None:
    """A subject's folder with a linked folder inside the inbox (processed once), a link to a
    folder outside the inbox and a loose link to a file outside it (both quarantined, never
    opened): every entry is counted and the outside patient's identifiers appear nowhere."""
    monkeypatch.chdir(tmp_path)
    inbox = tmp_path / "inbox"
    patient_file(inbox / "s01" / "im0", "1.2.826.0.1.1.1", 1, SUBJECT_A)
    for i in range(2):
        patient_file(inbox / "store" / "later" / f"im{i}", "1.2.826.0.1.1.2", i + 1, SUBJECT_A)
    outside = tmp_path / "elsewhere"
    patient_file(outside / "im0", "1.2.826.0.1.9.1", 1, SUBJECT_C)
    (inbox / "s01" / "later").symlink_to(inbox / "store" / "later")
    (inbox / "s01" / "more").symlink_to(outside)
    (inbox / "stray").symlink_to(outside / "im0")
    _project(tmp_path, [f"ds-01\t{SUBJECT_A.patient_id}\tdicom\tinbox/s01\tdemo-cohort\tlocal\n"])
    summary = _run()
    assert (summary["found"], summary["processed"], summary["quarantined"]) == (4, 2, 2)
    assert summary["excluded"] == 0
    assert summary["files_found"] == 1 + 2 + 2  # files of both series + the two links
    assert {(q["file"], q["reason"]) for q in summary["quarantined_items"]} == {
        ("inbox/s01/more", "symbolic link pointing outside the inbox"),
        ("inbox/stray", "symbolic link pointing outside the inbox"),
    }
    staged = json.loads(Path("results/stage/local/summary.json").read_text(encoding="utf-8"))
    assert len(staged["staged"]) == 2
    assert _files_holding(_identifiers(SUBJECT_A, SUBJECT_C), skip=TRUSTED) == {}
    assert _files_holding(_identifiers(SUBJECT_C)) == {}  # the outside file was never opened
