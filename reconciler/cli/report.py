"""`grayops report`: the report of a plugin's last finished rollout, or the list of its reports."""

from __future__ import annotations

import argparse
import logging

from reconciler.cli.errors import DONE, Failed
from reconciler.cli.options import Subparsers, repo_args
from reconciler.cli.records import read_records, record_source
from reconciler.core.layout import reports_of, status_path
from reconciler.core.report import report_finished, report_path
from reconciler.core.status import StatusUnreadable, load_status

log = logging.getLogger("grayops")


def add_parser(sub: Subparsers) -> None:
    report = sub.add_parser("report", help="print the report of a plugin's last finished rollout")
    report.add_argument("plugin")
    repo_args(report)
    report.add_argument("--workdir", help="read the reconciler's clone in this workdir instead of --repo")
    report.add_argument("--list", action="store_true", help="list every report of the plugin instead")
    report.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    _, records = read_records(*record_source(args))
    # in the order the rollouts finished (a version string such as 1.10.0 does not sort after 1.9.0)
    reports = sorted((p for p in records if p.startswith(reports_of(args.plugin))),
                     key=lambda p: (report_finished(records[p]), p))
    if not reports:
        raise Failed(f"no report for {args.plugin!r} yet (reports are written when a rollout ends)")
    chosen = reports[-1]
    status = records.get(status_path(args.plugin))
    if status:
        try:
            path = report_path(load_status(status, status_path(args.plugin)))
        except StatusUnreadable as err:
            log.warning("%s; showing the newest report by name", err)
            path = chosen
        if path in records:
            chosen = path
    if args.list:
        print("\n".join(reports))
    else:
        print(records[chosen], end="")
    return DONE
