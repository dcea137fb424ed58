from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagedepot.errors import ConfigError
from imagedepot.ingest import InputWalk, SubjectCheck, group_files, scan
from imagedepot.io import iter_files
from imagedepot.samplesheet import load_samples


class Consent:
    name = "pol"

    def __init__(self, ok: set[str]) -> None:
        self.ok = ok

    def consented(self, subject: str) -> bool:
        return subject in self.ok


def test_dicom_grouped_by_uid_not_folder(tmp_path: Path, dicom_factory) -> None:
    # Two series spread over two folders, files without extensions, shuffled names.
    for i in range(3):
        dicom_factory(tmp_path / "a" / f"x{i}", study="1.2.3", series="1.2.3.1", instance=i + 1)
        dicom_factory(tmp_path / "b" / f"y{i}", study="1.2.3", series="1.2.3.2", instance=i + 1)
    found = group_files(list(iter_files(tmp_path)))
    assert not found.quarantine
    series = {i.dicom["series_instance_uid"]: i for i in found.items}
    assert set(series) == {"1.2.3.1", "1.2.3.2"}
    assert all(len(i.files) == 3 for i in series.values())
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for i in found.items for f in i.files)


def test_dicom_without_preamble_in_dicom_dataset(tmp_path: Path, dicom_factory) -> None:
    dicom_factory(tmp_path / "raw", study="1.2", series="1.2.1", instance=1, preamble=False)
    found = group_files([tmp_path / "raw"], kind_hint="dicom")
    assert len(found.items) == 1 and not found.quarantine


def test_corrupt_and_non_image_files_are_quarantined(tmp_path: Path, dicom_factory) -> None:
    good = dicom_factory(tmp_path / "good", study="1.2", series="1.2.1", instance=1)
    (tmp_path / "trunc").write_bytes(good.read_bytes()[:200])
    (tmp_path / "notes.txt").write_text("hello")
    found = group_files(sorted(iter_files(tmp_path)), kind_hint="dicom")
    reasons = {Path(q["path"]).name: q["reason"] for q in found.quarantine}
    assert set(reasons) == {"trunc", "notes.txt"}
    assert all(reasons.values())
    assert len(found.items) == 1


def test_dicomdir_is_set_aside(tmp_path: Path, dicom_factory) -> None:
    dicom_factory(tmp_path / "DICOMDIR", study="1.2", series="1.2.1", instance=1)
    found = group_files([tmp_path / "DICOMDIR"], kind_hint="dicom")
    assert [i.status for i in found.items] == ["excluded"]
    assert "DICOMDIR" in found.items[0].reason


def test_nifti_with_sidecar_and_orphan_json(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "c.nii").write_bytes(b"not nifti")
    found = group_files(sorted(iter_files(tmp_path)))
    assert len(found.items) == 1
    assert [f.get("role") for f in found.items[0].files] == [None, "sidecar"]
    assert {Path(q["path"]).name for q in found.quarantine} == {"b.json", "c.nii"}


def test_multifile_ome_tiff_counts_once(tmp_path: Path) -> None:
    import numpy as np
    import tifffile

    uuid0 = "urn:uuid:00000000-0000-0000-0000-000000000001"
    uuid1 = "urn:uuid:00000000-0000-0000-0000-000000000002"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{u}">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" '
        'SizeX="4" SizeY="4" SizeZ="2" SizeC="1" SizeT="1"><Channel ID="Channel:0:0"/>'
        f'<TiffData FirstZ="0" IFD="0" PlaneCount="1"><UUID FileName="p0.ome.tif">{uuid0}</UUID></TiffData>'
        f'<TiffData FirstZ="1" IFD="0" PlaneCount="1"><UUID FileName="p1.ome.tif">{uuid1}</UUID></TiffData>'
        "</Pixels></Image></OME>"
    )
    for name, u in (("p0.ome.tif", uuid0), ("p1.ome.tif", uuid1)):
        tifffile.imwrite(
            tmp_path / name, np.zeros((4, 4), np.uint8), description=xml.format(u=u), metadata=None
        )
    found = group_files(sorted(iter_files(tmp_path)))
    assert len(found.items) == 1
    assert len(found.items[0].files) == 2
    assert found.items[0].format == "ome-tiff"


