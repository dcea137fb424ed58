"""imagedepot.pixeltext.identifiers: OCR-tolerant matching and the allow-list."""

from __future__ import annotations

from imagedepot.pixeltext.identifiers import (
    DEFAULT_ALLOW,
    Identifiers,
    allowed,
    compile_allow,
    date_renderings,
)


def ids() -> Identifiers:
    out = Identifiers()
    out.add("DOE^JOHN", "name")
    out.add("MRN12345678", "id")
    out.add("19650312", "date")
    return out


def test_names_ids_and_dates_in_ocr_spellings() -> None:
    known = ids()
    for text in (
        "DOE, JOHN",
        "D0E^J0HN",
        "John Doe",
        "MRN 1234S678",
        "12.03.1965",
        "03/12/1965",
        "12-MAR-1965",
    ):
        assert known.match(text), text
    for text in ("kV 120", "TR 500", "FOV 240", "1.06 cm"):
        assert known.match(text) is None, text


def test_date_renderings() -> None:
    r = date_renderings("20240131")
    assert "20240131" in r and "31JAN2024" in r and "01312024" in r
    assert date_renderings("not a date") == []


def test_allow_list_needs_the_whole_text_and_confidence() -> None:
    pats = compile_allow(DEFAULT_ALLOW)
    assert allowed("L", 0.99, pats) and allowed("5 cm", 0.95, pats) and allowed("HFS", 0.9, pats)
    assert not allowed("L DOE", 0.99, pats)
    assert not allowed("ALI", 0.99, pats)  # a name, not an orientation
    assert not allowed("L", 0.3, pats)  # unsure readings are blanked
