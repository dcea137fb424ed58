"""``imagedepot deid FORMAT``: de-identify one item (DICOM series, NIfTI file, OME image).

Each subcommand loads the policy, builds the keyed pseudonymizer and calls one library function:

* ``deid dicom`` → :func:`imagedepot.deid.dicom.deidentify_dicom` (the policy's options,
  pixel-cleaning rules and deid recipe; ``--jobs`` processes in parallel); without
  ``--subject``, a folder of several patients (a PACS export) goes to
  :func:`imagedepot.deid.dicom.deidentify_dicom_patients`: one output folder per pseudonym
* ``deid nifti`` → :func:`imagedepot.deid.nifti.deidentify_nifti`
* ``deid ome``   → :func:`imagedepot.deid.ome.deidentify_ome`

The report (without linkage or input paths) is printed as JSON and, with ``--report``, written
to a file. ``--linkage`` writes the ``subject<TAB>pseudonym`` rows to a file readable by its owner
only; it belongs in the linkage folder, never under ``results/``. Files skipped or refused are
listed on standard error by their path (the JSON report leaves input paths out: they may carry
names).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from imagedepot.deid.pseudonym import DEFAULT_KEY_ENV
from imagedepot.errors import ImagedepotError, PolicyError


def _common(p: argparse.ArgumentParser, *, subject_required: bool) -> None:
    p.add_argument("src", type=Path, help="input file or folder")
    p.add_argument("out", type=Path, help="output file or folder (must not exist unless --force)")
    p.add_argument("--policy", type=Path, required=True, help="policy YAML file")
    p.add_argument(
        "--subject",
        required=subject_required,
        help="the subject's original identifier (as in the sample and consent sheets)"
        + ("" if subject_required else "; default: the one Patient ID of the files"),
    )
    p.add_argument("--key-file", type=Path, help="file holding the pseudonymisation key")
    p.add_argument(
        "--key-env",
        default=DEFAULT_KEY_ENV,
        help=f"environment variable holding the key (default {DEFAULT_KEY_ENV}); "
        "it wins over --key-file when set",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--report", type=Path, help="also write the JSON report to this file")
    p.add_argument(
        "--linkage",
        type=Path,
        help="write 'subject<TAB>pseudonym' to this file (mode 0600; keep it out of results/)",
    )


def _jobs(text: str) -> int:
    """``--jobs`` value: a whole number, 0 meaning one per CPU core."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 (all cores) or more")
    return n or (os.cpu_count() or 1)


def register(subparsers: Any) -> None:
    """Add ``deid`` and its subcommands to the top-level subparsers."""
    parser = subparsers.add_parser(
        "deid",
        help="de-identify DICOM, NIfTI or OME data with a policy",
        description="De-identify one item with the options of a policy file.",
    )
    formats = parser.add_subparsers(dest="deid_format", metavar="FORMAT")
    formats.required = True

    dicom = formats.add_parser(
        "dicom",
        help="DICOM: PS3.15 Basic Profile plus the policy's options",
        description=(
            "De-identify DICOM files (a file, a folder or a series) into OUT. Without --subject, "
            "the subject is the files' Patient ID; a folder of several patients (a PACS export) "
            "is de-identified patient by patient into OUT/<pseudonym>/ (patients without consent "
            "are left out and listed). Files that are not DICOM (a README, a JSON) stop the run "
            "unless --skip-bad-files, which lists them as skipped."
        ),
    )
    _common(dicom, subject_required=False)
    dicom.add_argument(
        "--action-log", type=Path, help="append one JSON line of actions per output file"
    )
    dicom.add_argument(
        "--jobs",
        "-j",
        type=_jobs,
        default=1,
        help="processes working on files in parallel (default 1; 0: one per CPU core)",
    )
    dicom.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="list files that are not DICOM as skipped, and other unusable files as errors, "
        "and go on with the rest (default: fail closed on the first)",
    )
    dicom.set_defaults(func=run_dicom)

    # NIfTI: implemented in imagedepot.deid.nifti (imported when the subcommand runs).
    nifti = formats.add_parser(
        "nifti",
        help="NIfTI: header and JSON sidecar cleaning",
        description="De-identify a NIfTI file (and its JSON sidecar) into OUT.",
    )
    _common(nifti, subject_required=True)
    nifti.add_argument("--sidecar", type=Path, help="BIDS-style JSON sidecar of the image")
    nifti.set_defaults(func=run_nifti)

    # OME-TIFF / OME-Zarr: implemented in imagedepot.deid.ome (imported when it runs).
    ome = formats.add_parser(
        "ome",
        help="OME-TIFF / OME-Zarr: OME-XML metadata cleaning, auxiliary images removed",
        description=(
            "De-identify an OME image into OUT: metadata cleaned, and slide label, macro, "
            "overview, thumbnail and preview series removed as the policy's "
            "pixel_text.auxiliary_images says (remove: all of them; ocr: those with text)."
        ),
    )
    _common(ome, subject_required=True)
    ome.set_defaults(func=run_ome)

    # One manifest item, as the workflow runs it: dispatches on the item's kind.
    item = formats.add_parser(
        "item",
        help="one item of the manifest, as the workflow runs it (with provenance)",
        description=(
            "De-identify one manifest item under its policy: the original DICOM series, the NIfTI and "
            "sidecars converted from it (or the NIfTI item itself), the OME metadata of microscopy "
            "outputs. Writes OUT with provenance.json; a problem with the data quarantines the item "
            "(recorded there, exit 0). The linkage row goes to --linkage-dir (mode 0600), never OUT."
        ),
    )
    item.add_argument("item", type=Path, metavar="ITEM.json", help="item JSON from the scan")
    item.add_argument("converted", type=Path, metavar="CONVERTED", help="the item's convert folder")
    item.add_argument("out", type=Path, metavar="OUT", help="per-item output folder to create")
    item.add_argument("--policy", type=Path, required=True, help="the item's policy YAML")
    item.add_argument("--key-env", default="IMAGEDEPOT_PSEUDONYM_KEY", help="key variable")
    item.add_argument("--key-file", type=Path, help="key file (when the variable is unset)")
    item.add_argument("--linkage-dir", type=Path, help="access-restricted linkage folder")
    item.add_argument("--force", action="store_true", help="replace an existing OUT")
    item.set_defaults(func=run_item)