def _sheet(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "samples.tsv"
    p.write_text(
        "dataset_id\tsubject\tmodality_class\tsource\tpolicy\tdestinations\n" + "".join(rows)
    )
    return p


def test_scan_with_sheet_accounts_for_every_file(tmp_path: Path, dicom_factory) -> None:
    inbox = tmp_path / "inbox"
    for i in range(2):
        dicom_factory(
            inbox / "JOHN_DOE" / f"im{i}",
            study="1.9",
            series="1.9.1",
            instance=i + 1,
            patient_id="S1",
        )
    dicom_factory(inbox / "NO_CONSENT" / "im0", study="1.8", series="1.8.1", instance=1)
    (inbox / "stray.txt").write_text("x")
    sheet = _sheet(
        tmp_path,
        [
            "ds-a\tS1\tdicom\tinbox/JOHN_DOE\tpol\tlocal\n",
            "ds-b\tS2\tdicom\tinbox/NO_CONSENT\tpol\tlocal\n",
        ],
    )
    datasets = load_samples(sheet)
    m = scan(inbox, datasets=datasets, sheet=sheet, policies={"pol": Consent({"S1"})})
    ids = {i.id: i for i in m.items}
    assert set(ids) == {"ds-a-d001", "ds-b-d001"}
    assert ids["ds-a-d001"].status == "pending" and ids["ds-a-d001"].subject == "S1"
    assert ids["ds-b-d001"].status == "excluded" and "consent" in ids["ds-b-d001"].reason
    assert [Path(q["path"]).name for q in m.quarantine] == ["stray.txt"]
    c = m.counts()
    assert c["files"] == 4
    # Item ids never carry folder names (which may be PHI).
    assert all("JOHN" not in i for i in ids)


def test_scan_source_matching_nothing_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    sheet = _sheet(tmp_path, ["ds-a\tS1\tdicom\tinbox/missing\tpol\tlocal\n"])
    with pytest.raises(ConfigError, match="row 2, column 'source'"):
        scan(tmp_path / "inbox", datasets=load_samples(sheet), sheet=sheet)


def test_scan_file_in_two_datasets_is_a_config_error(tmp_path: Path, dicom_factory) -> None:
    dicom_factory(tmp_path / "inbox" / "a" / "im0", study="1.9", series="1.9.1", instance=1)
    sheet = _sheet(
        tmp_path,
        ["ds-a\tS1\tdicom\tinbox/a\tpol\tlocal\n", "ds-b\tS1\tdicom\tinbox/*\tpol\tlocal\n"],
    )
    with pytest.raises(ConfigError, match="already part of dataset"):
        scan(tmp_path / "inbox", datasets=load_samples(sheet), sheet=sheet)


def test_scan_writes_manifest_and_items(tmp_path: Path, dicom_factory) -> None:
    dicom_factory(tmp_path / "inbox" / "im0", study="1.9", series="1.9.1", instance=1)
    m = scan(tmp_path / "inbox")
    m.write(tmp_path / "out" / "manifest.json", tmp_path / "out" / "items")
    assert (tmp_path / "out" / "items" / "item-d001.json").is_file()
    shutil.rmtree(tmp_path / "out")


def test_nifti_glob_brings_its_sidecar(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), np.eye(4)), inbox / "a.nii.gz")
    (inbox / "a.json").write_text("{}")
    sheet = _sheet(tmp_path, ["ds-n\tS1\tnifti\tinbox/*.nii.gz\tpol\tlocal\n"])
    m = scan(inbox, datasets=load_samples(sheet), sheet=sheet)
    assert not m.quarantine
    assert [f.get("role") for f in m.items[0].files] == [None, "sidecar"]


