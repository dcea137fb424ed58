"""Workflow configuration: read it safely, refuse what would leak, validate it against the schema.

The schema ships in the package, so that the workflow (``rules/common.smk``) and the CLI enforce
the same rules; :func:`validate_config` adds what a schema cannot say: no YAML aliases, no secrets
in values (every rule reads the config from a file under ``results/config/``, and Snakemake keeps
it in its metadata), and no linkage table or key inside ``results/``, whose staging folders leave
the trusted zone. :func:`config_view` makes those files' content.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
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

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# scheme://userinfo@host...: a URL that carries a user name and/or password (an unencoded '/' in
# the password is counted too: better a false alarm than a password in the logs).
_URL_USERINFO_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^?#@\s]*@")
# Keys that would hold a secret itself (those ending in _env name a variable, which is fine):
# a word of the key (split at '_' or '-') is one of these, or the key is just "key".
_SECRET_KEY_RE = re.compile(
    r"key|(.*[_-])?(password|passwd|passphrase|secret|token|bearer|credentials?|apikey"
    r"|api[_-]key|access[_-]key|private[_-]key)([_-].*)?",
    re.IGNORECASE,
)
# Mappings whose keys are names chosen by the user, not configuration keys.
_NAME_MAPPINGS = ("policies", "destinations")


def _walk(node: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, key, value) of every entry of nested mappings and lists, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            yield path, key, value
            yield from _walk(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            path = f"{where}[{i}]"
            yield path, i, value
            yield from _walk(value, path)


def _credentials_hint(config: dict[str, Any], path: str) -> str:
    """Where the credentials of the URL at ``path`` belong instead (README: Credentials)."""
    parts = path.split(".")
    section = config.get(parts[0]) if parts else None
    if parts[0] == "destinations" and len(parts) >= 3 and isinstance(section, dict):
        dest = section.get(parts[1])
        dest = dest if isinstance(dest, dict) else {}
        if parts[2] == "ftp_url":
            env = dest.get("ftp_url_env") or "IMAGEDEPOT_BIA_FTP_URL"
            env = env if isinstance(env, str) and _ENV_NAME_RE.fullmatch(env) else "<ftp_url_env>"
            return f"move the whole URL to the environment variable ${env} (ftp_url_env) and leave ftp_url empty"
        prefix = dest.get("credentials_env")
        prefix = (
            prefix
            if isinstance(prefix, str) and _ENV_NAME_RE.fullmatch(prefix)
            else "<credentials_env>"
        )
        return (
            f"remove them from the URL and give them in the environment as ${prefix}_USER / "
            f"${prefix}_PASSWORD (credentials_env) or in ~/.netrc for the host"
        )
    if path == "fhir.server_url":
        return (
            "remove them from the URL and give the server's token in the environment variable "
            "named by fhir.token_env"
        )
    return "remove them from the URL and give them in the environment or in ~/.netrc"


def secret_problems(config: Any) -> list[str]:
    """What in ``config`` is, or looks like, a secret (messages name the key, never the value).

    Secrets come from the environment or ``~/.netrc``: every rule reads the config from a file under
    ``results/config/`` (:func:`config_view`), which Snakemake also keeps, as a tracked parameter,
    in ``.snakemake/metadata``.
    Refused: a URL with credentials (``scheme://user:password@host``) in any value; a key named
    like a secret (password, token, secret, api_key...) unless it ends in ``_env`` (the name of a
    variable); a ``*_env`` value that is not a variable name (the secret itself, pasted there);
    a ``*_host`` value with ``@`` in it (``user:password@host``).
    """
    if not isinstance(config, dict):
        return []
    problems: list[str] = []
    for path, key, value in _walk(config):
        name = key if isinstance(key, str) else ""
        user_named = path.count(".") == 1 and path.split(".")[0] in _NAME_MAPPINGS
        if name and not user_named and not name.endswith("_env") and _SECRET_KEY_RE.fullmatch(name):
            problems.append(
                f"{path}: secrets do not go in the configuration; give them in the environment "
                "(credentials_env, token_env, key_env) or in ~/.netrc"
            )
        if not isinstance(value, str):
            continue
        if _URL_USERINFO_RE.match(value.strip()):
            problems.append(
                f"{path}: the URL holds credentials (a user name or password before '@'), which "
                "would be printed and stored with every job; " + _credentials_hint(config, path)
            )
        elif name.endswith("_env") and value and not _ENV_NAME_RE.fullmatch(value):
            problems.append(
                f"{path}: give the name of an environment variable (letters, digits, '_'), "
                "not its value; secrets go in the environment"
            )
        elif name.endswith("_host") and "@" in value:
            problems.append(
                f"{path}: give the host name only; credentials go in the environment "
                "(credentials_env)"
            )
    return problems


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

    In order, each step before anything walks the values further: no YAML aliases (shared
    nodes), no secrets (:func:`secret_problems`; these messages never quote a value), the
    schema, then no trusted-zone path inside ``results/`` (:func:`private_path_problems`,
    relative to ``workdir``, default the working directory).
    """
    refuse_shared_nodes(config, source)
    _raise(secret_problems(config), source, "secrets in the configuration")
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


#: Sections every verb that takes the configuration needs (the schema requires them).
REQUIRED_SECTIONS = ("samples", "inbox", "policies", "pseudonymisation", "destinations")


def config_view(config: dict[str, Any], sections: Iterable[str] = ()) -> str:
    """The part of ``config`` one rule reads, as deterministic JSON (sorted keys, indented).

    Only :data:`REQUIRED_SECTIONS` and ``sections`` are kept (those absent from ``config`` are
    skipped), so that a change to one section re-runs only the rules that read it. The workflow
    writes the text to ``results/config/<view>.json`` and passes the file with ``--config``.
    """
    keys = set(REQUIRED_SECTIONS) | set(sections)
    view = {k: v for k, v in config.items() if k in keys}
    return json.dumps(view, indent=2, sort_keys=True) + "\n"


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
