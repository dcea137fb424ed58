"""Helpers shared by the verb modules: configuration options and loading."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from imagedepot.config import load_config, validate_config
from imagedepot.errors import ConfigError


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` (what the workflow's rules pass: ``results/config/<view>.json``) and
    ``--config-json TEXT`` (for direct use)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--config",
        metavar="FILE",
        help="workflow configuration file, YAML or JSON (what the Snakemake rules pass)",
    )
    group.add_argument(
        "--config-json", metavar="JSON", help="workflow configuration as a JSON string"
    )


_STAGE_OUTPUTS = {"convert": "converted", "deid": "de-identified", "leak": "leak-report"}


def add_stage_root(
    parser: argparse.ArgumentParser, stage: str, *, required: bool = True, note: str = ""
) -> None:
    """Add ``--<stage>-root``: a stage's output root folder, or the tree markers of its batches
    (resolve with :func:`imagedepot.storage.input_root`)."""
    parser.add_argument(
        f"--{stage}-root",
        nargs="+",
        required=required,
        help=f"folder of {_STAGE_OUTPUTS[stage]} batch folders, or the batches' .tree.json "
        f"markers{note}",
    )


def get_config(args: argparse.Namespace, *, required: bool = True) -> dict[str, Any] | None:
    """Load the configuration named by ``--config`` / ``--config-json``."""
    if getattr(args, "config_json", None):
        try:
            data = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json: not valid JSON: {exc}") from exc
        return validate_config(data, "--config-json")
    if getattr(args, "config", None):
        return load_config(Path(args.config))
    if required:
        raise ConfigError("give the workflow configuration with --config FILE")
    return None


def load_policies(config: dict[str, Any]) -> dict[str, Any]:
    """Load (and compile, fail-closed) every policy named in the configuration."""
    from imagedepot.policy import load_policy

    return {name: load_policy(Path(path)) for name, path in config["policies"].items()}