def test_files_fingerprint_follows_size_mtime_and_presence(tmp_path: Path) -> None:
    import os

    from imagedepot.ingest import files_fingerprint

    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    first = files_fingerprint([a, b])
    assert files_fingerprint([a, b]) == first
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    touched = files_fingerprint([a, b])
    assert touched != first
    b.write_bytes(b"22")
    assert files_fingerprint([a, b]) != touched
    b.unlink()
    assert files_fingerprint([a, b]) != touched  # a missing original changes it, never raises


# ----------------------------------------------------------------------------- whose file is it


def _demo_scan(root: Path):
    """Scan the demo made in ``root`` with its sample sheet and policies (as the workflow does)."""
    from imagedepot.policy import load_policy

    info_policies = {
        name: load_policy(root / "policies" / f"{name}.yaml")
        for name in ("demo-cohort", "open-microscopy")
    }
    sheet = root / "samples.tsv"
    return scan(root / "inbox", datasets=load_samples(sheet), sheet=sheet, policies=info_policies)


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_other_patients_file_in_a_subjects_folder_is_quarantined(tmp_path: Path, how: str) -> None:
    """A file of POE_EDGAR (who declined consent) put into ROE_JANE's folder must not become a
    series of ROE_JANE's dataset: it is quarantined, and the reason names no identifier."""
    import pydicom

    from imagedepot.demo import DEMO_PHI, make_demo

    info = make_demo(tmp_path / "demo")
    # The demo's sheet gives each DICOM subject as its Patient ID: the check passes untouched.
    before = _demo_scan(info.root)
    assert before.counts() | {"files": 0} == {
        "items": 10, "items_pending": 8, "items_excluded": 2, "files_quarantined": 1, "files": 0
    }  # fmt: skip
    other = info.root / "inbox" / "POE_EDGAR" / "IM0001"
    planted = info.root / "inbox" / "ROE_JANE" / "x"
    if how == "copy":
        shutil.copy(other, planted)
    else:
        planted.symlink_to(other)
    m = _demo_scan(info.root)
    other_study = str(pydicom.dcmread(other, stop_before_pixels=True).StudyInstanceUID)
    jane = [i for i in m.items if i.dataset == "dcm-subj02"]
    assert all(i.dicom["study_instance_uid"] != other_study for i in jane)
    assert all(f["path"] != str(planted) for i in m.items for f in i.files)
    (entry,) = [q for q in m.quarantine if q["path"] == str(planted)]
    assert entry["dataset"] == "dcm-subj02"
    if how == "copy":
        assert entry["reason"] == "Patient ID differs from the sample sheet's subject"
    else:  # the file belongs to POE_EDGAR's own dataset, which names it by its own path
        assert entry["reason"] == "symbolic link to a file of dataset 'dcm-subj03'"
    assert not [v for v in DEMO_PHI if v in entry["reason"]]
    c = m.counts()
    assert (c["items"], c["files_quarantined"]) == (10, 2)


def _with_ids(path: Path, patient_id: str, others: list[str], in_sequence: bool) -> Path:
    import pydicom
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(path)
    ds.PatientID = patient_id
    if in_sequence:
        entries = []
        for value in others:
            e = Dataset()
            e.PatientID = value
            e.IssuerOfPatientID = "NHS"
            entries.append(e)
        ds.OtherPatientIDsSequence = entries
    elif others:
        ds.OtherPatientIDs = others
    ds.save_as(path)
    return path


