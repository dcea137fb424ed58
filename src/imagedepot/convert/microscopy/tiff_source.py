"""The tifffile reader (:class:`TiffSource`): plain TIFF, ImageJ hyperstacks and (multi-file)
OME-TIFF, a band of rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.convert import AXES, SeriesInfo
from imagedepot.convert.axes import (
    ModuloPlan,
    XmlRemap,
    expand_channels,
    parse_xml_moduli,
    plan_moduli,
    remap_for_moduli,
    remap_ome_xml,
)
from imagedepot.convert.microscopy.ome_xml import _parse_xml, ome_xml_from_series, parse_ome_xml
from imagedepot.convert.microscopy.units import LENGTH_TO_UM, length_um, time_s
from imagedepot.errors import InputError, ReaderError

#: Where tifffile's axis codes go in t, c, z, y, x: samples, spectral and lifetime axes become
#: channels; image sequences and other axes are stacked along z (as Bio-Formats does for plain
#: TIFF).
TIFF_AXIS_TARGET = {"T": "t", "C": "c", "S": "c", "E": "c", "H": "c", "Z": "z", "Y": "y", "X": "x"}


@dataclass
class _TiffSeries:
    array: Any  # zarr array over the TIFF series (tifffile's store, level 0, unsqueezed)
    axes: str
    groups: dict[str, list[int]]  # target axis -> positions of source axes, outer first
    sizes: dict[str, list[int]]  # target axis -> sizes of those source axes


def _looks_like_ome(tif: Any) -> bool:
    """Whether the first page's ImageDescription starts like an OME-XML document."""
    try:
        desc = tif.pages.first.description if len(tif.pages) else ""
    except Exception:  # an unreadable first page is reported elsewhere
        return False
    head = str(desc or "").lstrip()[:2048]
    return head.startswith("<") and ("<OME" in head or "openmicroscopy.org/Schemas/OME" in head)


