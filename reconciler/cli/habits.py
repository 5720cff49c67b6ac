"""`grayops version` and `grayops completion SHELL`: what scripts and shells expect of a command-line tool."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess

from argcomplete.shell_integration import shellcode

from reconciler import __version__
from reconciler.cli.errors import DONE
from reconciler.cli.options import Subparsers

SHELLS = ("bash", "zsh", "fish")


def add_parser(sub: Subparsers) -> None:
    version = sub.add_parser("version", help="print grayops' version (and git's and Python's)")
    version.add_argument("--short", action="store_true", help="the version number alone")
    version.add_argument("--json", action="store_true", help="as a JSON object")
    version.set_defaults(func=version_command)
    completion = sub.add_parser(
        "completion", help="print the shell completion script for bash, zsh or fish",
        description="Print a script that makes the shell complete grayops' commands and options. For example: "
                    "`source <(grayops completion bash)` in ~/.bashrc, `grayops completion zsh > "
                    "\"${fpath[1]}/_grayops\"`, `grayops completion fish > ~/.config/fish/completions/grayops.fish`.")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=completion_command)


def version_command(args: argparse.Namespace) -> int:
    if args.short:
        print(__version__)
        return DONE
    versions = {"grayops": __version__, "git": _git_version(), "python": platform.python_version()}
    if args.json:
        print(json.dumps(versions, indent=2))
    else:
        print("\n".join(f"{name} {number}" for name, number in versions.items()))
    return DONE


def completion_command(args: argparse.Namespace) -> int:
    print(shellcode(["grayops"], shell=args.shell), end="")
    return DONE


def _git_version() -> str:
    try:
        done = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "not found"
    return done.stdout.strip().removeprefix("git version ") or "not found"
