"""Reading the files people write (config, policies, rule files, sheets) without being fooled by them.

Every YAML file the package reads goes through :func:`load_yaml` (or :func:`parse_yaml` for text
already in hand). It differs from ``yaml.safe_load`` in three ways:

* **No anchors or aliases** (``&name`` / ``*name``). A few hundred bytes of nested aliases (a
  "YAML bomb") stand for billions of values: PyYAML builds them as shared references, cheaply,
  but whatever walks the result (schema validation building an error message, ``json.dumps``)
  expands them and runs out of memory. Configs and policies have no need for them, so they are
  refused, with the line of the first one.
* **No duplicate keys**: PyYAML silently keeps the last one.
* **A size cap** (:data:`MAX_YAML_BYTES`) checked before reading.

Sheets (sample and consent sheets) are not YAML; :func:`check_sheet_size` caps them at
:data:`MAX_SHEET_BYTES` (for XLSX, the uncompressed size of the workbook's parts, so that a small
zip cannot unpack into gigabytes).

XML (OME-XML in microscopy inputs and outputs) goes through :func:`parse_xml`, which refuses a
document type declaration (entity expansion, external entities) before parsing; :func:`local_name`
gives an element's name without its namespace.

Snakemake reads ``configfile:`` itself; :func:`refuse_shared_nodes` checks the mapping it built
(aliases show up there as one object reachable by two paths) before anything walks it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from imagedepot.errors import ConfigError

__all__ = [
    "MAX_SHEET_BYTES",
    "MAX_YAML_BYTES",
    "check_sheet_size",
    "load_config_file",
    "load_yaml",
    "local_name",
    "parse_xml",
    "parse_yaml",
    "read_capped",
    "refuse_shared_nodes",
]

#: Largest YAML file (config, policy, BIDS rules, study metadata) read, in bytes (4 MiB). Real ones
#: are a few kilobytes; the cap bounds memory and parse time whatever the file holds.
MAX_YAML_BYTES = 4 * 1024 * 1024

#: Largest sample or consent sheet read, in bytes (64 MiB; for XLSX, uncompressed).
MAX_SHEET_BYTES = 64 * 1024 * 1024

_ALIAS_HINT = (
    "YAML anchors and aliases (&name / *name, and << merge keys) are not allowed in imagedepot "
    "files; write the values out"
)

try:  # the C parser when PyYAML was built with libyaml: the pre-scan for aliases is then cheap
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """Safe loader that refuses duplicate keys (aliases are refused before it runs)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_capped(
    path: str | Path,
    *,
    what: str = "file",
    error: type[ConfigError] = ConfigError,
    max_bytes: int = MAX_YAML_BYTES,
) -> bytes:
    """The bytes of a file, refused (``error`` naming the file) when larger than ``max_bytes``."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise error(_too_big(p, what, size, max_bytes))
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise error(f"{p}: cannot read {what} ({exc.strerror or exc})") from exc
    if len(raw) > max_bytes:
        raise error(_too_big(p, what, len(raw), max_bytes))
    return raw


def _too_big(path: Path, what: str, size: int, limit: int) -> str:
    return (
        f"{path}: {what} is {size:,} bytes, more than the {limit:,} bytes imagedepot reads "
        f"(imagedepot.safeload); is this the right file?"
    )


def parse_yaml(
    text: str | bytes, source: str, *, what: str = "file", error: type[ConfigError] = ConfigError
) -> Any:
    """Parse YAML text, refusing anchors, aliases and duplicate keys.

    Parameters
    ----------
    text
        The YAML document (one document); bytes must be UTF-8.
    source
        Where the text comes from (a path), for error messages.
    what
        What the file is ("policy", "configuration"...), for error messages.
    error
        The exception raised for any problem (a subclass of :class:`ConfigError`).

    Returns
    -------
    Any
        The parsed value (``None`` for an empty document).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{source}: {what} is not UTF-8 text") from None
    try:
        for event in yaml.parse(text, Loader=_Base):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise error(f"{source}: line {line}: {_ALIAS_HINT}")
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise error(f"{source}: {what} is not valid YAML: {exc}") from None
    except RecursionError:
        raise error(f"{source}: {what} is nested too deeply to be read") from None


