"""DICOM series to NIfTI with dcm2niix: report, provenance, safety of inputs and names, read-back.

Geometry is tested in ``test_nifti_geometry.py``, awkward input in ``test_nifti_input.py``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imagedepot.convert import nifti
from imagedepot.convert.nifti import (
    check_nifti,
    convert_dicom_series,
    dcm2niix_version,
    find_dcm2niix,
    output_flags,
)
from imagedepot.errors import InputError, OutputExistsError
from imagedepot.io import sha256_file

from .test_nifti_geometry import (
    Acquisition,
    assert_matches_dicom,
    dicom_frames,
    expected_stacks,
    write_single_frames,
)


def test_report_and_sidecar(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=3))
    report = convert_dicom_series(files, tmp_path / "out", name="run-1")
    d = report.to_dict()
    assert d["step"] == "convert_nifti" and d["tool"] == "dcm2niix"
    assert d["input_count"] == len(files) == len(d["inputs"])
    assert d["versions"]["dcm2niix"].startswith("v")
    assert d["options"] == {"compress": True, "name": "run-1", "irregular_slices": "quarantine"}
    args = d["arguments"]
    assert args[0] == "dcm2niix"
    assert args[args.index("-b") + 1] == "y"
    assert args[args.index("-ba") + 1] == "n"
    assert args[args.index("-f") + 1] == "run-1"
    assert "<input>" in args and "<output>" in args
    assert sorted(Path(p).name for p in d["outputs"]) == ["run-1.json", "run-1.nii.gz"]
    [image] = d["images"]
    assert image["sidecar"] == str(tmp_path / "out" / "run-1.json")
    assert image["shape"] == [10, 12, 3] and image["dtype"] == "int16"
    assert image["postfix"] == "" and image["echo"] is None and image["flags"] == []
    sidecar = json.loads(Path(image["sidecar"]).read_text())
    # BIDS names and units (seconds, degrees) as dcm2niix writes them.
    assert sidecar["EchoTime"] == pytest.approx(0.0045)
    assert sidecar["RepetitionTime"] == pytest.approx(2.0)
    assert sidecar["FlipAngle"] == pytest.approx(9.0)
    assert sidecar["Manufacturer"] == "Siemens"
    # -ba n keeps what the de-identifier must clean (it owns that step).
    assert sidecar["PatientName"] == "Doe^Jane"
    json.dumps(d)


def test_inputs_untouched_and_names_not_leaked(tmp_path: Path) -> None:
    folder = tmp_path / "Doe_Jane_1970-01-01"
    files = write_single_frames(folder, Acquisition(slices=3))
    before = {p: (sha256_file(p), p.stat().st_mtime_ns) for p in files}
    listing = sorted(folder.iterdir())
    report = convert_dicom_series(files, tmp_path / "out")
    assert {p: (sha256_file(p), p.stat().st_mtime_ns) for p in files} == before
    assert sorted(folder.iterdir()) == listing
    out_names = " ".join(p.name for p in (tmp_path / "out").iterdir())
    assert "Doe" not in out_names and "IM0001" not in out_names
    text = json.dumps(report.to_dict()["arguments"] + report.to_dict()["messages"])
    assert "Doe_Jane" not in text and "IM0" not in text
    for p in (tmp_path / "out").glob("*.json"):
        assert "Doe_Jane_1970" not in p.read_text()


@pytest.mark.parametrize("shared", [False, True])
def test_series_folder_read_in_place_or_through_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    """A folder holding only the series is read as it is; a folder shared with other files is
    not: only the listed files are converted, through a private folder of links."""
    files = write_single_frames(tmp_path / "in", Acquisition(slices=4))
    if shared:  # another series in the same folder
        write_single_frames(tmp_path / "other", Acquisition(slices=2, orientation="sagittal"))
        for f in (tmp_path / "other").iterdir():
            f.rename(tmp_path / "in" / f"other-{f.name}")
    linked = []
    real = nifti.series._link_inputs
    monkeypatch.setattr(nifti.series, "_link_inputs", lambda *a: linked.append(1) or real(*a))
    report = convert_dicom_series(files, tmp_path / "out")
    assert bool(linked) == shared
    [exp] = expected_stacks(dicom_frames(files)).values()
    assert_matches_dicom(Path(report.images[0]["path"]), exp)
    assert len(report.images) == 1 and "<input>" in report.arguments


def test_killed_conversion_leaves_its_scratch_beside_the_output_for_the_next_run(
    tmp_path: Path,
) -> None:
    """dcm2niix reads a scratch folder of links (or inflated copies) of the originals. A process
    killed while dcm2niix runs leaves that folder beside the output, named as its temporary,
    never in the system's temporary folder; the next conversion of the output removes it."""
    import signal
    import subprocess
    import sys

    from imagedepot.io import TMP_PREFIX

    files = write_single_frames(tmp_path / "in", Acquisition(slices=3))
    (tmp_path / "in" / "other.txt").write_text("not of the series")  # dcm2niix reads links
    out, system_tmp = tmp_path / "out" / "nifti", tmp_path / "system-tmp"
    system_tmp.mkdir()
    killed = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from imagedepot.convert import nifti\n"
        "nifti.series._run = lambda exe, args: os.kill(os.getpid(), signal.SIGKILL)\n"
        "nifti.convert_dicom_series([Path(a) for a in sys.argv[2:]], Path(sys.argv[1]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", killed, str(out), *map(str, files)],
        env=os.environ | {"TMPDIR": str(system_tmp)},
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL
    assert list(system_tmp.iterdir()) == []
    left = sorted(p.name for p in out.parent.iterdir())
    assert len(left) == 2 and all(n.startswith(TMP_PREFIX + "nifti.") for n in left)

    convert_dicom_series(files, out)
    assert [p.name for p in out.parent.iterdir()] == ["nifti"]


