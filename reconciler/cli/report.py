"""`grayops report`: the report of a plugin's last finished rollout, or the list of its reports; `grayops history`:
its past rollouts, one row each, from the same reports."""

from __future__ import annotations

import argparse
import logging
import sys

from reconciler.cli.errors import DONE, Failed
from reconciler.cli.options import Subparsers, repo_args
from reconciler.cli.output import DATA_FORMATS, dump, markdown_table, output_arg, text_table
from reconciler.cli.records import read_records, record_source, recorded_status
from reconciler.core.layout import reports_of
from reconciler.core.model import RolloutState
from reconciler.core.report import latest_report, report_finished, report_record
from reconciler.core.status import StatusUnreadable

log = logging.getLogger("grayops")


def add_parser(sub: Subparsers) -> None:
    report = sub.add_parser("report", help="print the report of a plugin's last finished rollout")
    report.add_argument("plugin")
    repo_args(report)
    report.add_argument("--workdir", help="read the reconciler's clone in this workdir instead of --repo")
    report.add_argument("--list", action="store_true", help="list every report of the plugin instead")
    output_arg(report)
    report.set_defaults(func=report_command)
    history = sub.add_parser("history", help="a plugin's past rollouts, from its reports: when, versions, result")
    history.add_argument("plugin")
    repo_args(history)
    history.add_argument("--workdir", help="read the reconciler's clone in this workdir instead of --repo")
    output_arg(history)
    history.set_defaults(func=history_command)


def finished_reports(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """(the record's files, the plugin's report paths in the order the rollouts finished: a version string such as
    1.10.0 does not sort after 1.9.0). Raises Failed when it has none."""
    _, records = read_records(*record_source(args))
    reports = sorted((p for p in records if p.startswith(reports_of(args.plugin))),
                     key=lambda p: (report_finished(records[p]), p))
    if not reports:
        raise Failed(f"no report for {args.plugin!r} yet (reports are written when a rollout ends)")
    return records, reports


def report_command(args: argparse.Namespace) -> int:
    records, reports = finished_reports(args)
    chosen = latest_report(records, args.plugin, recorded_state(records, args.plugin))
    assert chosen is not None  # finished_reports found at least one
    if args.output in DATA_FORMATS:
        doc = {"plugin": args.plugin, "reports": reports} if args.list else \
            {"plugin": args.plugin, "path": chosen, "report": records[chosen]}
        sys.stdout.write(dump(doc, args.output))
    elif args.list:
        print("\n".join(reports))
    else:
        print(records[chosen], end="")  # Markdown already: the same for text, wide and markdown
    return DONE


def recorded_state(records: dict[str, str], plugin: str) -> RolloutState | None:
    """The plugin's status, which names its last report; None (said in the log) when it cannot be read."""
    try:
        return recorded_status(records, plugin)
    except StatusUnreadable as err:
        log.warning("%s; showing the newest report by name", err)
        return None


HISTORY = (("finished", "Finished"), ("version", "Version"), ("result", "Result"), ("operator", "Operator"),
           ("took", "Took"), ("note", "Note"), ("path", "Report"))


def history_command(args: argparse.Namespace) -> int:
    records, reports = finished_reports(args)
    rows = [history_row(path, report_record(records[path])) for path in reversed(reports)]  # the newest first
    if args.output in DATA_FORMATS:
        sys.stdout.write(dump({"plugin": args.plugin, "rollouts": rows}, args.output))
    elif args.output == "markdown":
        table = [[row[k] for k, _ in HISTORY] for row in rows]
        sys.stdout.write(markdown_table([title for _, title in HISTORY], table))
    else:
        keys = [k for k, _ in HISTORY if args.output == "wide" or k not in ("note", "path")]
        sys.stdout.write(text_table([dict(HISTORY)[k].upper() for k in keys], [[row[k] for k in keys] for row in rows]))
    return DONE


def history_row(path: str, record: dict[str, str]) -> dict[str, str]:
    when = record.get("Date", "")
    started, _, rest = when.partition(" to ")
    finished, _, took = rest.partition(" (")
    return {"finished": finished or "-", "started": started or "-", "took": took.rstrip(")") or "-",
            "version": record.get("Version", "-"), "result": record.get("Result", "-"),
            "operator": record.get("Operator", "-"), "note": record.get("Note", ""), "path": path}
