"""``imagedepot convert``: DICOM series to NIfTI; microscopy images to OME-Zarr or OME-TIFF.

SRC may be the input itself or an item JSON written by ``imagedepot scan``
(``results/ingest/items/<item>.json``): its ``files[].path`` are used as recorded there (relative
paths are taken from the current folder, where the workflow runs). ``nifti`` converts all the
item's files (one series); ``ome-zarr`` and ``ome-tiff`` open the first (the reader finds the other
files of a multi-file image).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagedepot.cli._common import add_stage_root
from imagedepot.errors import InputError
from imagedepot.io import write_json

if TYPE_CHECKING:
    from imagedepot.convert import ConvertReport
    from imagedepot.pipeline import ConvertOptions

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``convert`` verb and its ``nifti``, ``ome-zarr`` and ``ome-tiff`` subcommands."""
    p = sub.add_parser(
        "convert",
        help="convert an item to an open format (NIfTI, OME-Zarr, OME-TIFF)",
        description="Convert one item: a DICOM series to NIfTI + BIDS sidecar (dcm2niix), or a "
        "microscopy image to OME-Zarr or pyramidal OME-TIFF (tifffile or Bio-Formats reader). "
        "Outputs appear only when complete.",
    )
    kinds = p.add_subparsers(dest="kind", metavar="FORMAT")
    kinds.required = True

    n = kinds.add_parser(
        "nifti",
        help="DICOM series to NIfTI with dcm2niix",
        description="Convert one DICOM series (a folder of its files, or an item JSON) to NIfTI "
        "with a BIDS sidecar. The sidecar keeps every field dcm2niix reads (-ba n): run the NIfTI "
        "de-identifier before the output leaves the trusted zone.",
    )
    n.add_argument("src", metavar="SRC", help="series folder (all files under it) or item JSON")
    n.add_argument("out_dir", metavar="OUT_DIR", help="output folder to create")
    n.add_argument(
        "--name",
        type=_name,
        help="output base name: letters, digits, _ . - (default: the item id of an item JSON, "
        "else 'series')",
    )
    n.add_argument("--no-compress", action="store_true", help="write .nii instead of .nii.gz")
    _common(n)
    n.set_defaults(func=run)

    z = kinds.add_parser(
        "ome-zarr",
        help="microscopy image to OME-Zarr",
        description="Convert every series of a microscopy image to one OME-Zarr in the "
        "bioformats2raw layout (0/, 1/, ... and OME/METADATA.ome.xml), axes t,c,z,y,x, streamed "
        "band by band with a pyramid, optional Zarr v3 sharding (NGFF 0.5) and label images.",
    )
    z.add_argument("src", metavar="SRC", help="image file, Bio-Formats .fake name, or item JSON")
    z.add_argument("out", metavar="OUT.ome.zarr", help="OME-Zarr folder to create")
    z.add_argument(
        "--ngff-version",
        choices=("0.4", "0.5"),
        default="0.4",
        help="0.4 (Zarr v2, default) or 0.5 (Zarr v3)",
    )
    _zarr_layout(z)
    z.add_argument(
        "--labels",
        type=_label,
        action="append",
        metavar="[NAME=]MASK",
        help="label image (integer mask of the first series' shape, c=1) written into "
        "0/labels/NAME/; NAME defaults to the file name without its suffixes; repeatable",
    )
    _microscopy(z)
    z.set_defaults(func=run)

    t = kinds.add_parser(
        "ome-tiff",
        help="microscopy image to pyramidal OME-TIFF",
        description="Convert every series of a microscopy image to one tiled BigTIFF OME-TIFF with "
        "reduced levels in SubIFDs, streamed plane by plane.",
    )
    t.add_argument("src", metavar="SRC", help="image file, Bio-Formats .fake name, or item JSON")
    t.add_argument("out", metavar="OUT.ome.tif", help="OME-TIFF file to create")
    _tiff_layout(t, default=True)
    _microscopy(t)
    t.set_defaults(func=run)

    i = kinds.add_parser(
        "item",
        help="one item of the manifest, as the workflow runs it (with provenance)",
        description="Convert one item JSON of the manifest into OUT_DIR with its provenance.json: "
        "a DICOM series to NIfTI, a microscopy image to OME-Zarr (and OME-TIFF with --ome-tiff), a "
        "NIfTI file checked and copied. Bad input quarantines the item (recorded in "
        "provenance.json, exit 0); other errors fail.",
    )
    i.add_argument("src", metavar="ITEM.json", help="item JSON (results/ingest/items/<item>.json)")
    i.add_argument("out_dir", metavar="OUT_DIR", help="per-item output folder to create")
    add_item_options(i, irregular_slices=False)
    _common(i)
    i.set_defaults(func=run_item)

    b = kinds.add_parser(
        "bids",
        help="lay the de-identified NIfTI out as a BIDS-like tree (sub-<pseudonym>/ses-<n>/...)",
        description=(
            "Name every clean item's de-identified NIfTI and sidecar by the configurable mapping "
            "from SeriesDescription/ProtocolName/Modality to BIDS datatype and suffix (read from the "
            "conversion sidecars), and copy them into OUT_DIR with dataset_description.json and "
            ".bidsignore. Unknown series go to the `unknown` datatype, never lost."
        ),
    )
    b.add_argument("manifest", metavar="MANIFEST", help="manifest from `imagedepot scan`")
    b.add_argument(
        "out_dir",
        metavar="OUT_DIR",
        help="tree to create (replaced atomically), or its .tree.json marker",
    )
    for stage in ("convert", "deid", "leak"):
        add_stage_root(b, stage)
    b.add_argument("--rules", help="BIDS mapping rules YAML (default: the package's)")
    b.set_defaults(func=run_bids)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--report", metavar="R.json", help="write the conversion report (JSON) here")


