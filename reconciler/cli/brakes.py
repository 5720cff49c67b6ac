"""`grayops pause|resume|rollback|approve|retry`: commands as commits (README "The CLI"), made
in a temporary clone and pushed at once, or in the reconciler's own clone (`--workdir`)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from reconciler.adapters.gitrepo import GitRepo
from reconciler.cli.errors import DONE, Failed
from reconciler.cli.options import Subparsers, repo_args, who
from reconciler.cli.wiring import full_registry
from reconciler.commands import run_command
from reconciler.core.text import NAME_LIMIT, REASON_LIMIT, one_line

COMMANDS = (
    ("pause", "stop starting new work (commits spec.paused: true)"),
    ("resume", "continue where it stopped (commits spec.paused: false)"),
    ("rollback", "roll back fast to the last good version (commits the revert of spec.version)"),
    ("approve", "approve a batch that needs it (commits approvals/<plugin>.yaml)"),
    ("retry", "run again what failed: the failed batch of a Failed rollout or of one paused after it, or a failed "
              "rollback (commits a retry record in approvals/<plugin>.yaml)"),
)


def add_parser(sub: Subparsers) -> None:
    for name, text in COMMANDS:
        p = sub.add_parser(name, help=text, description=text.capitalize() + ". A command that changes nothing "
                           "makes no commit.")
        p.add_argument("plugin")
        repo_args(p, remote=True)
        p.add_argument("--workdir", help="act in this clone (e.g. the reconciler's, so it acts even when the remote "
                                         "is down); default: a temporary clone, pushed at once")
        p.add_argument("--as", dest="as_", metavar="NAME", help="who asks (default: the login name)")
        if name == "approve":
            p.add_argument("--batch", required=True, help="the batch to approve")
        else:
            p.add_argument("--reason", help="why, recorded in the commit")
        p.set_defaults(func=brake_command, command=name, reason=None)


def brake_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="grayops: %(message)s")
    shared = args.workdir is not None
    with tempfile.TemporaryDirectory(prefix="grayops-cmd-") as tmp:
        workdir = Path(args.workdir) if shared else Path(tmp)
        repo = GitRepo(args.repo, workdir, branch=args.branch, status_branch=args.status_branch)
        repo.ensure_clone()
        result = run_command(repo, args.command, args.plugin, one_line(who(args.as_), NAME_LIMIT),
                             datetime.now(UTC), reason=one_line(args.reason, REASON_LIMIT) if args.reason else None,
                             batch=getattr(args, "batch", None), adapters=full_registry().models)
    print(result.message)
    if result.changed and not result.pushed and not shared:
        raise Failed("the change could not be pushed and this clone is temporary: nothing was recorded")
    return DONE
