"""imagedepot.deid.auxiliary: slide label, macro and thumbnail series of OME outputs.

The input is made by code: a tifffile-written OME-TIFF with a main series, a "label image" with
a fake name drawn on it and a text-free "thumbnail image", converted by the project's own
tifffile reader to OME-Zarr and OME-TIFF.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import zarr

from imagedepot.cli import main
from imagedepot.convert.microscopy import convert_to_ome_tiff, convert_to_ome_zarr
from imagedepot.deid import auxiliary as aux
from imagedepot.deid.ome import deidentify_ome, is_auxiliary_name, is_generic_name, parse_xml
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError
from imagedepot.leakcheck import leakcheck
from imagedepot.pixeltext.dicom import PixelTextSettings
from imagedepot.validate import validate_path

SUBJECT = "PAT-778812"
PS = Pseudonymizer(key=b"k" * 32, prefix="SUBJ", max_shift_days=365)
KW = {"policy_options": frozenset(), "pseudonymizer": PS, "subject": SUBJECT}
REMOVE = PixelTextSettings(auxiliary_images="remove")
OCR = PixelTextSettings(auxiliary_images="ocr")
NAMES = ["Series 0", "label image", "thumbnail image"]


def label_pixels() -> np.ndarray:
    """A slide label photograph: dark print on a light label, RGB."""
    label = np.full((160, 560, 3), 232, np.uint8)
    cv2.putText(label, "DOE^JANE 12345", (20, 95), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (20, 20, 20), 3)
    return label


def thumbnail_pixels() -> np.ndarray:
    """A text-free thumbnail: a smooth stained-tissue-like blob on white."""
    yy, xx = np.mgrid[0:128, 0:192]
    blob = np.exp(-(((yy - 64) / 40.0) ** 2 + ((xx - 96) / 60.0) ** 2))
    thumb = np.empty((128, 192, 3), np.uint8)
    for c, depth in enumerate((90, 150, 60)):
        thumb[..., c] = (245 - depth * blob).astype(np.uint8)
    return thumb


def write_slide(path: Path, order: tuple[str, ...] = tuple(NAMES)) -> None:
    main = np.random.default_rng(0).integers(0, 4000, (2, 256, 256)).astype(np.uint16)
    images = {
        "Series 0": main,
        "label image": label_pixels(),
        "thumbnail image": thumbnail_pixels(),
    }
    with tifffile.TiffWriter(path, ome=True) as tw:
        for name in order:
            data = images[name]
            rgb = data.ndim == 3 and data.shape[-1] == 3
            tw.write(
                data,
                photometric="rgb" if rgb else "minisblack",
                metadata={"axes": "YXS" if rgb else "CYX", "Name": name},
            )


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The source OME-TIFF and its conversions (label in the middle: series are renumbered)."""
    root = tmp_path_factory.mktemp("slide")
    src = root / "slide.ome.tif"
    write_slide(src)
    convert_to_ome_zarr(src, root / "conv.ome.zarr", threads=1)
    convert_to_ome_zarr(src, root / "conv05.ome.zarr", ngff_version="0.5", threads=1)
    convert_to_ome_tiff(src, root / "conv.ome.tif", threads=1)
    return {
        "src": src,
        "zarr": root / "conv.ome.zarr",
        "zarr05": root / "conv05.ome.zarr",
        "tiff": root / "conv.ome.tif",
    }


def xml_names(xml: str) -> list[str | None]:
    return [el.get("Name") for el in parse_xml(xml) if el.tag.endswith("Image")]


def test_auxiliary_names() -> None:
    for name in ["label", "label image", "Macro Image", "macro mask image", "thumbnail_1"]:
        assert is_auxiliary_name(name) and is_generic_name(name), name
    for name in ["Overview 2", "slide preview", "Barcode", " label #1 "]:
        assert is_auxiliary_name(name), name
    for name in ["Series 1", "", "image_0", "Image 3", "labelled nuclei", "macrophages"]:
        assert not is_auxiliary_name(name), name
    assert not is_auxiliary_name("label-free TIRF") and not is_auxiliary_name(None)
    assert not is_generic_name("DOE_JANE label")