def load_yaml(
    path: str | Path,
    *,
    what: str = "file",
    error: type[ConfigError] = ConfigError,
    max_bytes: int = MAX_YAML_BYTES,
) -> Any:
    """Read a YAML file written by a person: size-capped, UTF-8, no aliases, no duplicate keys.

    The single entry point for YAML in the package (see the module docstring).

    Parameters
    ----------
    path
        The file.
    what
        What the file is ("policy", "configuration"...), for error messages.
    error
        The exception raised for any problem; every message starts with the path.
    max_bytes
        Size limit in bytes (default :data:`MAX_YAML_BYTES`).

    Returns
    -------
    Any
        The parsed value (``None`` for an empty file).
    """
    raw = read_capped(path, what=what, error=error, max_bytes=max_bytes)
    return parse_yaml(raw, str(path), what=what, error=error)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a workflow configuration file (JSON or YAML, as Snakemake accepts) with :func:`load_yaml`'s
    rules; raise :class:`ConfigError` naming the file unless it is a mapping."""
    p = Path(path)
    raw = read_capped(p, what="configuration")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: configuration is not UTF-8 text") from None
    try:
        data = json.loads(text)  # Snakemake tries JSON first too; JSON has no aliases
    except ValueError:
        data = parse_yaml(text, str(p), what="configuration")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: configuration must be a mapping of keys to values")
    return data


def check_sheet_size(
    path: str | Path, what: str = "sheet", error: type[ConfigError] = ConfigError
) -> None:
    """Raise ``error`` when a TSV/CSV/XLSX sheet is larger than :data:`MAX_SHEET_BYTES`.

    For XLSX (a zip archive) the uncompressed sizes of its parts count, as declared in the
    archive: openpyxl would otherwise inflate them whatever the file size.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise error(f"{p}: cannot read {what} ({exc.strerror or exc})") from exc
    if size > MAX_SHEET_BYTES:
        raise error(_too_big(p, what, size, MAX_SHEET_BYTES))
    if p.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            with zipfile.ZipFile(p) as zf:
                unpacked = sum(info.file_size for info in zf.infolist())
        except (OSError, zipfile.BadZipFile) as exc:
            raise error(f"{p}: {what} is not a readable XLSX file ({type(exc).__name__})") from None
        if unpacked > MAX_SHEET_BYTES:
            raise error(_too_big(p, f"{what} (uncompressed)", unpacked, MAX_SHEET_BYTES))


def _children(node: Any, where: str) -> Iterator[tuple[Any, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield value, f"{where}.{key}" if where else str(key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield value, f"{where}[{i}]"


def refuse_shared_nodes(data: Any, source: str) -> None:
    """Raise :class:`ConfigError` when one mapping or list is reachable by two paths in ``data``.

    That is what a YAML alias becomes once a loader that allows them (Snakemake's, for
    ``configfile:``) has read the file. The walk visits each object once, so it stays cheap even
    on a YAML bomb, and the message names both paths, never the values.
    """
    seen: dict[int, str] = {}
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, where = stack.pop()
        if not isinstance(node, dict | list):  # what YAML and JSON build (no tuples)
            continue
        first = seen.get(id(node))
        if first is not None:
            raise ConfigError(
                f"{source}: {where or '(top level)'} is the same value as "
                f"{first or '(top level)'}: {_ALIAS_HINT}"
            )
        seen[id(node)] = where
        stack.extend(_children(node, where))


def parse_xml(text: str | bytes) -> ET.Element:
    """Parse XML, refusing documents with a DTD (entity expansion, external entities).

    Raises ``ValueError`` for such documents and for XML that is not well-formed.
    """
    head = text[:65536] if isinstance(text, str) else text[:65536].decode("latin-1")
    if "<!DOCTYPE" in head or "<!ENTITY" in head:
        raise ValueError("XML with a document type declaration is not accepted")
    try:
        return ET.fromstring(text)  # noqa: S314 - no DTD, so no entity attacks
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML ({exc})") from exc


def local_name(tag: str) -> str:
    """An element or attribute name without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]
