"""Workflow configuration: read it safely and validate it against the schema shipped in the package.

The schema ships in the package, so that the workflow (``rules/common.smk``) and the CLI enforce
the same rules; :func:`validate_config` also refuses YAML aliases (shared nodes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from imagedepot.errors import ConfigError
from imagedepot.safeload import load_config_file, refuse_shared_nodes


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return a JSON schema shipped in ``imagedepot/schemas`` (``name`` without ``.schema.json``)."""
    text = resources.files("imagedepot.schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_path(name: str) -> Path:
    """Filesystem path of a shipped schema (for ``snakemake.utils.validate``)."""
    return Path(str(resources.files("imagedepot.schemas").joinpath(f"{name}.schema.json")))


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate a config mapping; raise :class:`ConfigError` listing every problem.

    No YAML aliases (shared nodes) first, before the schema check walks the values.
    """
    refuse_shared_nodes(config, source)
    schema = load_schema("config")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {_where(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file (:func:`imagedepot.safeload.load_config_file`: size-capped,
    no aliases) and validate it."""
    p = Path(path)
    return validate_config(load_config_file(p), str(p))


def check_workflow_config(config: dict[str, Any], configfiles: Iterable[str | Path]) -> None:
    """What ``rules/common.smk`` runs first, before Snakemake's own schema validation.

    Snakemake has already read ``configfiles`` with its own YAML loader, which accepts aliases
    (cheaply: they stay shared references until something walks them). Each file is read again
    with :func:`imagedepot.safeload.load_config_file` (size cap, no aliases; the error names the
    file), then the merged ``config`` (``--config`` overrides included) goes through
    :func:`validate_config`.
    """
    for path in configfiles:
        load_config_file(path)
    validate_config(config, "config")