def test_settings_auxiliary_images() -> None:
    assert PixelTextSettings().auxiliary_images == "remove"
    s = PixelTextSettings.from_config({"auxiliary_images": "ocr", "tesseract": False})
    assert PixelTextSettings.from_config(s.to_dict()) == s  # provenance round trip
    with pytest.raises(ValueError, match=r"pixel_text\.auxiliary_images"):
        PixelTextSettings.from_config({"auxiliary_images": "keep"})


def test_list_series_of_converted_outputs(slide: dict[str, Path]) -> None:
    for key in ("zarr", "tiff"):
        entries = aux.list_series(slide[key])
        assert [e.index for e in entries] == [0, 1, 2]
        assert [e.auxiliary for e in entries] == [False, True, True]
        assert [e.name for e in entries] == ["", "label image", "thumbnail image"]
        planes = aux.read_planes(slide[key], entries[1])
        assert planes.shape == (1, 3, 160, 560)
        assert np.array_equal(np.moveaxis(planes[0], 0, -1), label_pixels())
    with pytest.raises(aux.UnreadableSeries, match="too large"):
        aux.read_planes(slide["zarr"], aux.list_series(slide["zarr"])[1], max_pixels=100)


def ome_attrs(group: Path) -> dict:
    """NGFF attributes of a Zarr v2 or v3 group."""
    if (group / ".zattrs").is_file():
        return json.loads((group / ".zattrs").read_text())
    return json.loads((group / "zarr.json").read_text())["attributes"]["ome"]


@pytest.mark.parametrize("key", ["zarr", "zarr05"], ids=["ngff-0.4", "ngff-0.5"])
def test_remove_takes_every_auxiliary_series_out_of_a_store(
    slide: dict[str, Path], tmp_path: Path, key: str
) -> None:
    out = tmp_path / "SUBJ-X.ome.zarr"
    report = deidentify_ome(slide[key], out, **KW)  # no settings: the default, remove
    assert [(d["series"], d["action"]) for d in report.auxiliary_images] == [
        (1, "removed"),
        (2, "removed"),
    ]
    assert report.to_dict()["auxiliary_images"][0]["reason"] == (
        "pixel_text.auxiliary_images is remove"
    )
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0", "OME"]
    assert ome_attrs(out / "OME")["series"] == ["0"]
    assert xml_names((out / "OME" / "METADATA.ome.xml").read_text()) == ["Series 0"]
    result = validate_path(out)
    assert result.valid, result.errors
    assert len(result.info["images"]) == 1
    main_src = zarr.open_array(str(slide[key] / "0" / "0"), mode="r")[:]
    assert np.array_equal(zarr.open_array(str(out / "0" / "0"), mode="r")[:], main_src)