def _zarr_layout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chunks",
        type=_chunks,
        metavar="Y,X|T,C,Z,Y,X",
        help="OME-Zarr chunk shape (default 1,1,1,1024,1024, clipped to each level)",
    )
    p.add_argument(
        "--shard",
        type=_chunks,
        metavar="Y,X|T,C,Z,Y,X",
        help="NGFF 0.5 only: group chunks into shards of this shape (multiples of the chunk "
        "shape; Y,X keeps the chunk's T,C,Z); default: no sharding",
    )


def _tiff_layout(p: argparse.ArgumentParser, *, default: bool) -> None:
    p.add_argument(
        "--tile",
        type=_tile,
        default=512 if default else None,
        help="OME-TIFF tile edge in pixels, a multiple of 16 (default 512)",
    )
    p.add_argument(
        "--compression",
        choices=("zlib", "zstd", "lzw", "none"),
        default="zlib" if default else None,
        help="OME-TIFF tile compression (default zlib)",
    )


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_positive,
        metavar="N",
        help="threads per image for reading ahead and compressing (default: the CPUs this "
        "process may use)",
    )


#: Layout flags (argparse ``dest``) -> ``imagedepot.pipeline.ConvertOptions`` fields.
LAYOUT_FIELDS = {
    "chunks": "chunks",
    "shard": "shard",
    "tile": "tiff_tile",
    "compression": "tiff_compression",
    "threads": "threads",
}


def add_layout_options(p: argparse.ArgumentParser) -> None:
    """Add ``--chunks``, ``--shard``, ``--tile``, ``--compression`` and ``--threads``.

    For commands that fill ``ConvertOptions`` (``convert item``, ``batch convert``): each defaults
    to None, meaning the converters' default; :func:`layout_options` reads them back.
    """
    _zarr_layout(p)
    _tiff_layout(p, default=False)
    _threads(p)


def layout_options(args: argparse.Namespace) -> dict[str, Any]:
    """The layout flags given on the command line, by ``ConvertOptions`` field name."""
    values = {field: getattr(args, dest, None) for dest, field in LAYOUT_FIELDS.items()}
    return {field: value for field, value in values.items() if value is not None}