@pytest.mark.parametrize("in_sequence", [False, True])
def test_subject_id_check_modes(tmp_path: Path, dicom_factory, in_sequence: bool) -> None:
    mrn = _with_ids(
        dicom_factory(tmp_path / "a", study="1.2", series="1.2.1", instance=1),
        "MRN-7", ["NHS-1", "S-9"], in_sequence,
    )  # fmt: skip
    empty = _with_ids(
        dicom_factory(tmp_path / "b", study="1.2", series="1.2.1", instance=2), "", [], False
    )
    files = [mrn, empty]

    def reasons(check: SubjectCheck) -> dict[str, str]:
        found = group_files(files, kind_hint="dicom", check=check)
        return {Path(q["path"]).name: q["reason"] for q in found.quarantine}

    assert reasons(SubjectCheck("MRN-7")) == {
        "b": "Patient ID is empty, so the file cannot be matched to the sample sheet's subject"
    }
    assert reasons(SubjectCheck(" S-9 ")) == {
        "a": "Patient ID differs from the sample sheet's subject",
        "b": "Patient ID is empty, so the file cannot be matched to the sample sheet's subject",
    }
    assert set(reasons(SubjectCheck("S-9", "other_patient_ids"))) == {"b"}
    assert set(reasons(SubjectCheck("NHS-1", "other_patient_ids"))) == {"b"}
    assert reasons(SubjectCheck("X", "other_patient_ids"))["a"] == (
        "Patient ID and Other Patient IDs differ from the sample sheet's subject"
    )
    assert reasons(SubjectCheck("X", "off")) == {}
    with pytest.raises(ConfigError, match="subject_id_check"):
        SubjectCheck("X", "loose")


def test_sheet_study_columns_check_each_file(tmp_path: Path, dicom_factory) -> None:
    import pydicom

    inbox = tmp_path / "inbox"
    dicom_factory(inbox / "s" / "a", study="1.7", series="1.7.1", instance=1, patient_id="S1")
    dicom_factory(inbox / "s" / "b", study="1.8", series="1.8.1", instance=1, patient_id="S1")
    for name, acc in (("a", "ACC1"), ("b", "ACC2")):
        ds = pydicom.dcmread(inbox / "s" / name)
        ds.AccessionNumber = acc
        ds.save_as(inbox / "s" / name)
    head = "dataset_id\tsubject\tmodality_class\tsource\tpolicy\tdestinations\t"
    for column, value, reason in (
        ("study_instance_uid", "1.7", "StudyInstanceUID is not among the sample sheet's"),
        ("accession_number", "ACC1 ; ACC3", "AccessionNumber is not among the sample sheet's"),
    ):
        sheet = tmp_path / "samples.tsv"
        sheet.write_text(f"{head}{column}\nds-a\tS1\tdicom\tinbox/s\tpol\tlocal\t{value}\n")
        datasets = load_samples(sheet)
        assert datasets[0].metadata == {}  # identifiers, never descriptive metadata
        m = scan(inbox, datasets=datasets, sheet=sheet)
        assert [i.dicom["study_instance_uid"] for i in m.items] == ["1.7"]
        (q,) = m.quarantine
        assert Path(q["path"]).name == "b" and q["reason"].startswith(reason)
        assert "1.8" not in q["reason"] and "ACC2" not in q["reason"]


# ----------------------------------------------------------------------------- symbolic links


def _linked_inbox(tmp_path: Path, dicom_factory) -> Path:
    """An inbox whose subject folder holds a file, a linked folder inside the inbox, a link to a
    folder outside it and a second link to its own file; beside it a loop and a dangling link."""
    inbox = tmp_path / "inbox"
    subj = inbox / "subj"
    dicom_factory(subj / "im0", study="1.5", series="1.5.1", instance=1, patient_id="S1")
    dicom_factory(inbox / "store" / "s2" / "im1", study="1.5", series="1.5.2", instance=1,
                  patient_id="S1")  # fmt: skip
    dicom_factory(tmp_path / "outside" / "im9", study="1.6", series="1.6.1", instance=1,
                  patient_id="S1")  # fmt: skip
    (subj / "more").symlink_to(inbox / "store" / "s2")
    (subj / "out").symlink_to(tmp_path / "outside")
    (subj / "again").symlink_to(subj / "im0")
    (inbox / "loop").symlink_to(inbox)
    (inbox / "gone").symlink_to(tmp_path / "missing")
    return inbox