def test_ocr_removes_the_label_with_text_and_keeps_a_text_free_thumbnail(
    slide: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "SUBJ-X.ome.zarr"
    report = deidentify_ome(slide["zarr"], out, pixel_text=OCR, **KW)
    decisions = {d["name"]: d for d in report.auxiliary_images}
    assert decisions["label image"]["action"] == "removed"
    assert decisions["label image"]["reason"].startswith("text found")
    assert decisions["label image"]["text_regions"] >= 1
    assert decisions["thumbnail image"] == {
        "series": 2,
        "name": "thumbnail image",
        "action": "kept",
        "reason": "no text found",
        "text_regions": 0,
    }
    # the thumbnail moved from group 2 to group 1; the OME-XML and series list follow
    assert ome_attrs(out / "OME")["series"] == ["0", "1"]
    assert not (out / "2").exists()
    assert xml_names((out / "OME" / "METADATA.ome.xml").read_text()) == NAMES[::2]
    assert ome_attrs(out / "1")["multiscales"][0]["name"] == "thumbnail image"
    thumb = zarr.open_array(str(out / "1" / "0"), mode="r")[0, :, 0]
    assert np.array_equal(np.moveaxis(thumb, 0, -1), thumbnail_pixels())
    result = validate_path(out)
    assert result.valid, result.errors
    # the leak gate reads the thumbnail left again and finds nothing
    assert leakcheck([slide["src"]], [out], pixel_text=OCR).status == "clean"


@pytest.mark.parametrize("settings", [REMOVE, OCR], ids=["remove", "ocr"])
def test_ome_tiff_loses_its_auxiliary_ifds(
    slide: dict[str, Path], tmp_path: Path, settings: PixelTextSettings
) -> None:
    out = tmp_path / "SUBJ-X.ome.tif"
    report = deidentify_ome(slide["tiff"], out, pixel_text=settings, **KW)
    removed = [d["name"] for d in report.auxiliary_images if d["action"] == "removed"]
    kept = ["Series 0"] + (["thumbnail image"] if settings is OCR else [])
    assert removed == [n for n in NAMES[1:] if n not in kept]
    result = validate_path(out)
    assert result.valid, result.errors
    with tifffile.TiffFile(out) as tif:
        assert [s.name for s in tif.series] == kept
        assert xml_names(tif.ome_metadata) == kept
        assert len(tif.pages) == 2 + 3 * (len(kept) - 1)
        assert np.array_equal(tif.series[0].asarray(), tifffile.imread(slide["tiff"], series=0))
        if settings is OCR:
            thumb = np.moveaxis(tif.series[1].asarray(), 0, -1)
            assert np.array_equal(thumb, thumbnail_pixels())
    # not a byte of the label's compressed tiles is left in the file
    data = out.read_bytes()
    with tifffile.TiffFile(slide["tiff"]) as tif, open(slide["tiff"], "rb") as fh:
        for level in tif.series[1].levels:
            for page in level.pages:
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                    fh.seek(offset)
                    tile = fh.read(count)
                    assert len(tile) < 32 or tile not in data
    assert leakcheck([slide["src"]], [out], pixel_text=settings).status == "clean"


def test_leak_gate_refuses_auxiliary_series_left_in_staged_outputs(
    slide: dict[str, Path],
) -> None:
    def aux_hits(path: Path, settings: PixelTextSettings) -> list[str]:
        report = leakcheck([slide["src"]], [path], pixel_text=settings)
        return [h["location"] for h in report.hits if h["kind"] == "pixel_text"]

    for key in ("zarr", "zarr05", "tiff"):
        hits = aux_hits(slide[key], REMOVE)
        assert len(hits) == 2 and "series 1 (label image)" in hits[0], hits
        hits = aux_hits(slide[key], OCR)  # the label with text only
        assert hits and all(h.startswith("series 1 (label image) plane 0 box") for h in hits)
    # without pixel_text settings (the stand-alone leakcheck) pixels are not read
    assert leakcheck([slide["src"]], [slide["zarr"]]).status == "clean"


def test_what_cannot_be_removed_safely_is_refused(slide: dict[str, Path], tmp_path: Path) -> None:
    # the label holds the OME-TIFF's first IFD (and so its OME-XML)
    first = tmp_path / "label-first.ome.tif"
    write_slide(first, ("label image", "Series 0"))
    with pytest.raises(InputError, match="first IFD"):
        deidentify_ome(first, tmp_path / "o.ome.tif", **KW)
    # a store whose only image is auxiliary
    only = tmp_path / "label.ome.zarr"
    single = tmp_path / "label.ome.tif"
    write_slide(single, ("label image",))
    convert_to_ome_zarr(single, only, threads=1)
    with pytest.raises(InputError, match="every image"):
        deidentify_ome(only, tmp_path / "o.ome.zarr", **KW)
    assert not (tmp_path / "o.ome.zarr").exists()
    # OME-XML images that cannot be matched to the groups (the label cannot be found for sure)
    odd = tmp_path / "odd.ome.zarr"
    shutil.copytree(slide["zarr"], odd)
    (odd / "OME" / ".zattrs").write_text(json.dumps({"series": ["0", "1"]}))
    with pytest.raises(aux.UnreadableSeries, match="3 images and the store 2 series"):
        aux.list_series(odd)
    with pytest.raises(InputError, match="cannot be listed"):
        deidentify_ome(odd, tmp_path / "o.ome.zarr", **KW)
    report = leakcheck([slide["src"]], [odd], pixel_text=OCR)
    assert any(h["location"] == "OME series (cannot be listed)" for h in report.hits)


def test_cli_deid_ome_applies_the_policy_setting(
    slide: dict[str, Path], tmp_path: Path, monkeypatch, capsys, caplog
) -> None:
    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", "unit-test-key-0123456789")
    (tmp_path / "consent.tsv").write_text("subject\tconsent\nP001\tyes\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "policy_version: 1\nname: test\ndata_use: {permission: 'DUO:0000042'}\n"
        "consent: {required: true, sheet: consent.tsv, consent_column: consent}\n"
        "destinations: {allowed_classes: [internal]}\n"
        "deidentification: {options: [], pseudonym_prefix: T, "
        "pixel_text: {auxiliary_images: remove}}\n"
    )
    out = tmp_path / "out.ome.zarr"
    argv = ["deid", "ome", str(slide["zarr"]), str(out), "--policy", str(policy)]
    assert main([*argv, "--subject", "P001"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [d["action"] for d in printed["auxiliary_images"]] == ["removed", "removed"]
    assert printed["policy"]["pixel_text"]["auxiliary_images"] == "remove"
    policy.write_text(policy.read_text().replace("auxiliary_images: remove", "auxiliary_images: x"))
    assert main([*argv, "--subject", "P001", "--force"]) != 0
    assert "pixel_text.auxiliary_images: 'x' is not one of" in caplog.text


def test_pipeline_item_records_the_decisions_and_the_leak_gate_agrees(
    slide: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    """As the workflow runs it: deidentify_item under ocr, then leakcheck_item."""
    from imagedepot.io import read_json
    from imagedepot.pipeline import DeidSettings, deidentify_item, leakcheck_item

    monkeypatch.setenv("IMAGEDEPOT_PSEUDONYM_KEY", "unit-test-key-0123456789")
    item = {"id": "ds-m001", "kind": "microscopy", "subject": "P001"}
    item["files"] = [{"path": str(slide["src"])}]
    (tmp_path / "item.json").write_text(json.dumps(item))
    conv = tmp_path / "convert"
    conv.mkdir()
    (conv / "provenance.json").write_text(
        json.dumps({"status": "processed", "step": "convert", "reason": None})
    )
    shutil.copytree(slide["zarr"], conv / "ds-m001.ome.zarr")
    (tmp_path / "policy.yaml").write_text(
        "policy_version: 1\nname: t\ndata_use: {permission: 'DUO:0000042'}\n"
        "consent: {required: false}\ndestinations: {allowed_classes: [internal]}\n"
        "deidentification: {options: [], pixel_text: {auxiliary_images: ocr}}\n"
    )
    settings = DeidSettings(policy_path=tmp_path / "policy.yaml")
    deid = tmp_path / "deid"
    prov = deidentify_item(tmp_path / "item.json", conv, deid, settings)
    assert prov.status == "processed", prov.reason
    recorded = read_json(deid / "provenance.json")
    decisions = recorded["options"]["reports"]["ds-m001.ome.zarr"]["auxiliary_images"]
    assert [(d["name"], d["action"]) for d in decisions] == [
        ("label image", "removed"),
        ("thumbnail image", "kept"),
    ]
    leak = leakcheck_item(tmp_path / "item.json", deid, tmp_path / "leak.json")
    assert leak["status"] == "clean", leak
    # a store that kept its label (as if de-identification had not run on it) is refused
    shutil.rmtree(deid / "ds-m001.ome.zarr")
    shutil.copytree(slide["zarr"], deid / "ds-m001.ome.zarr")
    leak = leakcheck_item(tmp_path / "item.json", deid, tmp_path / "leak.json")
    assert leak["status"] == "leak"
    assert any("label image" in h["location"] for h in leak["report"]["hits"])
