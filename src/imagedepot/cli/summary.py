"""``imagedepot summary``: the run summary (every input accounted for)."""

from __future__ import annotations

import argparse


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
    p.add_argument("--leak-root", required=True, help="folder of the batch leak-report folders")
    p.add_argument("--stage-dirs", nargs="*", default=[], help="staged destination folders")
    p.add_argument("--fhir-root", help="folder of the FHIR bundle folders (adds their status)")
    p.add_argument("--out", required=True, help="summary JSON to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Summarise the run."""
    from imagedepot.io import write_json
    from imagedepot.stage import summarize_run, summary_line

    summary = summarize_run(args.manifest, args.leak_root, args.stage_dirs, args.fhir_root)
    write_json(args.out, summary)
    print(summary_line(summary))
    return 0