def _check_private_paths(args: argparse.Namespace) -> None:
    """Refuse a linkage file/folder or key file given inside results/ (it would be staged)."""
    from imagedepot.config import check_private_path

    for option in ("linkage", "linkage_dir", "key_file"):
        value = getattr(args, option, None)
        if value is not None:
            check_private_path(value, "--" + option.replace("_", "-"))


def _setup(args: argparse.Namespace, subject: str) -> tuple[Any, Any]:
    """Load the policy and the pseudonymizer; refuse a subject without consent."""
    from imagedepot.deid.pseudonym import load_key
    from imagedepot.policy import load_policy

    _check_private_paths(args)
    policy = load_policy(args.policy)
    if not policy.consented(subject):
        raise PolicyError(
            f"{args.policy}: subject has no recorded consent under policy {policy.name!r}; "
            "refusing to de-identify"
        )
    key = load_key(args.key_env, args.key_file)
    return policy, policy.make_pseudonymizer(key)


def _finish(
    args: argparse.Namespace, report: dict[str, Any], linkage: Sequence[tuple[str, str]]
) -> int:
    from imagedepot.io import write_json, write_private_text

    if args.report is not None:
        write_json(args.report, report)
    if args.linkage is not None:
        rows = "".join(f"{subject}\t{pseudonym}\n" for subject, pseudonym in linkage)
        write_private_text(args.linkage, "subject\tpseudonym\n" + rows)
    sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0


def _list_set_aside(src: Path, skipped: Iterable[dict[str, Any]], kind: str) -> None:
    """Name the files skipped or refused on standard error (paths relative to SRC)."""
    for row in skipped:
        path = Path(row["path"])
        with contextlib.suppress(ValueError):
            path = path.relative_to(src)
        sys.stderr.write(f"deid dicom: {kind} {path}: {row['reason']}\n")


