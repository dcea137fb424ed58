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


def test_the_glyph_screen_gives_the_rows_it_found() -> None:
    img = np.full((96, 320), 30, np.uint8)
    _text(img, "DOE JOHN 1234", (20, 60), 230)
    areas = detect.candidate_regions(img, detect.DetectorSettings(screen="glyphs"))
    rows = [r for a in areas for r in a.rows]
    assert rows
    # the row lies on the line of text (rows 48-62 of the picture), not on the whole area
    assert all(40 <= (r[1] + r[3]) / 2 <= 64 and r[3] - r[1] <= 24 for r in rows), rows


def test_rows_the_detector_does_not_confirm_are_not_read_whole(tmp_path, monkeypatch) -> None:
    """An area passed by the glyph screen is read whole only when the detector finds text on
    its rows (read with a little room around them): anatomy that makes a row of letter-like
    shapes (this series has three such slices) costs a small reading, not a pass over most
    of the slice and a reading of every box."""
    import pydicom

    from imagedepot.pixeltext.render import Renderer, frames
    from imagedepot.synthetic.burned_in import make_series

    settings = detect.DetectorSettings(tesseract=False)
    tf = detect.TextFinder(settings)
    sizes: list[tuple[int, ...]] = []
    real = tf.detector.probability

    def spy(crop: np.ndarray) -> np.ndarray:
        sizes.append(crop.shape[:2])
        return real(crop)

    monkeypatch.setattr(tf.detector, "probability", spy)
    passed = 0
    for case in make_series(tmp_path, slices=16, rows=256, seed=5):
        ds = pydicom.dcmread(case.path)
        renderings = Renderer(ds).renderings(frames(ds)[0])
        passed += any(
            a.rows for _, img in renderings for a in detect.candidate_regions(img, settings)
        )
        assert tf.find_frame(renderings) == [], case.name
    assert passed >= 2
    assert sizes, "the rows were not read at all"
    assert all(h * w <= 96 * 160 for h, w in sizes), sizes
    assert "recognizer" not in tf.__dict__  # nothing was read


def test_text_rows_are_confirmed_and_read_whole() -> None:
    img = np.full((160, 400), 40, np.uint8)
    cv2.ellipse(img, (280, 80), (80, 60), 0, 0, 360, 120, -1)  # an organ beside the text
    _text(img, "DOE JOHN 1234", (150, 140), 235, 0.6)
    found = detect.TextFinder(detect.DetectorSettings(tesseract=False)).find(img)
    assert any("1234" in r.text for r in found), found


def test_the_networks_load_only_when_an_area_passes_the_screen() -> None:
    tf = detect.TextFinder(detect.DetectorSettings(tesseract=False))
    flat = np.full((256, 256), 60, np.uint8)
    cv2.GaussianBlur(flat, (5, 5), 2, dst=flat)
    assert tf.find(flat) == []
    assert "detector" not in tf.__dict__ and "recognizer" not in tf.__dict__
    img = flat.copy()
    _text(img, "DOE JOHN 1234", (10, 120), 230)
    assert tf.find(img)
    assert "detector" in tf.__dict__ and "recognizer" in tf.__dict__


def test_the_recogniser_reads_short_and_long_lines_at_their_own_width() -> None:
    rec = engines.Recognizer()
    assert rec.impl.rec_batch_num == 1 and rec.impl.rec_image_shape[2] == engines.REC_MIN_WIDTH
    crops = []
    for text in ("HFS", "DOE^JOHN 19700101 MRN 4471902"):
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.9, 2)
        crop = np.full((th + 20, tw + 20), 20, np.uint8)
        cv2.putText(crop, text, (10, th + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 235, 2, cv2.LINE_AA)
        crops.append(crop)
    (short, c1), (long_, c2) = rec.read(crops)
    assert short.replace(" ", "") == "HFS" and c1 > 0.8, (short, c1)
    assert "4471902" in long_ and "19700101" in long_ and c2 > 0.8, (long_, c2)


def test_component_stats_match_opencvs_default_labelling() -> None:
    from imagedepot.pixeltext.screen import _component_stats

    rng = np.random.default_rng(1)
    for shape in ((64, 80), (512, 512)):
        mask = (rng.random(shape) > 0.7).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        assert np.array_equal(_component_stats(mask), stats[1:])


def test_lines_split_together_give_the_glyphs_of_each_line_split_alone() -> None:
    """The two-level split of many lines is labelled in one packed picture: each line gets
    exactly the parts that labelling it on its own gives (lines overlap here, and one is
    wider than the packing width)."""
    from imagedepot.pixeltext.screen import _glyphs, _split_glyphs

    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur((rng.random((300, 700)) * 255).astype(np.uint8), (5, 5), 1.5)
    _text(img, "DOE^JANE 4471902", (20, 60), 250)
    _text(img, "12/03/1970", (30, 70), 10, scale=0.4)
    lines = [(10, 40, 260, 80), (20, 55, 200, 90), (0, 100, 700, 130), (300, 200, 340, 215)]
    lines += [(x, y, x + 25 + x % 40, y + 12 + y % 9) for x, y in rng.integers(0, 250, (30, 2))]

    def alone(box: tuple[int, int, int, int]) -> list[tuple[int, int, int, int]]:
        x0, y0, x1, y1 = box
        _, light = cv2.threshold(img[y0:y1, x0:x1], 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        dark = 1 - light
        for mask in (light, dark):
            mask[[0, -1], :] = 0
            mask[:, [0, -1]] = 0
        return sorted(_glyphs(light) + _glyphs(dark))

    together = _split_glyphs(img, lines)
    assert [sorted(g) for g in together] == [alone(b) for b in lines]
    assert len(together[0]) >= 8  # the name and ID are glyphs of the first line