def test_symlinks_in_the_inbox_are_followed_once_and_every_one_counted(
    tmp_path: Path, dicom_factory
) -> None:
    inbox = _linked_inbox(tmp_path, dicom_factory)
    sheet = _sheet(tmp_path, ["ds-a\tS1\tdicom\tinbox/subj\tpol\tlocal\n"])
    m = scan(inbox, datasets=load_samples(sheet), sheet=sheet)
    series = {i.dicom["series_instance_uid"]: i for i in m.items}
    assert set(series) == {"1.5.1", "1.5.2"}  # the linked folder's series is found ...
    assert series["1.5.2"].files[0]["path"] == str(inbox / "subj" / "more" / "im1")
    reasons = {str(Path(q["path"]).relative_to(inbox)): q["reason"] for q in m.quarantine}
    assert reasons == {  # ... and its real path is not counted a second time
        "subj/out": "symbolic link pointing outside the inbox",
        "subj/again": "symbolic link to a file already found by another path",
        "loop": "symbolic link to a folder already scanned (by its own path or another link)",
        "gone": "broken symbolic link (its target is missing or the links loop)",
    }
    assert [q.get("dataset") for q in m.quarantine] == ["ds-a", "ds-a", None, None]
    assert m.counts()["files"] == 2 + 4


def test_a_linked_source_folder_is_the_datasets_not_a_stray_link(
    tmp_path: Path, dicom_factory
) -> None:
    inbox = tmp_path / "inbox"
    dicom_factory(inbox / ".raw" / "jane" / "im0", study="1.5", series="1.5.1", instance=1,
                  patient_id="S1")  # fmt: skip
    dicom_factory(inbox / ".raw" / "roe" / "ct" / "im0", study="1.6", series="1.6.1", instance=1,
                  patient_id="S2")  # fmt: skip
    (inbox / "JANE").symlink_to(inbox / ".raw" / "jane")
    (inbox / "ROE").symlink_to(inbox / ".raw" / "roe")  # the source lies below a link
    sheet = _sheet(
        tmp_path,
        [
            "ds-a\tS1\tdicom\tinbox/JANE\tpol\tlocal\n",
            "ds-b\tS2\tdicom\tinbox/ROE/ct\tpol\tlocal\n",
        ],
    )
    m = scan(inbox, datasets=load_samples(sheet), sheet=sheet)
    assert [f["path"] for i in m.items for f in i.files] == [
        str(inbox / "JANE" / "im0"),
        str(inbox / "ROE" / "ct" / "im0"),
    ]
    assert m.quarantine == []


def test_inventory_without_a_sheet_follows_links_the_same_way(
    tmp_path: Path, dicom_factory
) -> None:
    inbox = _linked_inbox(tmp_path, dicom_factory)
    m = scan(inbox)
    assert sorted(f["path"] for i in m.items for f in i.files) == [
        str(inbox / "store" / "s2" / "im1"),
        str(inbox / "subj" / "im0"),
    ]
    assert sorted(Path(q["path"]).name for q in m.quarantine) == [
        "again", "gone", "loop", "more", "out"
    ]  # fmt: skip


def test_input_walk_is_loop_safe_and_prefers_own_paths(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "b").mkdir(parents=True)
    (root / "b" / "f").write_bytes(b"1")
    (root / "a").symlink_to(root / "b")  # sorted before its target
    (root / "b" / "up").symlink_to(root)
    (root / "b" / "self").symlink_to(root / "b" / "self")
    walk = InputWalk(root).add(root).finish()
    assert walk.files == [root / "b" / "f"] and not walk.linked
    assert {Path(q["path"]).name: q["reason"].split(" (")[0] for q in walk.quarantine} == {
        "a": "symbolic link to a folder already scanned",
        "up": "symbolic link to a folder already scanned",
        "self": "broken symbolic link",
    }


