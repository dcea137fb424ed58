"""``imagedepot schedule run``: one safe, unattended deposition run (for cron, systemd or scrontab).

The run takes a lock beside the state database (a second run started meanwhile exits at once, with
status 0 and a message), then either

* runs Snakemake (the default: Snakemake stays the executor) on the deposit targets, e.g.
  ``snakemake --profile profiles/default --configfile C deposit_bia_all --forcerun deposit_bia``,
  whose deposit jobs record each dataset in the state database and skip what is already deposited
  with the same content; or
* with ``--direct``, deposits the already staged packages of every ``bia`` destination itself.

It then reports what changed and, on failure, sends a notice by e-mail when SMTP is configured
(``--smtp-host`` ... or the config's ``schedule.notify``). Exit status: 0 when everything that ran
succeeded, 1 otherwise. See docs/scheduling.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from imagedepot.cli._common import add_config_options, get_config, load_policies
from imagedepot.state import DEFAULT_DB

DEFAULT_TARGETS = ("deposit_bia_all",)
DEFAULT_FORCERUN = ("deposit_bia",)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``schedule`` verb and its ``run`` subcommand."""
    p = sub.add_parser(
        "schedule",
        help="unattended deposition runs (cron, systemd timer, SLURM scrontab)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="schedule_command", metavar="COMMAND")
    ssub.required = True
    r = ssub.add_parser(
        "run",
        help="one locked deposition run; picks up only new or failed work",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(r)
    r.add_argument(
        "--state-db", help=f"state database (default: config schedule.state_db or {DEFAULT_DB})"
    )
    r.add_argument(
        "--profile", help="Snakemake profile (default: config schedule.profile or profiles/default)"
    )
    r.add_argument(
        "--target",
        action="append",
        help=f"Snakemake target (repeatable; default: {', '.join(DEFAULT_TARGETS)})",
    )
    r.add_argument(
        "--forcerun",
        action="append",
        help=f"rules always re-run so the state database decides (default: {', '.join(DEFAULT_FORCERUN)})",
    )
    r.add_argument("--snakemake", default=None, help="snakemake executable (default: from PATH)")
    r.add_argument("--snakefile", help="Snakefile (default: Snakemake's own lookup)")
    r.add_argument(
        "--direct",
        action="store_true",
        help="deposit staged packages directly (no Snakemake): results/bia/<destination> of each bia destination",
    )
    r.add_argument("--packages-root", default="results/bia", help="where --direct finds packages")
    r.add_argument(
        "--dry-run", action="store_true", help="(--direct) upload and verify, do not submit"
    )
    r.add_argument("--smtp-host", help="send a notice of failures through this SMTP server")
    r.add_argument("--smtp-port", type=int, help="SMTP port (default 25)")
    r.add_argument("--mail-from", help="sender address of notices")
    r.add_argument("--mail-to", action="append", help="recipient of notices (repeatable)")
    r.add_argument("--smtp-starttls", action="store_true", help="use STARTTLS")
    r.add_argument("snakemake_args", nargs="*", help="further Snakemake arguments (after --)")
    r.set_defaults(func=run)


def _mail(args: argparse.Namespace, sched: dict[str, Any]) -> Any:
    from imagedepot.state import MailSettings

    notify = dict(sched.get("notify") or {})
    host = args.smtp_host or notify.get("smtp_host")
    if not host:
        return None
    to = args.mail_to or notify.get("mail_to") or []
    if isinstance(to, str):
        to = [to]
    return MailSettings(
        host=host,
        port=int(args.smtp_port or notify.get("smtp_port", 25)),
        sender=args.mail_from or notify.get("mail_from", "imagedepot@localhost"),
        recipients=tuple(to),
        starttls=bool(args.smtp_starttls or notify.get("starttls", False)),
        credentials_env=notify.get("credentials_env"),
    )


def run(args: argparse.Namespace) -> int:
    """One scheduled run."""
    from imagedepot.state import RunInProgress, run_scheduled

    config = get_config(args)
    assert config is not None
    sched = dict(config.get("schedule") or {})
    db = args.state_db or sched.get("state_db") or DEFAULT_DB
    mail = _mail(args, sched)
    work: Any
    if args.direct:
        work = lambda: _deposit_direct(args, config, db)  # noqa: E731
    else:
        exe = (
            args.snakemake
            or shutil.which("snakemake", path=os.path.dirname(sys.executable))
            or "snakemake"
        )
        work = [exe, "--profile", args.profile or sched.get("profile", "profiles/default")]
        if args.snakefile:
            work += ["--snakefile", args.snakefile]
        if args.config:
            work += ["--configfile", args.config]
        work += list(args.target or sched.get("targets") or DEFAULT_TARGETS)
        forcerun = list(args.forcerun or DEFAULT_FORCERUN)
        if forcerun:
            work += ["--forcerun", *forcerun]
        work += list(args.snakemake_args)
    try:
        result = run_scheduled(db, work, mail=mail)
    except RunInProgress as exc:
        print(f"imagedepot schedule run: {exc}")
        return 0
    for r in result.changed or []:
        extra = r.accession or r.reason or ""
        print(f"{r.destination}/{r.dataset}: {r.state} {extra}".rstrip())
    print(
        f"imagedepot schedule run: {'ok' if result.ok else 'FAILED'} "
        f"({len(result.changed or [])} dataset(s) changed, {len(result.failed)} failed)"
    )
    return 0 if result.ok else 1


def _deposit_direct(args: argparse.Namespace, config: dict[str, Any], db: str) -> int:
    """Deposit every bia destination's staged packages (the lock is already held)."""
    from imagedepot.deposit.bia import credentials_from_env, deposit_bia, find_packages
    from imagedepot.deposit.verify import DOWNLOAD_VERIFY_LIMIT
    from imagedepot.state import StateDB

    failed = 0
    policies = load_policies(config)
    with StateDB(db) as state:
        for name, dest in config["destinations"].items():
            if dest.get("type") != "bia":
                continue
            root = Path(args.packages_root) / name
            if not root.is_dir() or not find_packages(root):
                continue
            env_name = dest.get("ftp_url_env", "IMAGEDEPOT_BIA_FTP_URL")
            ftp_url = os.environ.get(env_name) or dest.get("ftp_url", "")
            if not ftp_url:
                print(f"{name}: no FTP upload directory (set ${env_name}); skipped")
                failed += 1
                continue
            report = deposit_bia(
                root,
                ftp_url=ftp_url,
                api_url=dest.get("url", ""),
                credentials=credentials_from_env(dest.get("credentials_env"), dest.get("url")),
                parallel_streams=int(dest.get("parallel_streams", 2)),
                retries=int(dest.get("retries", 5)),
                download_verify_limit=int(dest.get("download_verify_limit", DOWNLOAD_VERIFY_LIMIT)),
                dry_run=bool(args.dry_run or dest.get("dry_run", False)),
                state=state,
                destination=name,
                policies=policies,
            )
            failed += len(report.failed)
    return 1 if failed else 0
