"""imagedepot.pixeltext.dicom: find, blank and verify burned-in text on the synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from imagedepot.deid.dicom import deidentify_dicom
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError
from imagedepot.pixeltext import dicom as pt
from imagedepot.pixeltext import identifiers as ids
from imagedepot.pixeltext.dicom import PixelTextError, PixelTextSettings, clean_pixel_text
from imagedepot.synthetic.burned_in import CorpusCase, make_series

#: Cases with text: every modality, both polarities, 8/12/14/16 bit, RGB, multi-frame, text
#: visible only in the window or only in full range, text on anatomy, a tiled mammogram, RLE.
TEXT_CASES = [
    "ct-corner-00",
    "ct-corner-01",  # RLE Lossless
    "ct-corner-02",
    "ct-window-only-00",
    "ct-full-only-00",
    "mr-corner-00",
    "mr-corner-01",
    "cr-corner-00",
    "dx-corner-00",  # MONOCHROME1
    "mg-corner-00",  # large: tiled
    "us-corner-00",  # RGB, RLE
    "us-cine-partial-00",  # multi-frame, some text on some frames only
    "sc-mono-00",
    "sc-rgb-00",
]
FREE_CASES = ["ct-free-00", "mr-free-01", "dx-free-00", "us-free-00", "sc-mono-free-00"]
#: Every identifying box must be >= 90 % blanked (white text on a saturated colour, faint lines
#: over bright anatomy included: the colour minimum rendering and line completion find them).
MIN_COVER: dict[str, float] = {}
#: Kinds of text that identify someone: none may stay readable.
IDENTIFYING = {"name", "id", "date", "accession", "institution"}


def run_case(case: CorpusCase, **kw) -> tuple[np.ndarray, np.ndarray, pt.PixelTextResult]:
    ds = pydicom.dcmread(case.path)
    before = ds.pixel_array.copy()
    known = ids.from_dataset(ds)
    res = clean_pixel_text(ds, PixelTextSettings(**kw), known)
    return before, ds.pixel_array, res


def box_mask(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize("name", TEXT_CASES)
def test_every_identifying_box_is_blanked(corpus, name: str) -> None:
    case = corpus[name]
    _, _, res = run_case(case)
    assert res.changed
    shape = (int(pydicom.dcmread(case.path).Rows), int(pydicom.dcmread(case.path).Columns))
    blanked = box_mask(shape, res.blanked)
    cov = {i: float(blanked[b.y0 : b.y1, b.x0 : b.x1].mean()) for i, b in enumerate(case.boxes)}
    for i, b in enumerate(case.boxes):
        if b.kind in IDENTIFYING:
            assert cov[i] >= MIN_COVER.get(name, 0.9), (name, b.kind, b.x0, b.y0, cov[i])
    allow = ids.compile_allow(ids.DEFAULT_ALLOW)
    others = [
        cov[i]
        for i, b in enumerate(case.boxes)
        if b.kind == "other" and not ids.allowed(b.text, 1.0, allow)
    ]
    assert not others or np.mean([c >= 0.9 for c in others]) >= 0.75
    # over-blanking: what was blanked lies near text
    near = np.zeros(shape, dtype=bool)
    for b in case.boxes:
        near[max(0, b.y0 - 8) : b.y1 + 8, max(0, b.x0 - 8) : b.x1 + 8] = True
    assert (blanked & ~near).mean() < 0.05, name


def test_no_identifying_value_stays_readable_anywhere_in_the_corpus(corpus) -> None:
    """Over every image of the test corpus: each identifying box >= 90 % blanked, and no image
    quarantined (everything was removable)."""
    missed = []
    for name, case in corpus.items():
        if not any(b.kind in IDENTIFYING for b in case.boxes):
            continue
        _, _, res = run_case(case)
        head = pydicom.dcmread(case.path, stop_before_pixels=True)
        blanked = box_mask((int(head.Rows), int(head.Columns)), res.blanked)
        for b in case.boxes:
            if b.kind in IDENTIFYING and blanked[b.y0 : b.y1, b.x0 : b.x1].mean() < 0.9:
                missed.append((name, b.kind))
    assert not missed


@pytest.mark.parametrize("name", FREE_CASES)
def test_text_free_images_pass_unchanged(corpus, name: str) -> None:
    before, after, res = run_case(corpus[name])
    assert not res.changed
    assert np.array_equal(before, after)


def test_re_encoded_in_the_original_lossless_syntax(corpus) -> None:
    case = corpus["ct-corner-01"]
    ds = pydicom.dcmread(case.path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    res = clean_pixel_text(ds, PixelTextSettings(), ids.from_dataset(ds))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert "RLE Lossless" in res.encoding


def test_text_that_cannot_be_removed_quarantines(corpus, monkeypatch) -> None:
    """Blanking that leaves the text (planted: the fill does nothing) is caught by reading the
    result again: the image is refused with the boxes, not released."""
    monkeypatch.setattr(pt, "_grow", lambda box, by, shape: (box[0], box[1], box[0], box[1]))
    ds = pydicom.dcmread(corpus["ct-corner-00"].path)
    with pytest.raises(PixelTextError, match="text left after blanking") as exc:
        clean_pixel_text(ds, PixelTextSettings(), ids.from_dataset(ds))
    assert exc.value.regions


def test_quarantine_mode_refuses_any_text(corpus) -> None:
    ds = pydicom.dcmread(corpus["mr-corner-00"].path)
    with pytest.raises(PixelTextError, match=r"pixel_text\.mode is quarantine"):
        clean_pixel_text(ds, PixelTextSettings(mode="quarantine"), ids.from_dataset(ds))
    _, _, res = run_case(corpus["ct-free-00"], mode="quarantine")
    assert not res.changed


def test_blank_phi_blanks_identifiers_and_keeps_technical_text(corpus) -> None:
    case = corpus["mr-corner-01"]
    ds = pydicom.dcmread(case.path)
    shape = (int(ds.Rows), int(ds.Columns))
    res = clean_pixel_text(ds, PixelTextSettings(mode="blank_phi"), ids.from_dataset(ds))
    blanked = box_mask(shape, res.blanked)
    cov = [float(blanked[b.y0 : b.y1, b.x0 : b.x1].mean()) for b in case.boxes]
    for b, c in zip(case.boxes, cov, strict=True):
        if b.kind in ("name", "id", "date", "accession"):
            assert c >= 0.9, (b.kind, c)
    assert any(c < 0.5 for b, c in zip(case.boxes, cov, strict=True) if b.kind == "other")


def test_allowed_tokens_stay(corpus) -> None:
    """Orientation markers and scale labels are not blanked under blank_all."""
    stayed = 0
    for name in ("ct-corner-00", "ct-corner-02", "cr-corner-00"):
        case = corpus[name]
        ds = pydicom.dcmread(case.path)
        res = clean_pixel_text(ds, PixelTextSettings(), ids.from_dataset(ds))
        blanked = box_mask((int(ds.Rows), int(ds.Columns)), res.blanked)
        for b in case.boxes:
            if b.kind == "safe":
                stayed += blanked[b.y0 : b.y1, b.x0 : b.x1].mean() < 0.5
    assert stayed >= 2


def test_thumbnails_show_before_and_after(corpus, tmp_path: Path) -> None:
    _, _, res = run_case(corpus["sc-mono-00"])
    paths = pt.write_thumbnails(res, tmp_path, "x")
    assert [p.name for p in paths] == ["x.before.png", "x.after.png"]
    assert all(p.stat().st_size > 500 for p in paths)


# ------------------------------------------------------------------ through deidentify_dicom


def deid(src, out, **kw):
    return deidentify_dicom(
        src,
        out,
        policy_options={"clean_pixel_data"},
        pseudonymizer=Pseudonymizer(key=b"k" * 32),
        subject="S1",
        **kw,
    )


def test_deid_blanks_verifies_and_logs(corpus, tmp_path: Path) -> None:
    case = corpus["us-corner-00"]
    thumbs = tmp_path / "thumbs"
    report = deid(case.path, tmp_path / "out.dcm", thumbnails=thumbs, action_log=tmp_path / "a")
    (text,) = report.pixel_text
    assert text["blanked"] and text["encoding"].startswith("re-encoded in the original")
    assert all("text" not in r for r in text["regions"])  # boxes only, never what was read
    assert "clean_pixel_data" in report.options_claimed
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.BurnedInAnnotation == "NO"
    assert len(list(thumbs.glob("*.png"))) == 2
    engines = report.pixel_text_engine["engines"]
    assert len(engines["rapidocr"]["models"]["det"]["sha256"]) == 64
    assert engines["tesseract"]["version"].startswith("tesseract 5")


def test_deid_without_clean_pixel_data_refuses_text(corpus, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="clean_pixel_data is not in the policy"):
        deidentify_dicom(
            corpus["sc-rgb-00"].path,
            tmp_path / "out.dcm",
            policy_options=(),
            pseudonymizer=Pseudonymizer(key=b"k" * 32),
            subject="S1",
        )


def test_missing_engine_fails_closed(corpus, tmp_path: Path, monkeypatch) -> None:
    from imagedepot.pixeltext import engines

    def missing() -> dict[str, Path]:
        raise engines.EngineUnavailable("rapidocr-onnxruntime is not installed")

    pt.finder.cache_clear()
    monkeypatch.setattr(engines, "rapidocr_models", missing)
    try:
        with pytest.raises(InputError, match="detector unavailable"):
            deid(corpus["ct-free-00"].path, tmp_path / "out.dcm")
    finally:
        pt.finder.cache_clear()


def test_ocr_series_sample_reads_the_whole_series_when_a_sample_has_text(
    tmp_path: Path,
) -> None:
    free = make_series(tmp_path / "free", slices=12, rows=256)
    report = deid(
        [c.path for c in free],
        tmp_path / "o1",
        pixel_text=PixelTextSettings(ocr_series="sample", sample_every=5),
    )
    # first, middle, last and every 5th: slices 0, 5, 6, 10, 11
    assert (report.ocr_files, report.ocr_sampled_out) == (5, 7)
    texty = make_series(tmp_path / "texty", slices=12, rows=256, text_slices=(6, 7))
    report = deid(
        [c.path for c in texty],
        tmp_path / "o2",
        pixel_text=PixelTextSettings(ocr_series="sample", sample_every=5),
    )
    assert (report.ocr_files, report.ocr_sampled_out) == (12, 0)
    assert len(report.pixel_text) == 2  # slice 7 was not in the sample, it was read after
    every = deid([c.path for c in free], tmp_path / "o3")
    assert (every.ocr_files, every.ocr_sampled_out) == (12, 0)


# ------------------------------------------------------------------ the leak gate reads pixels


def test_leak_gate_reads_the_text_in_staged_images(corpus, tmp_path: Path) -> None:

    from imagedepot.leakcheck import leakcheck

    case = corpus["mr-corner-00"]
    clean = tmp_path / "clean"
    out = clean / "x.dcm"
    deid(case.path, out)
    assert not leakcheck([case.path], [clean], pixel_text=PixelTextSettings()).leaked
    # the same de-identified header with the original pixels put back: only the pixels leak
    leaked = tmp_path / "leaked"
    leaked.mkdir()
    ds = pydicom.dcmread(out)
    ds.PixelData = pydicom.dcmread(case.path).PixelData
    ds.save_as(leaked / out.name)
    assert not leakcheck([case.path], [leaked]).leaked  # the header check alone sees nothing
    report = leakcheck([case.path], [leaked], pixel_text=PixelTextSettings())
    assert report.leaked
    assert {h["kind"] for h in report.hits} >= {"pixel_text"}
    assert all(h["location"].startswith("PixelData") for h in report.hits)
    assert not any(case.phi["PatientID"] in str(h) for h in report.hits)  # never the value


def test_policy_pixel_text_section() -> None:
    s = PixelTextSettings.from_config(
        {"mode": "blank_phi", "ocr_series": "sample", "tesseract": False}
    )
    assert s.mode == "blank_phi" and s.ocr_series == "sample" and not s.detector.tesseract
    assert PixelTextSettings.from_config(s.to_dict()) == s  # provenance round trip
    with pytest.raises(ValueError, match=r"pixel_text\.mode"):
        PixelTextSettings.from_config({"mode": "off"})
