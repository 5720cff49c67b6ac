"""`grayops status`: one line per rollout, or one plugin's batches and verdicts; says when HEAD is refused."""

from __future__ import annotations

import argparse
import json

from policies import builtin_policies
from reconciler.cli.errors import DONE, FAILED, Failed, say
from reconciler.cli.options import Subparsers, repo_args
from reconciler.cli.records import read_records, record_source
from reconciler.cli.wiring import full_registry
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.layout import plugin_of, status_plugin
from reconciler.core.model import RolloutState, to_doc
from reconciler.core.report import batches_total, pending_batches, summarize
from reconciler.core.status import StatusUnreadable, load_status


def add_parser(sub: Subparsers) -> None:
    status = sub.add_parser("status", help="show rollouts: phase, batch, instances, last reason")
    repo_args(status)
    status.add_argument("--workdir", help="read the reconciler's clone in this workdir instead of --repo")
    status.add_argument("plugin", nargs="?", help="one plugin, with its batches and verdicts")
    status.add_argument("--json", action="store_true", help="the status documents as JSON")
    status.set_defaults(func=status_command)


def status_command(args: argparse.Namespace) -> int:
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
            if not unreadable:
                print(f"{args.plugin}: no rollout recorded yet")
            return said_refused(refused) or outcome
        states = {args.plugin: states[args.plugin]}
    if args.json:
        print(json.dumps({name: to_doc(state) for name, state in sorted(states.items())}, indent=2))
        return said_refused(refused) or outcome
    if not states and not unreadable:
        print("no rollout recorded yet")
    for _name, state in sorted(states.items()):
        print_status(state, fleet, detail=bool(args.plugin))
    return said_refused(refused) or outcome


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


def print_status(state: RolloutState, fleet: Fleet | None, detail: bool) -> None:
    """One line per rollout (batch n of the planned total); with `detail`, every batch, the ones to come too."""
    print(summarize(state, batches_total(fleet, state) if fleet else None).line())
    if state.waiting_for:
        print(f"  waiting for {state.waiting_for}")
    if not detail:
        return
    for batch in state.batches:
        verdicts = ", ".join(f"{m.name}={_number(m.last.value if m.last else None)}"
                             f" {m.last.verdict.value if m.last else ''}" for m in batch.metrics)
        print(f"  batch {batch.name:<10} {batch.phase.value:<9} {len(batch.instances):>4} instance(s)  {verdicts}")
    for planned in pending_batches(fleet, state) if fleet else ():
        print(f"  batch {planned.name:<10} {'Pending':<9} {len(planned.instances):>4} instance(s)")
    if state.paused_at:
        print(f"  paused by {state.paused_by or 'unknown'}: {state.pause_reason or 'no reason given'}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
