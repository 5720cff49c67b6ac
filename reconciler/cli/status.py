"""`grayops status`: one line per rollout, or one plugin's batches and verdicts; says when HEAD is refused."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from policies import builtin_policies
from reconciler.cli.errors import DONE, FAILED, Failed, say
from reconciler.cli.options import Subparsers, duration_arg, repo_args
from reconciler.cli.output import DATA_FORMATS, dump, markdown_table, output_arg
from reconciler.cli.records import read_records, record_source
from reconciler.cli.wiring import full_registry
from reconciler.core.engine import ENGINE
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.layout import plugin_of, status_plugin
from reconciler.core.model import Phase, RolloutState, to_doc
from reconciler.core.report import batches_total, pending_batches, summarize
from reconciler.core.status import StatusUnreadable, load_status
from reconciler.progress import rollout_table


def add_parser(sub: Subparsers) -> None:
    status = sub.add_parser("status", help="show rollouts: phase, batch, instances, last reason",
                            description="Show rollouts: phase, batch, instances, last reason. Exits 1 when a "
                                        "rollout shown needs a human (Failed, or paused by grayops), a status file "
                                        "cannot be read, or HEAD is refused.")
    repo_args(status)
    status.add_argument("--workdir", help="read the reconciler's clone in this workdir instead of --repo")
    status.add_argument("plugin", nargs="?", help="one plugin, with its batches and verdicts")
    output_arg(status)
    status.add_argument("--json", dest="output", action="store_const", const="json", help=argparse.SUPPRESS)
    status.add_argument("-w", "--watch", action="store_true",
                        help="keep showing it as it changes (live on a terminal, a new block per change otherwise) "
                             "until interrupted")
    status.add_argument("--interval", type=duration_arg, default=2.0, metavar="DURATION",
                        help="with --watch, how often to read the record again (default: 2s)")
    status.set_defaults(func=status_command)


@dataclass(frozen=True)
class Shown:
    """What `status` says: its lines (stdout), the errors that make HEAD refused, and its exit code without them
    (an unreadable status file is said on stderr as it is found)."""

    lines: tuple[str, ...]
    refused: tuple[str, ...]
    code: int
    table: Table | None = None  # the same rollouts as a table with colour, for a terminal


def status_command(args: argparse.Namespace) -> int:
    if args.watch:
        return watch(args)
    shown = show(args)
    if shown.table is not None and sys.stdout.isatty():
        Console().print(shown.table)
    elif shown.lines:
        print("\n".join(shown.lines))
    return said_refused(shown.refused) or shown.code


def watch(args: argparse.Namespace) -> int:
    """Show the status again every --interval: in place on a terminal, as a new block when it changed otherwise."""
    live = Live(auto_refresh=False, console=Console(), transient=False) if sys.stdout.isatty() else None
    last: Shown | None = None
    try:
        if live is not None:
            live.start()
        while True:
            shown = show(args)
            if shown.refused != (last.refused if last else ()):
                said_refused(shown.refused)
            if live is not None:
                live.update(shown.table or Text("\n".join(shown.lines)), refresh=True)
            elif last is None or shown.lines != last.lines:
                print("\n".join((time.strftime("%H:%M:%S"), *shown.lines)), flush=True)
            last = shown
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return DONE  # the way out of a watch
    finally:
        if live is not None:
            live.stop()


def show(args: argparse.Namespace) -> Shown:
    files, records = read_records(*record_source(args))
    fleet, refused = judge(files)
    states = {}
    unreadable = 0  # each is said in one line, and status exits 1
    for path, text in records.items():
        name = status_plugin(path)
        if name is not None and args.plugin in (None, name):
            try:
                states[name] = load_status(text, path)
            except StatusUnreadable as err:
                unreadable += 1
                say(str(err))
    outcome = FAILED if unreadable else DONE
    if args.plugin:
        if args.plugin not in states:
            plugins = sorted(name for p in files if (name := plugin_of(p)) is not None)
            if args.plugin not in plugins:
                raise Failed(f"no plugin named {args.plugin!r} (known: {', '.join(plugins) or 'none'})")
            nothing = () if unreadable else (f"{args.plugin}: no rollout recorded yet",)
            return Shown(nothing, refused, outcome)
        states = {args.plugin: states[args.plugin]}
    if any(needs_a_human(state) for state in states.values()):
        outcome = FAILED
    if args.output in DATA_FORMATS:
        text = dump({name: to_doc(state) for name, state in sorted(states.items())}, args.output)
        return Shown(tuple(text.splitlines()), refused, outcome)
    if args.output == "markdown":
        rows = [markdown_row(state, fleet) for _, state in sorted(states.items())]
        text = markdown_table(("Plugin", "Version", "Phase", "Batch", "Instances", "Reason"), rows)
        return Shown(tuple(text.splitlines()), refused, outcome)
    lines: list[str] = [] if states or unreadable else ["no rollout recorded yet"]
    for _name, state in sorted(states.items()):
        lines += status_lines(state, fleet, detail=bool(args.plugin) or args.output == "wide")
    table = None
    if states and not args.plugin and args.output == "text":
        totals = {name: total for name, state in states.items()
                  if fleet is not None and (total := batches_total(fleet, state)) is not None}
        table = rollout_table(states, totals, notes=True)
    return Shown(tuple(lines), refused, outcome, table)


def markdown_row(state: RolloutState, fleet: Fleet | None) -> tuple[str, ...]:
    summary = summarize(state, batches_total(fleet, state) if fleet else None)
    return (state.plugin, f"{state.from_version or '(none)'} -> {state.target_version}", state.phase.value,
            f"{summary.batch_number}/{summary.batches_total} {summary.batch or ''}".strip(),
            f"{summary.done}/{summary.total}", state.reason)


def needs_a_human(state: RolloutState) -> bool:
    """A rollout that stays where it is until someone acts: Failed, or paused by grayops itself."""
    return state.phase is Phase.FAILED or (state.phase is Phase.PAUSED and state.paused_by == ENGINE)


def judge(files: dict[str, str]) -> tuple[Fleet | None, tuple[str, ...]]:
    """The revision's fleet and the errors that make the reconciler refuse it (None and the errors when invalid)."""
    try:
        return load_fleet(files, builtin_policies(), adapters=full_registry().models), ()
    except FleetInvalid as err:
        return None, tuple(str(e) for e in err.errors)


