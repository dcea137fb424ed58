"""Workflow configuration: load and validate against the schema shipped in the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from imagedepot.errors import ConfigError


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
    """Validate a config mapping and fill schema defaults; raise :class:`ConfigError` listing every problem."""
    schema = load_schema("config")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {_where(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read configuration: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: configuration must be a mapping")
    return validate_config(data, str(p))
