"""Microscopy images to OME-Zarr (NGFF 0.4 or 0.5) and to pyramidal OME-TIFF, streamed.

Readers (:class:`imagedepot.convert.ImageSource`):

* :class:`TiffSource` (tifffile, pure Python): plain TIFF, ImageJ hyperstacks and OME-TIFF,
  multi-file OME-TIFF filesets included (tifffile assembles the series across files).
* :class:`imagedepot.convert.bioformats.BioFormatsSource` (Bio-Formats through a JVM): every other
  format. ``reader="auto"`` picks tifffile for ``.tif``/``.tiff`` (and ``.ome.tif(f)``), Bio-Formats
  otherwise.

Writers stream: a plane is read as bands of rows (a whole number of the level-0 chunk or tile
rows, of ``2**(levels-1)`` and of the reader's strip or tile height), in a reader thread one band
ahead of the writer; each band is reduced by 2x2 block means for every pyramid level, and every
level is written whole chunk rows (whole shard rows when sharded) at a time, holding back the rows
of a part-filled one until the next band. So only a few bands of one plane are in memory, whatever
the image's height, plane count or series count. Zarr compresses the chunks of each write
concurrently; tifffile compresses tiles in threads. (Converting also asks glibc to keep freed
memory padded, see :func:`tune_allocator`.) Every image is five-dimensional, axes
``t, c, z, y, x``; RGB samples become channels. Physical sizes are in micrometres and seconds.
Dimensions a reader folds into Z, C or T (OME/Bio-Formats moduli: wavelength sweeps, lifetime
bins, phases, rotations) and Leica LIF line scans and wavelength sweeps that Bio-Formats reports
as other axes are written as described in :mod:`imagedepot.convert.axes` (each image's report
says how, under ``layout``).

OME-Zarr layout (bioformats2raw transitional layout of NGFF 0.4 / 0.5)::

    out.ome.zarr/
        .zattrs | zarr.json      {"bioformats2raw.layout": 3}
        OME/METADATA.ome.xml     the source's OME-XML, pixel references replaced by MetadataOnly
        OME/.zattrs | zarr.json  {"series": ["0", "1", ...]}
        0/                       image group: multiscales (levels 0..n-1) and omero metadata
        1/ ...
        0/labels/<name>/         label images given (NGFF image-label), on the first series

Outputs are written under a temporary name beside the target
(``.imagedepot-tmp-<name>.<host>.<pid>.<random>``) and renamed when complete, so an interrupted
conversion never leaves a complete-looking ``.ome.zarr`` or ``.ome.tif``; the next conversion to
the same output removes what a killed one left (:func:`imagedepot.io.remove_stale_temporaries`).

Modules (each writer and reader in one place):

* :mod:`.readers`: which reader opens a file, the fall back from tifffile to Bio-Formats, checks.
* :mod:`.tiff_source`: the tifffile reader (:class:`TiffSource`).
* :mod:`.ome_xml` and :mod:`.units`: OME-XML read and written; its units and colours.
* :mod:`.pyramid`: level shapes, 2x2 reductions, chunk, shard and band sizes.
* :mod:`.streaming`: bands of rows per level, read ahead in a reader thread; threads, progress.
* :mod:`.ngff`: NGFF versions as classes (:class:`NgffV04`, :class:`NgffV05`) and image metadata.
* :mod:`.zarr_image`, :mod:`.labels`, :mod:`.ome_zarr`: the OME-Zarr writer
  (:func:`convert_to_ome_zarr`).
* :mod:`.ome_tiff`: the OME-TIFF writer (:func:`convert_to_ome_tiff`).
* :mod:`.report`: what both writers put in their report.
"""

from __future__ import annotations

from imagedepot.convert import SeriesInfo
from imagedepot.convert.microscopy.labels import LABEL_NAME, label_name
from imagedepot.convert.microscopy.ngff import NGFF_FORMATS, NgffFormat, NgffV04, NgffV05
from imagedepot.convert.microscopy.ome_tiff import convert_to_ome_tiff, ome_tiff_xml
from imagedepot.convert.microscopy.ome_xml import metadata_only_ome_xml, parse_ome_xml
from imagedepot.convert.microscopy.ome_zarr import convert_to_ome_zarr
from imagedepot.convert.microscopy.pyramid import (
    DEFAULT_CHUNK,
    downsample_2x2,
    pyramid_level_count,
    subsample_2x2,
)
from imagedepot.convert.microscopy.readers import (
    READERS,
    binary_only_metadata,
    check_series,
    open_source,
)
from imagedepot.convert.microscopy.streaming import available_cpus
from imagedepot.convert.microscopy.tiff_source import TiffSource

__all__ = [
    "DEFAULT_CHUNK",
    "LABEL_NAME",
    "NGFF_FORMATS",
    "READERS",
    "NgffFormat",
    "NgffV04",
    "NgffV05",
    "SeriesInfo",
    "TiffSource",
    "available_cpus",
    "binary_only_metadata",
    "check_series",
    "convert_to_ome_tiff",
    "convert_to_ome_zarr",
    "downsample_2x2",
    "label_name",
    "metadata_only_ome_xml",
    "ome_tiff_xml",
    "open_source",
    "parse_ome_xml",
    "pyramid_level_count",
    "subsample_2x2",
]
