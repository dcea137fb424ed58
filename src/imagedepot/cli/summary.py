"""``imagedepot summary``: the run summary (every input accounted for)."""

from __future__ import annotations

import argparse

from imagedepot.cli._common import add_stage_root


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``summary`` verb."""
    p = sub.add_parser(
        "summary",
        help="write results/summary.json: found = processed + quarantined + excluded",
        description=(
            "Count every input of the run as processed, quarantined (with reason) or excluded by "
            "policy, check that they add up, write the JSON summary and print one line."
        ),
    )
    p.add_argument("--manifest", required=True, help="manifest from `imagedepot scan`")
    add_stage_root(p, "leak")
    p.add_argument(
        "--stage-dirs",
        nargs="*",
        default=[],
        help="staged destination folders (or their .tree.json markers)",
    )
    p.add_argument(
        "--fhir-root",
        help="folder of the FHIR bundle folders or its .tree.json marker (adds their status)",
    )
    p.add_argument("--out", required=True, help="summary JSON to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Summarise the run."""
    from imagedepot.io import write_json
    from imagedepot.stage import summarize_run, summary_line
    from imagedepot.storage import input_folder, input_root, is_marker, open_tree

    # Of a staged folder, the summary reads its summary.json only.
    stages = [open_tree(d, only=["summary.json"]) if is_marker(d) else d for d in args.stage_dirs]
    fhir = input_folder(args.fhir_root) if args.fhir_root else None
    summary = summarize_run(args.manifest, input_root(args.leak_root), stages, fhir)
    write_json(args.out, summary)
    print(summary_line(summary))
    return 0