def add_item_options(p: argparse.ArgumentParser, *, irregular_slices: bool = True) -> None:
    """The flags that fill ``imagedepot.pipeline.ConvertOptions`` (``convert item``,
    ``batch convert``); :func:`convert_options` reads them back."""
    p.add_argument("--ngff-version", choices=("0.4", "0.5"), default="0.4", help="OME-Zarr version")
    p.add_argument("--ome-tiff", action="store_true", help="also write a pyramidal OME-TIFF")
    p.add_argument("--no-compress", action="store_true", help="write .nii instead of .nii.gz")
    if irregular_slices:
        p.add_argument(
            "--irregular-slices",
            choices=("quarantine", "resample"),
            default="quarantine",
            help="missing/uneven slices or gantry tilt: quarantine the series or keep the "
            "resampled volume",
        )
    add_layout_options(p)
    _reader_options(p)


def convert_options(args: argparse.Namespace) -> ConvertOptions:
    """The ``ConvertOptions`` of flags added by :func:`add_item_options`."""
    from imagedepot.pipeline import ConvertOptions

    values: dict[str, Any] = {
        "nifti_compress": not args.no_compress,
        "ngff_version": args.ngff_version,
        "pyramid_levels": args.levels,
        "reader": args.reader,
        "java_heap": args.java_heap,
        "ome_tiff": args.ome_tiff,
        **layout_options(args),
    }
    if getattr(args, "irregular_slices", None) is not None:
        values["nifti_irregular_slices"] = args.irregular_slices
    return ConvertOptions(**values)


def _microscopy(p: argparse.ArgumentParser) -> None:
    _threads(p)
    _reader_options(p)
    _common(p)


def _reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--levels",
        type=_positive,
        default=3,
        metavar="N",
        help="resolution levels including full resolution (default 3)",
    )
    p.add_argument(
        "--reader",
        choices=("auto", "tifffile", "bioformats"),
        default="auto",
        help="auto: tifffile for .tif/.tiff, Bio-Formats otherwise",
    )
    p.add_argument(
        "--java-heap",
        type=_heap,
        default="2g",
        metavar="SIZE",
        help="maximum Java heap when Bio-Formats starts its JVM, e.g. 512m, 4g (default 2g)",
    )


def _name(text: str) -> str:
    from imagedepot.convert.nifti import NAME_PATTERN

    if not NAME_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use letters, digits, '_', '.' and '-' only")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive integer")
    return value


def _tile(text: str) -> int:
    value = _positive(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"{text!r}: the tile edge must be a multiple of 16")
    return value


def _heap(text: str) -> str:
    from imagedepot.convert.bioformats import HEAP_PATTERN

    if not HEAP_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: give a size such as 512m or 2g")
    return text


def _chunks(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers, e.g. 1024,1024") from None
    if len(values) not in (2, 5) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give Y,X or T,C,Z,Y,X positive sizes")
    return values


def _label(text: str) -> tuple[str, Path]:
    from imagedepot.convert.microscopy import LABEL_NAME, label_name

    name, sep, path = text.partition("=")
    if not sep:
        name, path = label_name(text), text
    if not path or not LABEL_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give MASK or NAME=MASK, NAME of letters, digits, '_', '.' and '-'"
        )
    return name, Path(path)


def _labels(pairs: list[tuple[str, Path]] | None) -> dict[str, Path] | None:
    if not pairs:
        return None
    labels: dict[str, Path] = {}
    for name, path in pairs:
        if name in labels:
            raise InputError(path, f"label name {name!r} given twice: use NAME=MASK")
        labels[name] = path
    return labels


def _item(path: Path) -> dict[str, Any]:
    from imagedepot.io import read_json

    try:
        item = read_json(path)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable item JSON: {exc}") from exc
    files = item.get("files") if isinstance(item, dict) else None
    if (
        not isinstance(files, list)
        or not files
        or not all(isinstance(f, dict) and "path" in f for f in files)
    ):
        raise InputError(path, 'item JSON needs "files": [{"path": ...}, ...]')
    return item