def test_uncompressed(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=3))
    report = convert_dicom_series(files, tmp_path / "out", compress=False)
    assert sorted(Path(p).name for p in report.outputs) == ["series.json", "series.nii"]
    [exp] = expected_stacks(dicom_frames(files)).values()
    assert_matches_dicom(tmp_path / "out" / "series.nii", exp)


def test_out_dir_exists(tmp_path: Path) -> None:
    files = write_single_frames(tmp_path / "in", Acquisition(slices=2))
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        convert_dicom_series(files, out)
    assert (out / "old.txt").exists()
    convert_dicom_series(files, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["series.json", "series.nii.gz"]


def test_not_dicom_is_input_error_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "junk.dcm"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not DICOM" * 40)
    with pytest.raises(InputError) as err:
        convert_dicom_series([bad], tmp_path / "out")
    assert "dcm2niix" in err.value.reason
    assert err.value.path == str(bad.resolve())
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no temporary left


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        convert_dicom_series([tmp_path / "nope.dcm"], tmp_path / "out")


@pytest.mark.parametrize("name", ["%n_%i", "../x", "", "a/b", "-x"])
def test_name_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        convert_dicom_series([tmp_path / "x.dcm"], tmp_path / "out", name=name)


# ----------------------------------------------------------------------------- the binary


def test_find_dcm2niix_prefers_the_binary_to_a_launcher_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = find_dcm2niix()
    with open(real, "rb") as fh:
        assert fh.read(2) != b"#!"  # the binary itself, not the PyPI launcher script
    launcher = tmp_path / "bin" / "dcm2niix"
    launcher.parent.mkdir()
    launcher.write_text(f'#!/bin/sh\nexec {real} "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{launcher.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert find_dcm2niix() != str(launcher)


def test_version_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    exe = find_dcm2niix()
    assert dcm2niix_version(exe) == dcm2niix_version()
    calls = []
    monkeypatch.setattr(nifti.dcm2niix_tool.subprocess, "run", lambda *a, **k: calls.append(a))
    assert dcm2niix_version(exe).startswith("v")
    assert calls == []


# ----------------------------------------------------------------------------- read-back


def _nifti(path: Path, shape: tuple[int, ...] = (8, 9, 10)) -> Path:
    data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    img = nib.Nifti1Image(data, np.diag([1.1, 0.9, 2.5, 1.0]))
    img.header.set_slope_inter(1.0, 0.0)
    nib.save(img, path)
    return path


def test_check_nifti_good(tmp_path: Path) -> None:
    info, problems = check_nifti(_nifti(tmp_path / "a.nii.gz"))
    assert problems == []
    assert info["shape"] == [8, 9, 10] and info["axcodes"] == ["R", "A", "S"]
    assert info["zooms"] == pytest.approx([1.1, 0.9, 2.5])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_check_nifti_truncated(tmp_path: Path, suffix: str) -> None:
    path = _nifti(tmp_path / f"a{suffix}")
    path.write_bytes(path.read_bytes()[:-40])
    _, problems = check_nifti(path)
    assert any("truncated" in p for p in problems)


def test_check_nifti_multi_member_gzip_is_read_in_full(tmp_path: Path) -> None:
    """A gzip of several members has only the last member's size in its trailer."""
    raw = gzip.decompress(_nifti(tmp_path / "a.nii.gz").read_bytes())
    two = tmp_path / "b.nii.gz"
    two.write_bytes(gzip.compress(raw[:500]) + gzip.compress(raw[500:]))
    assert check_nifti(two)[1] == []


def test_check_nifti_bad_scaling_and_orientation(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "a.nii")
    img = nib.load(path)
    hdr = img.header.copy()
    hdr["scl_slope"] = np.inf
    hdr.set_qform(None, code=0)
    hdr.set_sform(None, code=0)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), None, hdr), path)
    with open(path, "r+b") as fh:  # nibabel refuses to write an infinite slope: patch it
        fh.seek(112)
        fh.write(np.float32(np.inf).tobytes())
    _, problems = check_nifti(path)
    assert any("scl_slope" in p for p in problems)
    assert any("no spatial orientation" in p for p in problems)