class TiffSource:
    """Reads TIFF, ImageJ TIFF and (multi-file) OME-TIFF with tifffile, a band of rows at a time."""

    reader = "tifffile"

    def __init__(self, path: str | Path) -> None:
        import tifffile

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "no such file")
        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error...
            raise ReaderError(self.path, f"tifffile cannot read it: {exc}") from exc
        self._series: list[_TiffSeries] = []
        self.series: list[SeriesInfo] = []
        self.notes: list[str] = []
        self.fallback: dict[str, str] | None = None
        self._xml_remaps: dict[int, XmlRemap] = {}
        try:
            self._scan()
            if not self.series:
                raise ReaderError(self.path, "no image in this TIFF")
            self._probe()
        except InputError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise ReaderError(self.path, f"tifffile cannot read it: {exc}") from exc

    def _probe(self) -> None:
        """Decode one pixel of each series' first plane (once per distinct encoding).

        A compression tifffile cannot decode (no codec installed, an unsupported variant) is then
        found before anything is written, so ``reader="auto"`` can hand the file to Bio-Formats.
        """
        seen: set[tuple[Any, ...]] = set()
        for s, entry in enumerate(self._series):
            page = self._tif.series[s].keyframe
            key = (
                page.compression,
                page.predictor,
                page.photometric,
                page.bitspersample,
                page.sampleformat,
                page.is_tiled,
            )
            if key in seen:
                continue
            seen.add(key)
            index = tuple(slice(0, 1) for _ in entry.axes)
            try:
                np.asarray(entry.array[index])
            except Exception as exc:  # codec errors come as ValueError, RuntimeError, codec types
                raise ReaderError(
                    self.path,
                    f"tifffile cannot decode series {s} "
                    f"({getattr(page.compression, 'name', page.compression)}): {exc}",
                ) from exc

    def _scan(self) -> None:
        import zarr

        tif = self._tif
        ome = parse_ome_xml(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else []
        moduli = parse_xml_moduli(_parse_xml(str(tif.ome_metadata))) if ome else []
        if not (tif.is_ome and tif.ome_metadata) and _looks_like_ome(tif):
            # tifffile only accepts OME-XML that ends in "OME>": a truncated or damaged one is
            # ignored, and channel names, physical sizes... would vanish without a word.
            self.notes.append(
                "the OME-XML in the first page's ImageDescription is unreadable (damaged or "
                "truncated); the metadata was rebuilt from the TIFF structure (channel names, "
                "physical sizes and other OME metadata are lost)"
            )
        for index, s in enumerate(tif.series):
            axes = s.get_axes(False)
            shape = tuple(int(n) for n in s.get_shape(False))
            dtype = np.dtype(s.dtype)
            if dtype.kind not in "biuf" or dtype.itemsize > 8:
                raise ReaderError(self.path, f"series {index}: pixel type {dtype} is not supported")
            missing = sum(1 for page in s.pages if page is None)
            if missing:
                # tifffile would read them as zeros: refuse rather than invent pixels.
                raise InputError(
                    self.path,
                    f"series {index}: {missing} plane(s) described in the metadata are missing "
                    "(a file of the set absent or truncated?)",
                )
            array = zarr.open_array(s.aszarr(level=0, squeeze=False), mode="r")
            if tuple(array.shape) != shape:
                raise ReaderError(
                    self.path, f"series {index}: tifffile store shape {array.shape} != {shape}"
                )
            groups: dict[str, list[int]] = {k: [] for k in AXES}
            for i, code in enumerate(axes):
                groups[TIFF_AXIS_TARGET.get(code, "z")].append(i)
            plan = None
            if index < len(moduli) and index < len(ome) and moduli[index]:
                size = ome[index]["size"]
                plan = plan_moduli(moduli[index], (size["z"], size["c"], size["t"]))
            if plan is not None and (plan.moved or plan.kept):
                groups = self._modulo_groups(index, axes, groups, plan)
            if len(groups["y"]) != 1 or len(groups["x"]) != 1:
                raise ReaderError(self.path, f"series {index}: axes {axes} have no single Y and X")
            sizes = {k: [shape[i] for i in v] for k, v in groups.items()}
            full = tuple(int(np.prod(sizes[k], dtype=np.int64)) for k in AXES)
            keyframe = s.keyframe
            if keyframe.is_tiled:
                row_block = int(keyframe.tilelength)
            else:
                row_block = int(keyframe.rowsperstrip or full[3])
            info = SeriesInfo(
                index=index,
                name=s.name or None,
                shape=(full[0], full[1], full[2], full[3], full[4]),
                dtype=("uint8" if dtype.kind == "b" else dtype.newbyteorder("=").name),
                physical_size={"x": None, "y": None, "z": None, "t": None},
                channel_names=[None] * full[1],
                channel_colors=[None] * full[1],
                row_block=max(1, min(row_block, full[3])),
            )
            self._fill_metadata(info, ome[index] if index < len(ome) else None, keyframe)
            if plan is not None and plan.notes:
                self.notes.extend(f"series {index}: {note}" for note in plan.notes)
            if plan is not None and (plan.moved or plan.kept):
                self._apply_modulo_plan(info, plan, ome[index])
            self._series.append(_TiffSeries(array, axes, groups, sizes))
            self.series.append(info)

    def _modulo_groups(
        self, index: int, axes: str, groups: dict[str, list[int]], plan: ModuloPlan
    ) -> dict[str, list[int]]:
        """Axis groups of an OME series with moduli: every modulo axis (tifffile's codes after
        their parent, or in its place) goes to ``c``, inner to the channels, Z's before T's."""
        parents: dict[int, str] = {}
        absent = [
            m.along
            for m in (*plan.moved, *([plan.kept] if plan.kept else []))
            if m.along not in axes
        ]
        for i, code in enumerate(axes):
            if code in "TZCYXS":
                continue
            if i > 0 and axes[i - 1] in "TZC":
                parents[i] = axes[i - 1]
            elif absent:
                parents[i] = absent.pop(0)
            else:
                raise ReaderError(
                    self.path,
                    f"series {index}: cannot tell which axis modulo {code!r} of {axes} divides",
                )
        rank = {"C": 1, "Z": 2, "T": 3}
        out = {k: [i for i in v if i not in parents] for k, v in groups.items()}
        out["c"] = sorted(
            [*out["c"], *parents],
            key=lambda i: 0 if axes[i] == "C" else 4 if axes[i] == "S" else rank[parents[i]],
        )
        return out

    def _apply_modulo_plan(self, info: SeriesInfo, plan: ModuloPlan, ome: dict[str, Any]) -> None:
        """Channel names and wavelengths, the OME-XML rewrite and notes for moduli."""
        t, c, z = plan.shape
        if info.shape[:3] != (t, c, z):
            raise ReaderError(
                self.path,
                f"series {info.index}: tifffile's axes give {info.shape[:3]} (t, c, z), the "
                f"OME-XML's moduli {(t, c, z)}",
            )
        channels = ome["channels"]
        names = [ch["name"] for ch in channels] if len(channels) == plan.sizes[1] else []
        colors = [ch["color"] for ch in channels] if len(channels) == plan.sizes[1] else []
        info.channel_names, info.channel_colors, _ = expand_channels(plan, names, colors)
        self._xml_remaps[info.index] = remap_for_moduli(plan, info.index, names)
        info.layout = plan.describe()
        for m in plan.moved:
            self.notes.append(
                f"series {info.index}: {m.size} {m.type} positions that the OME-XML folds into "
                f"{m.along} are written as channels (inner to the source channels), not as "
                f"{'depth' if m.along == 'Z' else 'time'}"
            )

    def _fill_metadata(self, info: SeriesInfo, ome: dict[str, Any] | None, keyframe: Any) -> None:
        _, c, _, y, x = info.shape
        if ome is not None and ome["size"]["x"] == x and ome["size"]["y"] == y:
            info.name = ome["name"] or info.name
            info.physical_size = dict(ome["physical_size"])
            channels = ome["channels"]
            if len(channels) == c:
                info.channel_names = [ch["name"] for ch in channels]
                info.channel_colors = [ch["color"] for ch in channels]
            return
        tif = self._tif
        if tif.is_imagej and tif.imagej_metadata:
            ij = tif.imagej_metadata
            unit = str(ij.get("unit", "")).replace("\\u00B5", "µ")
            unit = {"micron": "µm", "microns": "µm", "um": "µm"}.get(unit, unit)
            if unit in LENGTH_TO_UM:
                try:
                    rx, ry = keyframe.get_resolution()
                except (TypeError, ValueError, ZeroDivisionError):
                    rx = ry = 0.0
                info.physical_size["x"] = length_um(1.0 / rx, unit) if rx else None
                info.physical_size["y"] = length_um(1.0 / ry, unit) if ry else None
                if ij.get("spacing") is not None:
                    info.physical_size["z"] = length_um(ij["spacing"], unit)
            if ij.get("finterval") is not None:
                info.physical_size["t"] = time_s(ij["finterval"], "s")
            return
        unit = {"INCH": "in", "CENTIMETER": "cm", "MILLIMETER": "mm", "MICROMETER": "µm"}.get(
            getattr(keyframe.resolutionunit, "name", ""), ""
        )
        if unit:
            try:
                rx, ry = keyframe.get_resolution()
            except (TypeError, ValueError, ZeroDivisionError):
                return
            info.physical_size["x"] = length_um(1.0 / rx, unit) if rx else None
            info.physical_size["y"] = length_um(1.0 / ry, unit) if ry else None

    def read_rows(self, series: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of plane ``(t, c, z)`` of ``series`` as ``(rows, x)``."""
        entry = self._series[series]
        index: list[Any] = [0] * len(entry.axes)
        for target, value in (("t", t), ("c", c), ("z", z)):
            positions = entry.groups[target]
            if positions:
                for pos, i in zip(
                    positions, np.unravel_index(value, entry.sizes[target]), strict=True
                ):
                    index[pos] = int(i)
        index[entry.groups["y"][0]] = slice(y0, y1)
        index[entry.groups["x"][0]] = slice(None)
        try:
            rows = np.asarray(entry.array[tuple(index)])
        except Exception as exc:
            raise ReaderError(self.path, f"tifffile cannot decode series {series}: {exc}") from exc
        if rows.dtype.kind == "b":
            rows = rows.astype(np.uint8)
        if not rows.dtype.isnative:
            rows = rows.astype(rows.dtype.newbyteorder("="))
        if entry.groups["y"][0] > entry.groups["x"][0]:
            rows = rows.T
        return rows

    def ome_xml(self) -> str:
        """The file's OME-XML, or one made from what tifffile found."""
        tif = self._tif
        if tif.is_ome and tif.ome_metadata:
            return remap_ome_xml(str(tif.ome_metadata), self._xml_remaps)
        return ome_xml_from_series(self.series)

    def used_files(self) -> list[str]:
        """The TIFF files holding the pixels (several for a multi-file OME-TIFF)."""
        files = {str(self.path.resolve())}
        for s in self._tif.series:
            for page in s.pages:
                if page is not None:
                    files.add(str(Path(page.parent.filehandle.path).resolve()))
        return sorted(files)

    def versions(self) -> dict[str, str]:
        """tifffile's version."""
        import tifffile

        return {"tifffile": str(tifffile.__version__)}

    def close(self) -> None:
        """Close the TIFF file(s)."""
        self._tif.close()
