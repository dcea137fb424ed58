"""Job resources that scale with the input, for cluster executors (SLURM, Kubernetes).

The workflow's rules call these through small ``get_*`` input functions; ``--set-resources`` on the
command line or in a profile still overrides them (``--set-resources convert_item:mem_mb=16000``).
"""

from __future__ import annotations

from typing import Any

#: Memory of the Python process itself (MiB).
BASE_MEM_MB = 768
#: Extra JVM overhead beyond its heap (metaspace, native buffers), MiB.
JVM_OVERHEAD_MB = 768


def _heap_mb(java_heap: str) -> int:
    value = int(java_heap[:-1])
    return value * 1024 if java_heap[-1] in "gG" else value


def _total_bytes(item: dict[str, Any]) -> int:
    return sum(int(f.get("size", 0)) for f in item.get("files", []))


def convert_mem_mb(item: dict[str, Any], *, java_heap: str = "2g", attempt: int = 1) -> int:
    """Memory for converting one item (MiB), doubled on each retry.

    Microscopy conversion streams by row bands (memory flat in image size), but a Bio-Formats read
    holds the JVM heap; DICOM → NIfTI with dcm2niix holds about three copies of the volume.
    """
    size_mb = _total_bytes(item) // (1 << 20)
    if item.get("kind") == "microscopy":
        mem = BASE_MEM_MB + 512
        if item.get("format") not in ("ome-tiff", "tiff"):
            mem += _heap_mb(java_heap) + JVM_OVERHEAD_MB
    elif item.get("kind") == "dicom":
        mem = BASE_MEM_MB + 3 * size_mb
    else:
        mem = BASE_MEM_MB + 2 * size_mb
    return int(mem * 2 ** (attempt - 1))


def runtime_min(item: dict[str, Any], *, attempt: int = 1) -> int:
    """Wall-time limit of one item's step (minutes): 10 min plus 1 min per 200 files or 2 GiB."""
    files = len(item.get("files", []))
    gib = _total_bytes(item) / (1 << 30)
    return int((10 + files // 200 + int(gib / 2)) * attempt)
