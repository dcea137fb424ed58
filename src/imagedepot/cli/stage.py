"""``imagedepot stage``: prepare what leaves the trusted zone, locally and idempotently."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagedepot.cli._common import add_config_options, add_stage_root, get_config, load_policies


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``stage`` verb and its subcommands."""
    p = sub.add_parser("stage", help="stage de-identified outputs for a destination (no network)")
    ssub = p.add_subparsers(dest="stage_command", metavar="COMMAND")
    ssub.required = True
    s = ssub.add_parser(
        "local",
        help="stage into a local deposit folder with a checksum manifest",
        description=(
            "Copy every item that passed de-identification and the leak gate, and whose policy allows "
            "the destination's class, into OUT with one FHIR bundle per dataset, MANIFEST.sha256, "
            "manifest.json and summary.json. Trusted-zone records (inbox paths, action logs, linkage) "
            "are never copied."
        ),
    )
    s.add_argument("destination", help="destination name from the config")
    s.add_argument("out", help="folder to create (replaced atomically), or its .tree.json marker")
    s.add_argument("--manifest", required=True, help="manifest from `imagedepot scan`")
    add_stage_root(s, "deid")
    add_stage_root(s, "leak")
    s.add_argument(
        "--fhir-root", required=True, help="folder of FHIR bundles (or its .tree.json marker)"
    )
    add_config_options(s)
    s.set_defaults(func=run_local)
    from imagedepot.cli import bia, xnat

    xnat.register_stage(ssub)
    bia.register_stage(ssub)
    v = ssub.add_parser("verify", help="re-check a staged folder against its manifest")
    v.add_argument("folder", help="staged folder, or its .tree.json marker")
    v.set_defaults(func=run_verify)


def run_local(args: argparse.Namespace) -> int:
    """Stage one destination."""
    from imagedepot.io import read_json
    from imagedepot.stage import StageInputs, stage_destination
    from imagedepot.storage import finish_output, input_folder, input_root, output_folder

    config = get_config(args)
    assert config is not None
    dest = config["destinations"].get(args.destination)
    if dest is None:
        raise SystemExit(f"imagedepot stage local: unknown destination {args.destination!r}")
    report = stage_destination(
        args.destination,
        dest["class"],
        StageInputs(
            Path(args.manifest),
            input_root(args.deid_root),
            input_root(args.leak_root),
            input_folder(args.fhir_root),
        ),
        output_folder(args.out),
        policies=load_policies(config),
    )
    # The staging manifest hashed every staged file a moment ago.
    listed = read_json(output_folder(args.out) / "manifest.json")["files"]
    finish_output(args.out, known={r["path"]: r for r in listed})
    print(
        f"stage {args.destination}: {len(report.staged)} item(s), {report.files} file(s), "
        f"{len(report.skipped)} skipped -> {args.out}"
    )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify a staged folder; exit 1 on any problem."""
    from imagedepot.stage import verify_stage
    from imagedepot.storage import input_folder

    problems = verify_stage(input_folder(args.folder))
    for p in problems:
        print(f"{args.folder}: {p}")
    print(f"verify {args.folder}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0
