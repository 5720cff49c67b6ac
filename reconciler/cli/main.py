"""The argument parser, built from the command modules, and `main`, which runs a command inside the boundary."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import argcomplete

from reconciler import __version__
from reconciler.cli import brakes, demo, habits, plan, report, run, schema, serve, status, token, validate, wait
from reconciler.cli.errors import guarded
from reconciler.cli.options import Subparsers, default_repo
from reconciler.cli.wiring import full_registry
from reconciler.web import command as dashboard  # the web view (README "Web view")

EXAMPLES = """\
examples:
  grayops demo                                   a simulated fleet, end to end, in a temporary directory
  grayops validate ./fleet                       check every file of a fleet repository
  grayops plan --base origin/main -o markdown    what a merge request would roll out
  grayops run --repo git@example.com:ops/fleet.git --workdir /var/lib/grayops
  grayops status --repo ./fleet billing
  grayops pause billing --repo ./fleet --reason "incident 42" --as alice
  grayops approve billing --batch wave-2 --as bob --repo ./fleet
  grayops retry billing --repo ./fleet --as bob --reason "fault fixed"    run a failed batch again
  grayops token issue --plugin billing --action approve --as rita    an approval token for the API
  grayops wait billing --timeout 30m             in a pipeline: exit 0 once billing's version succeeded
  grayops status -w                              watch the rollouts of the clone you are in
  source <(grayops completion bash)              complete commands and options in bash
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grayops",
        description="Roll plugin versions across a fleet of clusters batch by batch, judged by metrics, "
                    "with the fleet's git repository as the record.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"grayops {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for command in (run, serve, status, wait, brakes, token, report, plan, validate, schema, demo):  # --help's order
        command.add_parser(sub)
    dashboard.add_parser(sub, full_registry)
    habits.add_parser(sub)
    _describe(sub)
    return parser


def _describe(sub: Subparsers) -> None:
    """A command without a description of its own is described by its line in `grayops --help`, so every
    `grayops COMMAND --help` says what the command does."""
    for action in sub._choices_actions:
        command = sub.choices[action.dest]
        if not command.description and action.help:
            command.description = action.help[:1].upper() + action.help[1:] + "."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` asks for; its exit code (README "The CLI"). A usage error exits 2 from argparse."""
    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers the shell's completion request (`grayops completion`) and exits
    args = parser.parse_args(argv)

    def command() -> int:
        if getattr(args, "repo_remote", None) is not None and args.repo is None:
            args.repo = default_repo(args.repo_remote)
        code: int = args.func(args)
        return code

    return guarded(command)
