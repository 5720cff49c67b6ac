"""`grayops demo`: a simulated fleet end to end (README "Quick start")."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli.options import Subparsers
from reconciler.demo import run_demo


def add_parser(sub: Subparsers) -> None:
    demo = sub.add_parser("demo", help="a simulated fleet end to end: good rollout, bad one rolled back")
    demo.add_argument("--keep", metavar="DIR", help="build the demo in DIR and keep it (default: a temporary dir)")
    demo.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    return run_demo(keep=Path(args.keep) if args.keep else None, live=not args.no_progress)
