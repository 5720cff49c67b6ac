"""What several commands share: the repository options, the default workdir, who is asking."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
from pathlib import Path
from typing import TypeAlias

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
LOG_LEVELS = ["debug", "info", "warning", "error"]


def repo_args(parser: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    parser.add_argument("--repo", required=required, default=default,
                        help="fleet repository: a path, file://, ssh or https URL" +
                        (f" (default: {default})" if default else ""))
    parser.add_argument("--branch", default="main", help="desired-state branch (default: main)")
    parser.add_argument("--status-branch", default=None,
                        help="branch for status/ and reports/ when grayops.yaml sets status.branch")


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