def _list_sheet(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "samples.tsv"
    p.write_text(
        "dataset_id\tsubject\tmodality_class\tsource\tpolicy\tdestinations\tfile_list\n"
        + "".join(rows)
    )
    return p


def test_file_lists_split_one_flat_folder_into_datasets(tmp_path: Path, dicom_factory) -> None:
    """A PACS export: two patients' files side by side in one folder, one list per dataset."""
    export = tmp_path / "inbox" / "export"
    dicom_factory(export / "IM1", study="1.7", series="1.7.1", instance=1, patient_id="S1")
    dicom_factory(export / "IM2", study="1.6", series="1.6.1", instance=1, patient_id="S2")
    dicom_factory(export / "IM3", study="1.7", series="1.7.1", instance=2, patient_id="S1")
    (export / "README.txt").write_text("x")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "a.txt").write_text("# dataset a\nIM1\n\nIM3\n")
    (lists / "b.txt").write_text("IM2\n")
    sheet = _list_sheet(
        tmp_path,
        [
            "ds-a\tS1\tdicom\tinbox/export\tpol\tlocal\tlists/a.txt\n",
            "ds-b\tS2\tdicom\tinbox/export\tpol\tlocal\tlists/b.txt\n",
        ],
    )
    datasets = load_samples(sheet)
    assert datasets[0].files == ("IM1", "IM3")
    m = scan(tmp_path / "inbox", datasets=datasets, sheet=sheet)
    files = {i.dataset: sorted(Path(f["path"]).name for f in i.files) for i in m.items}
    assert files == {"ds-a": ["IM1", "IM3"], "ds-b": ["IM2"]}
    assert [Path(q["path"]).name for q in m.quarantine] == ["README.txt"]
    assert "not part of any dataset" in m.quarantine[0]["reason"]


def test_file_list_errors_name_the_row_the_list_and_the_fix(tmp_path: Path, dicom_factory) -> None:
    dicom_factory(tmp_path / "inbox" / "IM1", study="1.7", series="1.7.1", instance=1)
    (tmp_path / "a.txt").write_text("IM1\nIM9\n")
    sheet = _list_sheet(tmp_path, ["ds-a\tS1\tdicom\tinbox\tpol\tlocal\ta.txt\n"])
    with pytest.raises(ConfigError, match=r"row 2, column 'file_list': 'IM9' listed in 'a.txt'"):
        scan(tmp_path / "inbox", datasets=load_samples(sheet), sheet=sheet)
    sheet = _list_sheet(tmp_path, ["ds-a\tS1\tdicom\tinbox/IM1\tpol\tlocal\ta.txt\n"])
    with pytest.raises(ConfigError, match="must be a folder when 'file_list' is given"):
        scan(tmp_path / "inbox", datasets=load_samples(sheet), sheet=sheet)
    (tmp_path / "b.txt").write_text("../outside\n")
    (tmp_path / "c.txt").write_text("# nothing\n")
    sheet = _list_sheet(
        tmp_path,
        [
            "ds-b\tS1\tdicom\tinbox\tpol\tlocal\tb.txt\n",
            "ds-c\tS1\tdicom\tinbox\tpol\tlocal\tc.txt\n",
            "ds-d\tS1\tdicom\tinbox\tpol\tlocal\tmissing.txt\n",
        ],
    )
    with pytest.raises(ConfigError) as exc:
        load_samples(sheet)
    msg = str(exc.value)
    assert "row 2, column 'file_list'" in msg and "line 1" in msg and "'..'" in msg
    assert "row 3, column 'file_list'" in msg and "names no file" in msg
    assert "row 4, column 'file_list'" in msg and "file list not found" in msg
