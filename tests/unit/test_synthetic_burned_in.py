"""The synthetic burned-in text corpus: exact ground truth, valid DICOM, deterministic."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from imagedepot.errors import InputError
from imagedepot.synthetic import burned_in, corpus_plan, fake_phi, fonts
from imagedepot.synthetic.burned_in import (
    KINDS,
    MAX_INK,
    MIN_INK,
    CorpusCase,
    TextBox,
    load_cases,
    make_corpus,
    make_series,
)

SOP_CLASSES = {
    "CT": {"1.2.840.10008.5.1.4.1.1.2"},
    "MR": {"1.2.840.10008.5.1.4.1.1.4"},
    "CR": {"1.2.840.10008.5.1.4.1.1.1"},
    "DX": {"1.2.840.10008.5.1.4.1.1.1.1"},
    "MG": {"1.2.840.10008.5.1.4.1.1.1.2"},
    "US": {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1"},
    "SC": {"1.2.840.10008.5.1.4.1.1.7"},
    "XA": {"1.2.840.10008.5.1.4.1.1.12.1"},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CorpusCase]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root, seed=0, scale="test")


@pytest.fixture(scope="module")
def rendered() -> dict[str, corpus_plan._Rendered]:
    """The same corpus before writing: pixels *and* the text-free background of every case."""
    return {r.name: r for r in corpus_plan._render_corpus(0, "test")}


def _ink_mask(shape: tuple[int, int], boxes: list[TextBox]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for b in boxes:
        mask[b.y0 : b.y1, b.x0 : b.x1] = True
    return mask


def _differs(r: corpus_plan._Rendered) -> np.ndarray:
    """(frames, rows, cols) bool: pixels that differ from the text-free background."""
    diff = r.pixels != r.background
    return diff.any(axis=-1) if diff.ndim == 4 else diff


def _norm(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


# --- the mix ---------------------------------------------------------------------------------


def test_mix_of_modalities_and_text_free_cases(corpus: tuple[Path, list[CorpusCase]]) -> None:
    _, cases = corpus
    assert 30 <= len(cases) <= 40
    assert len({c.name for c in cases}) == len(cases)
    assert all(re.fullmatch(r"[a-z0-9-]+", c.name) for c in cases)
    free = [c for c in cases if c.text_free]
    assert len(free) * 3 >= len(cases)
    for modality in SOP_CLASSES:
        kinds = {c.text_free for c in cases if c.modality == modality}
        assert kinds == {True, False}, modality  # every modality with and without text
    drawn = Counter(b.kind for c in cases for b in c.boxes)
    assert set(drawn) == set(KINDS)
    assert any(c.series for c in cases)


def test_images_have_the_expected_geometry(rendered: dict[str, corpus_plan._Rendered]) -> None:
    pics = {name: r.pic for name, r in rendered.items()}
    ct = [p for p in pics.values() if p.modality == "CT"]
    assert all((p.rows, p.cols, p.bits_stored, p.signed) == (512, 512, 12, True) for p in ct)
    assert {(p.rows, p.bits_stored) for p in pics.values() if p.modality == "MR"} == {
        (256, 12),
        (512, 12),
    }
    xr = [p for p in pics.values() if p.modality in ("CR", "DX", "MG")]
    assert {p.photometric for p in xr if p.modality == "MG"} == {"MONOCHROME1", "MONOCHROME2"}
    assert {p.photometric for p in xr if p.modality != "MG"} == {"MONOCHROME1", "MONOCHROME2"}
    assert {p.bits_stored for p in xr} == {12, 14}
    assert max(p.rows * p.cols for p in pics.values()) <= 1500 * 1800
    us = [p for p in pics.values() if p.modality == "US"]
    assert all((p.rows, p.cols, p.photometric) == (480, 640, "RGB") for p in us)
    assert any(p.frames > 1 for p in us) and any(p.frames == 1 for p in us)
    assert all(4 <= p.frames <= 8 for p in pics.values() if p.modality == "XA")
    assert {p.photometric for p in pics.values() if p.modality == "SC"} == {"MONOCHROME2", "RGB"}


# --- ground truth ----------------------------------------------------------------------------


def test_every_changed_pixel_lies_in_a_box_of_its_frame(
    rendered: dict[str, corpus_plan._Rendered],
) -> None:
    for name, r in rendered.items():
        diff = _differs(r)
        for f in range(diff.shape[0]):
            boxes = [b for b in r.boxes if b.on_frame(f)]
            outside = diff[f] & ~_ink_mask(diff.shape[1:], boxes)
            assert not outside.any(), f"{name} frame {f}: {int(outside.sum())} pixels"


def test_boxes_are_tight_around_the_ink(rendered: dict[str, corpus_plan._Rendered]) -> None:
    for name, r in rendered.items():
        diff = _differs(r)
        for b in r.boxes:
            frames = range(diff.shape[0]) if b.frames is None else b.frames
            ink = np.logical_or.reduce([diff[f] for f in frames])[b.y0 : b.y1, b.x0 : b.x1]
            rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
            assert rows.size, f"{name}: {b.text!r} changed nothing"
            assert (rows[0], rows[-1], cols[0], cols[-1]) == (
                0,
                b.y1 - b.y0 - 1,
                0,
                b.x1 - b.x0 - 1,
            ), f"{name}: {b.text!r}"


def test_boxes_are_sane(rendered: dict[str, corpus_plan._Rendered]) -> None:
    for name, r in rendered.items():
        rows, cols = r.pic.rows, r.pic.cols
        for b in r.boxes:
            assert 0 <= b.x0 < b.x1 <= cols and 0 <= b.y0 < b.y1 <= rows, name
            assert MIN_INK <= b.y1 - b.y0 <= MAX_INK, f"{name}: {b}"
            assert b.kind in KINDS and b.text.strip()
            assert b.frames is None or all(0 <= f < r.pic.frames for f in b.frames)
        for i, a in enumerate(r.boxes):  # no two texts of a frame overlap
            for b in r.boxes[i + 1 :]:
                shared = a.frames is None or b.frames is None or set(a.frames) & set(b.frames)
                overlap = a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1
                assert not (shared and overlap), f"{name}: {a.text!r} {b.text!r}"


def test_text_free_images_are_the_background(rendered: dict[str, corpus_plan._Rendered]) -> None:
    free = [r for r in rendered.values() if not r.boxes]
    assert len(free) >= 12
    for r in free:
        assert np.array_equal(r.pixels, r.background), r.name
        assert r.pixels.std() > 1.0, r.name  # textured, not flat


def test_drawn_identifiers_render_the_header_values(
    corpus: tuple[Path, list[CorpusCase]],
) -> None:
    _, cases = corpus
    for c in cases:
        phi = c.phi
        assert set(phi) == set(burned_in.PHI_KEYS)
        dates = [phi["PatientBirthDate"], phi["StudyDate"]]
        renderings = {_norm(fake_phi._fmt_date(d, s)) for d in dates for s in range(5)}
        for b in c.boxes:
            text = _norm(b.text)
            if b.kind == "name":
                assert all(_norm(part) in text for part in phi["PatientName"].split("^"))
            elif b.kind == "id":
                assert _norm(phi["PatientID"]) in text
            elif b.kind == "accession":
                assert _norm(phi["AccessionNumber"]) in text
            elif b.kind == "institution":
                assert b.text == phi["InstitutionName"]
            elif b.kind == "date":
                assert any(d in text for d in renderings), b.text
            elif b.kind == "safe":
                assert re.fullmatch(r"[LRAPHF]|\d+ (cm|mm)", b.text), b.text


def test_some_text_sits_on_anatomy_and_some_only_on_some_frames(
    rendered: dict[str, corpus_plan._Rendered],
) -> None:
    on_anatomy = 0
    for r in rendered.values():
        anatomy = r.pic.anatomy
        assert anatomy is not None
        for b in r.boxes:
            if b.kind != "safe" and anatomy[b.y0 : b.y1, b.x0 : b.x1].mean() > 0.3:
                on_anatomy += 1
    assert on_anatomy >= 3
    partial = [b for r in rendered.values() for b in r.boxes if b.frames is not None]
    assert any(b.kind == "name" for b in partial)


# --- grey levels against windows -------------------------------------------------------------


def _window8(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip((hu - (center - width / 2)) / width * 255.0, 0, 255).astype(np.uint8)


def _full8(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def test_ct_full_range_only_text_is_black_in_the_window(
    rendered: dict[str, corpus_plan._Rendered],
) -> None:
    r = rendered["ct-full-only-00"]
    hu, bg = r.pixels[0] - 1024.0, r.background[0] - 1024.0
    assert np.array_equal(_window8(hu, 40, 400), _window8(bg, 40, 400))
    assert int(np.abs(_full8(hu).astype(int) - _full8(bg)).max()) >= 40


def test_ct_window_only_text_is_faint_in_full_range(
    rendered: dict[str, corpus_plan._Rendered],
) -> None:
    r = rendered["ct-window-only-00"]
    hu, bg = r.pixels[0] - 1024.0, r.background[0] - 1024.0
    phi_boxes = [b for b in r.boxes if b.kind != "safe"]
    inside = _ink_mask(hu.shape, phi_boxes)
    window = np.abs(_window8(hu, 40, 400).astype(int) - _window8(bg, 40, 400))[inside]
    full = np.abs(_full8(hu).astype(int) - _full8(bg))[inside]
    assert window.max() >= 80
    assert full.max() <= 20


def test_monochrome1_text_displays_bright(rendered: dict[str, corpus_plan._Rendered]) -> None:
    mono1 = [r for r in rendered.values() if r.pic.photometric == "MONOCHROME1" and r.boxes]
    assert mono1
    for r in mono1:
        diff = _differs(r)[0]
        # text lowers the stored value: brighter on a MONOCHROME1 display
        assert (r.pixels[0][diff] < r.background[0][diff]).mean() > 0.9, r.name


# --- DICOM files -----------------------------------------------------------------------------


def test_every_file_reads_back_with_its_pixels_and_header(
    corpus: tuple[Path, list[CorpusCase]], rendered: dict[str, corpus_plan._Rendered]
) -> None:
    _, cases = corpus
    syntaxes = Counter()
    for c in cases:
        r = rendered[c.name]
        ds = pydicom.dcmread(c.path)
        syntaxes[ds.file_meta.TransferSyntaxUID] += 1
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.SOPClassUID in SOP_CLASSES[c.modality]
        assert ds.Modality == c.modality
        arr = ds.pixel_array
        expected = r.pixels[0] if r.pic.frames == 1 else r.pixels
        assert arr.shape == expected.shape and arr.dtype == expected.dtype, c.name
        assert np.array_equal(arr, expected), c.name
        assert (ds.Rows, ds.Columns) == (r.pic.rows, r.pic.cols)
        assert int(ds.get("NumberOfFrames") or 1) == r.pic.frames
        assert ds.PhotometricInterpretation == r.pic.photometric
        if r.pic.rgb:
            assert (ds.SamplesPerPixel, ds.PlanarConfiguration, ds.BitsAllocated) == (3, 0, 8)
        assert str(ds.PatientName) == c.phi["PatientName"]
        for key in ("PatientID", "AccessionNumber", "PatientBirthDate", "StudyDate"):
            assert ds[key].value == c.phi[key]
        assert ds.InstitutionName == c.phi["InstitutionName"]
        assert "BurnedInAnnotation" not in ds
        if c.modality in ("CT", "MR", "CR", "DX", "MG"):
            assert "WindowCenter" in ds and "WindowWidth" in ds
        if c.modality == "CT":
            assert (ds.RescaleSlope, ds.RescaleIntercept, ds.BitsStored) == (1, -1024, 12)
            assert ds.PixelRepresentation == 1
    assert set(syntaxes) == {ExplicitVRLittleEndian, RLELossless}
    assert 2 <= syntaxes[RLELossless] <= 3


def test_uids_are_unique(corpus: tuple[Path, list[CorpusCase]]) -> None:
    _, cases = corpus
    uids = [pydicom.dcmread(c.path, stop_before_pixels=True).SOPInstanceUID for c in cases]
    assert len(set(uids)) == len(uids)


# --- determinism, cases.json -----------------------------------------------------------------


def test_same_seed_same_bytes(corpus: tuple[Path, list[CorpusCase]], tmp_path: Path) -> None:
    root, cases = corpus
    again = make_corpus(tmp_path, seed=0)
    assert [c.name for c in again] == [c.name for c in cases]
    for a, b in zip(cases, again, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes(), a.name
    assert (root / "cases.json").read_bytes() == (tmp_path / "cases.json").read_bytes()


def test_other_seed_other_images() -> None:
    a = corpus_plan._render_variant("ct-corner", 0, 0, "test")
    b = corpus_plan._render_variant("ct-corner", 0, 1, "test")
    assert not np.array_equal(a.pixels, b.pixels)
    assert a.phi != b.phi


def test_cases_json_round_trip(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, cases = corpus
    assert load_cases(root) == cases
    doc = json.loads((root / "cases.json").read_text())
    assert doc["license"] == "CC0-1.0" and doc["seed"] == 0 and doc["scale"] == "test"
    for entry in doc["cases"]:
        assert not Path(entry["path"]).is_absolute()
        assert (root / entry["path"]).is_file()
    box = cases[0].boxes[0]
    assert TextBox.from_dict(json.loads(json.dumps(box.to_dict()))) == box


def test_load_cases_refuses_a_folder_without_ground_truth(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cases\.json"):
        load_cases(tmp_path)


def test_unknown_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        make_corpus(tmp_path, scale="huge")


def test_bench_scale_plan() -> None:
    total = sum(n for _, _, n, _ in corpus_plan._PLAN) + corpus_plan._VOLUME["bench"][0]
    assert 180 <= total <= 220
    free = sum(n for _, _, n, text in corpus_plan._PLAN if not text)
    free += corpus_plan._VOLUME["bench"][0] - len(corpus_plan._VOLUME["bench"][1])
    assert free * 3 >= total
    pic = corpus_plan._variant_picture("mg", 0, np.random.default_rng(0), "bench")
    assert (pic.rows, pic.cols) == (3328, 2560)


# --- series ----------------------------------------------------------------------------------


def test_make_series(tmp_path: Path) -> None:
    cases = make_series(tmp_path, slices=6, rows=128, text_slices=(1, 4), seed=3)
    assert len(cases) == 6
    assert len({c.series for c in cases}) == 1 and cases[0].series
    assert [i for i, c in enumerate(cases) if not c.text_free] == [1, 4]
    assert {b.kind for b in cases[1].boxes} == {"name", "id"}
    assert cases[1].boxes == cases[4].boxes  # the same overlay on every text slice
    headers = [pydicom.dcmread(c.path) for c in cases]
    assert len({h.StudyInstanceUID for h in headers}) == 1
    assert {h.SeriesInstanceUID for h in headers} == {cases[0].series}
    assert len({h.FrameOfReferenceUID for h in headers}) == 1
    assert [int(h.InstanceNumber) for h in headers] == [1, 2, 3, 4, 5, 6]
    z = [float(h.ImagePositionPatient[2]) for h in headers]
    assert z == sorted(set(z))
    assert all(h.pixel_array.shape == (128, 128) for h in headers)
    assert load_cases(tmp_path) == cases


def test_make_series_adds_to_an_existing_corpus(
    corpus: tuple[Path, list[CorpusCase]], tmp_path: Path
) -> None:
    _, cases = corpus
    (tmp_path / "cases.json").write_text(
        json.dumps(
            {"format": burned_in._FORMAT, "cases": [c.to_dict(c.path.parent) for c in cases]}
        )
    )
    series = make_series(tmp_path, slices=2, rows=64)
    names = [c.name for c in load_cases(tmp_path)]
    assert names == [c.name for c in cases] + [c.name for c in series]
    assert all(c.text_free for c in series)


@pytest.mark.parametrize("text_slices", [(5,), (-1,)])
def test_make_series_refuses_text_slices_out_of_range(
    tmp_path: Path, text_slices: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match="text_slices"):
        make_series(tmp_path, slices=5, rows=64, text_slices=text_slices)


def test_falls_back_to_pillows_font_without_system_fonts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    caches = (fonts._font_files, fonts._font, fonts._font_size, fonts._ink)
    monkeypatch.setattr(fonts, "_FONT_DIR", tmp_path)
    for cached in caches:
        cached.cache_clear()
    try:
        assert fonts._font_files() == (None,)
        r = corpus_plan._render_variant("mr-corner", 1, 0, "test")
        assert len(r.boxes) >= 5
        assert all(MIN_INK <= b.y1 - b.y0 <= MAX_INK for b in r.boxes)
    finally:
        for cached in caches:
            cached.cache_clear()
