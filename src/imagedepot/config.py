"""Workflow configuration: read it safely, refuse what would leak, validate it against the schema.

The schema ships in the package, so that the workflow (``rules/common.smk``) and the CLI enforce
the same rules; :func:`validate_config` adds what a schema cannot say: no YAML aliases, and no
linkage table or key inside ``results/``, whose staging folders leave the trusted zone.
"""

from __future__ import annotations

import json
import os
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


#: The workflow's output folder (relative to the working directory). Everything the workflow
#: stages for deposit lies under it: results/stage/<destination>/ (wiped and rewritten by each
#: staging), results/bia/<destination>/ (BioImage Archive packages).
RESULTS_DIR = "results"

#: Configuration keys (dotted) that name files or folders of the trusted zone.
PRIVATE_PATH_KEYS = ("pseudonymisation.linkage_dir", "pseudonymisation.key_file")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def private_path_problem(
    value: str | os.PathLike[str], key: str, *, workdir: str | Path | None = None
) -> str | None:
    """Why the trusted-zone path ``value`` (given as ``key``) may not be used, or ``None``.

    It may not lie inside ``results/`` (relative to ``workdir``, default the working directory),
    the workflow's outputs, of which the staging folders of the destinations leave the trusted
    zone and are wiped each time they are staged. Symbolic links are followed.
    """
    base = Path(workdir) if workdir is not None else Path.cwd()
    target = (base / Path(value)).resolve()
    results = (base / RESULTS_DIR).resolve()
    if not _inside(target, results):
        return None
    rel = target.relative_to(results).parts
    if len(rel) >= 2 and rel[0] in ("stage", "bia"):
        where = f"the staging folder of destination {rel[1]!r} ({RESULTS_DIR}/{rel[0]}/{rel[1]}/)"
    elif rel and rel[0] in ("stage", "bia"):
        where = f"{RESULTS_DIR}/{rel[0]}/, where the destinations are staged"
    else:
        where = f"{RESULTS_DIR}/, the workflow's outputs, which are staged for deposit"
    return (
        f"{key}: {os.fspath(value)!r} lies inside {where}; what is staged leaves the trusted "
        "zone and staging wipes its folder. Keep the linkage table and the key outside "
        f"{RESULTS_DIR}/ (e.g. secure/linkage, mode 0700)"
    )


def check_private_path(
    value: str | os.PathLike[str], key: str, *, workdir: str | Path | None = None
) -> None:
    """Raise :class:`ConfigError` when :func:`private_path_problem` finds one."""
    problem = private_path_problem(value, key, workdir=workdir)
    if problem is not None:
        raise ConfigError(problem)


def private_path_problems(
    config: dict[str, Any], *, workdir: str | Path | None = None
) -> list[str]:
    """:func:`private_path_problem` for each of :data:`PRIVATE_PATH_KEYS` set in ``config``."""
    problems = []
    for dotted in PRIVATE_PATH_KEYS:
        section, key = dotted.split(".")
        value = (config.get(section) or {}).get(key)
        if isinstance(value, str) and value:
            problem = private_path_problem(value, dotted, workdir=workdir)
            if problem is not None:
                problems.append(problem)
    return problems


def _raise(problems: list[str], source: str, what: str) -> None:
    if problems:
        lines = [f"{source}: {p}" for p in problems]
        raise ConfigError(f"{what}:\n  " + "\n  ".join(lines))


def validate_config(
    config: dict[str, Any], source: str = "config", *, workdir: str | Path | None = None
) -> dict[str, Any]:
    """Validate a config mapping; raise :class:`ConfigError` listing every problem.

    In order: no YAML aliases (shared nodes, before anything walks the values), the schema,
    then no trusted-zone path inside ``results/`` (:func:`private_path_problems`, relative to
    ``workdir``, default the working directory).
    """
    refuse_shared_nodes(config, source)
    schema = load_schema("config")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {_where(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _raise(private_path_problems(config, workdir=workdir), source, "unsafe configuration")
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
