"""OME metadata de-identification: people, free text and dates go; pixels, channels, sizes stay."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from imagedepot.deid.ome import clean_ome_xml, deidentify_ome, parse_xml
from imagedepot.deid.pseudonym import Pseudonymizer
from imagedepot.errors import InputError, OutputExistsError
from imagedepot.leakcheck import leakcheck

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
SUBJECT = "PAT-778812"
PS = Pseudonymizer(key=b"k" * 32, prefix="SUBJ", max_shift_days=365)
MODIFIED = frozenset({"retain_longitudinal_modified_dates"})


def ome_xml(file_name: str = "doe_john_slide7.ome.tif", size_c: int = 2) -> str:
    """OME-XML with PHI in experimenter, group, image name, description, annotations, serial."""
    channels = "".join(
        f'<Channel ID="Channel:0:{c}" Name="{name}" SamplesPerPixel="1" '
        f'EmissionWavelength="{wl}" EmissionWavelengthUnit="nm"/>'
        for c, (name, wl) in enumerate([("DAPI", 461), ("GFP", 509)][:size_c])
    )
    tiffdata = "".join(
        f'<TiffData FirstC="{c}" IFD="{c}" PlaneCount="1">'
        f'<UUID FileName="{file_name}">urn:uuid:6f2a9b2e-1111-4c3e-9d7b-2a1f3c4d5e6f</UUID>'
        "</TiffData>"
        for c in range(size_c)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{NS} {NS}/ome.xsd" '
        'UUID="urn:uuid:6f2a9b2e-1111-4c3e-9d7b-2a1f3c4d5e6f" Creator="test">'
        "<Rights><RightsHolder>Jane Mayfield</RightsHolder></Rights>"
        '<Instrument ID="Instrument:0">'
        '<Microscope Manufacturer="Zeiss" Model="LSM 980" SerialNumber="MIC-4471-XZ"/>'
        '<Objective ID="Objective:0:0" Manufacturer="Zeiss" NominalMagnification="63" '
        'LensNA="1.4" SerialNumber="OBJ-99812"/>'
        "</Instrument>"
        '<Experimenter ID="Experimenter:jmayfield" FirstName="Jane" LastName="Mayfield" '
        'Email="jane.mayfield@example.org" Institution="Saint Example Hospital" '
        'UserName="jmayfield"/>'
        '<ExperimenterGroup ID="ExperimenterGroup:mayfieldlab" Name="Mayfield Lab">'
        "<Description>Lab of Jane Mayfield</Description>"
        '<ExperimenterRef ID="Experimenter:jmayfield"/><Leader ID="Experimenter:jmayfield"/>'
        "</ExperimenterGroup>"
        '<Image ID="Image:0" Name="DOE_JOHN_slide7">'
        "<AcquisitionDate>2024-01-31T10:15:00</AcquisitionDate>"
        '<ExperimenterRef ID="Experimenter:jmayfield"/>'
        "<Description>Biopsy of John Doe, PAT-778812</Description>"
        '<InstrumentRef ID="Instrument:0"/>'
        '<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="16" SizeY="12" '
        f'SizeC="{size_c}" SizeZ="1" SizeT="1" PhysicalSizeX="0.325" PhysicalSizeXUnit="µm" '
        'PhysicalSizeY="0.325" PhysicalSizeYUnit="µm">'
        f"{channels}{tiffdata}</Pixels>"
        '<AnnotationRef ID="Annotation:comment"/><AnnotationRef ID="Annotation:magnif"/>'
        "</Image>"
        "<StructuredAnnotations>"
        '<CommentAnnotation ID="Annotation:comment"><Value>Patient John Doe, DOB 1970-04-12'
        "</Value></CommentAnnotation>"
        '<MapAnnotation ID="Annotation:map"><Value><M K="Operator">jmayfield</M></Value>'
        "</MapAnnotation>"
        '<LongAnnotation ID="Annotation:magnif" Annotator="Experimenter:jmayfield">'
        "<Value>63</Value></LongAnnotation>"
        "</StructuredAnnotations>"
        "</OME>"
    )


PLANTED = [
    "Mayfield",
    "Jane",
    "jmayfield",
    "jane.mayfield@example.org",
    "Saint Example Hospital",
    "DOE_JOHN",
    "John Doe",
    "PAT-778812",
    "1970-04-12",
    "2024-01-31",
    "MIC-4471-XZ",
    "OBJ-99812",
    "doe_john_slide7",
]


def find(root: ET.Element, name: str) -> list[ET.Element]:
    return root.findall(f".//{{{NS}}}{name}")


def test_clean_ome_xml_removes_people_text_and_dates() -> None:
    cleaned, summary = clean_ome_xml(
        ome_xml(), policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT, file_name="x.ome.tif"
    )
    for value in PLANTED:
        assert value.lower() not in cleaned.lower(), value
    root = parse_xml(cleaned)
    (exp,) = find(root, "Experimenter")
    assert exp.attrib == {"ID": "Experimenter:0"}
    (group,) = find(root, "ExperimenterGroup")
    assert group.attrib == {"ID": "ExperimenterGroup:0"}
    refs = {el.get("ID") for el in find(root, "ExperimenterRef") + find(root, "Leader")}
    assert refs == {"Experimenter:0"}
    (long_ann,) = find(root, "LongAnnotation")
    assert long_ann.get("Annotator") == "Experimenter:0"
    assert not find(root, "CommentAnnotation") and not find(root, "MapAnnotation")
    assert {el.get("ID") for el in find(root, "AnnotationRef")} == {"Annotation:magnif"}
    assert not find(root, "Description") and not find(root, "Rights")
    (date,) = find(root, "AcquisitionDate")
    assert date.text == PS.shift_datetime("2024-01-31T10:15:00", SUBJECT)
    (image,) = find(root, "Image")
    assert image.get("Name") == "image_0"
    (pixels,) = find(root, "Pixels")
    assert pixels.get("PhysicalSizeX") == "0.325" and pixels.get("PhysicalSizeXUnit") == "µm"
    assert [c.get("Name") for c in find(root, "Channel")] == ["DAPI", "GFP"]
    assert {u.get("FileName") for u in find(root, "UUID")} == {"x.ome.tif"}
    (micro,) = find(root, "Microscope")
    assert micro.attrib == {"Manufacturer": "Zeiss", "Model": "LSM 980"}
    assert cleaned.isascii() and "&#181;m" in cleaned
    assert summary["annotations_removed"] == 2
    assert summary["dates_shifted"] == 1
    assert summary["serial_numbers_removed"] == 2


def test_clean_ome_xml_is_schema_valid() -> None:
    ome_types = pytest.importorskip("ome_types")
    cleaned, _ = clean_ome_xml(
        ome_xml(), policy_options=frozenset(), pseudonymizer=PS, subject=SUBJECT
    )
    ome = ome_types.from_xml(cleaned)
    assert ome.images[0].pixels.physical_size_x == pytest.approx(0.325)
    assert [c.name for c in ome.images[0].pixels.channels] == ["DAPI", "GFP"]
    assert ome.images[0].acquisition_date is None  # no dates option: removed
    assert ome.experimenters[0].id == "Experimenter:0"


def test_clean_ome_xml_date_options_and_devices() -> None:
    full = frozenset({"retain_longitudinal_full_dates", "retain_device_identity"})
    cleaned, summary = clean_ome_xml(
        ome_xml(), policy_options=full, pseudonymizer=PS, subject=SUBJECT
    )
    root = parse_xml(cleaned)
    assert find(root, "AcquisitionDate")[0].text == "2024-01-31T10:15:00"
    assert find(root, "Microscope")[0].get("SerialNumber") == "MIC-4471-XZ"
    assert summary["dates_kept"] == 1


def test_clean_ome_xml_rejects_bad_xml() -> None:
    with pytest.raises(ValueError):
        clean_ome_xml("<notome/>", policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT)
    with pytest.raises(ValueError):
        clean_ome_xml(
            '<!DOCTYPE x [<!ENTITY a "b">]><OME/>',
            policy_options=MODIFIED,
            pseudonymizer=PS,
            subject=SUBJECT,
        )


def make_ome_tiff(path: Path) -> np.ndarray:
    data = np.arange(2 * 12 * 16, dtype=np.uint16).reshape(2, 12, 16)
    tifffile.imwrite(
        path,
        data,
        description=ome_xml(path.name).encode("utf-8"),
        metadata=None,
        photometric="minisblack",
        extratags=[(315, "s", 0, "jmayfield", True), (306, "s", 0, "2024:01:31 10:15:00", True)],
    )
    return data


def pixel_bytes(path: Path) -> list[bytes]:
    with tifffile.TiffFile(path) as tif, open(path, "rb") as fh:
        out = []
        for page in tif.pages:
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(offset)
                out.append(fh.read(count))
        return out


def test_deidentify_ome_tiff(tmp_path: Path) -> None:
    src = tmp_path / "inbox" / "doe_john_slide7.ome.tif"
    src.parent.mkdir()
    data = make_ome_tiff(src)
    out = tmp_path / "out" / "SUBJ-X.ome.tif"
    report = deidentify_ome(src, out, policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT)
    assert pixel_bytes(src) == pixel_bytes(out)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome
        assert np.array_equal(tif.asarray(), data)
        xml = tif.ome_metadata
        page = tif.pages.first
        assert page.tags[315].value == ""
        shifted = PS.shift_date("20240131", SUBJECT)
        assert page.tags[306].value == f"{shifted[:4]}:{shifted[4:6]}:{shifted[6:]} 10:15:00"
    assert xml is not None
    root = parse_xml(xml)
    assert [c.get("Name") for c in find(root, "Channel")] == ["DAPI", "GFP"]
    assert find(root, "Pixels")[0].get("PhysicalSizeY") == "0.325"
    assert {u.get("FileName") for u in find(root, "UUID")} == {"SUBJ-X.ome.tif"}
    raw = out.read_bytes().lower()
    for value in PLANTED:
        assert value.lower().encode() not in raw, value
    assert report.to_dict()["tiff_tags_cleaned"] == {
        "Artist": 1,
        "DateTime": 1,
        "ImageDescription": 1,
    }
    assert report.xml_documents == 1
    leak = leakcheck([src.parent], [out.parent], extra=[SUBJECT])
    assert leak.status == "clean", leak.hits
    assert leakcheck([src.parent], [src.parent]).status == "leak"


def test_deidentify_ome_tiff_into_folder_and_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "a.ome.tiff"
    make_ome_tiff(src)
    out = tmp_path / "item"
    kw = {"policy_options": MODIFIED, "pseudonymizer": PS, "subject": SUBJECT}
    report = deidentify_ome(src, out, **kw)
    assert report.output == f"{PS.subject_id(SUBJECT)}.ome.tif"
    assert (out / report.output).is_file()
    with pytest.raises(OutputExistsError):
        deidentify_ome(src, out, **kw)
    deidentify_ome(src, out, force=True, **kw)


def make_ome_zarr(store: Path) -> np.ndarray:
    """A bioformats2raw-layout OME-Zarr (v2) with PHI in names and METADATA.ome.xml."""
    data = np.arange(2 * 12 * 16, dtype=np.uint16).reshape(2, 1, 12, 16)
    arr = zarr.create_array(
        store=str(store / "0" / "0"),
        shape=data.shape,
        chunks=(1, 1, 12, 16),
        dtype="uint16",
        zarr_format=2,
    )
    arr[:] = data
    (store / ".zgroup").write_text('{"zarr_format": 2}')
    (store / ".zattrs").write_text(json.dumps({"bioformats2raw.layout": 3}))
    (store / "0" / ".zgroup").write_text('{"zarr_format": 2}')
    attrs = {
        "multiscales": [
            {
                "version": "0.4",
                "name": "DOE_JOHN_slide7",
                "axes": [
                    {"name": "c", "type": "channel"},
                    {"name": "z", "type": "space", "unit": "micrometer"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0, 1.0, 0.325, 0.325]}
                        ],
                    }
                ],
            }
        ],
        "omero": {
            "name": "DOE_JOHN_slide7",
            "channels": [
                {
                    "label": "DAPI",
                    "color": "0000FF",
                    "window": {"start": 0, "end": 400, "min": 0, "max": 65535},
                },
                {
                    "label": "GFP",
                    "color": "00FF00",
                    "window": {"start": 0, "end": 400, "min": 0, "max": 65535},
                },
            ],
        },
    }
    (store / "0" / ".zattrs").write_text(json.dumps(attrs))
    (store / "OME").mkdir()
    (store / "OME" / ".zgroup").write_text('{"zarr_format": 2}')
    (store / "OME" / ".zattrs").write_text(json.dumps({"series": ["0"]}))
    (store / "OME" / "METADATA.ome.xml").write_text(ome_xml(), encoding="utf-8")
    return data


def test_deidentify_ome_zarr(tmp_path: Path) -> None:
    src = tmp_path / "inbox" / "doe_john.ome.zarr"
    data = make_ome_zarr(src)
    out = tmp_path / "out" / "SUBJ-X.ome.zarr"
    report = deidentify_ome(src, out, policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT)
    assert np.array_equal(zarr.open_array(str(out / "0" / "0"), mode="r")[:], data)
    attrs = json.loads((out / "0" / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["name"] == "image_0" and attrs["omero"]["name"] == "image_0"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 0.325, 0.325]
    assert [c["label"] for c in attrs["omero"]["channels"]] == ["DAPI", "GFP"]
    xml = (out / "OME" / "METADATA.ome.xml").read_text()
    root = parse_xml(xml)
    assert find(root, "Experimenter")[0].attrib == {"ID": "Experimenter:0"}
    assert find(root, "Pixels")[0].get("PhysicalSizeX") == "0.325"
    assert report.zarr_names_replaced == 2 and report.xml_documents == 1
    # chunks byte-identical
    for chunk in ("0.0.0.0", "1.0.0.0"):
        assert (src / "0" / "0" / chunk).read_bytes() == (out / "0" / "0" / chunk).read_bytes()
    leak = leakcheck([src.parent], [out.parent], extra=[SUBJECT])
    assert leak.status == "clean", leak.hits
    assert leakcheck([src.parent], [src.parent]).status == "leak"


def test_deidentify_ome_zarr_validates_with_ome_zarr_models(tmp_path: Path) -> None:
    models = pytest.importorskip("ome_zarr_models.v04")
    src = tmp_path / "in.ome.zarr"
    make_ome_zarr(src)
    out = tmp_path / "out.ome.zarr"
    deidentify_ome(src, out, policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT)
    group = zarr.open_group(str(out / "0"), mode="r")
    models.Image.from_zarr(group)


def test_deidentify_ome_rejects_other_inputs(tmp_path: Path) -> None:
    other = tmp_path / "x.czi"
    other.write_bytes(b"ZISRAWFILE")
    with pytest.raises(InputError):
        deidentify_ome(
            other, tmp_path / "o", policy_options=MODIFIED, pseudonymizer=PS, subject=SUBJECT
        )
    multi = tmp_path / "m.ome.tif"
    tifffile.imwrite(
        multi,
        np.zeros((2, 12, 16), np.uint16),
        description=ome_xml("a.ome.tif")
        .replace('FileName="a.ome.tif"', 'FileName="b.ome.tif"', 1)
        .encode(),
        metadata=None,
    )
    with pytest.raises(InputError):
        deidentify_ome(
            multi,
            tmp_path / "o.ome.tif",
            policy_options=MODIFIED,
            pseudonymizer=PS,
            subject=SUBJECT,
        )
    assert not (tmp_path / "o.ome.tif").exists()