@pytest.mark.parametrize(
    ("postfix", "sidecar", "flags"),
    [
        ("", {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}, []),
        ("_e2", {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}, ["phase"]),
        ("_i00004", {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, ["localizer"]),
        ("", {"SeriesDescription": "AAHead_Scout_32ch"}, ["localizer"]),
        ("", {"ProtocolName": "3-Plane Loc SSFSE"}, ["localizer"]),
        ("", {"SeriesDescription": "scoutless_t1"}, []),
        ("_Eq_1", None, ["resampled"]),
        ("_ROI1", None, ["overlay"]),
        ("", {"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]}, ["derived"]),
        ("_MoCo", {"ImageType": ["ORIGINAL", "PRIMARY", "M", "MOCO"]}, ["motion_corrected"]),
    ],
)
def test_output_flags(postfix: str, sidecar: dict | None, flags: list[str]) -> None:
    assert output_flags(postfix, sidecar) == flags


# ----------------------------------------------------------------------------- the workflow step


def _item(tmp_path: Path, files: list[Path]) -> Path:
    item = {
        "id": "ds-d001",
        "kind": "dicom",
        "subject": "Doe^Jane",
        "files": [{"path": str(p)} for p in files],
        "dicom": {"modality": "MR", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.4"},
    }
    path = tmp_path / "ds-d001.json"
    path.write_text(json.dumps(item))
    return path


def test_provenance_of_the_workflow_step(tmp_path: Path) -> None:
    """dcm2niix version and arguments, and every input with its checksum, in provenance.json."""
    from imagedepot.pipeline import ConvertOptions, convert_item

    files = write_single_frames(tmp_path / "inbox" / "s1", Acquisition(slices=3))
    prov = convert_item(_item(tmp_path, files), tmp_path / "conv", ConvertOptions())
    assert prov.status == "processed"
    record = json.loads((tmp_path / "conv" / "provenance.json").read_text())
    assert {i["path"]: i["sha256"] for i in record["inputs"]} == {
        str(p): sha256_file(p) for p in files
    }
    converter = record["options"]["converter"]
    assert converter["versions"]["dcm2niix"] == dcm2niix_version()
    assert converter["arguments"][:2] == ["dcm2niix", "-g"]
    assert [Path(i["path"]).name for i in converter["images"]] == ["ds-d001.nii.gz"]
    assert {Path(o["path"]).name for o in record["outputs"]} == {
        "ds-d001.nii.gz",
        "ds-d001.json",
    }


def test_sidecars_pass_the_leak_gate_after_deidentification(tmp_path: Path) -> None:
    """What this step writes can be cleaned: after the NIfTI de-identifier, the leak gate finds
    none of the originals' identifiers in the images, sidecars or names."""
    from imagedepot.deid.nifti import deidentify_nifti
    from imagedepot.deid.pseudonym import Pseudonymizer
    from imagedepot.leakcheck import leakcheck

    acq = Acquisition(echoes=2, slices=3, patient_name="Doe^Jane^Quincy")
    files = write_single_frames(tmp_path / "in", acq)
    convert_dicom_series(files, tmp_path / "conv", name="ds-d001")
    raw = leakcheck(files, [tmp_path / "conv"])
    assert raw.leaked  # the converted sidecars do carry identifiers (-ba n)...
    out = tmp_path / "deid"
    deidentify_nifti(
        tmp_path / "conv",
        out,
        policy_options=frozenset({"retain_longitudinal_modified_dates"}),
        pseudonymizer=Pseudonymizer(key=b"k" * 32),
        subject="PID-0001",
    )
    clean = leakcheck(files, [out], extra=["PID-0001"])
    assert not clean.leaked, clean.to_dict()["hits"]  # ...and none is left after cleaning
    sidecars = sorted(out.glob("*.json"))
    assert len(sidecars) == 2
    kept = json.loads(sidecars[0].read_text())
    assert kept["EchoTime"] == pytest.approx(0.0045) and kept["RepetitionTime"] == 2


def test_dcm2niix_output_is_checked_without_decoding(tmp_path: Path) -> None:
    """dcm2niix writes one gzip member: its trailer gives the size, so nothing is decoded."""
    files = write_single_frames(tmp_path / "in", Acquisition(slices=3))
    report = convert_dicom_series(files, tmp_path / "out")
    path = Path(report.images[0]["path"])
    raw = gzip.decompress(path.read_bytes())
    assert int.from_bytes(path.read_bytes()[-4:], "little") == len(raw)
    offset = int(np.frombuffer(raw[108:112], np.float32)[0])  # vox_offset
    assert len(raw) == offset + 10 * 12 * 3 * 2
