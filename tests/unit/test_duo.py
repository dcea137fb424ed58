"""The DUO terms shipped with the package: provenance of the table, and its contents."""

from __future__ import annotations

import re

from imagedepot.duo import DUO_RELEASE, data_use_problems, duo_release, duo_terms


def test_the_table_says_where_it_comes_from_and_under_which_licence() -> None:
    header = duo_release()
    assert header["version"] == DUO_RELEASE == "2021-02-23"
    assert header["version_iri"] == "http://purl.obolibrary.org/obo/duo/releases/2021-02-23/duo.owl"
    assert header["license"] == "CC-BY-4.0"
    assert "CC BY 4.0" in header["attribution"]
    assert "EMBL-EBI" in header["attribution"]


def test_terms_are_well_formed_and_typed() -> None:
    terms = duo_terms()
    assert all(re.fullmatch(r"DUO:\d{7}", code) and t.id == code for code, t in terms.items())
    assert {t.kind for t in terms.values()} == {"permission", "modifier", "class"}
    permissions = {c: t.shorthand for c, t in terms.items() if t.kind == "permission"}
    assert permissions == {
        "DUO:0000004": "NRES",
        "DUO:0000006": "HMB",
        "DUO:0000007": "DS",
        "DUO:0000011": "POA",
        "DUO:0000042": "GRU",
    }
    assert terms["DUO:0000019"].describe() == "DUO:0000019 (PUB, publication required)"
    assert terms["DUO:0000043"].kind == "modifier"


def test_data_use_problems_lists_every_problem() -> None:
    assert data_use_problems("DUO:0000042", ["DUO:0000019"]) == []
    problems = data_use_problems("DUO:0000019", ["DUO:0000042", "DUO:0000000", 7])
    assert [p.split(":")[0] for p in problems] == [
        "data_use.permission",
        "data_use.modifiers[0]",
        "data_use.modifiers[1]",
        "data_use.modifiers[2]",
    ]
    assert "7 is not a DUO code" in problems[3]
