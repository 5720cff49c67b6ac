"""`grayops pause|resume|rollback|approve|retry`: commands as commits (README "The CLI"), made
in a temporary clone and pushed at once, or in the reconciler's own clone (`--workdir`)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.trust.commits import SigningKeyError, signing_config
from reconciler.cli.errors import DONE, Failed, UsageError
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
        p.add_argument("--signing-key", metavar="KEY", default=None,
                       help="sign the commit with this SSH private key file or OpenPGP key id (default: as your git "
                            "configuration says; in --workdir, as the reconciler's clone does)")
        p.add_argument("--as", dest="as_", metavar="NAME", help="who asks (default: the login name)")
        if name == "approve":
            p.add_argument("--batch", required=True, help="the batch to approve")
        else:
            p.add_argument("--reason", help="why, recorded in the commit")
        p.set_defaults(func=brake_command, command=name, reason=None)


def brake_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="grayops: %(message)s")
    shared = args.workdir is not None
    signing = command_signing(args.signing_key, shared)
    with tempfile.TemporaryDirectory(prefix="grayops-cmd-") as tmp:
        workdir = Path(args.workdir) if shared else Path(tmp)
        repo = GitRepo(args.repo, workdir, branch=args.branch, status_branch=args.status_branch, signing=signing)
        repo.ensure_clone()
        result = run_command(repo, args.command, args.plugin, one_line(who(args.as_), NAME_LIMIT),
                             datetime.now(UTC), reason=one_line(args.reason, REASON_LIMIT) if args.reason else None,
                             batch=getattr(args, "batch", None), adapters=full_registry().models)
    print(result.message)
    if result.changed and not result.pushed and not shared:
        raise Failed("the change could not be pushed and this clone is temporary: nothing was recorded")
    return DONE


def command_signing(key: str | None, shared: bool) -> tuple[tuple[str, str], ...] | None:
    """How the command's commit is signed (README "Supply chain"): with `--signing-key` in a temporary clone, else
    as git's configuration says (the person's own, or in `--workdir` the reconciler's clone's)."""
    if key is None:
        return None
    if shared:
        raise UsageError("--signing-key: not with --workdir, whose commits are signed as the reconciler signs them "
                         "(grayops run --signing-key)")
    try:
        return signing_config(key).config
    except SigningKeyError as err:
        raise Failed(f"--signing-key: {err}") from err
