from __future__ import annotations

from imagedepot.resources import convert_mem_mb, runtime_min


def item(kind: str, fmt: str, sizes: list[int]) -> dict:
    return {"kind": kind, "format": fmt, "files": [{"size": s} for s in sizes]}


def test_memory_scales_with_input_and_attempt() -> None:
    small = convert_mem_mb(item("dicom", "dicom", [500_000] * 20))
    big = convert_mem_mb(item("dicom", "dicom", [500_000] * 2000))
    assert big > small
    assert convert_mem_mb(item("dicom", "dicom", [1] * 20), attempt=2) == 2 * convert_mem_mb(
        item("dicom", "dicom", [1] * 20)
    )


def test_bioformats_gets_heap_plus_overhead() -> None:
    bf = convert_mem_mb(item("microscopy", "bioformats", [0]), java_heap="4g")
    tif = convert_mem_mb(item("microscopy", "ome-tiff", [0]), java_heap="4g")
    assert bf - tif == 4096 + 768


def test_runtime_grows_with_file_count() -> None:
    assert runtime_min(item("dicom", "dicom", [1] * 10)) == 10
    assert runtime_min(item("dicom", "dicom", [1] * 10_000)) == 60
