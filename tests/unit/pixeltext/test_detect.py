"""The detector's pieces on drawn pictures: the character gate of Tesseract and the one-pass
reading of several renderings."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from imagedepot.pixeltext import detect, engines  # noqa: E402


def _text(img: np.ndarray, text: str, org: tuple[int, int], value: int, scale: float = 0.5) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, value, 1, cv2.LINE_AA)


@pytest.mark.parametrize("value, background", [(230, 20), (20, 200)])
def test_a_line_of_letters_holds_characters(value: int, background: int) -> None:
    img = np.full((64, 256), background, np.uint8)
    _text(img, "DOE JOHN 1234", (8, 40), value)
    assert detect.has_characters(img, (0, 0, 256, 64))


def _anatomy_like() -> np.ndarray:
    """A table edge (a long shallow curve), two round vessels side by side, one lone blob."""
    img = np.full((96, 320), 30, np.uint8)
    pts = np.array([[x, 70 + int(4 * np.sin(x / 60))] for x in range(10, 310, 5)], np.int32)
    cv2.polylines(img, [pts], False, 200, 2)
    cv2.circle(img, (60, 30), 5, 220, -1)
    cv2.circle(img, (76, 31), 5, 220, -1)
    cv2.ellipse(img, (200, 30), (20, 12), 0, 0, 360, 220, -1)
    return img


def test_anatomy_like_shapes_hold_no_characters() -> None:
    assert not detect.has_characters(_anatomy_like(), (0, 0, 320, 96))


def test_an_empty_or_tiny_box_holds_no_characters() -> None:
    img = np.zeros((40, 40), np.uint8)
    assert not detect.has_characters(img, (0, 0, 40, 40))
    assert not detect.has_characters(img, (5, 5, 7, 30))


def test_text_in_one_rendering_only_is_found_in_one_pass() -> None:
    det = engines.DbDetector()
    shown = np.full((96, 320), 40, np.uint8)
    _text(shown, "ACC 4471902", (10, 55), 235, 0.9)
    hidden = np.full_like(shown, 40)  # the other rendering shows no text at all
    text = (slice(30, 62), slice(10, 220))
    for stack in (np.dstack([shown, hidden]), np.dstack([hidden, shown])):
        prob = det.probability(stack)
        assert prob.shape == shown.shape
        assert float(prob[text].max()) > 0.5
    assert float(det.probability(hidden).max()) < 0.3


def test_the_detector_takes_at_most_three_planes() -> None:
    det = engines.DbDetector()
    with pytest.raises(ValueError, match="1 to 3 planes"):
        det.probability(np.zeros((32, 32, 4), np.uint8))


def test_lines_set_close_together_are_read_one_by_one() -> None:
    # two lines of 13 px text two pixels apart at the edge of the picture (a radiograph's
    # corner): one kernel at the detector's threshold, cut between the lines
    img = np.zeros((120, 400), np.uint8)
    for row, text in ((30, "20220502 18:11"), (45, "RAD873122")):
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        _text(img, text, (398 - tw, row), 255)
    found = detect.TextFinder(detect.DetectorSettings(tesseract=False)).find(img)
    lines = [r for r in found if r.text]
    texts = {r.text.replace(" ", "") for r in lines}
    assert any("RAD873122" in t for t in texts), texts
    assert any("20220502" in t for t in texts), texts
    assert all(r.box[3] - r.box[1] <= 32 for r in lines), [r.box for r in lines]


@pytest.mark.parametrize("value, background", [(230, 20), (20, 200), (90, 60)])
def test_a_line_of_text_is_a_row_of_glyphs(value: int, background: int) -> None:
    img = np.full((64, 256), background, np.uint8)
    _text(img, "DOE JOHN 1234", (8, 40), value)
    assert detect.glyph_row(img, (0, 0, 256, 64)) >= detect.GLYPHS_IN_SPLIT


def test_anatomy_like_shapes_are_no_row_of_glyphs() -> None:
    assert detect.glyph_row(_anatomy_like(), (0, 0, 320, 96)) < detect.GLYPHS_IN_STROKES


def test_the_glyph_screen_keeps_text_areas_and_drops_text_free_ct(tmp_path) -> None:
    """Areas of text survive the glyph screen; anatomy of text-free CT slices does not (the
    candidate screen sends both to the network)."""
    import pydicom

    from imagedepot.pixeltext.render import Renderer, frames
    from imagedepot.synthetic.burned_in import make_series

    cases = make_series(tmp_path, slices=8, text_slices=(3,), seed=3)
    glyphs = detect.DetectorSettings(screen="glyphs")
    candidates = detect.DetectorSettings(screen="candidates")
    free_kept = free_candidates = 0
    for case in cases:
        ds = pydicom.dcmread(case.path)
        renderings = Renderer(ds).renderings(frames(ds)[0])
        kept = [a.box for _, img in renderings for a in detect.candidate_regions(img, glyphs)]
        cand = [a.box for _, img in renderings for a in detect.candidate_regions(img, candidates)]
        if case.boxes:
            for b in case.boxes:
                box = (b.x0, b.y0, b.x1, b.y1)
                assert any(detect._overlaps(box, k) for k in kept), (case.name, b.kind)
        else:
            free_kept += bool(kept)
            free_candidates += bool(cand)
    assert free_candidates >= 5  # the candidate screen fires on anatomy...
    assert free_kept <= 1  # ... the glyph screen (almost) never does