def _is_item(src: Path) -> bool:
    return src.suffix.lower() == ".json" and src.is_file()


def _primary_files(item: dict[str, Any]) -> list[Path]:
    """The item's own files (not its sidecars or other files with a ``role``), as recorded."""
    files = [Path(f["path"]) for f in item["files"] if f.get("role") is None]
    return files or [Path(f["path"]) for f in item["files"]]


def run_item(args: argparse.Namespace) -> int:
    """Convert one manifest item with :func:`imagedepot.pipeline.convert_item`."""
    from imagedepot.pipeline import convert_item

    prov = convert_item(args.src, args.out_dir, convert_options(args), force=args.force)
    if args.report:
        write_json(args.report, prov.to_dict())
    if prov.status != "processed":
        log.warning("item %s quarantined: %s", prov.item, prov.reason)
    else:
        log.info("item %s converted into %s", prov.item, args.out_dir)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one conversion and write the report if asked."""
    from imagedepot.io import iter_files

    src = Path(args.src)
    if args.kind == "nifti":
        from imagedepot.convert.nifti import convert_dicom_series

        name = args.name
        if _is_item(src):
            item = _item(src)
            files = _primary_files(item)
            if name is None and isinstance(item.get("id"), str):
                name = item["id"]
        elif src.is_dir():
            files = list(iter_files(src))
            if not files:
                raise InputError(src, "folder has no files")
        elif src.is_file():
            files = [src]
        else:
            raise InputError(src, "no such file or folder")
        report = convert_dicom_series(
            files,
            Path(args.out_dir),
            compress=not args.no_compress,
            force=args.force,
            name=name or "series",
        )
    else:
        report = _run_microscopy(args, src)
    if args.report:
        write_json(args.report, report.to_dict())
    log.info("converted %s -> %s", args.src, ", ".join(report.outputs))
    return 0


def _run_microscopy(args: argparse.Namespace, src: Path) -> ConvertReport:
    from imagedepot.convert.microscopy import convert_to_ome_tiff, convert_to_ome_zarr
    from imagedepot.errors import ConfigError

    if _is_item(src):
        src = _primary_files(_item(src))[0]
    try:
        if args.kind == "ome-zarr":
            return convert_to_ome_zarr(
                src,
                Path(args.out),
                ngff_version=args.ngff_version,
                chunks=args.chunks,
                shard=args.shard,
                pyramid_levels=args.levels,
                labels=_labels(args.labels),
                force=args.force,
                reader=args.reader,
                java_heap=args.java_heap,
                threads=args.threads,
            )
        return convert_to_ome_tiff(
            src,
            Path(args.out),
            tile=args.tile,
            compression=args.compression,
            pyramid_levels=args.levels,
            force=args.force,
            reader=args.reader,
            java_heap=args.java_heap,
            threads=args.threads,
        )
    except ValueError as exc:  # options that do not go together (e.g. --shard with NGFF 0.4)
        raise ConfigError(str(exc)) from exc


def run_bids(args: argparse.Namespace) -> int:
    """Write the BIDS-like tree with :func:`imagedepot.convert.bids.write_bids_tree`."""
    from imagedepot.convert.bids import load_rules, write_bids_tree
    from imagedepot.io import read_json
    from imagedepot.storage import finish_output, input_root, output_folder

    summary = write_bids_tree(
        read_json(args.manifest),
        convert_root=input_root(args.convert_root),
        deid_root=input_root(args.deid_root),
        leak_root=input_root(args.leak_root),
        out=output_folder(args.out_dir),
        rules=load_rules(args.rules),
    )
    finish_output(args.out_dir)
    print(
        f"bids: {summary['images']} image(s) of {summary['subjects']} subject(s) -> {args.out_dir}"
    )
    return 0