def said_refused(errors: tuple[str, ...]) -> int:
    """Say that HEAD is refused, with its errors (exit 1); 0 when there are none."""
    if not errors:
        return DONE
    say(f"HEAD is refused ({len(errors)} error(s)); a running reconciler keeps the last good revision in force, "
        "and pause and rollback still act on the plugin they name:\n  " + "\n  ".join(errors))
    return FAILED


def status_lines(state: RolloutState, fleet: Fleet | None, detail: bool) -> list[str]:
    """One line per rollout (batch n of the planned total); with `detail`, every batch, the ones to come too."""
    lines = [summarize(state, batches_total(fleet, state) if fleet else None).line()]
    if state.waiting_for:
        lines.append(f"  waiting for {state.waiting_for}")
    if not detail:
        return lines
    for batch in state.batches:
        verdicts = ", ".join(f"{m.name}={_number(m.last.value if m.last else None)}"
                             f" {m.last.verdict.value if m.last else ''}" for m in batch.metrics)
        lines.append(f"  batch {batch.name:<10} {batch.phase.value:<9} {len(batch.instances):>4} instance(s)  "
                     f"{verdicts}")
    for planned in pending_batches(fleet, state) if fleet else ():
        lines.append(f"  batch {planned.name:<10} {'Pending':<9} {len(planned.instances):>4} instance(s)")
    if state.paused_at:
        lines.append(f"  paused by {state.paused_by or 'unknown'}: {state.pause_reason or 'no reason given'}")
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
