"""What several commands share: the repository options and where --repo defaults to, the default workdir, who is
asking."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import subprocess
from pathlib import Path
from typing import TypeAlias

from reconciler.cli.errors import UsageError
from reconciler.core.timing import parse_duration

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
LOG_LEVELS = ["debug", "info", "warning", "error"]


def repo_args(parser: argparse.ArgumentParser, remote: bool = False) -> None:
    """--repo and the branches. With `remote` (commands that commit and push) --repo defaults to the remote of the
    clone it runs in; else to that clone itself (read at its remote's copy, fetched first: README "The CLI")."""
    here = "the remote of the clone you are in" if remote else "the clone you are in"
    parser.add_argument("--repo", default=None, help="fleet repository: a path, file://, ssh or https URL "
                                                     f"(default: $GRAYOPS_REPO, else {here})")
    parser.add_argument("--branch", default="main", help="desired-state branch (default: main)")
    parser.add_argument("--status-branch", default=None,
                        help="branch for status/ and reports/ when grayops.yaml sets status.branch")
    parser.set_defaults(repo_remote=remote)


def default_repo(remote: bool, cwd: Path | None = None) -> str:
    """Where --repo points when it is not given: $GRAYOPS_REPO, else the clone `cwd` is in (or, with `remote`, the
    URL of its remote, where a commit is pushed). Raises UsageError (exit 2)."""
    if env := os.environ.get("GRAYOPS_REPO"):
        return env
    where = cwd or Path.cwd()

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None

    top = git("rev-parse", "--show-toplevel")
    if not remote:
        return top or str(where)  # a directory of files outside git is read as it is
    if top is None:
        raise UsageError(f"no --repo given, GRAYOPS_REPO is not set and {where} is not in a git clone")
    branch = git("branch", "--show-current")
    name = (git("config", f"branch.{branch}.remote") if branch else None) or "origin"
    url = git("remote", "get-url", name)
    if url is None:
        raise UsageError(f"no --repo given, GRAYOPS_REPO is not set and the clone {top} has no remote to commit to")
    return url


def default_workdir(remote: str) -> Path:
    """A workdir of its own per remote, under $XDG_STATE_HOME (or ~/.local/state)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "grayops"
    slug = Path(remote.rstrip("/")).name.removesuffix(".git") or "fleet"
    return base / f"{slug}-{hashlib.sha1(remote.encode()).hexdigest()[:8]}"


def who(explicit: str | None) -> str:
    """`--as`, else the login name."""
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def duration_arg(text: str) -> float:
    """An option's duration ("30s", "10m", "2"), or a usage error that says what is expected."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
