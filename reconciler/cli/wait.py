"""`grayops wait PLUGIN`: for pipelines, wait until the rollout of the plugin's version reaches what --for asks.

Exit codes (README "The CLI"): 0 reached; 1 the rollout ended otherwise (rolled back or failed); 2 not reached
within --timeout (and for a usage error, as everywhere).
"""

from __future__ import annotations

import argparse
import time

import yaml

from reconciler.cli.errors import DONE, FAILED, USAGE, Failed
from reconciler.cli.options import Subparsers, duration_arg, repo_args
from reconciler.cli.records import read_records, record_source, recorded_status
from reconciler.core.layout import plugin_files
from reconciler.core.model import Phase, RolloutState
from reconciler.core.status import StatusUnreadable
from reconciler.core.timing import format_duration

SETTLED = (Phase.PAUSED, Phase.AWAITING_APPROVAL, Phase.WAITING_WINDOW)  # and the terminal phases


def add_parser(sub: Subparsers) -> None:
    wait = sub.add_parser(
        "wait", help="wait until a plugin's rollout succeeds (or settles); for pipelines",
        description="Wait until the rollout of the plugin's version (the one at HEAD when the wait starts, or "
                    "--version) reaches what --for asks. Succeeded: it succeeded. settled: it stopped moving on "
                    "its own (succeeded, rolled back, failed, paused, awaiting approval or a window). Exit 0 when "
                    "reached, 1 when the rollout ended otherwise, 2 on timeout.")
    wait.add_argument("plugin")
    repo_args(wait)
    wait.add_argument("--workdir", help="read the reconciler's clone in this workdir instead of --repo")
    wait.add_argument("--for", dest="until", choices=["Succeeded", "settled"], default="Succeeded",
                      help="what to wait for (default: Succeeded)")
    wait.add_argument("--version", help="the version whose rollout to wait for (default: the plugin's at HEAD)")
    wait.add_argument("--timeout", type=duration_arg, default=600.0, metavar="DURATION",
                      help="give up after this long, exit 2 (default: 10m)")
    wait.add_argument("--interval", type=duration_arg, default=2.0, metavar="DURATION",
                      help="how often to read the record (default: 2s)")
    wait.set_defaults(func=wait_command)


def wait_command(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    version: str | None = args.version
    last_line = ""
    while True:
        files, records = read_records(*record_source(args))
        if version is None:
            version = desired_version(files, args.plugin)
            print(f"waiting for {args.plugin} {version} to be {args.until}", flush=True)
        state = recorded(records, args.plugin)
        verdict = judge(state, version, args.until)
        line = state.reason if state is not None and state.target_version == version else ""
        if line and line != last_line:
            print(f"  {state.phase.value if state else ''}: {line}", flush=True)
            last_line = line
        if verdict is not None:
            print(verdict[1])
            return verdict[0]
        if time.monotonic() >= deadline:
            print(f"{args.plugin} {version} not {args.until} within {format_duration(args.timeout)}")
            return USAGE  # 2: timed out
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))


def judge(state: RolloutState | None, version: str, until: str) -> tuple[int, str] | None:
    """(exit code, what to say) once the wait is over; None while it goes on."""
    if state is not None and state.target_version != version and state.from_version == version:
        # it succeeded, and a rollout of a newer version has started since
        return DONE, f"{state.plugin} {version}: Succeeded (a rollout of {state.target_version} has started since)"
    if state is None or state.target_version != version:
        return None  # not started yet (or the reconciler has not read the commit yet)
    said = f"{state.plugin} {version}: {state.phase.value}"
    if until == "settled" and (state.phase.terminal or state.phase in SETTLED):
        return DONE, said
    if state.phase is Phase.SUCCEEDED:
        return DONE, said
    if state.phase.terminal:
        return FAILED, f"{said} ({state.reason})"
    return None


def desired_version(files: dict[str, str], plugin: str) -> str:
    text = next((files[path] for path in plugin_files(plugin) if path in files), None)
    try:
        version = (yaml.safe_load(text) or {}).get("spec", {}).get("version") if text else None
    except yaml.YAMLError:
        version = None
    if not isinstance(version, str):
        raise Failed(f"no version of {plugin!r} to wait for at HEAD (give --version)")
    return version


def recorded(records: dict[str, str], plugin: str) -> RolloutState | None:
    try:
        return recorded_status(records, plugin)
    except StatusUnreadable:
        return None  # said by status; a torn read is read again at the next interval