@contextlib.contextmanager
def _output_lock(out: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (a hidden ``.<name>.lock`` beside it) while writing it.

    Two runs into the same output would each pass the overwrite check and one result would
    replace (or delete) the other: the second fails at once instead, naming the output.
    """
    from imagedepot.state import RunInProgress, run_lock

    final = Path(out)
    lock = final.with_name(f".{final.name}.lock")
    try:
        with run_lock(lock):
            yield
    except RunInProgress as exc:
        raise ImagedepotError(
            f"{final}: another imagedepot deid run is writing this output (lock {lock}); "
            "wait for it to finish or choose another output"
        ) from exc


def run_dicom(args: argparse.Namespace) -> int:
    """``imagedepot deid dicom``."""
    with _output_lock(args.out):
        return _run_dicom(args)


def _run_dicom(args: argparse.Namespace) -> int:
    from imagedepot.deid.dicom import find_patients
    from imagedepot.progress import progress_for

    if args.subject:
        return _run_dicom_subject(args, args.subject)
    with progress_for("deid dicom: Patient IDs") as progress:
        found = find_patients(args.src, progress=progress)
    if len(found.patients) <= 1:
        return _run_dicom_subject(args, found.only_subject(args.skip_bad_files))
    return _run_dicom_patients(args, found)


def _run_dicom_subject(args: argparse.Namespace, subject: str) -> int:
    """One subject: every DICOM file of SRC into OUT."""
    from imagedepot.deid.dicom import deidentify_dicom
    from imagedepot.progress import progress_for

    policy, pseudonymizer = _setup(args, subject)
    with progress_for("deid dicom") as progress:
        report = deidentify_dicom(
            args.src,
            args.out,
            pseudonymizer=pseudonymizer,
            subject=subject,
            force=args.force,
            action_log=args.action_log,
            skip_bad_files=args.skip_bad_files,
            workers=args.jobs,
            progress=progress,
            **policy.dicom_options(),
        )
    _list_set_aside(args.src, report.skipped, "skipped")
    _list_set_aside(args.src, report.errors, "not de-identified")
    out = report.to_dict()
    out["policy"] = policy.to_provenance()
    return _finish(args, out, [(subject, pseudonymizer.subject_id(subject))])


def _run_dicom_patients(args: argparse.Namespace, found: Any) -> int:
    """Several patients (a PACS export): each into OUT/<pseudonym>/."""
    from imagedepot.deid.dicom import deidentify_dicom_patients
    from imagedepot.deid.pseudonym import load_key
    from imagedepot.policy import load_policy
    from imagedepot.progress import progress_for

    _check_private_paths(args)
    policy = load_policy(args.policy)
    pseudonymizer = policy.make_pseudonymizer(load_key(args.key_env, args.key_file))
    with progress_for("deid dicom") as progress:
        report = deidentify_dicom_patients(
            args.src,
            args.out,
            pseudonymizer=pseudonymizer,
            consented=policy.consented,
            force=args.force,
            skip_bad_files=args.skip_bad_files,
            found=found,
            progress=progress,
            action_log=args.action_log,
            workers=args.jobs,
            **policy.dicom_options(),
        )
    _list_set_aside(args.src, report.skipped, "skipped")
    _list_set_aside(args.src, report.errors, "not de-identified")
    for one in report.subjects:
        _list_set_aside(args.src, one.skipped, "skipped")
        _list_set_aside(args.src, one.errors, "not de-identified")
    for row in report.excluded:
        sys.stderr.write(
            f"deid dicom: excluded patient {row['pseudonym']} ({row['files']} file(s)): "
            f"{row['reason']} under policy {policy.name!r}\n"
        )
    out = report.to_dict()
    out["policy"] = policy.to_provenance()
    return _finish(args, out, report.linkage)


def run_nifti(args: argparse.Namespace) -> int:
    """``imagedepot deid nifti``."""
    from imagedepot.deid.nifti import deidentify_nifti

    return _run_format(args, deidentify_nifti, sidecar=args.sidecar)


def run_ome(args: argparse.Namespace) -> int:
    """``imagedepot deid ome``."""
    from imagedepot.deid.ome import deidentify_ome

    return _run_format(args, deidentify_ome, pixel_text=True)


def _run_format(
    args: argparse.Namespace, deidentify: Any, *, pixel_text: bool = False, **extra: Any
) -> int:
    """Run a NIfTI or OME de-identifier with the policy's options and report like ``deid dicom``
    (``pixel_text``: also give it the policy's ``pixel_text`` section)."""
    with _output_lock(args.out):
        policy, pseudonymizer = _setup(args, args.subject)
        if pixel_text:
            extra["pixel_text"] = policy.pixel_text
        result = deidentify(
            args.src,
            args.out,
            policy_options=policy.deid_options,
            pseudonymizer=pseudonymizer,
            subject=args.subject,
            force=args.force,
            **extra,
        )
        out = result.to_dict()
        out["policy"] = policy.to_provenance()
        return _finish(args, out, [(args.subject, pseudonymizer.subject_id(args.subject))])


def run_item(args: argparse.Namespace) -> int:
    """De-identify one manifest item with :func:`imagedepot.pipeline.deidentify_item`."""
    from imagedepot.pipeline import DeidSettings, deidentify_item

    _check_private_paths(args)
    settings = DeidSettings(
        policy_path=args.policy,
        key_env=args.key_env,
        key_file=args.key_file,
        linkage_dir=args.linkage_dir,
    )
    prov = deidentify_item(args.item, args.converted, args.out, settings, force=args.force)
    sys.stdout.write(
        f"item {prov.item}: {prov.status}{': ' + prov.reason if prov.reason else ''}\n"
    )
    return 0
