"""The argument parser, built from the command modules, and `main`, which runs a command inside the boundary."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from reconciler import __version__
from reconciler.cli import brakes, demo, plan, report, run, schema, serve, status, validate
from reconciler.cli.errors import guarded
from reconciler.cli.wiring import full_registry
from reconciler.web import command as dashboard  # the web view (README "Web view")

EXAMPLES = """\
examples:
  grayops demo                                   a simulated fleet, end to end, in a temporary directory
  grayops validate ./fleet                       check every file of a fleet repository
  grayops plan --repo . --base origin/main --format markdown    what a merge request would roll out
  grayops run --repo git@example.com:ops/fleet.git --workdir /var/lib/grayops
  grayops status --repo ./fleet billing
  grayops pause billing --repo ./fleet --reason "incident 42" --as alice
  grayops approve billing --batch wave-2 --as bob --repo ./fleet
  grayops retry billing --repo ./fleet --as bob --reason "fault fixed"    run a failed batch again
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
    for command in (run, serve, status, brakes, report, plan, validate, schema, demo):  # the order of --help
        command.add_parser(sub)
    dashboard.add_parser(sub, full_registry)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` asks for; its exit code (README "The CLI"). A usage error exits 2 from argparse."""
    args = build_parser().parse_args(argv)
    code: int = guarded(lambda: args.func(args))
    return code
