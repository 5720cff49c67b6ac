"""`grayops demo`: a simulated fleet end to end (README "Quick start")."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from reconciler.cli.errors import Failed
from reconciler.cli.options import Subparsers
from reconciler.demo import run_demo
from reconciler.demo_secure import run_secure_demo


def add_parser(sub: Subparsers) -> None:
    demo = sub.add_parser("demo", help="a simulated fleet end to end: good rollout, bad one rolled back")
    demo.add_argument("--keep", metavar="DIR", help="build the demo in DIR and keep it (default: a temporary dir)")
    demo.add_argument("--secure", action="store_true",
                      help="signed desired state: an unsigned version refused, a signed one rolled out (needs "
                           "ssh-keygen)")
    demo.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    if args.secure:
        if shutil.which("ssh-keygen") is None:
            raise Failed("grayops demo --secure makes SSH keys with ssh-keygen: install openssh-client")
        return run_secure_demo(keep=Path(args.keep) if args.keep else None, live=not args.no_progress)
    return run_demo(keep=Path(args.keep) if args.keep else None, live=not args.no_progress)
