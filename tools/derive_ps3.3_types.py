"""Derive ``src/imagedepot/data/ps3.3-attribute-types.json`` from the DICOM standard's IOD and
module tables (PS3.3), as highdicom ships them in machine-readable form.

The de-identification profile (PS3.15 Table E.1-1) gives some attributes a combination code
(``X/Z``, ``Z/D``, ``X/D``, ``X/Z/D``, ``X/Z/U*``) whose choice depends on the attribute's type in
the IOD, and some sequences ``D`` or ``Z``. For those attributes only, this script records, per
IOD, the modules that hold them at the top level of the data set, with the module's usage in
the IOD (M, C, U), the attribute's type there (1, 1C, 2, 2C, 3) and the top-level tags of the
module (to tell whether a C or U module is present in a file).

Usage (from the repository root; needs highdicom, which is not a dependency of the package)::

    pip download --no-deps highdicom -d /tmp/hd   # or any environment with highdicom installed
    python tools/derive_ps3.3_types.py [--highdicom PATH_TO_UNPACKED_PACKAGE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from importlib import resources
from pathlib import Path

from pydicom.datadict import dictionary_VR, tag_for_keyword

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src/imagedepot/data/ps3.15-table-e.1-1.json"
TYPES = ("1", "1C", "2", "2C", "3")
OUT = ROOT / "src/imagedepot/data/ps3.3-attribute-types.json"


def interesting_tags() -> set[int]:
    """Table E.1-1 rows whose action depends on the IOD: combination codes, D/Z sequences."""
    tags = set()
    for row in json.loads(TABLE.read_text(encoding="utf-8")):
        digits = row["tag"].strip("()").replace(",", "")
        if not re.fullmatch("[0-9A-Fa-f]{8}", digits):
            continue  # wildcard rows and the private row
        tag = int(digits, 16)
        code = row["basicProfile"]
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = ""
        if "/" in code or (vr == "SQ" and code in ("D", "Z")):
            tags.add(tag)
    return tags


def load_tables(folder: Path | None) -> tuple[dict, dict, dict, str]:
    if folder is None:
        import highdicom  # noqa: F401

        base = resources.files("highdicom").joinpath("_standard")
        version = sys.modules["highdicom"].__version__
    else:
        base = folder / "_standard"  # type: ignore[assignment]
        version = "unpacked"
    read = lambda name: json.loads(base.joinpath(name).read_text(encoding="utf-8"))  # noqa: E731
    return (
        read("sop_class_iod_map.json"),
        read("iod_module_map.json"),
        read("module_attribute_map.json"),
        version,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--highdicom", type=Path, help="unpacked highdicom package folder")
    parser.add_argument("--version", default=None, help="highdicom version, for the record")
    args = parser.parse_args(argv)
    sop_iod, iod_modules, module_attrs, version = load_tables(args.highdicom)
    wanted = interesting_tags()
    modules: dict[str, dict] = {}
    for name, attrs in module_attrs.items():
        top = {}
        types = {}
        for attr in attrs:
            if attr["path"]:
                continue
            tag = tag_for_keyword(attr["keyword"])
            if tag is None or attr["type"] not in TYPES:
                continue  # retired keywords; "None": tables of services, not of composite IODs
            top[tag] = attr["type"]
            if tag in wanted:
                types[f"{tag:08X}"] = attr["type"]
        if types:
            modules[name] = {"types": types, "tags": sorted(f"{t:08X}" for t in top)}
    iods = {
        iod: [[m["key"], m["usage"]] for m in mods if m["key"] in modules]
        for iod, mods in iod_modules.items()
    }
    data = {
        "source": (
            "DICOM PS3.3 IOD and module tables (edition 2026b) as shipped by highdicom "
            f"{args.version or version} (_standard/*.json); see the licence file beside this one"
        ),
        "attributes": sorted(f"{t:08X}" for t in wanted),
        "sop_classes": dict(sorted(sop_iod.items())),
        "iods": {k: v for k, v in sorted(iods.items()) if v},
        "modules": dict(sorted(modules.items())),
    }
    OUT.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(
        f"{OUT.relative_to(ROOT)}: {len(wanted)} attributes, {len(data['iods'])} IODs, "
        f"{len(modules)} modules"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
