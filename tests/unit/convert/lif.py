"""Tiny Leica LIF files for tests, written from the published layout (LIF version 2).

A LIF file is a header block holding the UTF-16 XML description of every image, then one memory
block per image with its pixels. Each image's ``DimensionDescription`` lists its dimensions
(``DimID`` 1 X, 2 Y, 3 Z, 4 T, 5 emission wavelength, 9 excitation wavelength, 10 tile...), each
with ``NumberOfElements``, the physical ``Length`` from first to last element and ``BytesInc``,
its stride in the memory block; channels have their own ``BytesInc``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np


@dataclass
class LifDim:
    """One dimension: ``dim_id``, element count, first-to-last length and its unit."""

    dim_id: int
    n: int
    length: float = 0.0
    unit: str = "m"
    origin: float = 0.0


@dataclass
class LifImage:
    """An image: ``data`` in memory order (outermost first: the reverse of ``dims`` with the
    channels placed where ``channel_after`` says, i.e. just outside dimension ``channel_after``)."""

    name: str
    dims: list[LifDim]
    channels: int
    data: np.ndarray
    channel_after: int = 1  # index in ``dims`` the channels follow (1: after the second dim)


def _xml(image: LifImage, block_id: str) -> str:
    itemsize = image.data.dtype.itemsize
    # Strides: dims in order, channels inserted after dims[channel_after].
    strides: list[int] = []
    stride = itemsize
    channel_stride = 0
    for i, dim in enumerate(image.dims):
        strides.append(stride)
        stride *= dim.n
        if i == image.channel_after:
            channel_stride = stride
            stride *= image.channels
    channels = "".join(
        '<ChannelDescription DataType="0" ChannelTag="0" '
        f'Resolution="{8 * itemsize}" NameOfMeasuredQuantity="" Min="0" Max="0" Unit="" '
        f'LUTName="Gray" IsLUTInverted="0" BytesInc="{c * channel_stride}" BitInc="0"/>'
        for c in range(image.channels)
    )
    dims = "".join(
        f'<DimensionDescription DimID="{d.dim_id}" NumberOfElements="{d.n}" '
        f'Origin="{d.origin}" Length="{d.length}" Unit="{d.unit}" BitInc="0" '
        f'BytesInc="{s}"/>'
        for d, s in zip(image.dims, strides, strict=True)
    )
    size = image.data.nbytes
    return (
        f'<Element Name={quoteattr(image.name)} Visibility="1" CopyOption="1" '
        f'UniqueID="00000000-0000-0000-0000-{block_id[-12:].zfill(12)}">'
        f'<Data><Image TextDescription=""><ImageDescription><Channels>{channels}</Channels>'
        f"<Dimensions>{dims}</Dimensions></ImageDescription></Image></Data>"
        f'<Memory Size="{size}" MemoryBlockID="{block_id}"/><Children/></Element>'
    )


def write_lif(path: Path, images: list[LifImage]) -> Path:
    """Write ``images`` as a LIF file (little-endian, version 2 memory blocks)."""
    ids = [f"MemBlock_{i + 1}" for i in range(len(images))]
    children = "".join(_xml(image, block) for image, block in zip(images, ids, strict=True))
    xml = (
        '<LMSDataContainerHeader Version="2"><Element Name="test.lif" Visibility="1" '
        'CopyOption="1" UniqueID="00000000-0000-0000-0000-000000000000"><Data>'
        '<Experiment IsSavedFlag="1"/></Data><Memory Size="0" MemoryBlockID="MemBlock_0"/>'
        f"<Children>{children}</Children></Element></LMSDataContainerHeader>"
    )
    text = xml.encode("utf-16-le")
    out = bytearray()
    out += struct.pack("<IIBI", 0x70, len(text) + 5, 0x2A, len(xml)) + text
    blocks = [("MemBlock_0", b"")] + [
        (block, image.data.astype(image.data.dtype.newbyteorder("<")).tobytes())
        for block, image in zip(ids, images, strict=True)
    ]
    for block, payload in blocks:
        name = block.encode("utf-16-le")
        out += struct.pack("<IIBQBI", 0x70, 0, 0x2A, len(payload), 0x2A, len(block))
        out += name + payload
    path.write_bytes(bytes(out))
    return path
